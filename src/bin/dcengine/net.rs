//! `dcengine serve`, `dcengine token` and `dcengine chat`: the engine over
//! real UDP.

use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dcengine::{
    CallState, ChannelConfig, DataChannelSenderOptions, Engine, HmacVerifier, HubConfig, HubEvent,
    NodeConfig, TrafficPolicy, WallClock, mint_token,
};

/// The chat channel of the ACS sample.
const CHAT_CHANNEL: u16 = 10000;

/// Options of `dcengine serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:5000")]
    bind: SocketAddr,
    /// Secret that join tokens are signed with (or set DCENGINE_SECRET).
    #[arg(long, env = "DCENGINE_SECRET", hide_env_values = true)]
    secret: String,
    /// A second secret whose tokens verify too, while secrets rotate (or
    /// set DCENGINE_SECOND_SECRET): the new one before tokens are minted
    /// with it, or the old one until its tokens have expired.
    #[arg(long, env = "DCENGINE_SECOND_SECRET", hide_env_values = true)]
    second_secret: Option<String>,
    /// Longest a join token may still be valid for, in seconds: a token
    /// that expires later than this from now is refused.
    #[arg(long, default_value_t = 24 * 60 * 60)]
    max_token_lifetime: u64,
    /// Largest message a sender may send, in bytes (at most 262144).
    #[arg(long, default_value_t = 32 * 1024)]
    max_message_size: u32,
    /// Seconds without messages after which a receiver closes.
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Traffic rule for Durable senders, in kbps (0: no rule).
    #[arg(long, default_value_t = 64)]
    durable_kbps: u32,
    /// Traffic rule for Normal-priority Lossy senders, in kbps (0: no rule).
    #[arg(long, default_value_t = 512)]
    lossy_kbps: u32,
    /// Traffic rule for High-priority Lossy senders, in kbps (0: no rule).
    #[arg(long, default_value_t = 200)]
    high_lossy_kbps: u32,
    /// Traffic rule for senders to the whole call, in packets (of 1,200
    /// bytes of a message) a second (0: no rule).
    #[arg(long, default_value_t = 80)]
    broadcast_pps: u32,
    /// Traffic rule for one member's senders together, in kbps (0: no
    /// rule).
    #[arg(long, default_value_t = 2048)]
    member_kbps: u32,
    /// Traffic rule for one member's messages together, a second (0: no
    /// rule).
    #[arg(long, default_value_t = 2000)]
    member_mps: u32,
    /// Most associations served at once (per worker).
    #[arg(long, default_value_t = 10_000)]
    max_associations: usize,
    /// SCTP receive buffer per association, in bytes
    /// (`NodeConfig::receive_buffer`: it bounds what a member may have in
    /// flight to the server); 0: the default (4 MiB).
    #[arg(long, default_value_t = 0)]
    sctp_receive_buffer: u32,
    /// Most bytes the server keeps queued in SCTP (in flight and unsent)
    /// towards one member (`HubConfig::uplink_buffer`, the egress budget's
    /// ceiling: about this much per round trip); 0: the default (4 MiB).
    #[arg(long, default_value_t = 0)]
    uplink_buffer: usize,
    /// With several workers: bytes of one member's messages relayed to the
    /// worker its call lives on and not yet taken there, past which the
    /// member's reads are held until that worker catches up
    /// (`HubConfig::relay_backlog`); 0: the default (512 KiB).
    #[arg(long, default_value_t = 0)]
    relay_backlog: usize,
    /// Durable bytes a paused sender may still send before it is closed
    /// (`HubConfig::pause_overrun`; must exceed a client's sender queue,
    /// uplink buffer and a message plus the SCTP receive buffer); 0: the
    /// default (12 MiB).
    #[arg(long, default_value_t = 0)]
    pause_overrun: usize,
    /// Durable bytes that may wait for one member before it is a slow
    /// consumer (`HubConfig::slow_consumer_buffer`; must exceed the largest
    /// member pause backlog, 8 MiB, plus the pause overrun); 0: the
    /// default (24 MiB).
    #[arg(long, default_value_t = 0)]
    slow_consumer_buffer: usize,
    /// Worker threads, each pinned to a core with its own socket on the
    /// port (SO_REUSEPORT) and its own hub; 0: one per core.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Seconds to let queued messages drain on shutdown.
    #[arg(long, default_value_t = 5)]
    drain: u64,
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: tracing::Level,
    /// TCP address of the HTTP signalling endpoint (POST
    /// /v1/calls/{call}/join: an SDP offer and a token in, the answer out);
    /// default: the UDP address's host and port, over TCP.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// The signalling endpoint's CORS, web root, demo tokens and TLS.
    #[command(flatten)]
    endpoint: crate::signal::HttpArgs,
    /// The DTLS certificate (DER; an ECDSA P-256 one), with --dtls-key;
    /// default: a self-signed one made at start.
    #[arg(long, requires = "dtls_key")]
    dtls_cert: Option<std::path::PathBuf>,
    /// The DTLS certificate's private key (PKCS#8 DER).
    #[arg(long, requires = "dtls_cert")]
    dtls_key: Option<std::path::PathBuf>,
    /// Plain SCTP over UDP, no DTLS, no signalling: anyone on the path
    /// reads every message and the join tokens. For benchmarks and trusted
    /// networks only.
    #[arg(long)]
    insecure_plaintext: bool,
}

