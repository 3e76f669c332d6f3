//! How Durable sessions end (docs/architecture.md, "How a Durable session
//! ends"), and the promise across a leave and a shutdown: `send` returned `Ok`
//! ⇒ the message is delivered, in order, even when the sender leaves the
//! call (or its engine shuts down) right after.

mod common;
#[path = "common/udp.rs"]
mod udp_common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{SECRET, World, drain, receivers};
use dcengine::sim::LinkConfig;
use dcengine::{
    CallState, ChannelConfig, DataChannelError, DataChannelReliability, DataChannelSenderOptions,
    Engine, HmacVerifier, HubConfig, ReceiverCloseReason, TrafficPolicy, WallClock, mint_token,
};

fn durable(channel: u16) -> DataChannelSenderOptions {
    DataChannelSenderOptions::new()
        .channel_id(channel)
        .reliability(DataChannelReliability::Durable)
}

/// On main before this change, the messages queued at the leave were
/// dropped, and the call still read `Joined` until the hub's next turn.
#[test]
fn durable_messages_sent_just_before_leave_are_delivered() {
    let mut w = World::new(41, LinkConfig::with_latency(Duration::from_millis(20)));
    let calls = w.call_of("call", &["alice", "bob"]);
    let (alice, bob) = (&calls[0], &calls[1]);
    let sender = alice
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    for i in 0..200u32 {
        sender.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    alice.leave();
    // At once: the call is over for the application.
    assert!(matches!(alice.state(), CallState::Ended(_)));
    assert_eq!(
        alice.data_channel().create_sender(durable(6)).err(),
        Some(DataChannelError::FailedToStart)
    );
    assert_eq!(sender.send("late"), Err(DataChannelError::SenderClosed));
    assert!(!alice.wait_left(Duration::ZERO), "not done yet");
    // Everything accepted arrives, in order; then the receiver closes.
    let rx = receivers(&mut w, bob, 1).remove(0);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&rx));
        rx.is_closed()
    });
    got.extend(drain(&rx));
    let expected: Vec<(u32, Vec<u8>)> = (0..200u32)
        .map(|i| (i + 1, i.to_be_bytes().to_vec()))
        .collect();
    assert_eq!(got, expected);
    w.settle_until(|_| alice.wait_left(Duration::ZERO));
    assert!(
        bob.participants().is_empty(),
        "bob saw alice leave: {:?}",
        bob.participants()
    );
}

/// The same for a participant hosted by the hub (the host of a
/// peer-to-peer call).
#[test]
fn a_hosts_messages_sent_just_before_it_leaves_are_delivered() {
    let mut w = World::new(42, LinkConfig::with_latency(Duration::from_millis(20)));
    let guest = w.call_of("p2p", &["guest"]).remove(0);
    let server = w.server;
    let now = w.net.now();
    let host = w
        .net
        .host_mut(server)
        .join_local(now, "p2p", "host")
        .expect("hosted");
    w.settle_until(|_| guest.participants().len() == 1);
    let sender = host
        .data_channel()
        .create_sender(durable(7))
        .expect("sender");
    for i in 0..100u32 {
        sender.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    host.leave();
    assert!(matches!(host.state(), CallState::Ended(_)));
    let rx = receivers(&mut w, &guest, 1).remove(0);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&rx));
        rx.is_closed()
    });
    got.extend(drain(&rx));
    assert_eq!(got.len(), 100);
    assert!(
        got.iter()
            .enumerate()
            .all(|(i, (seq, _))| *seq == i as u32 + 1)
    );
    assert!(host.wait_left(Duration::ZERO));
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
}

/// Over UDP, alice sends 2,000 Durable messages as fast as `send` takes
/// them, then `end` ends her part (a leave, a shutdown); bob gets all of
/// them, in order.
fn unlimited() -> ChannelConfig {
    ChannelConfig::default().traffic(TrafficPolicy::unlimited())
}

/// A one-worker server over loopback UDP, without traffic rules.
fn udp_server() -> Engine {
    let clock = WallClock::new(Instant::now(), unix_now());
    Engine::builder()
        .workers(1)
        .hub(
            HubConfig::server(Arc::new(
                HmacVerifier::new(SECRET, clock).expect("a secret"),
            ))
            .channel(unlimited()),
        )
        .start()
        .expect("server")
}

