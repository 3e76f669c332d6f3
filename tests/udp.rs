//! The engine over real UDP on loopback: a server engine and client
//! engines, each with its own worker thread and socket.

use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcengine::auth::{HmacVerifier, WallClock, mint_token};
use dcengine::datachannel::{
    Call, CallState, DataChannelSenderOptions, ParticipantId, TrafficPolicy,
};
use dcengine::hub::HubConfig;
use dcengine::runtime::Engine;

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

fn server() -> Engine {
    let clock = WallClock::new(Instant::now(), unix_now());
    let mut config = HubConfig::server(Arc::new(HmacVerifier::new(SECRET, clock)));
    config.channel.traffic = TrafficPolicy::unlimited();
    Engine::builder()
        .hub(config)
        .start()
        .expect("server starts")
}

fn join(server: &Engine, call: &str, who: &str) -> (Engine, Call) {
    // Bulk streams here: no traffic rules (their tests run on the simulator).
    let mut config = HubConfig::client();
    config.channel.traffic = TrafficPolicy::unlimited();
    let client = Engine::builder()
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

#[test]
fn chat_and_durable_stream_over_loopback_udp() {
    let server = server();
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

#[test]
fn a_bad_token_is_refused_over_udp() {
    let server = server();
    let client = Engine::builder().start().expect("client");
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

#[test]
fn server_shutdown_ends_the_clients_calls() {
    let server = server();
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

#[test]
fn peer_to_peer_over_udp() {
    let host = server();
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