/// Options of `dcengine token`.
#[derive(Debug, clap::Args)]
pub(crate) struct TokenArgs {
    /// The server's secret (or set DCENGINE_SECRET).
    #[arg(long, env = "DCENGINE_SECRET", hide_env_values = true)]
    secret: String,
    /// The call.
    #[arg(long)]
    call: String,
    /// The participant.
    #[arg(long)]
    participant: String,
    /// How long the token is valid, in seconds (a server refuses one valid
    /// for longer than its --max-token-lifetime, 24 h by default).
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
}

/// Options of `dcengine chat`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChatArgs {
    /// The server's UDP address.
    #[arg(long, default_value = "127.0.0.1:5000")]
    server: SocketAddr,
    /// The call to join.
    #[arg(long, default_value = "chat")]
    call: String,
    /// Who you are.
    #[arg(long, visible_alias = "name")]
    participant: String,
    /// A join token from `dcengine token`, in hex.
    #[arg(long, conflicts_with = "secret")]
    token: Option<String>,
    /// Or the server's secret, to make a token here (development only);
    /// with --host, the secret the joining peers' tokens are checked with.
    #[arg(long, env = "DCENGINE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// The server's HTTP signalling endpoint (TCP); default: --server's
    /// host and port. With --host: the address to serve it on.
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Join a server that runs `--insecure-plaintext`: plain SCTP over UDP,
    /// no DTLS.
    #[arg(long)]
    insecure_plaintext: bool,
    /// Host the call here instead of joining a server's: an engine of our
    /// own runs ICE-lite and DTLS, this participant joins it locally, and
    /// the signalling endpoint on --http lets others (browsers, other
    /// `dcengine chat`s) join it directly, peer to peer. Tokens are checked
    /// with --secret.
    #[arg(long, requires = "http", conflicts_with_all = ["token", "insecure_plaintext"])]
    host: bool,
    /// With --host: the UDP address the call is hosted on (ICE, DTLS and
    /// SCTP); default: every address, a free port.
    #[arg(long, requires = "host")]
    bind: Option<SocketAddr>,
    /// With --host: the signalling endpoint's CORS, web root, demo tokens
    /// and TLS, as for `serve`.
    #[command(flatten)]
    endpoint: crate::signal::HttpArgs,
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub(crate) fn init_logging(level: tracing::Level) {
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

pub(crate) fn serve(args: &ServeArgs) -> Result<(), String> {
    init_logging(args.log_level);
    let clock = WallClock::new(Instant::now(), unix_now());
    let mut verifier = HmacVerifier::new(args.secret.as_bytes(), clock)
        .map_err(|e| format!("--secret: {e}"))?
        .max_lifetime(Duration::from_secs(args.max_token_lifetime));
    if let Some(second) = &args.second_secret {
        verifier = verifier
            .second_secret(second.as_bytes())
            .map_err(|e| format!("--second-secret: {e}"))?;
    }
    let verifier = Arc::new(verifier);
    // 0 on the command line: no rule.
    let rule = |v: u32| (v > 0).then_some(v);
    let traffic = TrafficPolicy::default()
        .durable_kbps(rule(args.durable_kbps))
        .lossy_kbps(rule(args.lossy_kbps))
        .high_lossy_kbps(rule(args.high_lossy_kbps))
        .broadcast_packets_per_second(rule(args.broadcast_pps))
        .member_kbps(rule(args.member_kbps))
        .member_messages_per_second(rule(args.member_mps));
    let mut node = NodeConfig::server().max_associations(args.max_associations);
    if args.sctp_receive_buffer > 0 {
        node = node.receive_buffer(args.sctp_receive_buffer);
    }
    let mut hub = HubConfig::server(verifier).node(node).channel(
        ChannelConfig::default()
            .max_message_size(args.max_message_size)
            .receiver_idle_timeout(Duration::from_secs(args.idle_timeout))
            .traffic(traffic),
    );
    if args.uplink_buffer > 0 {
        hub = hub.uplink_buffer(args.uplink_buffer);
    }
    if args.relay_backlog > 0 {
        hub = hub.relay_backlog(args.relay_backlog);
    }
    if args.pause_overrun > 0 {
        hub = hub.pause_overrun(args.pause_overrun);
    }
    if args.slow_consumer_buffer > 0 {
        hub = hub.slow_consumer_buffer(args.slow_consumer_buffer);
    }
    hub.check()
        .map_err(|e| format!("{e} (--pause-overrun, --slow-consumer-buffer)"))?;
    if args.insecure_plaintext {
        tracing::warn!(
            "--insecure-plaintext: plain SCTP over UDP; anyone on the path reads every message and join token"
        );
    } else {
        hub = hub.dtls(server_certificate(args)?);
    }
    let mut builder = Engine::builder().bind(args.bind).hub(hub);
    if args.workers > 0 {
        builder = builder.workers(args.workers);
    }
    let engine = Arc::new(
        builder
            .start()
            .map_err(|e| format!("cannot serve on {}: {e}", args.bind))?,
    );
    if let Some(fingerprint) = engine.dtls_fingerprint() {
        let config = args.endpoint.config(
            args.secret.as_bytes(),
            Duration::from_secs(args.max_token_lifetime),
        );
        let endpoint = start_signalling(&engine, args.http.unwrap_or(args.bind), &config)?;
        println!(
            "DTLS certificate sha-256 {fingerprint}; signalling at {}/v1/calls/{{call}}/join",
            endpoint.url()
        );
    } else if args.endpoint.any() || args.http.is_some() {
        return Err(
            "--insecure-plaintext runs no signalling: --http, --cors-origin, --web, --demo-tokens and --tls-* do not apply"
                .into(),
        );
    }
    tracing::info!(
        addr = %engine.local_addr(),
        backend = ?engine.backend(),
        workers = engine.workers(),
        "serving"
    );
    println!(
        "dcengine serving on {} with {} worker(s) on the {:?} backend (Ctrl-C to stop)",
        engine.local_addr(),
        engine.workers(),
        engine.backend()
    );

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| e.to_string())?;
    }
    while !stop.load(Ordering::Relaxed) {
        // Signals interrupt nothing here, so look at the flag a few times a
        // second; events are printed as they come.
        std::thread::sleep(Duration::from_millis(200));
        for event in engine.events().map_err(|e| e.to_string())? {
            if let Some(line) = membership(&event) {
                println!("{line}");
            } else {
                println!("{event:?}");
            }
        }
    }
    println!("shutting down: draining for up to {} s", args.drain);
    shut_down(engine, Duration::from_secs(args.drain));
    Ok(())
}