/// `who` joins "call" from an engine of its own, through `via` (the
/// server's address, or a path to it), without traffic rules.
fn udp_join(via: std::net::SocketAddr, who: &str) -> (Engine, dcengine::Call) {
    let engine = Engine::builder()
        .hub(HubConfig::client().channel(unlimited()))
        .start()
        .expect("client");
    let token = mint_token(SECRET, "call", who, unix_now().as_secs() + 600).expect("token");
    let call = engine.join_remote(via, "call", who, token).expect("join");
    assert!(call.wait_ready(udp_common::LIMIT), "{who} joined");
    (engine, call)
}

fn delivered_over_udp_after(end: impl FnOnce(Engine, &dcengine::Call)) {
    let server = udp_server();
    let (alice_engine, alice) = udp_join(server.local_addr(), "alice");
    let (_bob_engine, bob) = udp_join(server.local_addr(), "bob");
    let sender = alice
        .data_channel()
        .create_sender(durable(3))
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

/// An engine that shuts down right after its application sent delivers
/// what was accepted first (on main before this change, the queued sends
/// were dropped with the engine).
#[test]
fn an_engine_shutting_down_delivers_what_it_accepted() {
    delivered_over_udp_after(|engine, call| {
        engine.shutdown(Duration::from_secs(10));
        assert!(call.wait_left(Duration::ZERO), "done once shut down");
    });
}

/// A leave right after the sends, with the engine running on: the same
/// over UDP, and the call is done once the connection has closed.
#[test]
fn a_leave_over_udp_delivers_what_was_accepted() {
    delivered_over_udp_after(|engine, call| {
        call.leave();
        assert!(matches!(call.state(), CallState::Ended(_)));
        assert!(call.wait_left(Duration::from_secs(10)), "left");
        drop(engine);
    });
}

/// The sender's connection is lost: its receivers get what arrived, then
/// close; the sender's call ends with the reason.
#[test]
fn a_lost_sender_closes_its_receivers_and_ends_its_call() {
    let mut w = World::new(43, LinkConfig::with_latency(Duration::from_millis(20)));
    let (a, alice) = w.join("call", "alice");
    let (_b, bob) = w.join("call", "bob");
    w.settle_until(|_| alice.is_joined() && bob.participants().len() == 1);
    let sender = alice
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    for i in 0..10u32 {
        sender.send(i.to_be_bytes().to_vec()).expect("accepted");
    }
    let rx = receivers(&mut w, &bob, 1).remove(0);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&rx));
        got.len() == 10
    });
    // Alice's host vanishes (a down host is frozen: it neither sends nor
    // runs its timers); the server times her association out.
    w.net.set_up(a, false);
    w.settle_until(|_| rx.is_closed());
    assert!(drain(&rx).is_empty());
    // Back, alice's side finds its association gone too.
    w.net.set_up(a, true);
    w.settle_until(|_| matches!(alice.state(), CallState::Ended(_)));
    let CallState::Ended(reason) = alice.state() else {
        unreachable!("ended above");
    };
    assert!(reason.contains("connection"), "{reason}");
    assert!(alice.wait_left(Duration::ZERO));
}

/// Polls `future` once (the simulator moves time between polls).
fn poll_once<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// `writable()` waits for the traffic rules' tokens too: a broadcast
/// sender under the default rules (80 packets a second) that awaits it
/// before each send never sees `MessageFailureForTrafficLimit` (on main
/// before this change, the 81st tiny message failed).
#[test]
fn writable_waits_for_the_traffic_rules() {
    let mut w = World::new(44, LinkConfig::with_latency(Duration::from_millis(10)));
    let rules = |c: &mut HubConfig| {
        *c = c.clone().channel(ChannelConfig::default());
    };
    let (_a, alice) = w.join_with("call", "alice", rules);
    let (_b, bob) = w.join_with("call", "bob", rules);
    w.settle_until(|_| alice.is_joined() && bob.participants().len() == 1);
    let sender = alice
        .data_channel()
        .create_sender(DataChannelSenderOptions::new().channel_id(8))
        .expect("sender");
    let start = w.net.now();
    let mut sent = 0u32;
    w.settle_until(|_| {
        while sent < 200 {
            match poll_once(sender.writable()) {
                Some(Ok(())) => {
                    sender.send("tick").expect("writable means sendable");
                    sent += 1;
                }
                Some(Err(e)) => panic!("{e}"),
                None => return false,
            }
        }
        true
    });
    // 80 at once, then 80 a second: the last ones waited for tokens.
    assert!(w.net.now() - start >= Duration::from_secs(1));
    let rx = receivers(&mut w, &bob, 1).remove(0);
    let mut got = 0;
    w.settle_until(|_| {
        got += drain(&rx).len();
        got == 200
    });
}

