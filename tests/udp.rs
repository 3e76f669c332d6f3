//! The engine over real UDP on loopback: a server engine and client
//! engines, each with its own worker thread and socket.
//!
//! Every scenario runs once per I/O backend (`uring_*` and `portable_*`
//! tests). Where io_uring is unavailable (an old kernel, a seccomp profile
//! such as Docker's default), the io_uring variants print why and skip.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcengine::auth::{HmacVerifier, WallClock, mint_token};
use dcengine::datachannel::{
    Call, CallState, DataChannelError, DataChannelSenderOptions, ParticipantId, TrafficPolicy,
};
use dcengine::hub::HubConfig;
use dcengine::runtime::{Backend, Engine, EngineError};

const SECRET: &[u8] = b"udp test secret";
const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` to completion on its own thread; panics if it takes longer than
/// `LIMIT` (a hung test fails instead of hanging CI).
fn within<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(pollster::block_on(f));
    });
    rx.recv_timeout(LIMIT).expect("did not finish in time")
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// Whether `backend` can run here; prints why not (the test then skips).
fn available(backend: Backend) -> bool {
    match Engine::builder().backend(backend).start() {
        Ok(e) => {
            assert_eq!(e.backend(), backend, "an explicit backend is not replaced");
            true
        }
        Err(EngineError::Unavailable { reason, .. }) => {
            println!("skipped: the {backend:?} backend is unavailable here: {reason}");
            false
        }
        Err(e) => panic!("{backend:?} engine: {e}"),
    }
}

/// One test per backend for each scenario `fn name(backend: Backend)`.
macro_rules! per_backend {
    ($($name:ident),* $(,)?) => {
        mod uring {
            $(
                #[test]
                fn $name() {
                    if super::available(super::Backend::IoUring) {
                        super::$name(super::Backend::IoUring);
                    }
                }
            )*
        }
        mod portable {
            $(
                #[test]
                fn $name() {
                    super::$name(super::Backend::Portable);
                }
            )*
        }
    };
}

per_backend!(
    chat_and_durable_stream_over_loopback_udp,
    a_bad_token_is_refused_over_udp,
    server_shutdown_ends_the_clients_calls,
    peer_to_peer_over_udp,
    a_gso_burst_arrives_complete_and_in_order,
    clients_leave_and_shut_down_then_the_server_shuts_down_promptly,
    the_server_shuts_down_then_the_clients_shut_down_promptly,
    everyone_shuts_down_at_once_promptly,
);

fn server(backend: Backend) -> Engine {
    let clock = WallClock::new(Instant::now(), unix_now());
    // Bulk streams here: no traffic rules (their tests run on the simulator).
    let mut config = HubConfig::server(Arc::new(HmacVerifier::new(SECRET, clock)));
    config.channel.traffic = TrafficPolicy::unlimited();
    let server = Engine::builder()
        .backend(backend)
        .hub(config)
        .start()
        .expect("server starts");
    assert_eq!(server.backend(), backend);
    server
}

fn join(server: &Engine, call: &str, who: &str) -> (Engine, Call) {
    let mut config = HubConfig::client();
    config.channel.traffic = TrafficPolicy::unlimited();
    let client = Engine::builder()
        .backend(server.backend())
        .hub(config)
        .start()
        .expect("client starts");
    let token = mint_token(SECRET, call, who, unix_now().as_secs() + 600).expect("token");
    let c = client
        .join_remote(server.local_addr(), call, who, token)
        .expect("join starts");
    (client, c)
}

fn chat() -> DataChannelSenderOptions {
    DataChannelSenderOptions {
        channel_id: Some(10000),
        ..Default::default()
    }
}

fn chat_and_durable_stream_over_loopback_udp(backend: Backend) {
    let server = server(backend);
    let people: Vec<(Engine, Call)> = ["alice", "bob", "carol"]
        .iter()
        .map(|w| join(&server, "call", w))
        .collect();
    for (_, call) in &people {
        let c = call.clone();
        assert!(within(async move { c.ready().await }), "joined");
    }
    let alice = people[0].1.clone();
    let hello = alice.data_channel().create_sender(chat()).expect("sender");
    hello.send("hello everyone").expect("send");
    for (_, call) in &people[1..] {
        let dc = call.data_channel();
        let (sender, text) = within(async move {
            let r = dc.next_receiver().await.expect("a receiver");
            let m = r.recv().await.expect("a message");
            (
                r.sender_id().clone(),
                String::from_utf8_lossy(&m.data).into_owned(),
            )
        });
        assert_eq!(sender, ParticipantId::from("alice"));
        assert_eq!(text, "hello everyone");
    }

    // A Durable stream from bob to carol only: complete and in order.
    let bob = people[1].1.clone();
    let stream = bob
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(7),
            participants: vec![ParticipantId::from("carol")],
            bitrate_kbps: 0,
            ..Default::default()
        })
        .expect("sender");
    for i in 0..1000u32 {
        let mut m = i.to_be_bytes().to_vec();
        m.resize(100, 0);
        stream.send(m).expect("send");
    }
    stream.close();
    let carol = people[2].1.data_channel();
    let got = within(async move {
        let r = carol.next_receiver().await.expect("a receiver");
        let mut seqs = Vec::new();
        while let Some(m) = r.recv().await {
            assert_eq!(&m.data[..4], &(m.sequence_number - 1).to_be_bytes());
            seqs.push(m.sequence_number);
        }
        seqs
    });
    assert_eq!(got, (1..=1000).collect::<Vec<_>>());
    assert!(
        people[0].1.data_channel().try_next_receiver().is_none(),
        "alice was not addressed"
    );
}

fn a_bad_token_is_refused_over_udp(backend: Backend) {
    let server = server(backend);
    let client = Engine::builder().backend(backend).start().expect("client");
    let forged = mint_token(
        b"not the secret",
        "call",
        "mallory",
        unix_now().as_secs() + 600,
    )
    .expect("token");
    let call = client
        .join_remote(server.local_addr(), "call", "mallory", forged)
        .expect("join starts");
    let c = call.clone();
    assert!(!within(async move { c.ready().await }));
    assert!(matches!(call.state(), CallState::Ended(r) if r.contains("not valid")));
}

fn server_shutdown_ends_the_clients_calls(backend: Backend) {
    let server = server(backend);
    let (_a, alice) = join(&server, "call", "alice");
    let (_b, bob) = join(&server, "call", "bob");
    for c in [&alice, &bob] {
        let c = c.clone();
        assert!(within(async move { c.ready().await }));
    }
    server.shutdown(Duration::from_secs(2));
    for c in [alice, bob] {
        let waiter = c.clone();
        within(async move { waiter.ended().await });
        assert!(
            matches!(c.state(), CallState::Ended(r) if r.contains("shutting down")),
            "{:?}",
            c.state()
        );
    }
}

fn peer_to_peer_over_udp(backend: Backend) {
    let host = server(backend);
    let alice = host.join_local("p2p", "alice").expect("hosted");
    let (_b, bob) = join(&host, "p2p", "bob");
    let b = bob.clone();
    assert!(within(async move { b.ready().await }));
    bob.data_channel()
        .create_sender(chat())
        .expect("sender")
        .send("hi alice")
        .expect("send");
    let dc = alice.data_channel();
    let text = within(async move {
        let r = dc.next_receiver().await.expect("a receiver");
        r.recv().await.expect("a message").data
    });
    assert_eq!(&text[..], b"hi alice");
}

/// A burst of 2,000 Durable 1,000-byte messages: the sender's packets are
/// MTU-sized and go out in GSO batches (and may come in as GRO trains); all
/// of them must arrive, in order and intact.
fn a_gso_burst_arrives_complete_and_in_order(backend: Backend) {
    const COUNT: u32 = 2000;
    let server = server(backend);
    let (_a, alice) = join(&server, "burst", "alice");
    let (_b, bob) = join(&server, "burst", "bob");
    for c in [&alice, &bob] {
        let c = c.clone();
        assert!(within(async move { c.ready().await }));
    }
    let sender = alice
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(3),
            participants: vec![ParticipantId::from("bob")],
            bitrate_kbps: 0,
            ..Default::default()
        })
        .expect("sender");
    let receiving = bob.data_channel();
    let got = std::thread::spawn(move || {
        within(async move {
            let r = receiving.next_receiver().await.expect("a receiver");
            let mut seqs = Vec::new();
            while let Some(m) = r.recv().await {
                let i = m.sequence_number - 1;
                assert_eq!(m.data.len(), 1000);
                assert_eq!(&m.data[..4], &i.to_be_bytes());
                assert!(m.data[4..].iter().all(|&b| b == i as u8), "payload intact");
                seqs.push(m.sequence_number);
            }
            seqs
        })
    });
    let mut sent = 0u32;
    while sent < COUNT {
        let mut m = vec![sent as u8; 1000];
        m[..4].copy_from_slice(&sent.to_be_bytes());
        match sender.send(m) {
            Ok(()) => sent += 1,
            // The sender's queue is bounded: wait until it drains.
            Err(DataChannelError::MessageFailureForBandwidth) => {
                let s = sender.clone();
                within(async move { s.writable().await }).expect("still open");
            }
            Err(e) => panic!("{e}"),
        }
    }
    sender.close();
    let got = got.join().expect("receiver thread");
    assert_eq!(got, (1..=COUNT).collect::<Vec<_>>());
}

/// Deadline given to every `shutdown` in the shutdown scenarios.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);
/// A shutdown whose peers are alive (or already gone cleanly) must return
/// well before its deadline: this is a behaviour check with a wide margin
/// (a graceful close takes a few round trips), not a performance bound.
const PROMPT: Duration = Duration::from_secs(2);

/// Shuts `engine` down with [`SHUTDOWN_DEADLINE`] and checks it returned
/// within [`PROMPT`].
fn shut_down_promptly(who: &str, engine: Engine) {
    let started = Instant::now();
    engine.shutdown(SHUTDOWN_DEADLINE);
    let took = started.elapsed();
    println!("{who}: shutdown took {took:?}");
    assert!(
        took < PROMPT,
        "{who}: shutdown took {took:?} (deadline {SHUTDOWN_DEADLINE:?})"
    );
}

/// A server and two clients in one call, joined.
fn a_call_of_two(backend: Backend) -> (Engine, Vec<(Engine, Call)>) {
    let server = server(backend);
    let people: Vec<(Engine, Call)> = ["alice", "bob"]
        .iter()
        .map(|w| join(&server, "call", w))
        .collect();
    for (_, call) in &people {
        let c = call.clone();
        assert!(within(async move { c.ready().await }), "joined");
    }
    // One message through the server, so the associations have carried
    // data; the sender is dropped on return, so its close is still in
    // flight when the shutdowns start.
    let sender = people[0]
        .1
        .data_channel()
        .create_sender(chat())
        .expect("sender");
    sender.send("before the shutdown").expect("send");
    let dc = people[1].1.data_channel();
    within(async move {
        let r = dc.next_receiver().await.expect("a receiver");
        r.recv().await.expect("a message")
    });
    (server, people)
}

/// The demo's order: the clients leave their calls and shut down (their
/// leave and close cross the server's close of their associations), then
/// the server shuts down.
fn clients_leave_and_shut_down_then_the_server_shuts_down_promptly(backend: Backend) {
    let (server, people) = a_call_of_two(backend);
    for (i, (engine, call)) in people.into_iter().enumerate() {
        call.leave();
        shut_down_promptly(&format!("client {i}"), engine);
    }
    shut_down_promptly("server", server);
}

/// The reverse order: the server shuts down first (its members are told
/// and their associations closed), then the clients.
fn the_server_shuts_down_then_the_clients_shut_down_promptly(backend: Backend) {
    let (server, people) = a_call_of_two(backend);
    shut_down_promptly("server", server);
    for (i, (engine, call)) in people.into_iter().enumerate() {
        let waiter = call.clone();
        within(async move { waiter.ended().await });
        shut_down_promptly(&format!("client {i}"), engine);
    }
}

/// Every engine shuts down at the same moment: SHUTDOWNs cross.
fn everyone_shuts_down_at_once_promptly(backend: Backend) {
    let (server, people) = a_call_of_two(backend);
    let mut engines = vec![("server".to_owned(), server)];
    for (i, (engine, _call)) in people.into_iter().enumerate() {
        engines.push((format!("client {i}"), engine));
    }
    let threads: Vec<_> = engines
        .into_iter()
        .map(|(who, engine)| std::thread::spawn(move || shut_down_promptly(&who, engine)))
        .collect();
    for t in threads {
        t.join().expect("shut down promptly");
    }
}

#[test]
fn auto_falls_back_to_portable_when_io_uring_is_disabled() {
    let clock = WallClock::new(Instant::now(), unix_now());
    let server = Engine::builder()
        .disable_io_uring()
        .server(Arc::new(HmacVerifier::new(SECRET, clock)))
        .start()
        .expect("server starts");
    assert_eq!(server.backend(), Backend::Portable);
    let (_a, alice) = join(&server, "call", "alice");
    let (_b, bob) = join(&server, "call", "bob");
    for c in [&alice, &bob] {
        let c = c.clone();
        assert!(within(async move { c.ready().await }));
    }
    alice
        .data_channel()
        .create_sender(chat())
        .expect("sender")
        .send("over the fallback")
        .expect("send");
    let dc = bob.data_channel();
    let text = within(async move {
        let r = dc.next_receiver().await.expect("a receiver");
        r.recv().await.expect("a message").data
    });
    assert_eq!(&text[..], b"over the fallback");
}

#[test]
fn io_uring_asked_for_but_disabled_is_an_error() {
    let e = Engine::builder()
        .backend(Backend::IoUring)
        .disable_io_uring()
        .start()
        .expect_err("io_uring is disabled");
    assert!(
        matches!(
            e,
            EngineError::Unavailable {
                backend: Backend::IoUring,
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn auto_picks_a_concrete_backend() {
    let engine = Engine::builder().start().expect("starts");
    assert_ne!(engine.backend(), Backend::Auto);
    if available(Backend::IoUring) {
        assert_eq!(engine.backend(), Backend::IoUring);
    }
}