/// A line for a join, a leave or a refused join; `None` for other events.
fn membership(event: &HubEvent) -> Option<String> {
    match event {
        HubEvent::ParticipantJoined {
            call_id,
            participant_id,
            member,
        } => Some(format!("+ {participant_id} joined {call_id} as {member}")),
        HubEvent::ParticipantLeft {
            call_id,
            participant_id,
            reason,
            ..
        } => Some(format!("- {participant_id} left {call_id} ({reason})")),
        HubEvent::JoinRejected {
            remote,
            call_id,
            participant_id,
            rejection,
        } => Some(format!(
            "! {participant_id}@{remote} refused for {call_id}: {}",
            rejection.reason
        )),
        _ => None,
    }
}

/// Shuts `engine` down, letting queued messages drain for `drain`. The
/// signalling endpoint holds it only while it answers an offer (at most a
/// second is waited for that); if it is still shared then, dropping it
/// shuts it down with a short deadline.
fn shut_down(engine: Arc<Engine>, drain: Duration) {
    let mut engine = engine;
    for _ in 0..50 {
        match Arc::try_unwrap(engine) {
            Ok(e) => {
                e.shutdown(drain);
                return;
            }
            Err(shared) => {
                engine = shared;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    tracing::warn!(
        "the engine is still in use by the signalling endpoint: stopping it without draining"
    );
}

/// Starts the signalling endpoint for `engine` on `addr` and says so: its
/// URL, and loudly, demo tokens.
fn start_signalling(
    engine: &Arc<Engine>,
    addr: SocketAddr,
    config: &crate::signal::Config,
) -> Result<crate::signal::Endpoint, String> {
    let endpoint = crate::signal::serve(engine, addr, config)?;
    let url = endpoint.url();
    tracing::info!(
        http = %endpoint.addr,
        %url,
        tls = endpoint.tls,
        cors = ?config.cors_origins,
        web = ?config.web,
        "signalling at POST {url}/v1/calls/{{call}}/join"
    );
    if config.web.is_some() {
        println!("web root at {url}/");
    }
    if config.demo_tokens.is_some() {
        tracing::warn!(
            "--demo-tokens: INSECURE, POST {url}/v1/calls/{{call}}/token hands anyone a token to join any call as anyone; for demos and tests only"
        );
    }
    Ok(endpoint)
}

/// The certificate `serve` runs DTLS with: the files given, or a new
/// self-signed one.
fn server_certificate(args: &ServeArgs) -> Result<dcengine::Certificate, String> {
    match (&args.dtls_cert, &args.dtls_key) {
        (Some(cert), Some(key)) => {
            let read =
                |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            Ok(dcengine::Certificate::from_der(read(cert)?, read(key)?))
        }
        _ => dcengine::Certificate::generate().map_err(|e| e.to_string()),
    }
}

pub(crate) fn token(args: &TokenArgs) -> Result<(), String> {
    let expires = unix_now().as_secs() + args.ttl;
    let token = mint_token(
        args.secret.as_bytes(),
        &args.call,
        &args.participant,
        expires,
    )
    .map_err(|e| e.to_string())?;
    if args.ttl > 24 * 60 * 60 {
        eprintln!(
            "note: a server refuses a token valid for more than its --max-token-lifetime (by default 86400 s)"
        );
    }
    println!("{}", hex(&token));
    Ok(())
}

pub(crate) fn chat(args: &ChatArgs) -> Result<(), String> {
    if args.host {
        return chat_host(args);
    }
    if args.endpoint.any() {
        return Err(
            "--cors-origin, --web, --demo-tokens and --tls-* configure the endpoint of a host: add --host"
                .into(),
        );
    }
    let token = match (&args.token, &args.secret) {
        (Some(t), _) => unhex(t).ok_or("the token must be hex, as `dcengine token` prints it")?,
        (None, Some(secret)) => mint_token(
            secret.as_bytes(),
            &args.call,
            &args.participant,
            unix_now().as_secs() + 3600,
        )
        .map_err(|e| e.to_string())?,
        (None, None) => return Err("give --token, or --secret to make one".into()),
    };
    let mut hub = HubConfig::client();
    if !args.insecure_plaintext {
        hub = hub.dtls(dcengine::Certificate::generate().map_err(|e| e.to_string())?);
    }
    let engine = Engine::builder()
        .bind(
            if args.server.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            }
            .parse()
            .map_err(|e| format!("{e}"))?,
        )
        .hub(hub)
        .start()
        .map_err(|e| e.to_string())?;
    let call = if args.insecure_plaintext {
        engine.join_remote(args.server, &args.call, &args.participant, token)
    } else {
        // The offer goes to the server's signalling endpoint; its answer
        // says where to send ICE checks, and which certificate to expect.
        let http = args.http.unwrap_or(args.server);
        let t = token.clone();
        engine.join_signalled(&args.call, &args.participant, token, |offer| {
            crate::signal::request_answer(http, &args.call, &args.participant, &t, offer)
        })
    }
    .map_err(|e| e.to_string())?;
    if !pollster_ready(&call) {
        return Err(match call.state() {
            CallState::Ended(reason) => format!("could not join: {reason}"),
            _ => "could not join".into(),
        });
    }
    chat_loop(args, &call, || {})?;
    call.leave();
    engine.shutdown(Duration::from_secs(2));
    Ok(())
}

/// `dcengine chat --host`: hosts the call in an engine of our own, joins it
/// locally, serves the signalling endpoint for the others, and chats.
fn chat_host(args: &ChatArgs) -> Result<(), String> {
    init_logging(tracing::Level::INFO);
    let secret = args.secret.as_deref().ok_or(
        "--host needs --secret (or DCENGINE_SECRET): the joining peers' tokens are checked with it",
    )?;
    let http = args
        .http
        .ok_or("--host needs --http ADDR to serve signalling on")?;
    let bind = args.bind.unwrap_or_else(|| any_address(http));
    let hosted = host_call(
        &args.call,
        &args.participant,
        secret,
        bind,
        http,
        &args.endpoint,
    )?;
    println!(
        "hosting {} as {} on UDP {}; others join at {}{} (token from `dcengine token --call {}` with the same secret{})",
        args.call,
        args.participant,
        hosted.engine.local_addr(),
        hosted.endpoint.url(),
        crate::signal::join_path(&args.call),
        args.call,
        if args.endpoint.demo_tokens {
            ", or POST /v1/calls/{call}/token"
        } else {
            ""
        },
    );
    let engine = hosted.engine.clone();
    chat_loop(args, &hosted.call, || {
        if let Ok(events) = engine.events() {
            for line in events.iter().filter_map(membership) {
                println!("{line}");
            }
        }
    })?;
    drop(engine);
    hosted.call.leave();
    shut_down(hosted.engine, Duration::from_secs(2));
    Ok(())
}

/// The unspecified address of `like`'s family, port 0.
fn any_address(like: SocketAddr) -> SocketAddr {
    if like.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

/// A call hosted by `dcengine chat --host`.
struct Hosted {
    /// The engine the call lives in (one worker: a chat is small).
    engine: Arc<Engine>,
    /// The host's own membership.
    call: dcengine::Call,
    /// Where the others post their offers.
    endpoint: crate::signal::Endpoint,
}

/// Starts an engine on `bind` (ICE-lite, DTLS with a fresh certificate,
/// tokens checked with `secret`), joins `participant` to `call_id` in it
/// and serves signalling for it on `http`.
fn host_call(
    call_id: &str,
    participant: &str,
    secret: &str,
    bind: SocketAddr,
    http: SocketAddr,
    options: &crate::signal::HttpArgs,
) -> Result<Hosted, String> {
    let clock = WallClock::new(Instant::now(), unix_now());
    let verifier =
        HmacVerifier::new(secret.as_bytes(), clock).map_err(|e| format!("--secret: {e}"))?;
    let certificate = dcengine::Certificate::generate().map_err(|e| e.to_string())?;
    let engine = Arc::new(
        Engine::builder()
            .bind(bind)
            .workers(1)
            .hub(HubConfig::server(Arc::new(verifier)).dtls(certificate))
            .start()
            .map_err(|e| format!("cannot host on {bind}: {e}"))?,
    );
    let call = engine
        .join_local(call_id, participant)
        .map_err(|e| format!("cannot join {call_id} locally: {e}"))?;
    // The verifier's default lifetime cap is a day: a demo token's hour is
    // within it.
    let config = options.config(secret.as_bytes(), Duration::from_secs(24 * 60 * 60));
    let endpoint = start_signalling(&engine, http, &config)?;
    Ok(Hosted {
        engine,
        call,
        endpoint,
    })
}

/// The chat itself: prints who is here and what others send on channel
/// 10000, sends each line typed, until stdin ends or the call does;
/// `on_tick` runs a few times a second.
fn chat_loop(
    args: &ChatArgs,
    call: &dcengine::Call,
    mut on_tick: impl FnMut(),
) -> Result<(), String> {
    let others: Vec<String> = call
        .participants()
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "joined {} as {}; others here: [{}]",
        args.call,
        args.participant,
        others.join(", ")
    );
    println!("type a line and Enter to send it to everyone; Ctrl-D to leave");

    // Print what others send, as it arrives (the seeds' messageReady).
    call.data_channel().on_receiver_created(|receiver| {
        if receiver.channel_id() != CHAT_CHANNEL {
            return;
        }
        let r = receiver.clone();
        receiver.on_message_ready(move || {
            while let Some(m) = r.read_message() {
                println!("{}: {}", r.sender_id(), String::from_utf8_lossy(&m.data));
            }
        });
        let r = receiver.clone();
        receiver.on_close(move || println!("({} stopped sending)", r.sender_id()));
    });
    let sender = call
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(CHAT_CHANNEL),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;

    let (lines, typed) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        match typed.recv_timeout(Duration::from_millis(250)) {
            Ok(line) => {
                if let Err(e) = sender.send(Bytes::from(line)) {
                    println!("(not sent: {e})");
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                on_tick();
                if let CallState::Ended(reason) = call.state() {
                    println!("(the call ended: {reason})");
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

/// Waits (at most 10 s) for the join to complete.
pub(crate) fn pollster_ready(call: &dcengine::Call) -> bool {
    let (tx, rx) = mpsc::channel();
    let c = call.clone();
    std::thread::spawn(move || {
        let _ = tx.send(futures_ready(c));
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap_or(false)
}

fn futures_ready(call: dcengine::Call) -> bool {
    // A tiny executor: park this thread until the future's waker unparks it.
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(call.ready());
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Bytes> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
        .map(Bytes::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What arrives on the chat channel of `call`: (sender, text).
    fn heard(call: &dcengine::Call) -> mpsc::Receiver<(String, String)> {
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        call.data_channel().on_receiver_created(move |receiver| {
            if receiver.channel_id() != CHAT_CHANNEL {
                return;
            }
            let r = receiver.clone();
            let tx = tx.lock().map(|tx| tx.clone());
            let Ok(tx) = tx else { return };
            receiver.on_message_ready(move || {
                while let Some(m) = r.read_message() {
                    let text = String::from_utf8_lossy(&m.data).into_owned();
                    let _ = tx.send((r.sender_id().to_string(), text));
                }
            });
        });
        rx
    }

    fn chat_sender(call: &dcengine::Call) -> dcengine::DataChannelSender {
        call.data_channel()
            .create_sender(DataChannelSenderOptions {
                channel_id: Some(CHAT_CHANNEL),
                ..Default::default()
            })
            .expect("a chat sender")
    }

    #[test]
    fn a_peer_joins_a_chat_host_directly_and_both_hear_each_other() {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let options = crate::signal::HttpArgs {
            demo_tokens: true,
            ..Default::default()
        };
        let hosted =
            host_call("room", "host", "host secret", loopback, loopback, &options).expect("hosts");
        let host_heard = heard(&hosted.call);
        let http = hosted.endpoint.addr;

        // A token from the host's own demo route, as the demo page gets it.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        let reply: crate::signal::TokenReply = agent
            .post(&format!("http://{http}/v1/calls/room/token"))
            .send_json(crate::signal::TokenBody {
                participant: "guest".into(),
            })
            .expect("a token")
            .body_mut()
            .read_json()
            .expect("JSON");
        let token = unhex(&reply.token).expect("hex");

        let guest = Engine::builder()
            .hub(HubConfig::client().dtls(dcengine::Certificate::generate().expect("a cert")))
            .start()
            .expect("a guest");
        let call = guest
            .join_signalled("room", "guest", token.clone(), |offer| {
                crate::signal::request_answer(http, "room", "guest", &token, offer)
            })
            .expect("joins the host");
        assert!(pollster_ready(&call), "joined the host peer to peer");
        let guest_heard = heard(&call);
        assert!(
            call.participants().iter().any(|p| p.to_string() == "host"),
            "the host is in the call: {:?}",
            call.participants()
        );

        chat_sender(&call).send("hi host").expect("sent");
        let got = host_heard
            .recv_timeout(Duration::from_secs(10))
            .expect("the host hears the guest");
        assert_eq!(got, ("guest".to_owned(), "hi host".to_owned()));
        chat_sender(&hosted.call).send("hi guest").expect("sent");
        let got = guest_heard
            .recv_timeout(Duration::from_secs(10))
            .expect("the guest hears the host");
        assert_eq!(got, ("host".to_owned(), "hi guest".to_owned()));
    }
}
