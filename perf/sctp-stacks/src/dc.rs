//! dcsctp 0.1.16: one `Socket` per association side (dcsctp has no
//! endpoint: the caller demultiplexes), time handed in with
//! `advance_time`, packets out as `SocketEvent::SendPacket`.

use bytes::Bytes;
use dcsctp::api::{
    DcSctpSocket, Message, Options, PpId, SendOptions, Socket, SocketEvent, SocketTime, StreamId,
};

use crate::net::{Mode, Net, Settings, To, VTime};

/// WebRTC's PPID for binary messages (what the engine sends).
const PPID_BINARY: PpId = PpId(53);

/// dcsctp's options for `s`: the same MTU, buffers, message size, streams
/// and RTOs as sctp-proto gets; unlimited DATA retransmissions (as the
/// engine configures sctp-proto); everything else dcsctp's defaults
/// (heartbeats every 30 s on idle, delayed SACK at most 200 ms, DATA
/// rather than I-DATA, checksums on, initial cwnd 10 MTUs).
pub fn options(s: &Settings) -> Options {
    Options {
        mtu: s.mtu,
        max_message_size: s.max_message as usize,
        max_receiver_window_buffer_size: s.receive_buffer as usize,
        max_send_buffer_size: s.send_buffer,
        per_stream_send_queue_limit: s.send_buffer,
        announced_maximum_incoming_streams: s.streams,
        announced_maximum_outgoing_streams: s.streams,
        rto_initial: s.rto.0,
        rto_min: s.rto.1,
        rto_max: s.rto.2,
        max_retransmissions: None,
        ..Options::default()
    }
}

/// `now` on a socket's clock (every socket here counts from the run's start).
pub fn st(now: VTime) -> SocketTime {
    SocketTime::zero() + now
}

/// One side of a pair.
pub struct Side {
    pub sock: Socket,
    pub connected: bool,
    pub failure: Option<String>,
}

impl Side {
    pub fn new(name: &str, options: &Options, now: VTime) -> Self {
        let mut sock = Socket::new(name, options);
        sock.advance_time(st(now));
        Self {
            sock,
            connected: false,
            failure: None,
        }
    }

    /// Drains the socket's events: packets to `to` go to `out`.
    pub fn drain(&mut self, to: To, out: &mut Vec<(To, Bytes)>) {
        while let Some(event) = self.sock.poll_event() {
            match event {
                SocketEvent::SendPacket(p) => out.push((to, Bytes::from(p))),
                SocketEvent::OnConnected() => self.connected = true,
                SocketEvent::OnAborted(kind, reason) => {
                    self.failure
                        .get_or_insert(format!("aborted: {kind:?}: {reason}"));
                }
                SocketEvent::OnClosed() => {
                    self.failure.get_or_insert("closed".into());
                }
                _ => {}
            }
        }
    }
}

struct Pair {
    client: Option<Box<Side>>,
    server: Box<Side>,
    /// Packets produced and not yet taken by `output`.
    pending: Vec<(To, Bytes)>,
}

/// dcsctp association pairs.
pub struct DcNet {
    options: Options,
    pairs: Vec<Pair>,
}

impl Net for DcNet {
    const NAME: &'static str = "dcsctp";

    fn new(settings: &Settings) -> Self {
        Self {
            options: options(settings),
            pairs: Vec::new(),
        }
    }

    fn reserve(&mut self, n: usize) {
        self.pairs.reserve(n);
    }

    fn add_pair(&mut self, now: VTime) -> usize {
        let mut client = Side::new("c", &self.options, now);
        let server = Side::new("s", &self.options, now);
        let mut pending = Vec::new();
        client.sock.connect();
        client.drain(To::Server, &mut pending);
        self.pairs.push(Pair {
            client: Some(Box::new(client)),
            server: Box::new(server),
            pending,
        });
        self.pairs.len() - 1
    }

