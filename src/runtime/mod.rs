//! The runtime: threads and sockets around the sans-IO [`Hub`].
//!
//! An [`Engine`] owns a worker thread that drives one [`Hub`] over one UDP
//! socket: it moves datagrams and time into the hub and datagrams out, and
//! nothing else. Application handles ([`Call`], senders, receivers) are used
//! from any thread; the hub's wake hook interrupts the worker's wait when
//! they queue work (once per batch).
//!
//! This is the portable backend: a non-blocking socket on epoll (through
//! `mio`). The io_uring backend and several workers per engine (one per
//! core, `SO_REUSEPORT`, cross-core fan-out) are the next steps of the
//! runtime work; [`EngineBuilder`] already takes the settings they need.
#![forbid(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::auth::JoinVerifier;
use crate::datachannel::Call;
use crate::hub::{Hub, HubConfig, HubEvent, JoinError};
use crate::proto::Transmit;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Largest datagram the worker receives (SCTP packets are far smaller; a
/// larger one is cut and then fails its checksum).
const RECV_BUFFER: usize = 64 * 1024;

/// How the worker does its I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// The best one available (today: [`Backend::Portable`]).
    #[default]
    Auto,
    /// Non-blocking sockets on epoll/kqueue.
    Portable,
}

/// Why an engine could not start or do what was asked.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The socket could not be set up.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// A join was refused before it started.
    #[error(transparent)]
    Join(#[from] JoinError),
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// Configures and starts an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineBuilder {
    bind: SocketAddr,
    hub: HubConfig,
    backend: Backend,
    socket_buffer: usize,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hub: HubConfig::client(),
            backend: Backend::Auto,
            socket_buffer: 4 * 1024 * 1024,
        }
    }
}

impl EngineBuilder {
    /// The UDP address to bind. Default `127.0.0.1:0` (any free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The hub's configuration (limits, timers, roles). Default: client.
    pub fn hub(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// Makes the engine a server admitting the joins `verifier` accepts.
    pub fn server(mut self, verifier: Arc<dyn JoinVerifier>) -> Self {
        self.hub.verifier = Some(verifier);
        self.hub.node.accept_incoming = true;
        self
    }

    /// Which I/O backend to use. Default [`Backend::Auto`].
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Kernel send and receive buffer sizes asked for the socket. Default
    /// 4 MiB (small buffers drop bursts: usrsctp's 128 KiB default does).
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = bytes;
        self
    }

    /// Binds the socket and starts the worker.
    pub fn start(self) -> Result<Engine, EngineError> {
        let socket = bind(self.bind, self.socket_buffer)?;
        let local_addr = socket.local_addr()?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let hub = Hub::new(self.hub);
        let hook = waker.clone();
        hub.set_wake_hook(move || {
            // A failed wake only delays the work to the next timer.
            let _ = hook.wake();
        });
        let (commands, inbox) = mpsc::channel();
        let worker = Worker {
            hub,
            socket,
            poll,
            inbox,
            events: Vec::new(),
            unsent: None,
        };
        let thread = std::thread::Builder::new()
            .name("dcengine-worker".into())
            .spawn(move || worker.run())?;
        Ok(Engine {
            local_addr,
            commands,
            waker,
            thread: Some(thread),
        })
    }
}

/// Asks for SO_REUSEADDR-free defaults, bigger kernel buffers, and a
/// non-blocking socket.
fn bind(addr: SocketAddr, buffer: usize) -> io::Result<UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // The kernel caps these at its limits; smaller is not an error.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(UdpSocket::from_std(s.into()))
}

enum Command {
    JoinRemote {
        server: SocketAddr,
        call_id: String,
        participant_id: String,
        token: Bytes,
        reply: mpsc::Sender<Result<Call, JoinError>>,
    },
    JoinLocal {
        call_id: String,
        participant_id: String,
        reply: mpsc::Sender<Result<Call, JoinError>>,
    },
    Events(mpsc::Sender<Vec<HubEvent>>),
    Shutdown {
        deadline: Duration,
    },
}

