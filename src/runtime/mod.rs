//! The runtime: threads and sockets around the sans-IO [`Hub`].
//!
//! An [`Engine`] owns a worker thread that drives one [`Hub`] over one UDP
//! socket: it moves datagrams and time into the hub and datagrams out, and
//! nothing else. Application handles ([`Call`], senders, receivers) are used
//! from any thread; the hub's wake hook interrupts the worker's wait when
//! they queue work (once per batch).
//!
//! The worker's I/O is one of two backends behind the small [`Io`] trait:
//! - `uring` (Linux): io_uring with a multishot `recvmsg` over a ring of
//!   provided buffers, `sendmsg` with UDP GSO, GRO on receive, the hub's
//!   deadline as the wait's timeout and an eventfd read by the ring for
//!   wake-ups; one `io_uring_enter` per loop turn.
//! - `portable`: readiness on epoll/kqueue (`mio`) with batched UDP from
//!   `quinn-udp` (`recvmmsg`, GSO and GRO where the OS has them).
//!
//! [`Backend::Auto`] picks io_uring when the kernel allows it and falls back
//! to the portable backend otherwise (Docker's default seccomp profile
//! blocks io_uring), logging one line that says why.
//!
//! Several workers per engine (one per core, `SO_REUSEPORT`, cross-core
//! fan-out) are the next step: a [`Worker`] already holds everything one
//! core needs (socket, ring or poll, hub, timers, command inbox).
//!
//! Only the io_uring module contains `unsafe` (each block with a `SAFETY`
//! comment); everything else here denies or forbids it.
#![deny(unsafe_code)]

mod batch;
mod portable;
#[cfg(target_os = "linux")]
mod uring;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::JoinVerifier;
use crate::datachannel::Call;
use crate::hub::{Hub, HubConfig, HubEvent, JoinError};

/// Largest datagram the worker receives in one buffer (SCTP packets are far
/// smaller; 64 KiB also holds a whole GRO-coalesced train of segments). A
/// larger one is cut and dropped.
const RECV_BUFFER: usize = 64 * 1024;

/// The environment variable that, set to `1`, makes engines act as if
/// io_uring were unavailable (see [`EngineBuilder::disable_io_uring`]).
pub const DISABLE_IO_URING_ENV: &str = "DCENGINE_DISABLE_IO_URING";

/// How the worker does its I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring if the kernel allows it, else [`Backend::Portable`] (with one
    /// log line saying why). [`Engine::backend`] tells which one runs.
    #[default]
    Auto,
    /// io_uring (Linux 6.0 or newer: multishot `recvmsg`, provided-buffer
    /// rings). Starting fails with [`EngineError::Unavailable`] if the
    /// kernel or a seccomp profile refuses it.
    IoUring,
    /// Non-blocking sockets on epoll/kqueue with batched UDP (`recvmmsg`,
    /// GSO and GRO where the OS has them).
    Portable,
}