    fn input(&mut self, now: VTime, pair: usize, to: To, packet: Bytes) {
        let p = &mut self.pairs[pair];
        let (side, back) = match to {
            To::Server => (&mut p.server, To::Client),
            To::Client => (p.client.as_mut().expect("client"), To::Server),
        };
        side.sock.advance_time(st(now));
        side.sock.handle_input(&packet);
        side.drain(back, &mut p.pending);
    }

    fn output(&mut self, _now: VTime, pair: usize, out: &mut Vec<(To, Bytes)>) {
        out.append(&mut self.pairs[pair].pending);
    }

    fn next_timeout(&self, pair: usize) -> Option<VTime> {
        let p = &self.pairs[pair];
        [p.client.as_deref(), Some(&*p.server)]
            .into_iter()
            .flatten()
            .map(|s| s.sock.poll_timeout())
            .filter(|&t| t != SocketTime::infinite_future())
            .min()
            .map(|t| t - SocketTime::zero())
    }

    fn timeout(&mut self, now: VTime, pair: usize) {
        let p = &mut self.pairs[pair];
        if let Some(c) = p.client.as_mut() {
            c.sock.advance_time(st(now));
            c.drain(To::Server, &mut p.pending);
        }
        p.server.sock.advance_time(st(now));
        p.server.drain(To::Client, &mut p.pending);
    }

    fn connected(&self, pair: usize) -> bool {
        let p = &self.pairs[pair];
        p.client.as_ref().is_some_and(|c| c.connected) && p.server.connected
    }

    fn failure(&self, pair: usize) -> Option<String> {
        let p = &self.pairs[pair];
        [p.client.as_deref(), Some(&*p.server)]
            .into_iter()
            .flatten()
            .find_map(|s| s.failure.clone())
    }

    fn send(&mut self, now: VTime, pair: usize, messages: Vec<Vec<u8>>, mode: Mode) -> usize {
        let p = &mut self.pairs[pair];
        let client = p.client.as_mut().expect("client");
        let (sid, opts) = match mode {
            Mode::Reliable => (0, SendOptions::default()),
            Mode::Lossy => (
                1,
                SendOptions {
                    unordered: true,
                    max_retransmissions: Some(0),
                    ..SendOptions::default()
                },
            ),
        };
        let n = messages.len();
        let messages = messages
            .into_iter()
            .map(|m| Message::new(StreamId(sid), PPID_BINARY, m))
            .collect();
        client.sock.advance_time(st(now));
        // `send_many` bundles what fits into one packet (`send` makes a
        // packet per message while the window is open): the batch the
        // engine hands its stack per wakeup.
        // A full send buffer (`max_send_buffer_size`, which sctp-proto does
        // not have) refuses the tail of the batch: the caller sends it again
        // later. Anything else refused, or a gap in what was accepted,
        // would break the order: a failure of the run.
        let accepted = match client.sock.send_many(messages, &opts) {
            Ok(()) => n,
            Err(e) => {
                let first = e.0[0].0;
                let tail = e.0.len() == n - first
                    && e.0.iter().enumerate().all(|(k, (i, err))| {
                        *i == first + k && *err == dcsctp::api::SendError::ResourceExhaustion
                    });
                assert!(
                    tail,
                    "dcsctp refused messages: {:?}",
                    &e.0[..e.0.len().min(4)]
                );
                first
            }
        };
        client.drain(To::Server, &mut p.pending);
        accepted
    }

    fn recv(&mut self, _now: VTime, pair: usize, f: &mut dyn FnMut(&[u8])) {
        let p = &mut self.pairs[pair];
        while let Some(m) = p.server.sock.get_next_message() {
            f(&m.payload);
        }
        // Reading may open the window: a window update could be due.
        p.server.drain(To::Client, &mut p.pending);
    }

    fn drop_clients(&mut self) {
        for p in &mut self.pairs {
            p.client = None;
        }
    }
}
