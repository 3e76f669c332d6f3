//! Calls over DTLS through engines on loopback UDP: a two-worker server
//! and client engines, each with its own certificate, told each other's
//! fingerprints as signalling would.

#[path = "common/udp.rs"]
mod udp_common;

use std::net::UdpSocket;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dcengine::hub::HubConfig;
use dcengine::{
    Call, CallState, Certificate, ChannelConfig, DataChannelSenderOptions, Engine, HmacVerifier,
    TrafficPolicy, WallClock, mint_token,
};
use udp_common::{unix_now, within};

const SECRET: &[u8] = b"dtls udp test secret";

fn certs() -> &'static [Certificate; 4] {
    static C: OnceLock<[Certificate; 4]> = OnceLock::new();
    C.get_or_init(|| std::array::from_fn(|_| Certificate::generate().expect("a certificate")))
}

fn unlimited() -> ChannelConfig {
    ChannelConfig::default().traffic(TrafficPolicy::unlimited())
}

fn server(workers: usize) -> Engine {
    let clock = WallClock::new(Instant::now(), unix_now());
    let config = HubConfig::server(Arc::new(
        HmacVerifier::new(SECRET, clock).expect("a secret"),
    ))
    .dtls(certs()[0].clone())
    .channel(unlimited());
    let server = Engine::builder()
        .workers(workers)
        .hub(config)
        .start()
        .expect("server starts");
    assert_eq!(server.dtls_fingerprint(), Some(certs()[0].fingerprint()));
    server
}

/// A client engine with certificate `cert` joining `call` as `who`; the
/// server is told to expect it (what an ICE check and the offer would
/// tell it) unless `expected` is false.
fn join(server: &Engine, cert: usize, call: &str, who: &str, expected: bool) -> (Engine, Call) {
    let client = Engine::builder()
        .hub(
            HubConfig::client()
                .dtls(certs()[cert].clone())
                .channel(unlimited()),
        )
        .start()
        .expect("client starts");
    if expected {
        server
            .allow_dtls_peer(client.local_addr(), certs()[cert].fingerprint())
            .expect("told");
    }
    client
        .trust_dtls_server(server.local_addr(), certs()[0].fingerprint())
        .expect("told");
    let token = mint_token(SECRET, call, who, unix_now().as_secs() + 600).expect("token");
    let c = client
        .join_remote(server.local_addr(), call, who, token)
        .expect("join starts");
    (client, c)
}

#[test]
fn a_durable_stream_at_full_speed_over_dtls_arrives_whole_and_in_order() {
    let server = server(2);
    let (_a, alice) = join(&server, 1, "call", "alice", true);
    let (_b, bob) = join(&server, 2, "call", "bob", true);
    for c in [&alice, &bob] {
        let c = c.clone();
        assert!(within(async move { c.ready().await }), "joined over DTLS");
    }
    let stream = alice
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(7),
            bitrate_kbps: 0,
            ..Default::default()
        })
        .expect("sender");
    const N: u32 = 5000;
    let sending = std::thread::spawn(move || {
        for i in 0..N {
            let mut m = i.to_be_bytes().to_vec();
            m.resize(if i % 7 == 0 { 1200 } else { 100 }, 0);
            pollster::block_on(stream.writable()).expect("writable");
            stream.send(m).expect("send");
        }
        stream.close();
    });
    let dc = bob.data_channel();
    let got = within(async move {
        let r = dc.next_receiver().await.expect("a receiver");
        let mut n = 0u32;
        while let Some(m) = r.recv().await {
            assert_eq!(m.sequence_number, n + 1);
            assert_eq!(&m.data[..4], &n.to_be_bytes());
            n += 1;
        }
        n
    });
    sending.join().expect("sender thread");
    assert_eq!(got, N);
    let stats = server.stats().expect("stats");
    assert_eq!(stats.dtls_handshakes, 2);
    assert_eq!(stats.dtls_failures, 0);
}

#[test]
fn a_client_the_server_does_not_expect_gets_no_answer() {
    let server = server(1);
    let (_c, stranger) = join(&server, 3, "call", "stranger", false);
    // The client's handshake gives up (dimpl's retransmissions) and its
    // call ends; the server never answered.
    let s = stranger.clone();
    let ended = within(async move {
        s.ready().await;
        s.state()
    });
    assert!(matches!(ended, CallState::Ended(_)), "{ended:?}");
    let stats = server.stats().expect("stats");
    assert!(stats.dtls_dropped >= 1, "{stats:?}");
    assert_eq!(stats.dtls_handshakes, 0);
    assert_eq!(stats.joins_accepted, 0);
}

