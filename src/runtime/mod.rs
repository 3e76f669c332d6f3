//! The runtime: threads and sockets around the sans-IO [`Hub`]. What it
//! does for its users (workers, backends) is documented on [`Engine`];
//! this is how.
//!
//! Each worker is a thread that drives its own [`Hub`] over its own UDP
//! socket: it moves datagrams and time into the hub and datagrams out, and
//! nothing else; the engine sets [`HubConfig::workers`] and
//! [`HubConfig::worker`] in each hub. Workers exchange the work their hubs
//! relay to each other ([`Hub::poll_relay`]) through bounded lock-free
//! inboxes, and forward each other the replies to associations they
//! started that the kernel gave another worker's socket (see the `worker`
//! module for both).
//!
//! Each worker's I/O is one of two backends behind the small [`Io`] trait:
//! `uring` (Linux) and `portable`.
//!
//! Only the io_uring module and the few lines that pin threads (`affinity`)
//! contain `unsafe` (each block with a `SAFETY` comment); everything else
//! here denies or forbids it.
#![deny(unsafe_code)]

mod affinity;
mod batch;
mod portable;
#[cfg(target_os = "linux")]
mod uring;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::{JoinRequest, JoinVerifier};
use crate::datachannel::Call;
use crate::dtls::Fingerprint;
use crate::hub::{ExpectedPeer, PendingOffer, SignalError};
use crate::hub::{Hub, HubConfig, HubEvent, HubStats, JoinError, home_worker};
use worker::{Core, INBOX_CAPACITY, Shared, Worker};

/// Largest datagram the worker receives in one buffer (SCTP packets are far
/// smaller; 64 KiB also holds a whole GRO-coalesced train of segments). A
/// larger one is cut and dropped.
const RECV_BUFFER: usize = 64 * 1024;

/// The environment variable that, set to `1`, makes engines act as if
/// io_uring were unavailable (see [`EngineBuilder::disable_io_uring`]).
const DISABLE_IO_URING_ENV: &str = "DCENGINE_DISABLE_IO_URING";

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
    /// An offer or answer was refused (see [`SignalError`]).
    #[error(transparent)]
    Signal(#[from] SignalError),
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
    workers: Option<usize>,
    pin_workers: Option<bool>,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            hub: HubConfig::client(),
            backend: Backend::Auto,
            socket_buffer: 4 * 1024 * 1024,
            disable_io_uring: false,
            workers: None,
            pin_workers: None,
        }
    }
}

impl EngineBuilder {
    /// The UDP address to bind. Default `127.0.0.1:0` (any free port).
    /// A given port that any socket holds (another engine still draining,
    /// another process) fails [`EngineBuilder::start`] with
    /// [`EngineError::Io`] of kind `AddrInUse`.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The hubs' configuration: the role and everything else (limits,
    /// timers), replacing whatever was set before. Default
    /// [`HubConfig::client`]. This is how an engine becomes a server:
    /// `.hub(HubConfig::server(verifier))`, with setters chained on for the
    /// rest (see [`HubConfig`]).
    ///
    /// Every worker's hub gets a copy, so its limits (such as
    /// `node.max_associations`) apply per worker; the engine tells each
    /// hub how many workers there are and which one it is.
    pub fn hub(mut self, config: HubConfig) -> Self {
        self.hub = config;
        self
    }

    /// How many workers (threads, each with its own socket on the shared
    /// port, backend and hub) the engine runs; 0 counts as 1. Default: one
    /// per core ([`std::thread::available_parallelism`]) for an engine with
    /// the server role (a [`HubConfig::verifier`]), else 1: a client's
    /// associations are few, and the replies to associations it starts may
    /// reach any worker's socket, which then forwards them (see the module
    /// documentation).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// Whether each worker thread is pinned to a core of its own (the
    /// cores the process may run on, in order, wrapping around). Default:
    /// `true` when there are several workers. A pin that fails is logged
    /// and the worker runs unpinned.
    pub fn pin_workers(mut self, pin: bool) -> Self {
        self.pin_workers = Some(pin);
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
    /// `DCENGINE_DISABLE_IO_URING` to `1` does the same for every engine the
    /// process starts.
    pub fn disable_io_uring(mut self) -> Self {
        self.disable_io_uring = true;
        self
    }

    /// Kernel send and receive buffer sizes asked for each socket. Default
    /// 4 MiB (small buffers drop bursts: usrsctp's 128 KiB default does).
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = bytes;
        self
    }

