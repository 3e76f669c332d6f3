//! What the tests see of a foreign SCTP stack: commands in, events out,
//! the same for every stack.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dcengine::wire::{Codec, Frame, Message};

/// A command to a peer.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Start the handshake (the Rust stacks start it on their own).
    Connect,
    /// Send one user message.
    Send {
        /// The SCTP stream.
        stream: u16,
        /// The payload protocol identifier.
        ppid: u32,
        /// Unordered delivery.
        unordered: bool,
        /// The message.
        data: Bytes,
    },
    /// Reset (RFC 6525) this outgoing stream.
    Reset(u16),
    /// Graceful SHUTDOWN.
    Shutdown,
    /// ABORT.
    Abort,
    /// Stop the peer.
    Quit,
}

/// What a peer reports.
#[derive(Debug, Clone)]
pub enum Ev {
    /// The association is up.
    Connected,
    /// A user message arrived.
    Msg {
        /// The SCTP stream.
        stream: u16,
        /// The payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Bytes,
    },
    /// The association ended gracefully (SHUTDOWN-COMPLETE).
    Closed,
    /// The association ended with an ABORT (received or sent); the text
    /// is what the stack says.
    Aborted(String),
    /// The association ended; the stack does not say how (webrtc-sctp).
    Ended,
    /// Something else the stack reported (a reset, a log line).
    Info(String),
    /// A command failed.
    Error(String),
}

impl Ev {
    /// Whether this event ends the association.
    pub fn is_end(&self) -> bool {
        matches!(self, Ev::Closed | Ev::Aborted(_) | Ev::Ended)
    }
}

/// What the peer's driver thread is handed.
pub struct Wiring {
    /// Commands from the test.
    pub cmds: Receiver<Cmd>,
    /// Events to the test.
    pub events: Sender<Ev>,
    /// Where to send (the tap).
    pub remote: SocketAddr,
}

/// The test's handle on a peer.
pub struct Peer {
    /// Which stack.
    pub name: &'static str,
    cmds: Sender<Cmd>,
    events: Receiver<Ev>,
    /// Events seen but not yet consumed.
    pending: VecDeque<Ev>,
    /// The end of the association, once seen (kept even when a wait for
    /// something else passed it, so no wait can consume it).
    end: Option<Ev>,
    /// Every event seen, in order, for failure messages (messages
    /// summarised).
    pub history: Vec<String>,
}

/// How long a wait may take before the test fails: it guards against a
/// hang, not a speed (a loaded 2-core machine can be slow: with its cores
/// kept busy, a 257 KiB message from the usrsctp puppet took over 30 s).
pub const LIMIT: Duration = Duration::from_secs(60);

impl Peer {
    /// A handle on a peer whose driver uses the other ends.
    pub fn new(name: &'static str, cmds: Sender<Cmd>, events: Receiver<Ev>) -> Peer {
        Peer {
            name,
            cmds,
            events,
            pending: VecDeque::new(),
            end: None,
            history: Vec::new(),
        }
    }

    /// Sends a command (ignored if the peer is gone).
    pub fn cmd(&self, c: Cmd) {
        let _ = self.cmds.send(c);
    }

    /// Sends one user message.
    pub fn send(&self, stream: u16, unordered: bool, data: Bytes) {
        self.cmd(Cmd::Send {
            stream,
            ppid: 53,
            unordered,
            data,
        });
    }

    /// Encodes and sends one engine message (a frame or a batch) with PPID 53.
    pub fn send_frame(&self, stream: u16, frame: &Message) {
        self.send(stream, stream == 1, frame.to_bytes());
    }

    fn pull(&mut self, deadline: Instant) -> Option<Ev> {
        if let Some(e) = self.pending.pop_front() {
            return Some(e);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(e) => {
                self.record(&e);
                Some(e)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    fn record(&mut self, e: &Ev) {
        self.history.push(match e {
            Ev::Msg { stream, ppid, data } => {
                format!(
                    "Msg(stream {stream}, ppid {ppid}, {} bytes{})",
                    data.len(),
                    describe(data)
                )
            }
            e => format!("{e:?}"),
        });
        if e.is_end() && self.end.is_none() {
            self.end = Some(e.clone());
        }
    }

    /// The next event matching `pred` within `limit`; the others before it
    /// are dropped (but an end is remembered, see [`Peer::wait_end`]).
    pub fn wait_for(&mut self, limit: Duration, mut pred: impl FnMut(&Ev) -> bool) -> Option<Ev> {
        let deadline = Instant::now() + limit;
        while let Some(e) = self.pull(deadline) {
            if pred(&e) {
                return Some(e);
            }
        }
        None
    }

    /// Waits until connected.
    pub fn wait_connected(&mut self) -> bool {
        self.wait_connected_within(LIMIT)
    }

    /// [`Peer::wait_connected`] for at most `limit`.
    pub fn wait_connected_within(&mut self, limit: Duration) -> bool {
        self.wait_for(limit, |e| matches!(e, Ev::Connected | Ev::Aborted(_)))
            .is_some_and(|e| matches!(e, Ev::Connected))
    }

    /// The end of the association: the one already seen, or the next.
    pub fn wait_end(&mut self, limit: Duration) -> Option<Ev> {
        if let Some(e) = &self.end {
            return Some(e.clone());
        }
        self.wait_for(limit, Ev::is_end);
        self.end.clone()
    }

    /// The end, if one was seen so far (reads what is waiting, not more).
    pub fn ended(&mut self) -> Option<Ev> {
        while let Ok(e) = self.events.try_recv() {
            self.record(&e);
            self.pending.push_back(e);
        }
        self.end.clone()
    }

    /// The next engine frames (PPID 53 messages, decoded) within `limit`,
    /// with the stream each came on.
    pub fn next_frames(&mut self, limit: Duration) -> Option<(u16, Vec<Frame>)> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_for(left, |e| matches!(e, Ev::Msg { ppid: 53, .. }))? {
                Ev::Msg { stream, data, .. } => match Message::decode_exact(data) {
                    Ok(m) => return Some((stream, m.into_frames().collect())),
                    Err(e) => self
                        .history
                        .push(format!("undecodable engine message: {e}")),
                },
                _ => continue,
            }
        }
    }

    /// The recent history, for a failure message.
    pub fn history_text(&self) -> String {
        let n = self.history.len();
        let from = n.saturating_sub(30);
        let mut s = format!("{} events ({} in all, last 30):\n", self.name, n);
        for h in &self.history[from..] {
            s.push_str("    ");
            s.push_str(h);
            s.push('\n');
        }
        s
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Quit);
    }
}

fn describe(data: &[u8]) -> String {
    match Message::decode_exact(Bytes::copy_from_slice(data)) {
        Ok(m) => {
            let names: Vec<&str> = m.into_frames().map(|f| f.name()).collect();
            format!(": {}", names.join(","))
        }
        Err(_) => String::new(),
    }
}