/// The same over UDP with a real engine: the engine's timer wakes the
/// waiting task when the tokens are in.
#[test]
fn writable_waits_for_the_traffic_rules_over_udp() {
    let clock = WallClock::new(Instant::now(), unix_now());
    let server = Engine::builder()
        .workers(1)
        .hub(HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        )))
        .start()
        .expect("server");
    let client = Engine::builder().start().expect("client");
    let token = mint_token(SECRET, "call", "alice", unix_now().as_secs() + 600).expect("token");
    let alice = client
        .join_remote(server.local_addr(), "call", "alice", token)
        .expect("join");
    assert!(alice.wait_ready(Duration::from_secs(10)));
    let sender = alice
        .data_channel()
        .create_sender(DataChannelSenderOptions::new().channel_id(8))
        .expect("sender");
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = pollster::block_on(async {
            for _ in 0..100 {
                sender.writable().await?;
                sender.send("tick")?;
            }
            Ok::<(), DataChannelError>(())
        });
        let _ = done.send(result);
    });
    // Bounded (the 20 messages past the burst take a quarter second).
    let result = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("the writer finished: the engine woke it");
    assert_eq!(result, Ok(()));
}

/// The server says how many senders a member may have; `create_sender`
/// past it fails with a clear error instead of a sender whose sends the
/// server discards (on main before this change, the 1,025th sender
/// "worked" and delivered nothing).
#[test]
fn create_sender_past_the_servers_limit_fails() {
    let mut w = World::with_server(
        45,
        LinkConfig::with_latency(Duration::from_millis(10)),
        |c| *c = c.clone().max_senders_per_member(3),
    );
    let calls = w.call_of("call", &["alice", "bob"]);
    let alice = &calls[0];
    let senders: Vec<_> = (1..=3)
        .map(|ch| {
            alice
                .data_channel()
                .create_sender(durable(ch))
                .expect("within the limit")
        })
        .collect();
    assert_eq!(
        alice.data_channel().create_sender(durable(4)).err(),
        Some(DataChannelError::TooManySenders { limit: 3 })
    );
    // Replacing one on the same channel is no new sender; closing one
    // makes room.
    let replaced = alice
        .data_channel()
        .create_sender(durable(3))
        .expect("a replacement");
    senders[0].close();
    let fourth = alice
        .data_channel()
        .create_sender(durable(4))
        .expect("room again");
    for s in [&senders[1], &replaced, &fourth] {
        s.send("hi").expect("send");
    }
    let rx = receivers(&mut w, &calls[1], 3);
    let mut got = 0;
    w.settle_until(|_| {
        got += rx.iter().map(|r| drain(r).len()).sum::<usize>();
        got == 3
    });
}

/// A receiver closes after the call's idle timeout without data or
/// keep-alive; if its sender is still open, its next message announces a
/// new receiver of the same session (sequence numbers going on) rather
/// than being dropped (on main before this change, it was lost).
#[test]
fn a_message_after_an_idle_close_reaches_a_new_receiver() {
    let idle = |c: &mut HubConfig| {
        *c = c.clone().channel(
            ChannelConfig::default()
                .traffic(TrafficPolicy::unlimited())
                .receiver_idle_timeout(Duration::from_secs(8)),
        );
    };
    let mut w = World::with_server(
        46,
        LinkConfig::with_latency(Duration::from_millis(10)),
        idle,
    );
    let (a, alice) = w.join("call", "alice");
    let (_b, bob) = w.join("call", "bob");
    w.settle_until(|_| alice.is_joined() && bob.participants().len() == 1);
    let sender = alice
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    sender.send("one").expect("send");
    let first = receivers(&mut w, &bob, 1).remove(0);
    w.settle_until(|_| !drain(&first).is_empty());
    // Alice falls silent longer than the idle timeout (not long enough to
    // lose her association): bob's receiver closes.
    w.net.set_up(a, false);
    w.settle_until(|_| first.is_closed());
    w.net.set_up(a, true);
    sender.send("two").expect("send");
    let second = receivers(&mut w, &bob, 1).remove(0);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&second));
        !got.is_empty()
    });
    assert_eq!(got, vec![(2, b"two".to_vec())]);
    assert!(!sender.is_closed());
    assert_eq!(first.close_reason(), Some(ReceiverCloseReason::Idle));
    assert_eq!(second.close_reason(), None, "open");
}

