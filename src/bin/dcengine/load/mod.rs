//! `dcengine load`: a load generator over real UDP, through the public API
//! only. Client engines join calls on a server (embedded on loopback by
//! default, or another process with `--server`), their senders send
//! timestamped messages open loop (as fast as `writable()` allows) or at a
//! fixed rate, and reader threads measure one-way latency per class into
//! hdrhistograms. At the end: a table, or one JSON object (`--json`).

mod plan;
mod report;
mod sys;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;
use dcengine::{
    Backend, Call, CallState, ChannelConfig, DataChannelError, DataChannelReceiver,
    DataChannelReliability, DataChannelSender, DataChannelSenderOptions, Engine, HmacVerifier,
    HubConfig, NodeConfig, ParticipantId, TrafficPolicy, WallClock, mint_token,
};
use hdrhistogram::Histogram;
use serde_json::json;

use crate::demo::BackendArg;
use plan::{Recipients, SenderPlan, Shape, class_index};
use report::{ClassReport, Report, Usage};

/// Options of `dcengine load`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LoadArgs {
    /// Start a server in this process on 127.0.0.1 (the default when no
    /// `--server` is given).
    #[arg(long, conflicts_with = "server")]
    embedded: bool,
    /// A running server (`dcengine serve`) to load, instead of an embedded
    /// one; it needs `--secret`, and its traffic rules off
    /// (`--durable-kbps 0 …`) unless `--traffic-rules`.
    #[arg(long)]
    server: Option<SocketAddr>,
    /// The embedded server's address (default 127.0.0.1:0; port 0: any).
    #[arg(long, conflicts_with = "server")]
    bind: Option<SocketAddr>,
    /// Linux: start the client engines inside this network namespace (a
    /// name `ip netns add` made; needs CAP_SYS_ADMIN), so that with
    /// `--bind` the embedded server and the clients talk across a path
    /// between namespaces (`perf/run.sh wan`'s point-to-point side).
    #[arg(long)]
    client_netns: Option<String>,
    /// The server's token secret (or set DCENGINE_SECRET).
    #[arg(long, env = "DCENGINE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The server's process id, for its CPU time and peak RSS from /proc
    /// when it is another process.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,
    /// Worker threads of the embedded server (0: one per core).
    #[arg(long, default_value_t = 0)]
    server_workers: usize,
    /// Point to point: the first participant of each call is hosted by the
    /// embedded server's engine itself (`Engine::join_local`), so its
    /// messages to the others cross one association, not two.
    #[arg(long)]
    p2p: bool,
    /// Client engines (each with its own socket, worker, sender thread and
    /// reader thread); participants are spread over them.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Calls.
    #[arg(long, default_value_t = 1)]
    calls: usize,
    /// Participants per call.
    #[arg(long, default_value_t = 2)]
    participants: usize,
    /// Participants per call that send (the first ones; default: all).
    #[arg(long)]
    sending_participants: Option<usize>,
    /// Senders per sending participant (channels 1000, 1001, …).
    #[arg(long, default_value_t = 1)]
    senders: usize,
    /// Message size in bytes (at least 12: the timestamp header).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Messages a second per sender; 0: open loop, as fast as
    /// backpressure allows (each send awaits `writable()`).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Percent of the senders that are Lossy (the rest Durable).
    #[arg(long, default_value_t = 0)]
    lossy: u32,
    /// Percent of the senders that are High priority (the rest Normal).
    #[arg(long, default_value_t = 0)]
    high: u32,
    /// Messages a second per High sender (default: --rate); with an
    /// open-loop rest, High senders paced beside a saturating Normal load
    /// (`perf/run.sh priority-under-saturation`).
    #[arg(long)]
    high_rate: Option<f64>,
    /// Message size of High senders in bytes (default: --size).
    #[arg(long)]
    high_size: Option<usize>,
    /// High senders are Lossy and the others Durable (instead of --lossy):
    /// cursors beside a bulk transfer.
    #[arg(long)]
    high_lossy: bool,
    /// Who each message goes to: a count N (the next N participants of the
    /// call, as a participant list) or `broadcast` (everyone else).
    #[arg(long, default_value = "broadcast")]
    recipients: Recipients,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// Seconds of traffic before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Most seconds to wait after the sending stops for the Durable
    /// messages still in flight.
    #[arg(long, default_value_t = 5.0)]
    drain: f64,
    /// Each sender's own shaping rate in kbit/s
    /// (`DataChannelSenderOptions::bitrate_kbps`); 0: none, only the
    /// traffic rules'.
    #[arg(long, default_value_t = 0)]
    bitrate_kbps: u32,
    /// Open loop, Durable: at most this many messages per sender in flight
    /// end to end (sent and not yet read by every recipient; the tool sees
    /// both ends); 0: no window, only `writable()`, which reflects the
    /// sender's own queue and not the recipients' (a server then removes a
    /// recipient that cannot keep up).
    #[arg(long, default_value_t = 1000)]
    window: u64,
    /// Apply the ACS traffic rules (default off, as load tests need).
    #[arg(long)]
    traffic_rules: bool,
    /// Open loop: a sender sends while its buffered amount is at or below
    /// this many bytes (`set_buffered_amount_low_threshold`).
    #[arg(long, default_value_t = 64 * 1024)]
    low_threshold: usize,
    /// SCTP receive buffer of every embedded engine's associations, in
    /// bytes (`NodeConfig::receive_buffer`; it bounds what a peer may have
    /// in flight); 0: the default (4 MiB).
    #[arg(long, default_value_t = 0)]
    sctp_receive_buffer: u32,
    /// Most bytes every embedded engine keeps queued in SCTP (in flight
    /// and unsent) per association (`HubConfig::uplink_buffer`, the egress
    /// budget's ceiling: about this much per round trip); 0: the default
    /// (4 MiB).
    #[arg(long, default_value_t = 0)]
    uplink_buffer: usize,
    /// Run every association over ICE and DTLS (each engine with its own
    /// self-signed certificate; each join by offer and answer with the
    /// embedded server, as signalling would carry them). Needs the
    /// embedded server.
    #[arg(long)]
    dtls: bool,
    /// I/O backend of the engines.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Log to stderr at this level (error, warn, info, debug or trace);
    /// nothing by default, so the table and the JSON stay clean.
    #[arg(long)]
    log_level: Option<tracing::Level>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl LoadArgs {
    fn shape(&self) -> Shape {
        Shape {
            calls: self.calls,
            participants: self.participants,
            sending: self.sending_participants.unwrap_or(self.participants),
            senders: self.senders,
            size: self.size,
            rate: self.rate,
            lossy_percent: self.lossy,
            high_percent: self.high,
            high_lossy: self.high_lossy,
            recipients: self.recipients,
            duration: Duration::from_secs_f64(self.duration.clamp(0.0, 1e6)),
            warmup: Duration::from_secs_f64(self.warmup.clamp(0.0, 1e6)),
        }
    }

    /// Checks what clap cannot.
    fn check(&self) -> Result<(), String> {
        self.shape().check(32 * 1024)?;
        if self.clients == 0 || self.clients > 64 {
            return Err("--clients must be from 1 to 64".into());
        }
        if self.dtls && self.server.is_some() {
            return Err(
                "--dtls needs the embedded server (a remote one would need signalling)".into(),
            );
        }
        if self.p2p && self.server.is_some() {
            return Err("--p2p needs the embedded server (it hosts the first participants)".into());
        }
        if self.server.is_some() && self.secret.is_none() {
            return Err("--server needs --secret (or DCENGINE_SECRET)".into());
        }
        if self.bind.is_some_and(|a| a.ip().is_unspecified()) {
            return Err(
                "--bind needs a specific address: the client engines join the server there".into(),
            );
        }
        if !(0.0..=600.0).contains(&self.drain) {
            return Err("--drain must be from 0 to 600 seconds".into());
        }
        Ok(())
    }

    fn scenario(&self) -> serde_json::Value {
        let s = self.shape();
        json!({
            "server": self.server.map_or("embedded".to_string(), |a| a.to_string()),
            "server_workers": self.server_workers,
            "p2p": self.p2p,
            "bind": self.bind.map(|a| a.to_string()),
            "client_netns": self.client_netns,
            "clients": self.clients,
            "calls": s.calls,
            "participants": s.participants,
            "sending_participants": s.sending,
            "senders": s.senders,
            "size": s.size,
            "rate": s.rate,
            "lossy_percent": s.lossy_percent,
            "high_percent": s.high_percent,
            "high_rate": self.high_rate,
            "high_size": self.high_size,
            "high_lossy": self.high_lossy,
            "recipients": s.recipients.to_string(),
            "duration_s": self.duration,
            "warmup_s": self.warmup,
            "traffic_rules": self.traffic_rules,
            "bitrate_kbps": self.bitrate_kbps,
            "low_threshold": self.low_threshold,
            "window": self.window,
            "sctp_receive_buffer": self.sctp_receive_buffer,
            "uplink_buffer": self.uplink_buffer,
            "dtls": self.dtls,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error code of a send failure (the seeds' names).
fn code(e: &DataChannelError) -> &'static str {
    match e {
        DataChannelError::FailedToStart => "FailedToStart",
        DataChannelError::RandomIdNotAvailable => "RandomIdNotAvailable",
        DataChannelError::SenderClosed => "SenderClosed",
        DataChannelError::MessageSizeOverLimit { .. } => "MessageSizeOverLimit",
        DataChannelError::MessageFailureForBandwidth => "MessageFailureForBandwidth",
        DataChannelError::MessageFailureForTrafficLimit => "MessageFailureForTrafficLimit",
        DataChannelError::InvalidParticipantId(_) => "InvalidParticipantId",
        DataChannelError::TooManyParticipants { .. } => "TooManyParticipants",
        _ => "Other",
    }
}

/// What every thread adds to while the run goes.
struct Shared {
    t0: Instant,
    /// Payload times (µs since `t0`) of the measured window.
    window: (u64, u64),
    /// Per class: messages sent in the window, deliveries they should
    /// make, deliveries made.
    sent: [AtomicU64; 4],
    expected: [AtomicU64; 4],
    delivered: [AtomicU64; 4],
    errors: Mutex<BTreeMap<String, u64>>,
    /// Per sender (by index): deliveries read so far, whatever the window.
    read_by_sender: Vec<AtomicU64>,
    /// Sender threads waiting for the window, and who they are.
    window_waiting: AtomicU64,
    writers: Mutex<Vec<thread::Thread>>,
    stop_sending: AtomicBool,
    stop_reading: AtomicBool,
}

impl Shared {
    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }

    fn measured(&self, t: u64) -> bool {
        (self.window.0..self.window.1).contains(&t)
    }

    fn error(&self, code: &str, n: u64) {
        *lock(&self.errors).entry(code.to_owned()).or_default() += n;
    }
}

/// Wakes a parked thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// One engine that hosts participants, with its sender and reader work.
struct Group {
    engine: Option<Engine>,
    calls: Vec<Call>,
    senders: Vec<(SenderPlan, DataChannelSender)>,
    inbox: Arc<Inbox>,
}

/// Receivers a reader thread serves, and which of them have messages.
#[derive(Default)]
struct Inbox {
    receivers: Mutex<Vec<(DataChannelReceiver, Arc<AtomicBool>)>>,
    ready: SegQueue<usize>,
    reader: Mutex<Option<thread::Thread>>,
}

impl Inbox {
    fn wake(&self) {
        if let Some(t) = lock(&self.reader).as_ref() {
            t.unpark();
        }
    }

    /// Called on the engine's thread when a receiver is created.
    fn add(self: &Arc<Self>, receiver: DataChannelReceiver) {
        let flag = Arc::new(AtomicBool::new(true));
        let index = {
            let mut list = lock(&self.receivers);
            list.push((receiver.clone(), flag.clone()));
            list.len() - 1
        };
        let me = self.clone();
        receiver.on_message_ready(move || {
            if !flag.swap(true, Ordering::AcqRel) {
                me.ready.push(index);
                me.wake();
            }
        });
        self.ready.push(index);
        self.wake();
    }
}

/// Runs `dcengine load`.
pub(crate) fn run(args: &LoadArgs) -> Result<(), String> {
    args.check()?;
    if let Some(level) = args.log_level {
        crate::net::init_logging(level);
    }
    let shape = args.shape();
    let plans = shape.senders();
    let backend = match args.backend {
        BackendArg::Auto => Backend::Auto,
        BackendArg::IoUring => Backend::IoUring,
        BackendArg::Portable => Backend::Portable,
    };
    let traffic = if args.traffic_rules {
        TrafficPolicy::default()
    } else {
        TrafficPolicy::unlimited()
    };
    let channel = ChannelConfig::default().traffic(traffic);

    // The server: embedded, or another process.
    let threads_before = sys::threads();
    let secret: Vec<u8> = match &args.secret {
        Some(s) if args.server.is_some() => s.as_bytes().to_vec(),
        _ => crate::demo::random_secret().to_vec(),
    };
    let embedded = match args.server {
        Some(_) => None,
        None => {
            let clock = WallClock::new(Instant::now(), crate::demo::unix_now());
            let verifier = HmacVerifier::new(&secret, clock)
                .map_err(|e| format!("the server cannot start: {e}"))?;
            let mut hub = HubConfig::server(Arc::new(verifier)).channel(channel.clone());
            if args.dtls {
                hub = hub.dtls(new_certificate()?);
            }
            let mut b = Engine::builder()
                .bind(args.bind.unwrap_or(([127, 0, 0, 1], 0).into()))
                .backend(backend)
                .hub(with_node(
                    hub,
                    NodeConfig::server(),
                    args.sctp_receive_buffer,
                    args.uplink_buffer,
                ));
            if args.server_workers > 0 {
                b = b.workers(args.server_workers);
            }
            Some(
                b.start()
                    .map_err(|e| format!("the server cannot start: {e}"))?,
            )
        }
    };
    let server_threads: BTreeSet<u32> = sys::threads()
        .difference(&threads_before)
        .copied()
        .collect();
    let server_addr = args
        .server
        .or_else(|| embedded.as_ref().map(Engine::local_addr))
        .ok_or("no server")?;

    // Client engines, then the joins: participant i of a call on client
    // engine i mod clients (participant 0 on the server's engine with
    // --p2p).
    let setup = Instant::now();
    let mut groups: Vec<Group> = Vec::new();
    for _ in 0..args.clients {
        let mut hub = HubConfig::client().channel(channel.clone());
        if args.dtls {
            hub = hub.dtls(new_certificate()?);
        }
        let start = move || {
            Engine::builder()
                .bind(client_bind(server_addr))
                .backend(backend)
                .hub(with_node(
                    hub,
                    NodeConfig::client(),
                    args.sctp_receive_buffer,
                    args.uplink_buffer,
                ))
                .start()
                .map_err(|e| format!("a client engine cannot start: {e}"))
        };
        let engine = match &args.client_netns {
            Some(ns) => sys::in_netns(ns, start)?,
            None => start()?,
        };

        groups.push(Group {
            engine: Some(engine),
            calls: Vec::new(),
            senders: Vec::new(),
            inbox: Arc::default(),
        });
    }
    let p2p_group = args.p2p.then(|| {
        groups.push(Group {
            engine: None,
            calls: Vec::new(),
            senders: Vec::new(),
            inbox: Arc::default(),
        });
        groups.len() - 1
    });
    let backend_ran = embedded
        .as_ref()
        .or(groups[0].engine.as_ref())
        .map_or_else(String::new, |e| format!("{:?}", e.backend()));
    // (group, index in the group's calls) of each participant.
    let mut seat: Vec<Vec<(usize, usize)>> = vec![Vec::new(); shape.calls];
    let expires = crate::demo::unix_now().as_secs() + 3600;
    for (c, seats) in seat.iter_mut().enumerate() {
        let call_id = format!("load-{c}");
        for p in 0..shape.participants {
            let who = format!("p{p}");
            let (g, call) = match (p2p_group, &embedded) {
                (Some(g), Some(server)) if p == 0 => (
                    g,
                    server
                        .join_local(&call_id, &who)
                        .map_err(|e| e.to_string())?,
                ),
                _ => {
                    let g = (c * shape.participants + p) % args.clients;
                    let token =
                        mint_token(&secret, &call_id, &who, expires).map_err(|e| e.to_string())?;
                    let engine = groups[g].engine.as_ref().ok_or("no engine")?;
                    let call = match (&embedded, args.dtls) {
                        // Offer and answer, as signalling would carry them;
                        // then ICE, DTLS and the join.
                        (Some(server), true) => {
                            let t = token.clone();
                            engine.join_signalled(&call_id, &who, token, |offer| {
                                server.accept_offer(offer, &call_id, &who, &t)
                            })
                        }
                        _ => engine.join_remote(server_addr, &call_id, &who, token),
                    }
                    .map_err(|e| e.to_string())?;
                    (g, call)
                }
            };
            let inbox = groups[g].inbox.clone();
            call.data_channel()
                .on_receiver_created(move |r| inbox.add(r));
            seats.push((g, groups[g].calls.len()));
            groups[g].calls.push(call);
        }
    }
    let joins = (shape.calls * shape.participants) as u64;
    let deadline = Instant::now() + Duration::from_secs(30).max(Duration::from_millis(10 * joins));
    let everyone_in = |groups: &[Group]| {
        groups
            .iter()
            .flat_map(|g| &g.calls)
            .all(|c| c.participants().len() >= shape.participants - 1)
    };
    while !everyone_in(&groups) {
        if let Some(c) = groups
            .iter()
            .flat_map(|g| &g.calls)
            .find(|c| matches!(c.state(), CallState::Ended(_)))
        {
            return Err(format!(
                "{} could not join {}: {:?}",
                c.participant_id(),
                c.call_id(),
                c.state()
            ));
        }
        if Instant::now() > deadline {
            let missing = groups
                .iter()
                .flat_map(|g| &g.calls)
                .filter(|c| c.participants().len() + 1 < shape.participants)
                .count();
            return Err(format!(
                "{missing} participants did not see their whole call within {:.0} s",
                (deadline - setup).as_secs_f64()
            ));
        }
        thread::sleep(Duration::from_millis(5));
    }
    let setup_s = setup.elapsed().as_secs_f64();

    // The senders.
    for p in &plans {
        let (g, k) = seat[p.call][p.participant];
        let call = &groups[g].calls[k];
        let options = DataChannelSenderOptions::new()
            .channel_id(p.channel)
            .reliability(p.reliability)
            .priority(p.priority)
            .bitrate_kbps(args.bitrate_kbps)
            .participants(
                p.to.iter()
                    .map(|&i| ParticipantId::from(format!("p{i}")))
                    .collect::<Vec<_>>(),
            );
        let sender = call
            .data_channel()
            .create_sender(options)
            .map_err(|e| format!("sender {}: {e}", p.index))?;
        sender.set_buffered_amount_low_threshold(args.low_threshold);
        groups[g].senders.push((p.clone(), sender));
    }

    let warmup_us = shape.warmup.as_micros() as u64;
    let end_us = warmup_us + shape.duration.as_micros() as u64;
    let shared = Arc::new(Shared {
        t0: Instant::now(),
        window: (warmup_us, end_us),
        sent: Default::default(),
        expected: Default::default(),
        delivered: Default::default(),
        errors: Mutex::new(BTreeMap::new()),
        read_by_sender: (0..plans.len()).map(|_| AtomicU64::new(0)).collect(),
        window_waiting: AtomicU64::new(0),
        writers: Mutex::new(Vec::new()),
        stop_sending: AtomicBool::new(false),
        stop_reading: AtomicBool::new(false),
    });

    // Readers, then writers: one of each per group.
    let mut readers = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let (inbox, shared) = (g.inbox.clone(), shared.clone());
        let h = thread::Builder::new()
            .name(format!("load-read-{i}"))
            .spawn(move || read(&inbox, &shared))
            .map_err(|e| e.to_string())?;
        *lock(&g.inbox.reader) = Some(h.thread().clone());
        g.inbox.wake();
        readers.push(h);
    }
    let mut writers = Vec::new();
    for (i, g) in groups.iter_mut().enumerate() {
        let senders = std::mem::take(&mut g.senders);
        // High senders get a thread of their own when their rate or size
        // differs from the rest's.
        let split = args.high_rate.is_some() || args.high_size.is_some();
        let (high, rest): (Vec<_>, Vec<_>) = senders
            .into_iter()
            .partition(|(p, _)| split && p.priority == dcengine::DataChannelPriority::High);
        let high_shape = (
            args.high_size.unwrap_or(shape.size),
            args.high_rate.unwrap_or(shape.rate),
        );
        for (part, senders, (size, rate)) in [
            ("", rest, (shape.size, shape.rate)),
            ("-high", high, high_shape),
        ] {
            if senders.is_empty() {
                continue;
            }
            let (mine, window) = (shared.clone(), args.window);
            let h = thread::Builder::new()
                .name(format!("load-send-{i}{part}"))
                .spawn(move || {
                    write(&senders, size, rate, window, &mine);
                    senders
                })
                .map_err(|e| e.to_string())?;
            lock(&shared.writers).push(h.thread().clone());
            writers.push(h);
        }
    }

    // Measure while it runs.
    let progress = progress_bar(args, shape.warmup + shape.duration);
    let window_start = shared.t0 + shape.warmup;
    let window_end = window_start + shape.duration;
    sleep_until(window_start, &progress, &shared);
    let cpu0 = sys::process_cpu("self");
    let server_cpu0 = server_cpu(args, &server_threads);
    sleep_until(window_end, &progress, &shared);
    let cpu1 = sys::process_cpu("self");
    let server_cpu1 = server_cpu(args, &server_threads);
    shared.stop_sending.store(true, Ordering::SeqCst);
    let mut senders = Vec::new();
    for w in writers {
        senders.extend(w.join().map_err(|_| "a sender thread panicked")?);
    }

    // Drain: the Durable messages of the window, everywhere.
    let drain_end = Instant::now() + Duration::from_secs_f64(args.drain);
    let durable_done = || {
        (0..2).all(|i| {
            shared.delivered[i].load(Ordering::SeqCst) >= shared.expected[i].load(Ordering::SeqCst)
        })
    };
    if let Some(p) = &progress {
        p.set_message("draining");
    }
    while !durable_done() && Instant::now() < drain_end {
        thread::sleep(Duration::from_millis(5));
    }
    // The last Lossy messages in flight.
    thread::sleep(Duration::from_millis(50));
    shared.stop_reading.store(true, Ordering::SeqCst);
    let mut histograms: Vec<Histogram<u64>> = (0..4).map(|_| new_histogram()).collect();
    for (r, g) in readers.into_iter().zip(&groups) {
        g.inbox.wake();
        let hs = r.join().map_err(|_| "a reader thread panicked")?;
        for (h, add) in histograms.iter_mut().zip(hs) {
            let _ = h.add(add);
        }
    }
    if let Some(p) = progress {
        p.finish_and_clear();
    }

    let lossy_dropped_at_sender = senders.iter().map(|(_, s)| s.dropped_messages()).sum();
    let receiver_drops: u64 = groups
        .iter()
        .flat_map(|g| {
            lock(&g.inbox.receivers)
                .iter()
                .map(|(r, _)| r.dropped_messages())
                .collect::<Vec<_>>()
        })
        .sum();
    let server_stats = embedded.as_ref().and_then(|e| e.stats().ok()).map(|s| {
        json!({
            "joins_accepted": s.joins_accepted,
            "joins_rejected": s.joins_rejected,
            "messages_forwarded": s.messages_forwarded,
            "messages_stale": s.messages_stale,
            "protocol_errors": s.protocol_errors,
            "lossy_dropped_slow": s.lossy_dropped_slow,
            "slow_consumers": s.slow_consumers,
            "senders_paused": s.senders_paused,
            "relay_holds": s.relay_holds,
            "policed": s.policed,
            "datagrams_received": s.datagrams_received,
            "datagrams_sent": s.datagrams_sent,
            "datagrams_dropped": s.datagrams_dropped,
        })
    });
    for c in groups.iter().flat_map(|g| &g.calls) {
        if let CallState::Ended(reason) = c.state() {
            shared.error("CallEnded", 1);
            if !args.json {
                eprintln!("{} left {}: {reason}", c.participant_id(), c.call_id());
            }
        }
    }

    let window_s = shape.duration.as_secs_f64();
    let cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let server_cpu = match (server_cpu0, server_cpu1) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let (client, server) = if embedded.is_some() {
        (
            Usage {
                cpu_s: cpu.zip(server_cpu).map(|(c, s)| c - s),
                peak_rss_kib: sys::peak_rss_kib("self"),
                source: "process minus server threads; RSS is the whole process",
            },
            Usage {
                cpu_s: server_cpu,
                peak_rss_kib: None,
                source: "embedded server's threads",
            },
        )
    } else {
        let pid = args.server_pid.map(|p| p.to_string());
        (
            Usage {
                cpu_s: cpu,
                peak_rss_kib: sys::peak_rss_kib("self"),
                source: "process",
            },
            Usage {
                cpu_s: server_cpu,
                peak_rss_kib: pid.as_deref().and_then(sys::peak_rss_kib),
                source: if pid.is_some() {
                    "/proc of --server-pid"
                } else {
                    "none (no --server-pid)"
                },
            },
        )
    };
    let report = Report {
        scenario: args.scenario(),
        backend: backend_ran,
        window_s,
        size: shape.size,
        high_size: args.high_size.unwrap_or(shape.size),
        offered_per_s: (shape.rate > 0.0).then_some(shape.rate * plans.len() as f64),
        classes: histograms
            .into_iter()
            .enumerate()
            .map(|(i, latency)| ClassReport {
                sent: shared.sent[i].load(Ordering::SeqCst),
                expected: shared.expected[i].load(Ordering::SeqCst),
                delivered: shared.delivered[i].load(Ordering::SeqCst),
                latency,
            })
            .collect(),
        lossy_dropped_at_sender,
        lossy_dropped_at_receiver: receiver_drops,
        errors: lock(&shared.errors).clone(),
        client,
        server,
        joins,
        setup_s,
        server_stats,
    };

    // Close: senders, calls, then the engines (the server last).
    drop(senders);
    for g in &groups {
        for c in &g.calls {
            c.leave();
        }
    }
    for g in groups {
        if let Some(e) = g.engine {
            e.shutdown(Duration::from_millis(500));
        }
    }
    if let Some(e) = embedded {
        e.shutdown(Duration::from_millis(500));
    }

    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.table());
    }
    if report.ok() {
        Ok(())
    } else if report.durable_lost() > 0 {
        Err(format!("{} Durable messages lost", report.durable_lost()))
    } else if report.delivered() == 0 {
        Err("nothing was delivered".into())
    } else {
        Err("errors during the run (listed above)".into())
    }
}