/// A running engine: one worker thread, one UDP socket, one [`Hub`].
///
/// Dropping it shuts it down (see [`Engine::shutdown`]).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use dcengine::auth::{HmacVerifier, WallClock};
/// # use dcengine::runtime::Engine;
/// let clock = WallClock::new(std::time::Instant::now(),
///     std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap());
/// let server = Engine::builder()
///     .bind("0.0.0.0:5000".parse().unwrap())
///     .server(Arc::new(HmacVerifier::new(b"secret", clock)))
///     .start()
///     .unwrap();
/// println!("serving on {}", server.local_addr());
/// ```
pub struct Engine {
    local_addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with the defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Command) -> Result<T, EngineError> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| EngineError::Stopped)?;
        self.waker.wake()?;
        answer.recv().map_err(|_| EngineError::Stopped)
    }

    /// Joins `call_id` on the server at `server` (see
    /// [`Hub::join_remote`]). Returns at once; wait for [`Call::ready`].
    pub fn join_remote(
        &self,
        server: SocketAddr,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, EngineError> {
        let call = self.ask(|reply| Command::JoinRemote {
            server,
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            token,
            reply,
        })??;
        Ok(call)
    }

    /// Hosts a participant in `call_id` inside this engine (see
    /// [`Hub::join_local`]).
    pub fn join_local(&self, call_id: &str, participant_id: &str) -> Result<Call, EngineError> {
        let call = self.ask(|reply| Command::JoinLocal {
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            reply,
        })??;
        Ok(call)
    }

    /// The hub's events since the last call (joins, leaves, rejections).
    pub fn events(&self) -> Result<Vec<HubEvent>, EngineError> {
        self.ask(Command::Events)
    }

    /// Stops the engine: associations are closed gracefully (queued data is
    /// delivered first) for up to `deadline`, then the worker exits.
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop(deadline);
    }

    fn stop(&mut self, deadline: Duration) {
        if let Some(thread) = self.thread.take() {
            if self.commands.send(Command::Shutdown { deadline }).is_ok() {
                let _ = self.waker.wake();
            }
            let _ = thread.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(1));
    }
}

struct Worker {
    hub: Hub,
    socket: UdpSocket,
    poll: Poll,
    inbox: mpsc::Receiver<Command>,
    events: Vec<HubEvent>,
    /// A datagram the socket would not take yet.
    unsent: Option<Transmit>,
}

impl Worker {
    fn run(mut self) {
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut self.socket, SOCKET, Interest::READABLE)
        {
            tracing::error!(error = %e, "cannot register the socket; the engine stops");
            return;
        }
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; RECV_BUFFER];
        let mut stopping: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.commands(now) {
                stopping.get_or_insert(deadline);
            }
            if let Some(deadline) = stopping
                && (now >= deadline || self.hub.node().association_count() == 0)
            {
                self.flush();
                return;
            }
            if self.hub.poll_timeout().is_some_and(|t| t <= now) {
                self.hub.handle_timeout(now);
            }
            self.drain_events();
            let writable = self.flush();
            let wait = [self.hub.poll_timeout(), stopping]
                .into_iter()
                .flatten()
                .min()
                .map(|t| t.saturating_duration_since(Instant::now()));
            let interest = if writable {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let _ = self
                .poll
                .registry()
                .reregister(&mut self.socket, SOCKET, interest);
            if let Err(e) = self.poll.poll(&mut events, wait)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "poll failed; the engine stops");
                return;
            }
            self.receive(&mut buf);
        }
    }

    /// Handles queued commands; returns a shutdown deadline if asked to stop.
    fn commands(&mut self, now: Instant) -> Option<Instant> {
        let mut stop = None;
        while let Ok(command) = self.inbox.try_recv() {
            match command {
                Command::JoinRemote {
                    server,
                    call_id,
                    participant_id,
                    token,
                    reply,
                } => {
                    let r = self
                        .hub
                        .join_remote(now, server, &call_id, &participant_id, token);
                    let _ = reply.send(r);
                }
                Command::JoinLocal {
                    call_id,
                    participant_id,
                    reply,
                } => {
                    let _ = reply.send(self.hub.join_local(now, &call_id, &participant_id));
                }
                Command::Events(reply) => {
                    self.drain_events();
                    let _ = reply.send(std::mem::take(&mut self.events));
                }
                Command::Shutdown { deadline } => {
                    self.hub.close_all(now);
                    stop = Some(now + deadline);
                }
            }
        }
        stop
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.hub.poll_event() {
            if self.events.len() < 10_000 {
                self.events.push(e);
            }
        }
    }

    /// Reads every waiting datagram into the hub.
    fn receive(&mut self, buf: &mut [u8]) {
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    let datagram = Bytes::copy_from_slice(&buf[..n]);
                    self.hub.handle_datagram(Instant::now(), from, datagram);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors for earlier sends surface here on Linux: the
                // association's own timers deal with unreachable peers.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => tracing::debug!(error = %e, "recv_from"),
            }
        }
    }

    /// Sends what the hub has; `false` if the socket is full (wait for
    /// writable).
    fn flush(&mut self) -> bool {
        loop {
            let Some(t) = self.unsent.take().or_else(|| self.hub.poll_transmit()) else {
                return true;
            };
            match self.socket.send_to(&t.payload, t.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent = Some(t);
                    return false;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.unsent = Some(t),
                // Unreachable destinations and the like: the datagram is
                // lost, which SCTP recovers from or reports.
                Err(e) => tracing::debug!(error = %e, to = %t.destination, "send_to"),
            }
        }
    }
}