/// Each receiver learns why it closed: its sender closed, was replaced,
/// left; its own call ended. (On main before this change a receiver knew
/// only that it closed.)
#[test]
fn a_receiver_learns_why_it_closed() {
    let mut w = World::new(48, LinkConfig::with_latency(Duration::from_millis(10)));
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (&calls[0], &calls[1], &calls[2]);
    let dc = alice.data_channel();
    let closing = dc.create_sender(durable(1)).expect("sender");
    let replaced = dc.create_sender(durable(2)).expect("sender");
    let leaving = dc.create_sender(durable(3)).expect("sender");
    for s in [&closing, &replaced, &leaving] {
        s.send("hello").expect("send");
    }
    let mut rx = receivers(&mut w, bob, 3);
    rx.sort_by_key(|r| r.channel_id());
    let to_carol = bob
        .data_channel()
        .create_sender(durable(4))
        .expect("sender");
    to_carol.send("hi").expect("send");
    let carols = receivers(&mut w, carol, 4);
    closing.close();
    let replacement = dc.create_sender(durable(2)).expect("replacement");
    replacement.send("again").expect("send");
    w.settle_until(|_| rx[0].is_closed() && rx[1].is_closed());
    assert_eq!(
        rx[0].close_reason(),
        Some(ReceiverCloseReason::SenderClosed)
    );
    assert_eq!(rx[1].close_reason(), Some(ReceiverCloseReason::Replaced));
    assert_eq!(rx[2].close_reason(), None);
    alice.leave();
    w.settle_until(|_| rx[2].is_closed());
    assert_eq!(rx[2].close_reason(), Some(ReceiverCloseReason::SenderLeft));
    // Bob leaves: carol's receiver of his sender closes (he left), and
    // his own receivers close with his call.
    let from_bob = carols
        .iter()
        .find(|r| r.sender_id().as_str() == "bob")
        .expect("bob's");
    let late = receivers(&mut w, bob, 1).remove(0);
    assert_eq!(
        late.close_reason(),
        Some(ReceiverCloseReason::SenderLeft),
        "alice's replacement"
    );
    let to_bob = carol
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    to_bob.send("hi bob").expect("send");
    let new_one = receivers(&mut w, bob, 1).remove(0);
    bob.leave();
    w.settle_until(|_| from_bob.is_closed() && new_one.is_closed());
    assert_eq!(
        from_bob.close_reason(),
        Some(ReceiverCloseReason::SenderLeft)
    );
    assert_eq!(new_one.close_reason(), Some(ReceiverCloseReason::CallEnded));
    assert_eq!(
        ReceiverCloseReason::SenderLeft.to_string(),
        "the sender left the call"
    );
}

/// A client enforces the member rule across its senders: past it, `send`
/// fails with `MessageFailureForTrafficLimit` rather than being policed
/// by the server.
#[test]
fn a_clients_senders_together_keep_to_the_member_rule() {
    let mut w = World::new(47, LinkConfig::with_latency(Duration::from_millis(10)));
    let rule = |c: &mut HubConfig| {
        *c = c.clone().channel(
            ChannelConfig::default()
                .traffic(TrafficPolicy::unlimited().member_messages_per_second(10)),
        );
    };
    let (_a, alice) = w.join_with("call", "alice", rule);
    let (_b, _bob) = w.join_with("call", "bob", rule);
    w.settle_until(|_| alice.is_joined() && alice.participants().len() == 1);
    let senders: Vec<_> = (1..=5)
        .map(|ch| {
            alice
                .data_channel()
                .create_sender(durable(ch))
                .expect("sender")
        })
        .collect();
    let results: Vec<_> = (0..11).map(|i| senders[i % 5].send("x")).collect();
    assert!(results[..10].iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        results[10],
        Err(DataChannelError::MessageFailureForTrafficLimit)
    );
}