fn new_certificate() -> Result<dcengine::Certificate, String> {
    dcengine::Certificate::generate().map_err(|e| format!("no DTLS certificate: {e}"))
}

/// `hub` with its uplink buffer and `node`'s receive buffer set, each if
/// one was asked for (not 0).
fn with_node(
    hub: HubConfig,
    node: NodeConfig,
    receive_buffer: u32,
    uplink_buffer: usize,
) -> HubConfig {
    let hub = if uplink_buffer > 0 {
        hub.uplink_buffer(uplink_buffer)
    } else {
        hub
    };
    if receive_buffer > 0 {
        hub.node(node.receive_buffer(receive_buffer))
    } else {
        hub
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn server_cpu(args: &LoadArgs, threads: &BTreeSet<u32>) -> Option<f64> {
    match (args.server, args.server_pid) {
        (None, _) => Some(sys::threads_cpu(threads)),
        (Some(_), Some(pid)) => sys::process_cpu(&pid.to_string()),
        (Some(_), None) => None,
    }
}

fn progress_bar(args: &LoadArgs, total: Duration) -> Option<indicatif::ProgressBar> {
    if args.json || args.no_progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

/// Sleeps until `until`, updating the progress bar with the delivery rate.
fn sleep_until(until: Instant, bar: &Option<indicatif::ProgressBar>, shared: &Shared) {
    let mut last = (Instant::now(), total(&shared.delivered));
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        thread::sleep((until - now).min(Duration::from_millis(250)));
        if let Some(bar) = bar {
            let (t, n) = (Instant::now(), total(&shared.delivered));
            let rate = (n - last.1) as f64 / (t - last.0).as_secs_f64().max(1e-3);
            last = (t, n);
            bar.set_position((t - shared.t0).as_millis() as u64);
            let phase = if t < shared.t0 + Duration::from_micros(shared.window.0) {
                "warm-up"
            } else {
                "measuring"
            };
            bar.set_message(format!(
                "{phase}: {}/s delivered, {n} in the window",
                report::si(rate)
            ));
        }
    }
}

fn total(counters: &[AtomicU64; 4]) -> u64 {
    counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
}

/// Polls a future once with `cx`.
fn poll_once<F: Future>(f: F, cx: &mut Context<'_>) -> Poll<F::Output> {
    std::pin::pin!(f).poll(cx)
}

/// Where a client engine binds to reach `server`: loopback for a loopback
/// server, else any address of its family (a server in another network
/// namespace or host).
fn client_bind(server: SocketAddr) -> SocketAddr {
    let ip: std::net::IpAddr = match (server.ip().is_loopback(), server.is_ipv6()) {
        (true, false) => [127, 0, 0, 1].into(),
        (true, true) => std::net::Ipv6Addr::LOCALHOST.into(),
        (false, false) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        (false, true) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

/// Sends on every sender of a group until told to stop.
fn write(
    senders: &[(SenderPlan, DataChannelSender)],
    size: usize,
    rate: f64,
    window: u64,
    shared: &Shared,
) {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let start = Instant::now();
    // Spread the first sends of paced senders over one interval.
    let mut next: Vec<Instant> = (0..senders.len())
        .map(|i| {
            start
                + interval.map_or(Duration::ZERO, |d| {
                    d.mul_f64(i as f64 / senders.len() as f64)
                })
        })
        .collect();
    let mut counts = Counts::default();
    // Per sender: deliveries its messages make, all told.
    let mut owed: Vec<u64> = vec![0; senders.len()];
    let open = |k: usize, plan: &SenderPlan, owed: &[u64]| {
        window == 0
            || plan.reliability == DataChannelReliability::Lossy
            || owed[k]
                < shared.read_by_sender[plan.index as usize].load(Ordering::Acquire)
                    + window * plan.fan_out
    };
    let send = |plan: &SenderPlan,
                s: &DataChannelSender,
                counts: &mut Counts,
                errors: &mut BTreeMap<&'static str, u64>| {
        let t = shared.now_us();
        match s.send(plan::encode(size, t, plan.index)) {
            Ok(()) => {
                if shared.measured(t) {
                    let c = class_index(plan.reliability, plan.priority);
                    counts.sent[c] += 1;
                    counts.expected[c] += plan.fan_out;
                }
                true
            }
            Err(e) => {
                *errors.entry(code(&e)).or_default() += 1;
                false
            }
        }
    };
    while !shared.stop_sending.load(Ordering::Relaxed) {
        let mut progressed = false;
        match interval {
            None => {
                let mut window_shut = false;
                for (k, (plan, s)) in senders.iter().enumerate() {
                    // At most a burst per sender per pass, for fairness.
                    for _ in 0..64 {
                        if !open(k, plan, &owed) {
                            window_shut = true;
                            break;
                        }
                        match poll_once(s.writable(), &mut cx) {
                            Poll::Ready(Ok(())) => {
                                if !send(plan, s, &mut counts, &mut errors) {
                                    break;
                                }
                                owed[k] += plan.fan_out;
                                progressed = true;
                            }
                            Poll::Ready(Err(e)) => {
                                *errors.entry(code(&e)).or_default() += 1;
                                break;
                            }
                            Poll::Pending => break,
                        }
                    }
                }
                if !progressed {
                    if window_shut {
                        // Readers unpark waiting writers after each batch.
                        shared.window_waiting.fetch_add(1, Ordering::SeqCst);
                        if senders
                            .iter()
                            .enumerate()
                            .all(|(k, (p, _))| !open(k, p, &owed))
                        {
                            thread::park_timeout(Duration::from_millis(5));
                        }
                        shared.window_waiting.fetch_sub(1, Ordering::SeqCst);
                    } else {
                        thread::park_timeout(Duration::from_millis(5));
                    }
                }
            }
            Some(d) => {
                let now = Instant::now();
                for ((plan, s), at) in senders.iter().zip(&mut next) {
                    if now.saturating_duration_since(*at) > Duration::from_millis(100) {
                        // Far behind (a stalled thread): no catch-up burst.
                        *at = now;
                    }
                    while *at <= now {
                        send(plan, s, &mut counts, &mut errors);
                        *at += d;
                    }
                }
                let wake = next.iter().min().copied().unwrap_or(now + d);
                thread::sleep(wake.saturating_duration_since(Instant::now()));
            }
        }
        if counts.sent.iter().sum::<u64>() >= 256 {
            counts.flush(shared);
        }
    }
    counts.flush(shared);
    for (code, n) in errors {
        shared.error(code, n);
    }
}

/// A sender thread's counts of the window, added to [`Shared`] in batches.
#[derive(Default)]
struct Counts {
    sent: [u64; 4],
    expected: [u64; 4],
}

impl Counts {
    fn flush(&mut self, shared: &Shared) {
        for c in 0..4 {
            shared.sent[c].fetch_add(std::mem::take(&mut self.sent[c]), Ordering::SeqCst);
            shared.expected[c].fetch_add(std::mem::take(&mut self.expected[c]), Ordering::SeqCst);
        }
    }
}

/// Reads the inbox's receivers until told to stop; returns the latency
/// histograms per class.
fn read(inbox: &Inbox, shared: &Shared) -> Vec<Histogram<u64>> {
    let mut h: Vec<Histogram<u64>> = (0..4).map(|_| new_histogram()).collect();
    // Per receiver: its class, the last Durable sequence number.
    let mut state: Vec<(usize, u32)> = Vec::new();
    let mut errors: BTreeMap<&'static str, u64> = BTreeMap::new();
    let drain = |i: usize,
                 state: &mut Vec<(usize, u32)>,
                 h: &mut Vec<Histogram<u64>>,
                 errors: &mut BTreeMap<&'static str, u64>| {
        let (r, flag) = {
            let list = lock(&inbox.receivers);
            let Some((r, f)) = list.get(i) else { return };
            (r.clone(), f.clone())
        };
        while state.len() <= i {
            state.push((usize::MAX, 0));
        }
        if state[i].0 == usize::MAX {
            state[i].0 = class_index(r.reliability(), r.priority());
        }
        flag.store(false, Ordering::Release);
        let (class, last) = &mut state[i];
        let durable = r.reliability() == DataChannelReliability::Durable;
        let mut delivered = 0;
        while let Some(m) = r.read_message() {
            let now = shared.now_us();
            if durable && m.sequence_number != *last + 1 {
                *errors.entry("DurableOutOfOrder").or_default() += 1;
            }
            *last = m.sequence_number;
            let Some((t, sender)) = plan::decode(&m.data) else {
                *errors.entry("ShortMessage").or_default() += 1;
                continue;
            };
            if let Some(n) = shared.read_by_sender.get(sender as usize) {
                n.fetch_add(1, Ordering::Release);
            }
            if shared.measured(t) {
                let _ = h[*class].record(now.saturating_sub(t).max(1));
                delivered += 1;
            }
        }
        if delivered > 0 {
            shared.delivered[*class].fetch_add(delivered, Ordering::SeqCst);
        }
        if shared.window_waiting.load(Ordering::SeqCst) > 0 {
            for w in lock(&shared.writers).iter() {
                w.unpark();
            }
        }
    };
    let mut last_sweep = Instant::now();
    loop {
        let stopping = shared.stop_reading.load(Ordering::SeqCst);
        let mut any = false;
        while let Some(i) = inbox.ready.pop() {
            drain(i, &mut state, &mut h, &mut errors);
            any = true;
        }
        // A sweep of every receiver now and then (and at the end), in case
        // a wake-up was missed.
        if stopping || last_sweep.elapsed() > Duration::from_millis(100) {
            let n = lock(&inbox.receivers).len();
            for i in 0..n {
                drain(i, &mut state, &mut h, &mut errors);
            }
            last_sweep = Instant::now();
        }
        if stopping {
            break;
        }
        if !any {
            thread::park_timeout(Duration::from_millis(20));
        }
    }
    for (code, n) in errors {
        shared.error(code, n);
    }
    h
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn parse(args: &[&str]) -> Result<LoadArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("load").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        cli.load.check()?;
        Ok(cli.load)
    }

    #[test]
    fn the_defaults_are_a_quick_embedded_run() {
        let a = parse(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.server.is_none());
        assert!(!a.traffic_rules);
        assert!(a.duration + a.warmup <= 5.0);
        assert_eq!((a.participants, a.size, a.rate), (2, 100, 0.0));
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse(&["--server", "127.0.0.1:5000"]).is_err(), "no secret");
        assert!(parse(&["--server", "127.0.0.1:5000", "--secret", "s"]).is_ok());
        assert!(parse(&["--server", "127.0.0.1:5000", "--secret", "s", "--p2p"]).is_err());
        assert!(parse(&["--embedded", "--server", "127.0.0.1:5000"]).is_err());
        let bind = [
            "--server",
            "127.0.0.1:5000",
            "--secret",
            "s",
            "--bind",
            "127.0.0.1:0",
        ];
        assert!(parse(&bind).is_err(), "--bind is the embedded server's");
        assert!(parse(&["--bind", "127.0.0.2:0", "--client-netns", "x"]).is_ok());
        assert!(
            parse(&["--bind", "0.0.0.0:0"]).is_err(),
            "clients cannot join 0.0.0.0"
        );
        assert!(parse(&["--server-pid", "1"]).is_err(), "needs --server");
        assert!(parse(&["--size", "8"]).is_err());
        assert!(parse(&["--clients", "0"]).is_err());
        assert!(parse(&["--recipients", "3"]).is_err(), "2 participants");
        assert!(
            parse(&[
                "--participants",
                "64",
                "--sending-participants",
                "1",
                "--recipients",
                "63"
            ])
            .is_ok()
        );
        assert!(parse(&["--recipients", "broadcast", "--lossy", "50", "--high", "10"]).is_ok());
        assert!(parse(&["--lossy", "120"]).is_err());
        assert!(parse(&["--duration", "0"]).is_err());
    }

    #[test]
    fn scenario_echoes_the_flags() {
        let a = parse(&["--participants", "4", "--recipients", "2", "--rate", "100"])
            .unwrap_or_else(|e| panic!("{e}"));
        let s = a.scenario();
        assert_eq!(s["participants"], 4);
        assert_eq!(s["recipients"], "2");
        assert_eq!(s["rate"], 100.0);
        assert_eq!(s["server"], "embedded");
    }

    #[test]
    fn error_codes_are_the_seeds_names() {
        assert_eq!(
            code(&DataChannelError::MessageFailureForBandwidth),
            "MessageFailureForBandwidth"
        );
        assert_eq!(code(&DataChannelError::SenderClosed), "SenderClosed");
    }
}