/// Why an engine could not start or do what was asked.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The socket could not be set up.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
    /// The backend asked for explicitly cannot run here.
    #[error("the {backend:?} backend is unavailable: {reason}")]
    Unavailable {
        /// The backend asked for.
        backend: Backend,
        /// Why it cannot run (e.g. the kernel or a seccomp profile refused
        /// io_uring).
        reason: String,
    },
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
    disable_io_uring: bool,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hub: HubConfig::client(),
            backend: Backend::Auto,
            socket_buffer: 4 * 1024 * 1024,
            disable_io_uring: false,
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

    /// Acts as if io_uring were unavailable: [`Backend::Auto`] takes the
    /// fallback path to [`Backend::Portable`] (with its log line) and
    /// [`Backend::IoUring`] fails to start. For tests of the fallback and
    /// for operators who want the portable backend without rebuilding
    /// their configuration; setting the environment variable
    /// [`DISABLE_IO_URING_ENV`] to `1` does the same for every engine the
    /// process starts.
    pub fn disable_io_uring(mut self) -> Self {
        self.disable_io_uring = true;
        self
    }

    /// Kernel send and receive buffer sizes asked for the socket. Default
    /// 4 MiB (small buffers drop bursts: usrsctp's 128 KiB default does).
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = bytes;
        self
    }

    /// Binds the socket, sets up the backend and starts the worker.
    ///
    /// The backend is set up on the worker thread (an io_uring ring with
    /// `SINGLE_ISSUER` belongs to the thread that creates it); this waits
    /// until it is ready or has failed.
    pub fn start(self) -> Result<Engine, EngineError> {
        let socket = bind(self.bind, self.socket_buffer)?;
        let local_addr = socket.local_addr()?;
        let disabled = self.disable_io_uring
            || std::env::var(DISABLE_IO_URING_ENV).is_ok_and(|v| v.trim() == "1");
        let backend = self.backend;
        let hub = Hub::new(self.hub);
        let (commands, inbox) = mpsc::channel();
        let (ready, started) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("dcengine-worker".into())
            .spawn(move || match open(backend, disabled, socket) {
                Err(e) => {
                    let _ = ready.send(Err(e));
                }
                Ok((io, chosen, fallback)) => {
                    let wake = io.waker();
                    let hook = wake.clone();
                    hub.set_wake_hook(move || {
                        // A failed wake only delays the work to the next timer.
                        let _ = hook();
                    });
                    if ready.send(Ok((chosen, wake, fallback))).is_ok() {
                        io.run(hub, inbox);
                    }
                }
            })?;
        match started.recv() {
            Ok(Ok((backend, wake, fallback))) => {
                // Logged here, on the caller's thread, so that the caller's
                // tracing subscriber sees it.
                if let Some(reason) = fallback {
                    tracing::info!(%reason, "I/O backend: portable (io_uring unavailable)");
                }
                Ok(Engine {
                    local_addr,
                    backend,
                    commands,
                    wake,
                    thread: Some(thread),
                })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(EngineError::Stopped)
            }
        }
    }
}

/// Asks for bigger kernel buffers; each backend sets the blocking mode and
/// options it needs. (`SO_REUSEPORT` for one socket per worker comes with
/// several workers.)
fn bind(addr: SocketAddr, buffer: usize) -> io::Result<std::net::UdpSocket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // The kernel caps these at its limits; smaller is not an error.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Wakes a worker from any thread (the hub's wake hook, engine commands).
type Wake = Arc<dyn Fn() -> io::Result<()> + Send + Sync>;

/// The backend a worker runs, set up on the worker's thread.
enum Opened {
    #[cfg(target_os = "linux")]
    Uring(uring::UringIo),
    Portable(portable::PortableIo),
}

impl Opened {
    fn waker(&self) -> Wake {
        match self {
            #[cfg(target_os = "linux")]
            Opened::Uring(io) => io.waker(),
            Opened::Portable(io) => io.waker(),
        }
    }

    fn run(self, hub: Hub, inbox: mpsc::Receiver<Command>) {
        match self {
            #[cfg(target_os = "linux")]
            Opened::Uring(io) => Worker::new(hub, io, inbox).run(),
            Opened::Portable(io) => Worker::new(hub, io, inbox).run(),
        }
    }
}

/// The backend set up, which one it is, and why `Auto` fell back if it did.
type OpenedBackend = (Opened, Backend, Option<String>);

/// Sets up the backend asked for: `Auto` falls back to the portable one
/// (and says why, for the one log line `start` writes); an explicit
/// `IoUring` that cannot run is an error.
fn open(
    backend: Backend,
    io_uring_disabled: bool,
    socket: std::net::UdpSocket,
) -> Result<OpenedBackend, EngineError> {
    let portable =
        |socket| -> io::Result<Opened> { Ok(Opened::Portable(portable::PortableIo::new(socket)?)) };
    if backend == Backend::Portable {
        return Ok((portable(socket)?, Backend::Portable, None));
    }
    let (reason, socket) = if io_uring_disabled {
        (
            format!("disabled ({DISABLE_IO_URING_ENV} or EngineBuilder::disable_io_uring)"),
            socket,
        )
    } else {
        match try_uring(socket) {
            Ok(opened) => return Ok((opened, Backend::IoUring, None)),
            Err((reason, socket)) => (reason, socket),
        }
    };
    if backend == Backend::IoUring {
        return Err(EngineError::Unavailable {
            backend: Backend::IoUring,
            reason,
        });
    }
    Ok((portable(socket)?, Backend::Portable, Some(reason)))
}