#[test]
fn plain_sctp_and_junk_get_nothing_from_a_dtls_server() {
    let server = server(1);
    let probe = UdpSocket::bind("127.0.0.1:0").expect("a socket");
    probe
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    // An SCTP INIT as a plain client would send it (common header, INIT
    // chunk), and some junk.
    let mut init = vec![0x13, 0x88, 0x13, 0x88, 0, 0, 0, 0, 0, 0, 0, 0];
    init.extend_from_slice(&[
        1, 0, 0, 20, 1, 2, 3, 4, 0, 1, 0, 0, 0, 16, 0, 16, 9, 9, 9, 9,
    ]);
    for d in [&init[..], &[0xff; 100], &[22; 40]] {
        probe.send_to(d, server.local_addr()).expect("sent");
    }
    let mut buf = [0u8; 2048];
    assert!(probe.recv_from(&mut buf).is_err(), "no answer");
    let stats = server.stats().expect("stats");
    assert_eq!(stats.dtls_dropped, 3, "{stats:?}");
    assert_eq!(stats.inits_answered, 0);
}

/// The WebRTC way over real UDP: the client's offer reaches the server's
/// `accept_offer` through the application (here, a direct call), then ICE
/// checks, DTLS, SCTP and the join, on a two-worker server.
#[test]
fn clients_join_by_offer_and_answer_over_udp() {
    let server = Arc::new(server(2));
    let mut calls = Vec::new();
    let mut engines = Vec::new();
    for (i, who) in ["alice", "bob"].into_iter().enumerate() {
        let client = Engine::builder()
            .hub(
                HubConfig::client()
                    .dtls(certs()[i + 1].clone())
                    .channel(unlimited()),
            )
            .start()
            .expect("client starts");
        let token = mint_token(SECRET, "call", who, unix_now().as_secs() + 600).expect("token");
        let s = server.clone();
        let t = token.clone();
        let call = client
            .join_signalled("call", who, token, |offer| {
                s.accept_offer(offer, "call", who, &t)
            })
            .expect("joins");
        engines.push(client);
        calls.push(call);
    }
    for c in &calls {
        let c = c.clone();
        assert!(within(async move { c.ready().await }), "joined");
    }
    let s = calls[0]
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(9),
            ..Default::default()
        })
        .expect("sender");
    s.send("over ICE and DTLS").expect("send");
    let dc = calls[1].data_channel();
    let text = within(async move {
        let r = dc.next_receiver().await.expect("a receiver");
        let m = r.recv().await.expect("a message");
        String::from_utf8_lossy(&m.data).into_owned()
    });
    assert_eq!(text, "over ICE and DTLS");
    // A forged token gets no answer at all.
    let err = server
        .accept_offer("v=0\r\n", "call", "mallory", b"forged")
        .expect_err("refused");
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(server.stats().expect("stats").dtls_handshakes, 2);
}

/// A client engine with certificate `cert` joining "call" as `who` by
/// offer and answer on `server`; the answer names `via` (a NAT in front of
/// the server) as its candidate, or the server itself. Waits for the join.
fn join_signalled(
    server: &Arc<Engine>,
    cert: usize,
    who: &str,
    via: Option<std::net::SocketAddr>,
) -> (Engine, Call) {
    let engine = Engine::builder()
        .hub(
            HubConfig::client()
                .dtls(certs()[cert].clone())
                .channel(unlimited()),
        )
        .start()
        .expect("client starts");
    let token = mint_token(SECRET, "call", who, unix_now().as_secs() + 600).expect("token");
    let (s, t) = (server.clone(), token.clone());
    let call = engine
        .join_signalled("call", who, token, |offer| match via {
            Some(nat) => s.accept_offer_at(offer, &[nat], "call", who, &t),
            None => s.accept_offer(offer, "call", who, &t),
        })
        .expect("joins");
    assert!(call.wait_ready(Duration::from_secs(10)), "{who} joined");
    (engine, call)
}

/// Alice (joined by offer and answer, over ICE and DTLS) sends 2,000
/// Durable messages and at once ends her call with `end`: Bob gets every
/// one, in order. The DTLS session under her association closes only once
/// SCTP has delivered what was queued.
fn delivered_over_dtls_after(end: impl FnOnce(Engine, &Call)) {
    let server = Arc::new(server(2));
    let (alice_engine, alice) = join_signalled(&server, 1, "alice", None);
    let (_bob_engine, bob) = join_signalled(&server, 2, "bob", None);
    let sender = alice
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(3),
            bitrate_kbps: 0,
            ..Default::default()
        })
        .expect("sender");
    for i in 0..2_000u32 {
        sender.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    end(alice_engine, &alice);
    let rx = bob
        .data_channel()
        .next_receiver_timeout(Duration::from_secs(10))
        .expect("announced");
    let mut seqs = Vec::new();
    while let Some(m) = rx.recv_timeout(Duration::from_secs(10)) {
        seqs.push(m.sequence_number);
    }
    assert_eq!(seqs, (1..=2_000).collect::<Vec<u32>>());
}