    /// The number of workers [`EngineBuilder::start`] will run.
    fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            if self.hub.verifier.is_some() {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                1
            }
        })
    }

    /// Binds the sockets, sets up the backends and starts the workers.
    ///
    /// Each backend is set up on its worker's thread (an io_uring ring with
    /// `SINGLE_ISSUER` belongs to the thread that creates it); this waits
    /// until all are ready, or stops them all if one has failed.
    pub fn start(self) -> Result<Engine, EngineError> {
        let n = self.worker_count();
        let dtls_fingerprint = self
            .hub
            .dtls
            .as_ref()
            .map(crate::dtls::Certificate::fingerprint);
        let verifier = self.hub.verifier.clone();
        // What the answers say (the node's limit), and the largest message
        // the call sends a peer (a forwarded `Data` of the largest payload,
        // which a hub over DTLS keeps within 256 KiB: `Hub::new`).
        let max_message_size = u64::from(self.hub.node.max_sctp_message_size);
        let mut payload = self
            .hub
            .channel
            .max_message_size
            .min(crate::datachannel::MAX_MESSAGE_SIZE_LIMIT);
        if self.hub.dtls.is_some() {
            payload = payload.min(crate::hub::payload_within(crate::hub::WEBRTC_MAX_MESSAGE));
        }
        let largest_message = crate::hub::largest_data(payload);
        let sockets = bind_workers(self.bind, n, self.socket_buffer)?;
        let local_addr = sockets[0].local_addr()?;
        let pin = self.pin_workers.unwrap_or(n > 1);
        let cpus = if pin {
            affinity::allowed_cpus()
        } else {
            Vec::new()
        };
        let disabled = self.disable_io_uring
            || std::env::var(DISABLE_IO_URING_ENV).is_ok_and(|v| v.trim() == "1");
        let shared = Arc::new(Shared::new(n, INBOX_CAPACITY));
        let mut starting = Vec::with_capacity(n);
        for (index, socket) in sockets.into_iter().enumerate() {
            let mut config = self.hub.clone();
            config.workers = n;
            config.worker = index;
            // Each hub picks its own random channel ids (worker 0 keeps the
            // configured seed).
            config.seed = config
                .seed
                .wrapping_add((index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            starting.push(spawn_worker(
                index,
                config,
                socket,
                (self.backend, disabled),
                cpu,
                shared.clone(),
            )?);
        }
        // Wait for every backend before starting any worker, so that a
        // failure stops them all and no worker wakes one that is not there.
        let mut ready = Vec::with_capacity(n);
        let mut failed = None;
        for s in &starting {
            match s.ready.recv() {
                Ok(Ok(r)) => ready.push(r),
                Ok(Err(e)) => {
                    failed.get_or_insert(e);
                }
                Err(_) => {
                    failed.get_or_insert(EngineError::Stopped);
                }
            }
        }
        if let Some(e) = failed {
            for s in starting {
                drop(s.go);
                let _ = s.thread.join();
            }
            return Err(e);
        }
        shared.set_wakes(ready.iter().map(|r| r.wake.clone()).collect());
        // Logged here, on the caller's thread, so that the caller's tracing
        // subscriber sees it: one line for the fallback whatever the number
        // of workers.
        if let Some(reason) = ready.iter().find_map(|r| r.fallback.as_ref()) {
            tracing::info!(%reason, "I/O backend: portable (io_uring unavailable)");
        }
        for (index, r) in ready.iter().enumerate() {
            if let Some(e) = &r.pin_error {
                tracing::warn!(worker = index, error = %e, "could not pin the worker to a core; it runs unpinned");
            }
        }
        if pin && cpus.is_empty() && n > 1 {
            tracing::warn!("the cores this process may use are unknown; workers run unpinned");
        }
        let backend = ready[0].backend;
        if ready.iter().any(|r| r.backend != backend) {
            tracing::warn!("workers run different I/O backends (io_uring failed for some)");
        }
        let mut workers = Vec::with_capacity(n);
        for (s, r) in starting.into_iter().zip(ready) {
            // A worker whose engine has gone exits on its own.
            let _ = s.go.send(());
            workers.push(WorkerHandle {
                commands: s.commands,
                wake: r.wake,
                thread: Some(s.thread),
            });
        }
        Ok(Engine {
            local_addr,
            verifier,
            max_message_size,
            largest_message,
            dtls_fingerprint,
            backend,
            workers,
            shared,
            next_remote: AtomicUsize::new(0),
        })
    }
}

/// A worker thread that is setting up its backend.
struct Starting {
    commands: mpsc::Sender<Command>,
    ready: mpsc::Receiver<Result<Ready, EngineError>>,
    /// Sent once every worker is ready; dropped to stop the worker instead.
    go: mpsc::SyncSender<()>,
    thread: JoinHandle<()>,
}

/// What a worker reports once its backend runs.
struct Ready {
    backend: Backend,
    wake: Wake,
    /// Why `Auto` fell back to the portable backend, if it did.
    fallback: Option<String>,
    /// Why pinning the thread failed, if it did.
    pin_error: Option<String>,
}

/// Starts worker `index`'s thread: it pins itself to `cpu` (if any), sets
/// up its backend and its hub (made on the thread: a hub's SCTP sockets
/// stay on the thread that made them), reports, and runs once told to go.
fn spawn_worker(
    index: usize,
    config: HubConfig,
    socket: std::net::UdpSocket,
    (backend, disabled): (Backend, bool),
    cpu: Option<usize>,
    shared: Arc<Shared>,
) -> Result<Starting, EngineError> {
    let (commands, inbox) = mpsc::channel();
    let (report, ready) = mpsc::sync_channel(1);
    let (go, started) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name(format!("dcengine-worker-{index}"))
        .spawn(move || {
            let pin_error = cpu
                .and_then(|cpu| affinity::pin_current_thread(cpu).err())
                .map(|e| format!("CPU {}: {e}", cpu.unwrap_or_default()));
            match open(backend, disabled, socket) {
                Err(e) => {
                    let _ = report.send(Err(e));
                }
                Ok((io, chosen, fallback)) => {
                    let hub = Hub::new(config);
                    let wake = io.waker();
                    let hook = wake.clone();
                    hub.set_wake_hook(move || {
                        // A failed wake only delays the work to the next timer.
                        let _ = hook();
                    });
                    let ready = Ready {
                        backend: chosen,
                        wake,
                        fallback,
                        pin_error,
                    };
                    if report.send(Ok(ready)).is_ok() && started.recv().is_ok() {
                        io.run(Core::new(hub, index, shared), inbox);
                    }
                }
            }
        })?;
    Ok(Starting {
        commands,
        ready,
        go,
        thread,
    })
}

/// Binds the workers' `n` sockets to `addr`: one socket each, sharing the
/// address with `SO_REUSEPORT` when there are several (a single worker's
/// socket does not set it, so that nobody can silently share its port).
///
/// The port should be the engine's alone: the kernel spreads the datagrams
/// to a port over every `SO_REUSEPORT` socket bound to it by the same
/// user, whichever engine (or process) holds it, so a peer hashed to
/// another engine's socket never reaches this one. And Linux, asked for
/// port 0 by a socket with `SO_REUSEPORT` set, may pick a port that other
/// such sockets hold (it skips only the ports it could not share: with k
/// such ports held, k in the 28,232 of the default range; 3,000 binds on
/// 127.0.0.1 gave 136 shared ports). So on Linux
/// the first socket binds without the option (port 0 picks a port no
/// socket holds; a given port that any socket holds is `AddrInUse`), then
/// sets it, and the others join it: the group forms when the second
/// binds. Elsewhere every socket sets it before binding, as the BSDs
/// require. Not stopped: a later socket of the same user that sets the
/// option before asking for port 0 may still be given this port.
fn bind_workers(addr: SocketAddr, n: usize, buffer: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    let shared = n > 1;
    let first = socket(addr, buffer)?;
    if shared && !cfg!(target_os = "linux") {
        set_reuse_port(&first)?;
    }
    first.bind(&addr.into())?;
    if shared && cfg!(target_os = "linux") {
        set_reuse_port(&first)?;
    }
    // The first socket turns port 0 into a real port; the others join it.
    let local_addr = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("a UDP socket without an IP address"))?;
    let mut sockets = vec![first.into()];
    for _ in 1..n {
        let s = socket(local_addr, buffer)?;
        set_reuse_port(&s)?;
        s.bind(&local_addr.into())?;
        sockets.push(s.into());
    }
    Ok(sockets)
}