#[cfg(target_os = "linux")]
fn try_uring(socket: std::net::UdpSocket) -> Result<Opened, (String, std::net::UdpSocket)> {
    uring::UringIo::new(socket)
        .map(Opened::Uring)
        .map_err(|(e, socket)| (e.to_string(), socket))
}

#[cfg(not(target_os = "linux"))]
fn try_uring(socket: std::net::UdpSocket) -> Result<Opened, (String, std::net::UdpSocket)> {
    Err(("io_uring exists on Linux only".to_owned(), socket))
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
/// println!("serving on {} with {:?}", server.local_addr(), server.backend());
/// ```
pub struct Engine {
    local_addr: SocketAddr,
    backend: Backend,
    commands: mpsc::Sender<Command>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend)
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

    /// The backend that actually runs: [`Backend::IoUring`] or
    /// [`Backend::Portable`] (never `Auto`).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Command) -> Result<T, EngineError> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| EngineError::Stopped)?;
        (self.wake)()?;
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
                let _ = (self.wake)();
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

/// One worker's I/O: a bound UDP socket and the machinery to wait on it.
/// The worker loop calls [`Io::flush`] and [`Io::wait`] in turn.
trait Io {
    /// Hands the hub's transmits to the kernel, as many as it takes now.
    /// Returns `false` if some must wait (the socket or the send slots are
    /// full); nothing is dropped, the rest goes at a later call.
    fn flush(&mut self, hub: &mut Hub) -> bool;

    /// Waits until a datagram arrives, a wake-up, progress on blocked sends,
    /// or `deadline`; gives every received datagram to the hub.
    fn wait(&mut self, hub: &mut Hub, deadline: Option<Instant>) -> io::Result<()>;

    /// Nothing handed to the kernel is still waiting to be sent.
    fn sent_all(&self) -> bool;
}

/// Everything one core's worker owns: the hub (with its timers), the
/// backend (socket and ring or poll), and the command inbox.
struct Worker<I: Io> {
    hub: Hub,
    io: I,
    inbox: mpsc::Receiver<Command>,
    events: Vec<HubEvent>,
}

/// How long a stopping worker keeps flushing what is left to send.
const FINAL_FLUSH: Duration = Duration::from_millis(200);

impl<I: Io> Worker<I> {
    fn new(hub: Hub, io: I, inbox: mpsc::Receiver<Command>) -> Self {
        Self {
            hub,
            io,
            inbox,
            events: Vec::new(),
        }
    }

    fn run(mut self) {
        let mut stopping: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.commands(now) {
                stopping.get_or_insert(deadline);
            }
            if let Some(deadline) = stopping
                && (now >= deadline || self.hub.node().association_count() == 0)
            {
                self.finish();
                return;
            }
            if self.hub.poll_timeout().is_some_and(|t| t <= now) {
                self.hub.handle_timeout(now);
            }
            self.drain_events();
            self.io.flush(&mut self.hub);
            let deadline = [self.hub.poll_timeout(), stopping]
                .into_iter()
                .flatten()
                .min();
            if let Err(e) = self.io.wait(&mut self.hub, deadline) {
                tracing::error!(error = %e, "waiting for I/O failed; the engine stops");
                return;
            }
        }
    }

    /// Sends what is left, for a short while.
    fn finish(&mut self) {
        let until = Instant::now() + FINAL_FLUSH;
        while !(self.io.flush(&mut self.hub) && self.io.sent_all()) && Instant::now() < until {
            if self.io.wait(&mut self.hub, Some(until)).is_err() {
                return;
            }
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
}