/// The 150 messages of 1,000 B a slow-path leave sends: each carries its
/// index, so order and content are checked.
fn slow_payload(i: u32) -> Vec<u8> {
    let mut v = vec![(i % 251) as u8; 1_000];
    v[..4].copy_from_slice(&i.to_be_bytes());
    v
}

/// Alice and bob in a call, alice's uplink at 100 kbit/s (her 150 KB take
/// about 12 s, four times the close timeout); alice sends the 150
/// [`slow_payload`]s Durable and leaves at once. Returns the world, alice's
/// host and call, and bob's receiver of her sender.
fn leave_on_a_slow_path(
    seed: u64,
) -> (
    World,
    dcengine::sim::HostId,
    dcengine::Call,
    dcengine::DataChannelReceiver,
) {
    let mut w = World::new(seed, LinkConfig::with_latency(Duration::from_millis(20)));
    let (a, alice) = w.join("call", "alice");
    let (_b, bob) = w.join("call", "bob");
    w.settle_until(|_| alice.is_joined() && bob.participants().len() == 1);
    let slow = LinkConfig {
        rate_bps: Some(100_000),
        ..LinkConfig::with_latency(Duration::from_millis(20))
    };
    w.net.set_link(a, w.server, slow);
    let sender = alice
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    for i in 0..150u32 {
        sender.send(slow_payload(i)).expect("accepted");
    }
    alice.leave();
    let rx = receivers(&mut w, &bob, 1).remove(0);
    (w, a, alice, rx)
}

/// A leave on a slow path: what was accepted takes longer to deliver than
/// the close timeout (3 s), but the close keeps going as long as the peer
/// acknowledges data, so all of it arrives, in order (on main before this
/// change, the close was forced after 3 s and the rest was lost: bob's
/// receiver closed after a prefix).
#[test]
fn a_leave_on_a_slow_path_delivers_everything_it_accepted() {
    let (mut w, _a, alice, rx) = leave_on_a_slow_path(44);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&rx));
        rx.is_closed()
    });
    got.extend(drain(&rx));
    assert_eq!(got.len(), 150, "delivered before the receiver closed");
    let expected: Vec<(u32, Vec<u8>)> = (0..150u32).map(|i| (i + 1, slow_payload(i))).collect();
    assert!(got == expected, "in order and intact");
    assert_eq!(rx.close_reason(), Some(ReceiverCloseReason::SenderLeft));
    w.settle_until(|_| alice.wait_left(Duration::ZERO));
}

/// The other side of it: a leave whose close makes no progress (nothing
/// the server sends reaches alice any more, so none of her data is
/// acknowledged) is forced after the close timeout, and both ends say
/// what happened: alice's call ends with how much was not delivered, bob's
/// receiver closes as the sender's connection lost after an unbroken
/// prefix.
#[test]
fn a_leave_whose_close_stalls_says_what_was_not_delivered() {
    let (mut w, a, alice, rx) = leave_on_a_slow_path(45);
    // A second in, nothing from the server reaches alice any more.
    w.run_for(Duration::from_secs(1));
    let deaf = LinkConfig {
        loss: 1.0,
        ..LinkConfig::with_latency(Duration::from_millis(20))
    };
    w.net.set_link(w.server, a, deaf);
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&rx));
        rx.is_closed() && alice.wait_left(Duration::ZERO)
    });
    got.extend(drain(&rx));
    assert!(
        !got.is_empty() && got.len() < 150,
        "{} delivered",
        got.len()
    );
    let expected: Vec<(u32, Vec<u8>)> = (0..got.len() as u32)
        .map(|i| (i + 1, slow_payload(i)))
        .collect();
    assert!(got == expected, "an unbroken, intact prefix");
    assert_eq!(rx.close_reason(), Some(ReceiverCloseReason::SenderLost));
    let CallState::Ended(reason) = alice.state() else {
        unreachable!("left")
    };
    assert!(reason.contains("not delivered"), "{reason}");
}

