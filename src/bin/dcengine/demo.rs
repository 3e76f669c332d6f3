//! `dcengine demo`, the embedded default job, over real UDP: a server
//! engine on 127.0.0.1 and a few client engines (each with its own socket
//! and worker thread) join one call with real tokens, then every client
//! sends chat, telemetry, cursor positions and bulk data for a few seconds
//! within the default traffic rules. Each message carries its send time, so
//! the receivers measure the latency; a summary is printed at the end and
//! the engines are shut down gracefully. `dcengine demo --simulated` runs
//! the in-memory, lossy version instead.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcengine::{
    Backend, Call, CallState, DataChannelPriority, DataChannelReceiver, DataChannelReliability,
    DataChannelSender, DataChannelSenderOptions, Engine, HmacVerifier, HubConfig, WallClock,
    mint_token,
};
use hdrhistogram::Histogram;

use crate::sim_demo::{self, SimArgs};

/// Options of `dcengine demo`.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Run the in-memory simulated network (latency and loss) instead of
    /// real UDP.
    #[arg(long)]
    simulated: bool,
    /// Participants in the demo call, 2 to 8 (default 4 over UDP, 3
    /// simulated).
    #[arg(long)]
    clients: Option<usize>,
    /// Seconds of traffic over UDP.
    #[arg(long, default_value_t = 3.0, conflicts_with = "simulated")]
    seconds: f64,
    /// I/O backend of the UDP engines.
    #[arg(long, value_enum, default_value_t = BackendArg::Auto, conflicts_with = "simulated")]
    backend: BackendArg,
    /// Worker threads of the UDP server (each with its own socket on the
    /// port); 0: one per core.
    #[arg(long, default_value_t = 0, conflicts_with = "simulated")]
    workers: usize,
    /// Plain SCTP over UDP instead of ICE and DTLS joined by offer and
    /// answer (what a default server runs).
    #[arg(long, conflicts_with = "simulated")]
    insecure_plaintext: bool,
    #[command(flatten)]
    sim: SimArgs,
}

/// `--backend` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum BackendArg {
    /// io_uring where the kernel allows it, else portable.
    Auto,
    /// io_uring only (fails where unavailable).
    IoUring,
    /// epoll/kqueue with batched UDP.
    Portable,
}

const NAMES: [&str; 8] = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
];

/// One kind of traffic every participant sends to everyone else.
struct Flow {
    name: &'static str,
    channel: u16,
    reliability: DataChannelReliability,
    priority: DataChannelPriority,
    /// Messages a second (well under the broadcast rule's 80 packets).
    per_second: u32,
    /// Payload bytes (at least the 12-byte header).
    size: usize,
    /// The sender's own shaping rate, above what the flow needs and within
    /// the traffic rule of its kind (Durable 64, Lossy 512, High Lossy 200).
    bitrate_kbps: u32,
}

const FLOWS: [Flow; 4] = [
    // The ACS sample's chat: a line of text twice a second (~1 kbps).
    Flow {
        name: "chat",
        channel: 10000,
        reliability: DataChannelReliability::Durable,
        priority: DataChannelPriority::Normal,
        per_second: 2,
        size: HEADER,
        bitrate_kbps: 32,
    },
    // Telemetry: 20 × 200 bytes a second (32 kbps).
    Flow {
        name: "telemetry",
        channel: 3000,
        reliability: DataChannelReliability::Durable,
        priority: DataChannelPriority::Normal,
        per_second: 20,
        size: 200,
        bitrate_kbps: 48,
    },
    // Cursor positions: 30 × 24 bytes a second (~6 kbps), latest wins.
    Flow {
        name: "cursors",
        channel: 2000,
        reliability: DataChannelReliability::Lossy,
        priority: DataChannelPriority::High,
        per_second: 30,
        size: 24,
        bitrate_kbps: 16,
    },
    // Bulk data: 25 × 1,000 bytes a second (200 kbps).
    Flow {
        name: "data",
        channel: 4000,
        reliability: DataChannelReliability::Lossy,
        priority: DataChannelPriority::Normal,
        per_second: 25,
        size: 1000,
        bitrate_kbps: 256,
    },
];

/// Payload header: send time (µs since the demo's start) and the sender's
/// message number, both big-endian.
const HEADER: usize = 12;