/// An unbound UDP socket for `addr`'s family that asked for bigger kernel
/// buffers; each backend sets the blocking mode and options it needs.
fn socket(addr: SocketAddr, buffer: usize) -> io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // The kernel caps these at its limits; smaller is not an error.
    let _ = s.set_recv_buffer_size(buffer);
    let _ = s.set_send_buffer_size(buffer);
    Ok(s)
}

#[cfg(unix)]
fn set_reuse_port(s: &socket2::Socket) -> io::Result<()> {
    s.set_reuse_port(true)
}

#[cfg(not(unix))]
fn set_reuse_port(_: &socket2::Socket) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "several workers need SO_REUSEPORT",
    ))
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

    fn run(self, core: Core, commands: mpsc::Receiver<Command>) {
        match self {
            #[cfg(target_os = "linux")]
            Opened::Uring(io) => Worker::new(core, io, commands).run(),
            Opened::Portable(io) => Worker::new(core, io, commands).run(),
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
    /// See [`Hub::allow_dtls_peer`].
    AllowDtlsPeer {
        remote: SocketAddr,
        fingerprint: Fingerprint,
    },
    /// See [`Hub::accept_offer`]: a peer another worker's signalling
    /// answered.
    ExpectPeer {
        peer: ExpectedPeer,
        reply: mpsc::Sender<Result<(), SignalError>>,
    },
    /// See [`Hub::offer`].
    Offer(mpsc::Sender<Result<PendingOffer, SignalError>>),
    /// See [`Hub::join_answered`].
    JoinAnswered {
        offer: PendingOffer,
        answer: String,
        call_id: String,
        participant_id: String,
        token: Bytes,
        reply: mpsc::Sender<Result<Call, JoinError>>,
    },
    /// See [`Hub::trust_dtls_server`].
    TrustDtlsServer {
        server: SocketAddr,
        fingerprint: Fingerprint,
    },
    Events(mpsc::Sender<Vec<HubEvent>>),
    Stats(mpsc::Sender<HubStats>),
    Shutdown {
        deadline: Duration,
    },
}

/// The engine's end of one worker.
struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

/// A running engine: worker threads, each with its own UDP socket on the
/// engine's address and its own [`Hub`]. Application handles ([`Call`],
/// senders, receivers) are used from any thread; a worker wakes when they
/// queue work (once per batch).
///
/// Dropping it shuts it down (see [`Engine::shutdown`]).
///
/// # Workers
/// [`EngineBuilder::workers`] sets how many (default: one per core for a
/// server, one for a client). With several, every worker binds its own
/// socket to the engine's address with `SO_REUSEPORT` (the kernel spreads
/// peers over the sockets by a hash of their addresses, so an association
/// always arrives at the same worker), runs its own backend and hub, and
/// is pinned to a core ([`EngineBuilder::pin_workers`]). A call lives on
/// one worker, its home (a hash of the call id): [`Engine::join_local`]
/// goes there, [`Engine::join_remote`] round robin, and members whose
/// association another worker owns are relayed to the home and back
/// through lock-free queues.
///
/// # Backends
/// - [`Backend::IoUring`] (Linux): io_uring with a multishot `recvmsg`
///   over a ring of provided buffers, `sendmsg` with UDP GSO, GRO on
///   receive, the hub's deadline as the wait's timeout and an eventfd read
///   by the ring for wake-ups; one `io_uring_enter` per loop turn.
/// - [`Backend::Portable`]: readiness on epoll/kqueue (`mio`) with batched
///   UDP from `quinn-udp` (`recvmmsg`, GSO and GRO where the OS has them).
///
/// [`Backend::Auto`] picks io_uring when the kernel allows it and falls back
/// to the portable backend otherwise (Docker's default seccomp profile
/// blocks io_uring), logging one line that says why.
///
/// ```no_run
/// # use std::sync::Arc;
/// # use std::time::Duration;
/// # use dcengine::{Engine, HmacVerifier, HubConfig, WallClock};
/// let clock = WallClock::new(std::time::Instant::now(),
///     std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap());
/// let verifier = Arc::new(HmacVerifier::new(b"secret", clock).unwrap());
/// let server = Engine::builder()
///     .bind("0.0.0.0:5000".parse().unwrap())
///     .hub(HubConfig::server(verifier).join_timeout(Duration::from_secs(5)))
///     .start()
///     .unwrap();
/// println!("serving on {} with {} workers on {:?}",
///     server.local_addr(), server.workers(), server.backend());
/// ```
pub struct Engine {
    local_addr: SocketAddr,
    /// Checks the tokens offers come with (the server role's).
    verifier: Option<Arc<dyn JoinVerifier>>,
    /// The largest message the engine's answers announce (the node's).
    max_message_size: u64,
    /// The largest message the engine sends a peer: an offer must take it.
    largest_message: u64,
    /// This engine's DTLS certificate fingerprint ([`HubConfig::dtls`]).
    dtls_fingerprint: Option<Fingerprint>,
    backend: Backend,
    workers: Vec<WorkerHandle>,
    shared: Arc<Shared>,
    /// Round robin of `join_remote`.
    next_remote: AtomicUsize,
}

// The engine is used from any thread.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Engine>();
};

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.backend)
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder with the defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// The address the sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The backend that actually runs: [`Backend::IoUring`] or
    /// [`Backend::Portable`] (never `Auto`; the first worker's, should
    /// they differ).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    fn ask<T>(
        &self,
        worker: usize,
        make: impl FnOnce(mpsc::Sender<T>) -> Command,
    ) -> Result<T, EngineError> {
        let w = self.workers.get(worker).ok_or(EngineError::Stopped)?;
        let (reply, answer) = mpsc::channel();
        w.commands
            .send(make(reply))
            .map_err(|_| EngineError::Stopped)?;
        (w.wake)()?;
        answer.recv().map_err(|_| EngineError::Stopped)
    }

    /// Joins `call_id` on the server at `server` (see
    /// [`Hub::join_remote`]). Returns at once; wait for [`Call::ready`]
    /// (or [`Call::wait_ready`]). The call lives as long as this engine:
    /// [`Engine::shutdown`], or dropping the engine (a one-second
    /// deadline), leaves it gracefully.
    ///
    /// The association goes to the worker that already has associations
    /// to `server`, if one does, else to the next worker in turn.
    pub fn join_remote(
        &self,
        server: SocketAddr,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, EngineError> {
        let n = self.workers.len();
        let worker = self
            .shared
            .directory
            .owner(server)
            .filter(|&w| w < n)
            .unwrap_or_else(|| self.next_remote.fetch_add(1, Ordering::Relaxed) % n);
        let call = self.ask(worker, |reply| Command::JoinRemote {
            server,
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            token,
            reply,
        })??;
        Ok(call)
    }

    /// Hosts a participant in `call_id` inside this engine (see
    /// [`Hub::join_local`]), on the call's home worker. The call lives as
    /// long as this engine (see [`Engine::join_remote`]).
    pub fn join_local(&self, call_id: &str, participant_id: &str) -> Result<Call, EngineError> {
        let worker = home_worker(call_id, self.workers.len());
        let call = self.ask(worker, |reply| Command::JoinLocal {
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            reply,
        })??;
        Ok(call)
    }

    /// Over DTLS ([`HubConfig::dtls`]), server role: lets `remote` start a
    /// DTLS handshake with a certificate whose fingerprint is `fingerprint`
    /// (see [`Hub::allow_dtls_peer`]); told to every worker, since the
    /// kernel picks the socket a peer's datagrams arrive at.
    pub fn allow_dtls_peer(
        &self,
        remote: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<(), EngineError> {
        self.tell_all(|| Command::AllowDtlsPeer {
            remote,
            fingerprint,
        })
    }

    /// Over DTLS ([`HubConfig::dtls`]), client role: the server at `server`
    /// must present a certificate with this fingerprint (see
    /// [`Hub::trust_dtls_server`]); needed before [`Engine::join_remote`] to
    /// it.
    pub fn trust_dtls_server(
        &self,
        server: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Result<(), EngineError> {
        self.tell_all(|| Command::TrustDtlsServer {
            server,
            fingerprint,
        })
    }

    /// This engine's DTLS certificate fingerprint, when it runs DTLS (what
    /// its signalling announces to peers).
    pub fn dtls_fingerprint(&self) -> Option<Fingerprint> {
        self.dtls_fingerprint
    }

    /// Server role over DTLS ([`HubConfig::dtls`]): answers a WebRTC
    /// data-channel offer from `participant_id` joining `call_id` with
    /// `token` (checked now, and again at the join inside DTLS), for a
    /// media server with signalling of its own. The answer is ICE-lite
    /// with fresh credentials, this engine's certificate fingerprint,
    /// `setup:passive` and the engine's address as its one candidate (see
    /// [`Hub::accept_offer`]); every worker learns the peer, since the
    /// kernel picks the socket its checks arrive at.
    pub fn accept_offer(
        &self,
        offer: &str,
        call_id: &str,
        participant_id: &str,
        token: &[u8],
    ) -> Result<String, EngineError> {
        self.accept_offer_at(offer, &[self.local_addr], call_id, participant_id, token)
    }

    /// [`Engine::accept_offer`] with the candidates to announce given: for
    /// an engine bound to an unspecified address (`0.0.0.0`, `::`), whose
    /// own address a peer cannot use, the address the peer reached the
    /// signalling at (with the engine's port), or the host's public ones.
    pub fn accept_offer_at(
        &self,
        offer: &str,
        candidates: &[SocketAddr],
        call_id: &str,
        participant_id: &str,
        token: &[u8],
    ) -> Result<String, EngineError> {
        let fingerprint = self.dtls_fingerprint.ok_or(SignalError::NotSecure)?;
        if let Some(verifier) = &self.verifier {
            let join = JoinRequest {
                call_id,
                participant_id,
                token,
            };
            verifier
                .verify(&join, Instant::now())
                .map_err(SignalError::Refused)?;
        }
        let mut rng = rand::rng();
        let credentials = crate::hub::signal_credentials(&mut rng);
        let (peer, answer) = crate::hub::answer_offer(
            offer,
            credentials,
            fingerprint,
            self.max_message_size,
            self.largest_message,
            candidates,
            rand::Rng::random::<u64>(&mut rng) >> 1,
        )?;
        for worker in 0..self.workers.len() {
            let peer = peer.clone();
            self.ask(worker, |reply| Command::ExpectPeer { peer, reply })??;
        }
        Ok(answer)
    }

    /// Client role over DTLS ([`HubConfig::dtls`]): joins `call_id` on a
    /// server reached through the application's signalling. `signal` is
    /// given this engine's offer (SDP) and returns the server's answer — by
    /// an HTTP request to the server, or whatever the application uses
    /// (a server engine answers with [`Engine::accept_offer`]). Then ICE
    /// checks, DTLS and the join run as [`Engine::join_remote`] does.
    pub fn join_signalled<E: std::fmt::Display>(
        &self,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
        signal: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<Call, EngineError> {
        let worker = self.next_remote.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let offer = self.ask(worker, Command::Offer)??;
        let answer = signal(offer.sdp()).map_err(|e| SignalError::Failed(e.to_string()))?;
        let call = self.ask(worker, |reply| Command::JoinAnswered {
            offer,
            answer,
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            token,
            reply,
        })??;
        Ok(call)
    }

    /// Sends every worker a command, and wakes it.
    fn tell_all(&self, make: impl Fn() -> Command) -> Result<(), EngineError> {
        for w in &self.workers {
            w.commands.send(make()).map_err(|_| EngineError::Stopped)?;
            (w.wake)()?;
        }
        Ok(())
    }

    /// The hubs' events since the last call (joins, leaves, rejections):
    /// each worker's in order, the workers one after the other.
    pub fn events(&self) -> Result<Vec<HubEvent>, EngineError> {
        let mut events = Vec::new();
        for worker in 0..self.workers.len() {
            events.extend(self.ask(worker, Command::Events)?);
        }
        Ok(events)
    }

    /// The hubs' counters, summed over the workers.
    pub fn stats(&self) -> Result<HubStats, EngineError> {
        let mut stats = HubStats::default();
        for worker in 0..self.workers.len() {
            stats += self.ask(worker, Command::Stats)?;
        }
        Ok(stats)
    }

    /// Stops the engine: every worker closes its associations gracefully
    /// (queued data is delivered first) for up to `deadline`, then the
    /// workers exit.
    pub fn shutdown(mut self, deadline: Duration) {
        self.stop(deadline);
    }

    fn stop(&mut self, deadline: Duration) {
        for w in &self.workers {
            if w.thread.is_some() && w.commands.send(Command::Shutdown { deadline }).is_ok() {
                let _ = (w.wake)();
            }
        }
        let mut joined = false;
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take() {
                let _ = thread.join();
                joined = true;
            }
        }
        if joined && self.workers.len() > 1 {
            let (forwarded, dropped) = self.shared.forward_counts();
            tracing::debug!(
                forwarded,
                dropped,
                "engine stopped; datagrams forwarded between workers"
            );
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
    /// or `deadline`; gives every received datagram to the worker's core
    /// ([`Core::datagram`]).
    fn wait(&mut self, core: &mut Core, deadline: Option<Instant>) -> io::Result<()>;

    /// Nothing handed to the kernel is still waiting to be sent.
    fn sent_all(&self) -> bool;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::collections::HashSet;
    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::time::{Duration, Instant};

    use super::{bind_workers, set_reuse_port, socket};

    /// 127.0.0.1, any port.
    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn addr_of(s: &UdpSocket) -> SocketAddr {
        s.local_addr().expect("a bound socket")
    }

    /// Binds `n` sockets the way engines did before `bind_workers`: each
    /// with `SO_REUSEPORT` set before its bind.
    fn reuse_port_group(addr: SocketAddr, n: usize) -> Vec<UdpSocket> {
        let mut out: Vec<UdpSocket> = Vec::new();
        let mut at = addr;
        for _ in 0..n {
            let s = socket(at, 1 << 16).expect("a socket");
            set_reuse_port(&s).expect("SO_REUSEPORT");
            s.bind(&at.into()).expect("bound");
            let s: UdpSocket = s.into();
            at = s.local_addr().expect("an address");
            out.push(s);
        }
        out
    }

    /// The flake this fixes (interop `peer_connection`: a webrtc-rs peer
    /// whose checks the kernel gave another engine's socket, "failed"
    /// before any data): a port held by another process's (or engine's)
    /// `SO_REUSEPORT` sockets is refused, not joined.
    #[test]
    fn a_port_other_reuse_port_sockets_hold_is_refused() {
        let other = reuse_port_group(loopback(), 2);
        let addr = addr_of(&other[0]);
        for n in [1, 2, 3] {
            match bind_workers(addr, n, 1 << 16) {
                Err(e) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{n} workers: {e}"),
                Ok(s) => panic!(
                    "{n} workers joined {addr}, held by others ({} sockets)",
                    s.len()
                ),
            }
        }
    }

    /// Port 0 never picks a port that any socket holds. Before, with 150
    /// ports held by other `SO_REUSEPORT` sockets of the same user, a bind
    /// picked one of them about once in 190 (150 of the default range's
    /// 28,232 ports): these 1,000 binds would have expected 5, and passed
    /// once in 200. Now the kernel excludes every held port: none does.
    #[test]
    fn port_0_picks_a_port_no_socket_holds() {
        let any: SocketAddr = loopback();
        let held: Vec<Vec<UdpSocket>> = (0..150).map(|_| reuse_port_group(any, 2)).collect();
        let held_ports: HashSet<u16> = held.iter().map(|g| addr_of(&g[0]).port()).collect();
        for _ in 0..1000 {
            let ours = bind_workers(any, 2, 1 << 16).expect("bound");
            let port = addr_of(&ours[0]).port();
            assert!(ours.iter().all(|s| addr_of(s).port() == port));
            assert!(
                !held_ports.contains(&port),
                "picked {port}, which another group holds"
            );
        }
    }

    /// The first socket, bound before it set `SO_REUSEPORT`, still takes
    /// its share: datagrams from many sources reach both workers' sockets,
    /// and no other.
    #[test]
    fn the_workers_sockets_share_their_port() {
        let ours = bind_workers(loopback(), 2, 1 << 16).expect("bound");
        let to = addr_of(&ours[0]);
        assert_eq!(addr_of(&ours[1]), to);
        let sources = 64;
        for i in 0..sources {
            let s = UdpSocket::bind(loopback()).expect("a source");
            s.send_to(&[i as u8], to).expect("sent");
        }
        // Only a guard against a hang: loopback delivers them all.
        for s in &ours {
            s.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("a read timeout");
        }
        let mut per_socket = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(60);
        while per_socket.iter().sum::<usize>() < sources && Instant::now() < deadline {
            for (k, s) in ours.iter().enumerate() {
                let mut buf = [0u8; 8];
                if s.recv_from(&mut buf).is_ok() {
                    per_socket[k] += 1;
                }
            }
        }
        assert_eq!(per_socket.iter().sum::<usize>(), sources, "{per_socket:?}");
        // 64 random source ports all hashed to one socket: 2^-63.
        assert!(per_socket.iter().all(|&n| n > 0), "{per_socket:?}");
    }
}