#[test]
fn a_leave_over_dtls_delivers_what_was_accepted() {
    delivered_over_dtls_after(|engine, call| {
        call.leave();
        assert!(call.wait_left(Duration::from_secs(10)), "left");
        drop(engine);
    });
}

#[test]
fn an_engine_shutting_down_over_dtls_delivers_what_it_accepted() {
    delivered_over_dtls_after(|engine, call| {
        engine.shutdown(Duration::from_secs(10));
        assert!(call.wait_left(Duration::ZERO), "done once shut down");
    });
}

/// A NAT between a client and the server, on loopback: the client talks to
/// `inner`; what it sends leaves from `outer` to the server, and what the
/// server sends to `outer` goes back to the client. `rebind` replaces
/// `outer` with a socket on a new port (the NAT's mapping changed):
/// datagrams to the old port are lost from then on.
struct Nat {
    inner: std::net::SocketAddr,
    rebind: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Nat {
    fn start(server: std::net::SocketAddr) -> Nat {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let inner = UdpSocket::bind("127.0.0.1:0").expect("inner socket");
        inner
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let inner_addr = inner.local_addr().expect("address");
        let rebind = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (rebind.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let outer_socket = || {
                let o = UdpSocket::bind("127.0.0.1:0").expect("outer socket");
                o.set_read_timeout(Some(Duration::from_millis(1)))
                    .expect("timeout");
                o
            };
            let mut outer = outer_socket();
            let mut rebinds = 0;
            let mut client = None;
            let mut buf = vec![0u8; 65_536];
            while !s.load(Ordering::Relaxed) {
                if r.load(Ordering::Relaxed) != rebinds {
                    rebinds = r.load(Ordering::Relaxed);
                    outer = outer_socket();
                }
                if let Ok((n, from)) = inner.recv_from(&mut buf) {
                    client = Some(from);
                    let _ = outer.send_to(&buf[..n], server);
                }
                if let Ok((n, _)) = outer.recv_from(&mut buf)
                    && let Some(c) = client
                {
                    let _ = inner.send_to(&buf[..n], c);
                }
            }
        });
        Nat {
            inner: inner_addr,
            rebind,
            stop,
            thread: Some(thread),
        }
    }

    fn rebind(&self) {
        self.rebind
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Alice reaches a two-worker server through a NAT whose mapping changes
/// mid-call (a new source port, which the kernel may hand to either
/// worker's socket): her next ICE consent check moves her DTLS session and
/// association to the new address (forwarded to the worker that hosts them
/// if it reached the other), and every Durable message both ways arrives,
/// in order, with no new handshake and nobody leaving.
#[test]
fn a_client_behind_a_rebinding_nat_keeps_its_call_on_a_two_worker_server() {
    let server = Arc::new(server(2));
    let nat = Nat::start(server.local_addr());
    let (_ae, alice) = join_signalled(&server, 1, "alice", Some(nat.inner));
    let (_be, bob) = join_signalled(&server, 2, "bob", None);
    let options = |channel| DataChannelSenderOptions {
        channel_id: Some(channel),
        bitrate_kbps: 0,
        ..Default::default()
    };
    let to_bob = alice
        .data_channel()
        .create_sender(options(5))
        .expect("sender");
    let to_alice = bob
        .data_channel()
        .create_sender(options(6))
        .expect("sender");
    const N: u32 = 200;
    for i in 1..=N {
        to_bob.send(i.to_be_bytes().to_vec()).expect("accepted");
        to_alice.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    let at_bob = bob
        .data_channel()
        .next_receiver_timeout(Duration::from_secs(10))
        .expect("announced at bob");
    let at_alice = alice
        .data_channel()
        .next_receiver_timeout(Duration::from_secs(10))
        .expect("announced at alice");
    let take = |rx: &dcengine::DataChannelReceiver, n: u32| {
        let mut got = Vec::new();
        while got.len() < n as usize {
            let m = rx
                .recv_timeout(udp_common::LIMIT)
                .unwrap_or_else(|| panic!("only {} of {n} arrived", got.len()));
            got.push(u32::from_be_bytes(m.data[..4].try_into().expect("4 bytes")));
        }
        got
    };
    assert_eq!(take(&at_bob, N), (1..=N).collect::<Vec<_>>());
    assert_eq!(take(&at_alice, N), (1..=N).collect::<Vec<_>>());
    nat.rebind();
    for i in N + 1..=2 * N {
        to_bob.send(i.to_be_bytes().to_vec()).expect("accepted");
        to_alice.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    assert_eq!(take(&at_bob, N), (N + 1..=2 * N).collect::<Vec<_>>());
    assert_eq!(take(&at_alice, N), (N + 1..=2 * N).collect::<Vec<_>>());
    assert_eq!(alice.state(), CallState::Joined);
    let stats = server.stats().expect("stats");
    assert_eq!(stats.peer_moves, 1, "{stats:?}");
    assert_eq!(stats.dtls_handshakes, 2, "no new handshake: {stats:?}");
}