/// What every thread adds to.
struct Stats {
    t0: Instant,
    sent: [AtomicU64; FLOWS.len()],
    delivered: [AtomicU64; FLOWS.len()],
    /// Delivery latency per flow, in µs.
    latency: [Mutex<Histogram<u64>>; FLOWS.len()],
    errors: Mutex<Vec<String>>,
}

impl Stats {
    fn error(&self, e: String) {
        lock(&self.errors).push(e);
    }

    fn now_us(&self) -> u64 {
        self.t0.elapsed().as_micros() as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// A per-run secret: the standard library's randomly keyed hasher.
pub(crate) fn random_secret() -> [u8; 32] {
    let mut secret = [0; 32];
    for (i, chunk) in secret.chunks_mut(8).enumerate() {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(unix_now().as_nanos());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    secret
}

/// Runs `dcengine demo`.
pub(crate) fn run(args: &DemoArgs) -> Result<(), String> {
    if args.simulated {
        return sim_demo::run(&args.sim, args.clients.unwrap_or(3));
    }
    if !(0.1..=600.0).contains(&args.seconds) {
        return Err("--seconds must be from 0.1 to 600".into());
    }
    let clients = args.clients.unwrap_or(4).clamp(2, NAMES.len());
    let backend = match args.backend {
        BackendArg::Auto => Backend::Auto,
        BackendArg::IoUring => Backend::IoUring,
        BackendArg::Portable => Backend::Portable,
    };
    let started = Instant::now();

    // The server: real tokens, signed with a secret made for this run, and
    // the default traffic rules (what users get).
    let secret = random_secret();
    let clock = WallClock::new(Instant::now(), unix_now());
    let certificate = || dcengine::Certificate::generate().map_err(|e| e.to_string());
    let mut hub = HubConfig::server(Arc::new(
        HmacVerifier::new(&secret, clock).map_err(|e| e.to_string())?,
    ));
    if !args.insecure_plaintext {
        hub = hub.dtls(certificate()?);
    }
    let mut builder = Engine::builder()
        .bind(([127, 0, 0, 1], 0).into())
        .backend(backend)
        .hub(hub);
    if args.workers > 0 {
        builder = builder.workers(args.workers);
    }
    let server = builder
        .start()
        .map_err(|e| format!("the server cannot start: {e}"))?;
    let backend = server.backend();
    println!(
        "dcengine demo: a server on {} ({} worker(s)) and {clients} clients over UDP, {:?} backend, {} s of traffic, {}",
        server.local_addr(),
        server.workers(),
        backend,
        args.seconds,
        if args.insecure_plaintext {
            "plain SCTP (--insecure-plaintext)"
        } else {
            "encrypted (ICE, DTLS; joined by offer and answer)"
        }
    );

    let mut people: Vec<(&str, Engine, Call)> = Vec::new();
    for &name in &NAMES[..clients] {
        let mut hub = HubConfig::client();
        if !args.insecure_plaintext {
            hub = hub.dtls(certificate()?);
        }
        let engine = Engine::builder()
            .bind(([127, 0, 0, 1], 0).into())
            .backend(backend)
            .hub(hub)
            .start()
            .map_err(|e| format!("a client cannot start: {e}"))?;
        let token = mint_token(&secret, "demo", name, unix_now().as_secs() + 600)
            .map_err(|e| e.to_string())?;
        let call = if args.insecure_plaintext {
            engine.join_remote(server.local_addr(), "demo", name, token)
        } else {
            // Signalling in-process: the offer to the server, its answer back.
            let t = token.clone();
            engine.join_signalled("demo", name, token, |offer| {
                server.accept_offer(offer, "demo", name, &t)
            })
        }
        .map_err(|e| e.to_string())?;
        people.push((name, engine, call));
    }
    for (name, _, call) in &people {
        if !crate::net::pollster_ready(call) {
            return Err(match call.state() {
                CallState::Ended(reason) => format!("{name} could not join: {reason}"),
                _ => format!("{name} could not join within 10 s"),
            });
        }
    }
    // Everyone sees everyone before anything is sent, so every message has
    // the whole fan-out.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !people
        .iter()
        .all(|(_, _, c)| c.participants().len() == clients - 1)
    {
        if Instant::now() > deadline {
            return Err("the participants did not all see each other within 10 s".into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    println!(
        "joined: {} (after {:.0} ms)",
        NAMES[..clients].join(", "),
        started.elapsed().as_secs_f64() * 1e3
    );

    let histogram =
        || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string());
    let stats = Arc::new(Stats {
        t0: Instant::now(),
        sent: Default::default(),
        delivered: Default::default(),
        latency: [
            Mutex::new(histogram()?),
            Mutex::new(histogram()?),
            Mutex::new(histogram()?),
            Mutex::new(histogram()?),
        ],
        errors: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));

    // Receivers: one thread per client, woken by the engine when a receiver
    // is created or a message is ready.
    let mut readers = Vec::new();
    for (i, (name, _, call)) in people.iter().enumerate() {
        let inbox = Arc::new(Mutex::new(Vec::<DataChannelReceiver>::new()));
        let reader = {
            let (inbox, stats, stop) = (inbox.clone(), stats.clone(), stop.clone());
            let (name, show_chat) = (name.to_string(), i == 0);
            thread::Builder::new()
                .name(format!("demo-recv-{name}"))
                .spawn(move || read(&name, show_chat, &inbox, &stats, &stop))
                .map_err(|e| e.to_string())?
        };
        let wake = reader.thread().clone();
        call.data_channel().on_receiver_created(move |receiver| {
            let w = wake.clone();
            receiver.on_message_ready(move || w.unpark());
            lock(&inbox).push(receiver);
            wake.unpark();
        });
        readers.push(reader);
    }

    // Senders: one thread per client, paced by a timer.
    let mut writers = Vec::new();
    let sending = Duration::from_secs_f64(args.seconds);
    for (name, _, call) in &people {
        let senders = FLOWS
            .iter()
            .map(|f| {
                call.data_channel()
                    .create_sender(DataChannelSenderOptions {
                        channel_id: Some(f.channel),
                        bitrate_kbps: f.bitrate_kbps,
                        priority: f.priority,
                        reliability: f.reliability,
                        participants: Vec::new(),
                    })
                    .map_err(|e| format!("{name}: {} sender: {e}", f.name))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (name, stats) = (name.to_string(), stats.clone());
        writers.push(
            thread::Builder::new()
                .name(format!("demo-send-{name}"))
                .spawn(move || {
                    write(&name, &senders, sending, &stats);
                    senders
                })
                .map_err(|e| e.to_string())?,
        );
    }
    let mut senders = Vec::new();
    for w in writers {
        senders.push(w.join().map_err(|_| "a sender thread panicked")?);
    }

    // Wait (at most 5 s) for the Durable messages to arrive everywhere.
    let fan_out = clients as u64 - 1;
    let durable_done = || {
        FLOWS.iter().enumerate().all(|(i, f)| {
            f.reliability == DataChannelReliability::Lossy
                || stats.delivered[i].load(Ordering::SeqCst)
                    >= stats.sent[i].load(Ordering::SeqCst) * fan_out
        })
    };
    let drain_deadline = Instant::now() + Duration::from_secs(5);
    while !durable_done() && Instant::now() < drain_deadline {
        thread::sleep(Duration::from_millis(10));
    }
    // A little longer for the last Lossy messages in flight.
    thread::sleep(Duration::from_millis(50));
    let traffic_time = stats.t0.elapsed();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.thread().unpark();
        r.join().map_err(|_| "a receiver thread panicked")?;
    }

    let dropped: u64 = senders.iter().flatten().map(|s| s.dropped_messages()).sum();
    drop(senders);
    // The server goes first: it tells every member that it is shutting down
    // (after what is queued for them) and closes the associations
    // gracefully, so the clients' calls end and their engines have nothing
    // left to close.
    let teardown = Instant::now();
    server.shutdown(Duration::from_secs(2));
    for (_, engine, _) in people {
        engine.shutdown(Duration::from_secs(2));
    }
    let teardown = teardown.elapsed();

    println!();
    println!(
        "summary ({clients} participants over UDP on loopback, {backend:?} backend, {:.2} s of traffic):",
        traffic_time.as_secs_f64()
    );
    let mut lost_durable = 0;
    for (i, f) in FLOWS.iter().enumerate() {
        let sent = stats.sent[i].load(Ordering::SeqCst);
        let delivered = stats.delivered[i].load(Ordering::SeqCst);
        let expected = sent * fan_out;
        let kind = format!(
            "{:<7} {:<6}",
            format!("{:?}", f.reliability),
            format!("{:?}", f.priority)
        );
        let h = lock(&stats.latency[i]);
        println!(
            "  {:<9} ch {:>5}  {kind}: {sent:>5} sent, {delivered:>6}/{expected:<6} delivered; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            f.name,
            f.channel,
            h.value_at_quantile(0.50) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.max() as f64 / 1e3,
        );
        if f.reliability == DataChannelReliability::Durable {
            lost_durable += expected.saturating_sub(delivered);
        }
    }
    let errors = lock(&stats.errors);
    println!(
        "  Durable messages lost: {lost_durable}; Lossy messages dropped by full send queues: {dropped}; errors: {}",
        errors.len()
    );
    for e in errors.iter().take(10) {
        println!("    error: {e}");
    }
    println!(
        "  shutdown took {:.0} ms; real time {:.2} s",
        teardown.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64()
    );
    if lost_durable > 0 || !errors.is_empty() {
        return Err(format!(
            "{lost_durable} Durable messages lost, {} errors",
            errors.len()
        ));
    }
    Ok(())
}

/// Sends every flow at its rate until `duration` has passed.
fn write(name: &str, senders: &[DataChannelSender], duration: Duration, stats: &Stats) {
    let start = Instant::now();
    let end = start + duration;
    let interval = FLOWS.map(|f| Duration::from_secs(1) / f.per_second);
    // Spread the flows' first messages over their first interval.
    let mut next: Vec<Instant> = interval
        .iter()
        .zip(1u32..)
        .map(|(d, k)| start + *d * k / (FLOWS.len() as u32 + 1))
        .collect();
    let mut count = [0u32; FLOWS.len()];
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        for (i, f) in FLOWS.iter().enumerate() {
            if now < next[i] {
                continue;
            }
            next[i] += interval[i];
            if next[i] < now {
                // Far behind (a stalled thread): no catch-up burst.
                next[i] = now + interval[i];
            }
            count[i] += 1;
            let mut m = Vec::with_capacity(f.size);
            m.extend_from_slice(&stats.now_us().to_be_bytes());
            m.extend_from_slice(&count[i].to_be_bytes());
            if f.channel == 10000 {
                m.extend_from_slice(format!("hello #{} from {name}", count[i]).as_bytes());
            }
            m.resize(f.size.max(m.len()), 0);
            match senders[i].send(m) {
                Ok(()) => {
                    stats.sent[i].fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => stats.error(format!("{name} {} send: {e}", f.name)),
            }
        }
        let wake = next.iter().min().copied().unwrap_or(end).min(end);
        thread::sleep(wake.saturating_duration_since(Instant::now()));
    }
}

/// Reads every receiver the engine hands over until `stop`.
fn read(
    name: &str,
    show_chat: bool,
    inbox: &Mutex<Vec<DataChannelReceiver>>,
    stats: &Stats,
    stop: &AtomicBool,
) {
    let mut receivers: Vec<(DataChannelReceiver, u32)> = Vec::new();
    loop {
        // Look at `stop` first: what arrived before it is still read.
        let stopping = stop.load(Ordering::SeqCst);
        receivers.extend(lock(inbox).drain(..).map(|r| (r, 0)));
        for (r, last_seq) in &mut receivers {
            while let Some(m) = r.read_message() {
                let now_us = stats.now_us();
                let Some(i) = FLOWS.iter().position(|f| f.channel == r.channel_id()) else {
                    stats.error(format!("{name}: a message on channel {}", r.channel_id()));
                    continue;
                };
                if m.data.len() < HEADER {
                    stats.error(format!("{name}: a short message from {}", r.sender_id()));
                    continue;
                }
                let durable = FLOWS[i].reliability == DataChannelReliability::Durable;
                if durable && m.sequence_number != *last_seq + 1 {
                    stats.error(format!(
                        "{name}: {} from {} out of order: #{} after #{}",
                        FLOWS[i].name,
                        r.sender_id(),
                        m.sequence_number,
                        last_seq
                    ));
                }
                *last_seq = m.sequence_number;
                let sent_us = u64::from_be_bytes(m.data[..8].try_into().unwrap_or_default());
                let _ = lock(&stats.latency[i]).record(now_us.saturating_sub(sent_us).max(1));
                stats.delivered[i].fetch_add(1, Ordering::SeqCst);
                if show_chat && FLOWS[i].channel == 10000 && m.sequence_number == 1 {
                    println!(
                        "[chat] {} -> {name}: {}",
                        r.sender_id(),
                        String::from_utf8_lossy(&m.data[HEADER..])
                    );
                }
            }
        }
        if stopping {
            return;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}