/// Over loopback UDP: a one-worker server without traffic rules, alice
/// joined through a [`udp_common::SlowPath`] of 400 kbit/s, bob directly.
/// Alice sends 250 [`slow_payload`]s Durable (250 KB: about 5 s on the path,
/// longer than the close timeout) and leaves at once. Returns what must
/// outlive the test's checks, alice's call and bob's receiver.
fn leave_behind_a_slow_udp_path() -> (
    [Engine; 3],
    udp_common::SlowPath,
    dcengine::Call,
    dcengine::DataChannelReceiver,
) {
    let server = udp_server();
    let path = udp_common::SlowPath::start(server.local_addr(), 400_000, 256 * 1024);
    let (alice_engine, alice) = udp_join(path.addr(), "alice");
    let (bob_engine, bob) = udp_join(server.local_addr(), "bob");
    let sender = alice
        .data_channel()
        .create_sender(durable(5))
        .expect("sender");
    for i in 0..250u32 {
        sender.send(slow_payload(i)).expect("accepted");
    }
    alice.leave();
    let rx = bob
        .data_channel()
        .next_receiver_timeout(udp_common::LIMIT)
        .expect("announced");
    ([server, alice_engine, bob_engine], path, alice, rx)
}

/// Everything `rx` gets until it closes (bounded by [`udp_common::LIMIT`]
/// per message).
fn until_closed(rx: &dcengine::DataChannelReceiver) -> Vec<(u32, Vec<u8>)> {
    let mut got = Vec::new();
    while let Some(m) = rx.recv_timeout(udp_common::LIMIT) {
        got.push((m.sequence_number, m.data.to_vec()));
    }
    assert!(rx.is_closed(), "closed, not timed out");
    got
}

/// The slow-path leave over real UDP, through the runtime's timers: the
/// close outlasts the close timeout while alice's data is acknowledged, so
/// all 250 arrive in order and then bob's receiver closes because alice
/// left.
#[test]
fn a_leave_behind_a_slow_udp_path_delivers_everything_it_accepted() {
    let (_engines, _path, alice, rx) = leave_behind_a_slow_udp_path();
    let got = until_closed(&rx);
    assert_eq!(got.len(), 250, "delivered before the receiver closed");
    let expected: Vec<(u32, Vec<u8>)> = (0..250u32).map(|i| (i + 1, slow_payload(i))).collect();
    assert!(got == expected, "in order and intact");
    assert_eq!(rx.close_reason(), Some(ReceiverCloseReason::SenderLeft));
    assert!(alice.wait_left(udp_common::LIMIT), "left");
    let CallState::Ended(reason) = alice.state() else {
        unreachable!("left")
    };
    assert!(!reason.contains("not delivered"), "{reason}");
}

/// The stalled close over real UDP: once bob has 20 of the 250 messages,
/// nothing the server sends reaches alice any more; her close is forced once it has
/// made no progress for the close timeout, her call's end says what was
/// not delivered, and bob's receiver closes after an unbroken prefix.
#[test]
fn a_leave_whose_close_stalls_over_udp_says_what_was_not_delivered() {
    let (_engines, path, alice, rx) = leave_behind_a_slow_udp_path();
    let mut got = Vec::new();
    while got.len() < 20
        && let Some(m) = rx.recv_timeout(udp_common::LIMIT)
    {
        got.push((m.sequence_number, m.data.to_vec()));
    }
    path.deafen();
    got.extend(until_closed(&rx));
    assert!(
        !got.is_empty() && got.len() < 250,
        "{} delivered",
        got.len()
    );
    let expected: Vec<(u32, Vec<u8>)> = (0..got.len() as u32)
        .map(|i| (i + 1, slow_payload(i)))
        .collect();
    assert!(got == expected, "an unbroken, intact prefix");
    assert_eq!(rx.close_reason(), Some(ReceiverCloseReason::SenderLost));
    assert!(alice.wait_left(udp_common::LIMIT), "left");
    let CallState::Ended(reason) = alice.state() else {
        unreachable!("left")
    };
    assert!(reason.contains("not delivered"), "{reason}");
}
