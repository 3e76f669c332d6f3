//! The DataChannel semantics, end to end through the simulated network:
//! a server hub and client hubs, three or more participants per test.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::{World, drain, receivers};
use dcengine::hub::{HubCluster, HubConfig, HubEvent};
use dcengine::sim::LinkConfig;
use dcengine::{
    CallState, DataChannelError, DataChannelReliability, DataChannelSenderOptions, ParticipantId,
    mint_token,
};

/// A Durable sender without a bitrate of its own (unshaped when the world
/// runs without traffic rules).
fn chat(channel: u16) -> DataChannelSenderOptions {
    DataChannelSenderOptions {
        channel_id: Some(channel),
        bitrate_kbps: 0,
        ..Default::default()
    }
}

fn lossy_link(loss: f64) -> LinkConfig {
    LinkConfig {
        latency: Duration::from_millis(15),
        jitter: Duration::from_millis(5),
        loss,
        duplicate: 0.02,
        reorder: 0.02,
        ..LinkConfig::default()
    }
}

fn ids(names: &[&str]) -> Vec<ParticipantId> {
    names.iter().map(|n| ParticipantId::from(*n)).collect()
}

// 1. Channel ids ------------------------------------------------------------

#[test]
fn channel_ids_explicit_random_and_exhausted_pool() {
    let mut w = World::new(1, LinkConfig::default());
    let (_h, alice) = w.join_with("call", "alice", |c| {
        c.channel.random_channel_ids = 100..=102
    });
    let _others = [w.join("call", "bob").1, w.join("call", "carol").1];
    w.settle_until(|_| alice.is_joined() && alice.participants().len() == 2);
    let dc = alice.data_channel();

    assert_eq!(
        dc.create_sender(chat(65535))
            .expect("explicit")
            .channel_id(),
        65535
    );
    let held: Vec<_> = (0..3)
        .map(|i| {
            let options = DataChannelSenderOptions {
                channel_id: if i == 0 { Some(0) } else { None },
                ..Default::default()
            };
            dc.create_sender(options).expect("random id")
        })
        .collect();
    let mut picked: Vec<u16> = held.iter().map(|s| s.channel_id()).collect();
    picked.sort();
    assert_eq!(picked, vec![100, 101, 102], "distinct ids from the pool");
    let err = dc
        .create_sender(DataChannelSenderOptions::default())
        .expect_err("must fail");
    assert_eq!(err, DataChannelError::RandomIdNotAvailable);

    // Closing one frees its id for the pool again; so does dropping the
    // last handle of one.
    let again = dc
        .create_sender(chat(101))
        .expect("explicit id in the pool");
    again.close();
    let freed = dc
        .create_sender(DataChannelSenderOptions::default())
        .expect("freed");
    assert_eq!(freed.channel_id(), 101);
    let copy = freed.clone();
    drop(freed);
    assert!(!copy.is_closed(), "a clone keeps the sender open");
    drop(copy);
    assert_eq!(
        dc.create_sender(DataChannelSenderOptions::default())
            .expect("freed by drop")
            .channel_id(),
        101
    );
    drop(held);
}

// 2. Durable ----------------------------------------------------------------

fn payload(i: u32) -> Vec<u8> {
    let mut v = i.to_be_bytes().to_vec();
    v.resize(200, (i % 251) as u8);
    v
}

#[test]
fn durable_is_ordered_and_lossless_through_the_server_under_loss() {
    let mut w = World::new(2, lossy_link(0.10));
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let sender = calls[0]
        .data_channel()
        .create_sender(chat(1000))
        .expect("sender");
    const N: u32 = 2000;
    let mut sent = 0u32;
    let mut got = vec![Vec::new(), Vec::new()];
    let mut rx = Vec::new();
    w.settle_until(|_| {
        // Pace the sender so its queue never overflows.
        while sent < N && sender.send(payload(sent)).is_ok() {
            sent += 1;
        }
        for (i, c) in calls[1..].iter().enumerate() {
            while let Some(r) = c.data_channel().try_next_receiver() {
                rx.push((i, r));
            }
        }
        for (i, r) in &rx {
            got[*i].extend(drain(r));
        }
        got.iter().all(|g| g.len() == N as usize)
    });
    for g in &got {
        for (k, (seq, data)) in g.iter().enumerate() {
            assert_eq!(*seq, k as u32 + 1, "in order, exactly once");
            assert_eq!(data, &payload(k as u32));
        }
    }
    let lost = w.net.total_stats().lost;
    assert!(lost > 50, "the links really lost datagrams ({lost})");
}

#[test]
fn durable_failure_is_an_error_never_silence() {
    let mut w = World::new(3, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let sender = calls[0]
        .data_channel()
        .create_sender(chat(1000))
        .expect("sender");
    sender.send("before").expect("send");
    w.run_for(Duration::from_millis(200));
    // The server vanishes: the association times out and the sender closes.
    let server = w.server;
    w.net.set_up(server, false);
    sender
        .send("into the void")
        .expect("queued while the loss is unknown");
    w.settle_until(|_| sender.is_closed());
    assert_eq!(sender.send("after"), Err(DataChannelError::SenderClosed));
    assert!(matches!(calls[0].state(), CallState::Ended(reason) if reason.contains("timed out")));
    assert_eq!(
        calls[0]
            .data_channel()
            .create_sender(chat(1))
            .expect_err("must fail"),
        DataChannelError::FailedToStart
    );
}

// 3. Lossy ------------------------------------------------------------------

#[test]
fn lossy_drops_silently_and_never_holds_back_durable() {
    // The server gives Lossy messages 60 ms, less than the time a loss
    // takes to be detected and repaired (a round trip of SACKs at least):
    // what its link to bob loses is not retransmitted in time, so some are
    // dropped, silently. (With the default 250 ms most losses would be
    // recovered within the lifetime.)
    let mut w = World::with_server(4, lossy_link(0.20), |c| {
        c.node.lossy_lifetime = Duration::from_millis(60);
    });
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let dc = calls[0].data_channel();
    let lossy = dc
        .create_sender(DataChannelSenderOptions {
            channel_id: Some(7),
            reliability: DataChannelReliability::Lossy,
            ..Default::default()
        })
        .expect("lossy");
    let durable = dc.create_sender(chat(8)).expect("durable");
    // Announce both channels first (a receiver appears with the first
    // message that reaches it, and a Lossy one may be lost), then interleave.
    durable.send(0u32.to_be_bytes().to_vec()).expect("send");
    let dc1 = calls[1].data_channel();
    let mut rx = Vec::new();
    w.settle_until(|w| {
        lossy.send("hello").expect("send");
        w.run_for(Duration::from_millis(20));
        rx.extend(std::iter::from_fn(|| dc1.try_next_receiver()));
        rx.len() == 2
    });
    let hellos = lossy.dropped_messages(); // 0: nothing dropped at the sender
    assert_eq!(hellos, 0);
    let first = rx
        .iter()
        .find(|r| r.channel_id() == 7)
        .map(|r| drain(r).len())
        .unwrap_or(0);
    assert!(first >= 1);
    for i in 1..=300u32 {
        lossy
            .send(i.to_be_bytes().to_vec())
            .expect("lossy never errors");
        durable.send(i.to_be_bytes().to_vec()).expect("send");
        w.run_for(Duration::from_millis(5));
    }
    w.run_for(Duration::from_secs(5));
    let by_channel = |ch: u16| rx.iter().find(|r| r.channel_id() == ch).expect("receiver");
    let d = drain(by_channel(8));
    assert_eq!(d.len(), 301, "every Durable message");
    assert!(
        d.iter()
            .enumerate()
            .all(|(k, (seq, _))| *seq == k as u32 + 1),
        "in order"
    );
    let l = drain(by_channel(7));
    assert!(
        l.len() < 301,
        "some Lossy messages were dropped ({} arrived)",
        l.len()
    );
    assert!(l.len() > 150, "most Lossy messages arrived ({})", l.len());
    let mut seqs: Vec<u32> = l.iter().map(|(s, _)| *s).collect();
    let unique = {
        seqs.sort();
        seqs.dedup();
        seqs.len()
    };
    assert_eq!(unique, l.len(), "never duplicated");
}

// 4. Participants -----------------------------------------------------------

#[test]
fn participant_lists_broadcast_targeting_and_sequence_gaps() {
    let mut w = World::new(5, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol", "dave"]);
    let dc = calls[0].data_channel();
    let too_many: Vec<ParticipantId> = (0..65)
        .map(|i| ParticipantId::from(format!("p{i}")))
        .collect();
    assert_eq!(
        dc.create_sender(DataChannelSenderOptions {
            participants: too_many.clone(),
            ..chat(1)
        })
        .expect_err("must fail"),
        DataChannelError::TooManyParticipants {
            count: 65,
            limit: 64
        }
    );

    for bad in ["", &"x".repeat(256)] {
        assert_eq!(
            dc.create_sender(DataChannelSenderOptions {
                participants: ids(&["bob", bad]),
                ..chat(1)
            })
            .expect_err("must fail"),
            DataChannelError::InvalidParticipantId(bad.to_owned())
        );
    }
    let s = dc.create_sender(chat(1)).expect("broadcast sender");
    assert_eq!(
        s.set_participants(too_many),
        Err(DataChannelError::TooManyParticipants {
            count: 65,
            limit: 64
        })
    );
    s.send("1 to all").expect("send");
    s.set_participants(ids(&["bob"])).expect("set");
    s.send("2 to bob").expect("send");
    s.set_participants(ids(&["carol", "dave"])).expect("set");
    s.send("3 to carol and dave").expect("send");
    s.set_participants(vec![]).expect("back to broadcast");
    s.send("4 to all").expect("send");
    w.run_for(Duration::from_secs(1));

    let seqs = |i: usize| {
        let r = calls[i]
            .data_channel()
            .try_next_receiver()
            .expect("a receiver");
        assert_eq!(r.sender_id().as_str(), "alice");
        drain(&r).into_iter().map(|(s, _)| s).collect::<Vec<_>>()
    };
    assert_eq!(seqs(1), vec![1, 2, 4], "bob");
    assert_eq!(seqs(2), vec![1, 3, 4], "carol sees a gap");
    assert_eq!(seqs(3), vec![1, 3, 4], "dave sees a gap");
    assert!(
        calls[0].data_channel().try_next_receiver().is_none(),
        "never echoed to the sender"
    );
}

// 5. Server fan-out ---------------------------------------------------------

#[test]
fn fan_out_shares_one_payload_and_stamps_the_authenticated_sender() {
    let mut w = World::new(6, LinkConfig::default());
    let (_h, alice) = w.join("call", "alice");
    // Two participants hosted in the server hub itself: what they receive
    // is what the server forwards, so the payload can be compared by address.
    let now = w.net.now();
    let server = w.server;
    let bob = w
        .net
        .host_mut(server)
        .join_local(now, "call", "bob")
        .expect("local");
    let carol = w
        .net
        .host_mut(server)
        .join_local(now, "call", "carol")
        .expect("local");
    w.settle_until(|_| alice.is_joined() && alice.participants().len() == 2);
    let s = alice.data_channel().create_sender(chat(5)).expect("sender");
    s.send(vec![7u8; 1000]).expect("send");
    let rb = receivers(&mut w, &bob, 1).remove(0);
    let rc = receivers(&mut w, &carol, 1).remove(0);
    w.settle_until(|_| true);
    let (mb, mc) = (
        rb.read_message().expect("bob got it"),
        rc.read_message().expect("carol got it"),
    );
    assert_eq!(mb, mc);
    assert_eq!(
        mb.data.as_ptr(),
        mc.data.as_ptr(),
        "one payload buffer for every target"
    );
    assert_eq!(
        rb.sender_id().as_str(),
        "alice",
        "stamped from the join, not claimed"
    );
    assert_eq!(w.net.host(server).stats().messages_forwarded, 2);
}

// 6. Sessions ---------------------------------------------------------------

#[test]
fn a_new_sender_on_the_same_channel_replaces_the_old_session() {
    let mut w = World::new(7, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let dc = calls[0].data_channel();
    let first = dc.create_sender(chat(10000)).expect("first");
    first.send("old").expect("send");
    let old_rx = receivers(&mut w, &calls[1], 1).remove(0);
    let second = dc.create_sender(chat(10000)).expect("second");
    assert!(first.is_closed(), "the old sender closes");
    assert_eq!(first.send("late"), Err(DataChannelError::SenderClosed));
    second.send("new").expect("send");
    let new_rx = receivers(&mut w, &calls[1], 1).remove(0);
    w.run_for(Duration::from_millis(200));
    assert!(old_rx.is_closed(), "the old session's receiver closes");
    assert_eq!(drain(&old_rx), vec![(1, b"old".to_vec())]);
    assert_eq!(
        drain(&new_rx),
        vec![(1, b"new".to_vec())],
        "a new session counts from 1"
    );
    assert!(!new_rx.is_closed());
}

#[test]
fn close_closes_every_receiver_of_the_session_after_its_messages() {
    let mut w = World::new(8, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let s = calls[0]
        .data_channel()
        .create_sender(chat(3))
        .expect("sender");
    let closes = Arc::new(AtomicUsize::new(0));
    s.send("a").expect("send");
    let rx: Vec<_> = calls[1..]
        .iter()
        .map(|c| receivers(&mut w, c, 1).remove(0))
        .collect();
    for r in &rx {
        let closes = closes.clone();
        r.on_close(move || {
            closes.fetch_add(1, Ordering::SeqCst);
        });
    }
    s.send("b").expect("send");
    s.close();
    assert_eq!(s.send("c"), Err(DataChannelError::SenderClosed));
    w.run_for(Duration::from_millis(300));
    for r in &rx {
        assert!(r.is_closed());
        assert_eq!(
            drain(r).len(),
            2,
            "messages before the close still readable"
        );
    }
    assert_eq!(
        closes.load(Ordering::SeqCst),
        2,
        "one close event per receiver"
    );
}

/// A Durable receiver whose buffer fills closes (it can no longer be
/// lossless) and tells the server, which stops sending that member the
/// session (it used to keep forwarding every message, which the member then
/// dropped); the others still get everything, and a new session of the
/// sender opens a new receiver for it.
#[test]
fn a_durable_receiver_closed_on_overflow_is_no_longer_sent_the_session() {
    let mut w = World::new(9, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "carol"]);
    // Bob holds two unread 10-byte messages at most (64 bytes each on top).
    let (_, bob) = w.join_with("call", "bob", |c| {
        c.channel.receiver_buffer_bytes = 2 * (64 + 10);
    });
    w.settle_until(|_| bob.is_joined() && calls[0].participants().len() == 2);
    let s = calls[0]
        .data_channel()
        .create_sender(chat(5))
        .expect("sender");
    s.send(vec![0; 10]).expect("send");
    let bob_rx = receivers(&mut w, &bob, 1).remove(0);
    let carol_rx = receivers(&mut w, &calls[1], 1).remove(0);
    // Bob does not read: the third message does not fit.
    for i in 1..3 {
        s.send(vec![i; 10]).expect("send");
    }
    w.settle_until(|_| bob_rx.is_closed());
    w.run_for(Duration::from_millis(100));
    let server = w.server;
    let before = w.net.host(server).stats().messages_forwarded;
    for i in 3..23 {
        s.send(vec![i; 10]).expect("send");
    }
    let mut got = Vec::new();
    w.settle_until(|_| {
        got.extend(drain(&carol_rx).into_iter().map(|(_, d)| d[0]));
        got.len() == 23
    });
    assert_eq!(got, (0..23).collect::<Vec<u8>>());
    w.run_for(Duration::from_millis(200));
    assert_eq!(
        w.net.host(server).stats().messages_forwarded - before,
        20,
        "only carol is sent the session now"
    );
    assert_eq!(drain(&bob_rx).len(), 2, "what bob held is still readable");
    // A new session of the sender is a new receiver for bob.
    let again = calls[0]
        .data_channel()
        .create_sender(chat(5))
        .expect("sender");
    again.send("again").expect("send");
    let rx = receivers(&mut w, &bob, 1).remove(0);
    w.settle_until(|_| rx.read_message().is_some_and(|m| m.data == "again"));
}

#[test]
fn receivers_close_when_idle_and_keepalives_hold_open_senders() {
    let short = |c: &mut HubConfig| {
        c.channel.receiver_idle_timeout = Duration::from_secs(10);
        c.channel.keepalive_interval = Duration::from_secs(3);
    };
    let mut w = World::with_server(9, LinkConfig::default(), short);
    let (_a, alice) = w.join_with("call", "alice", short);
    // Bob's keep-alives cannot be configured past the call's idle timeout
    // (a client sends them at least four times within the timeout the
    // server announces), so bob falls silent by a partition below.
    let (b, bob) = w.join_with("call", "bob", |c| {
        short(c);
        c.channel.keepalive_interval = Duration::from_secs(3600);
    });
    let (_c, carol) = w.join_with("call", "carol", short);
    w.settle_until(|_| {
        [&alice, &bob, &carol]
            .iter()
            .all(|c| c.participants().len() == 2)
    });
    let from_alice = alice.data_channel().create_sender(chat(1)).expect("sender");
    let from_bob = bob.data_channel().create_sender(chat(2)).expect("sender");
    from_alice.send("hi").expect("send");
    from_bob.send("hi").expect("send");
    let rx = receivers(&mut w, &carol, 2);
    let start = w.net.now();
    let (ra, rb) = if rx[0].sender_id().as_str() == "alice" {
        (&rx[0], &rx[1])
    } else {
        (&rx[1], &rx[0])
    };
    w.net.set_up(b, false);
    w.settle_until(|_| rb.is_closed());
    let idle_for = w.net.now() - start;
    // Bob is back before his association would time out.
    w.net.set_up(b, true);
    assert!(
        idle_for >= Duration::from_secs(10) && idle_for <= Duration::from_secs(12),
        "{idle_for:?}"
    );
    w.run_for(Duration::from_secs(40));
    assert!(
        !ra.is_closed(),
        "keep-alives hold an idle but open sender's receiver"
    );
    assert!(!from_bob.is_closed(), "only the receiver side idles out");
}

// 7. Max message size -------------------------------------------------------

#[test]
fn max_message_size_default_and_configured() {
    let mut w = World::new(10, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let s = calls[0]
        .data_channel()
        .create_sender(chat(1))
        .expect("sender");
    assert_eq!(s.max_message_size(), 32 * 1024);
    assert_eq!(
        s.send(vec![0u8; 32 * 1024 + 1]),
        Err(DataChannelError::MessageSizeOverLimit {
            size: 32 * 1024 + 1,
            limit: 32 * 1024
        })
    );
    s.send(vec![1u8; 32 * 1024]).expect("exactly the limit");
    let r = receivers(&mut w, &calls[1], 1).remove(0);
    w.run_for(Duration::from_millis(300));
    assert_eq!(
        drain(&r),
        vec![(1, vec![1u8; 32 * 1024])],
        "nothing of the refused one was sent"
    );

    // Up to 256 KiB when both server and client allow it.
    let big = |c: &mut HubConfig| c.channel.max_message_size = 256 * 1024;
    let mut w = World::with_server(11, LinkConfig::default(), big);
    let a = w.join_with("big", "a", big).1;
    let b = w.join_with("big", "b", big).1;
    let c = w.join_with("big", "c", |_| {}).1;
    w.settle_until(|_| [&a, &b, &c].iter().all(|x| x.participants().len() == 2));
    assert_eq!(
        c.data_channel().max_message_size(),
        32 * 1024,
        "the smaller limit wins"
    );
    let s = a.data_channel().create_sender(chat(1)).expect("sender");
    assert_eq!(s.max_message_size(), 256 * 1024);
    s.send(vec![9u8; 200 * 1024]).expect("send");
    let r = receivers(&mut w, &b, 1).remove(0);
    w.settle_until(|_| r.read_message().is_some_and(|m| m.data.len() == 200 * 1024));
}

// 8. Join authentication ----------------------------------------------------

#[test]
fn bad_and_expired_tokens_are_rejected_with_a_reason() {
    let mut w = World::new(12, LinkConfig::default());
    let _ok = w.call_of("call", &["alice", "bob"]);
    let (now, to) = (w.net.now(), w.net.addr(w.server));
    let join_with_token = |w: &mut common::World, who: &str, token: Bytes| {
        let host = w.net.add_host(HubCluster::new(HubConfig::client(), 1));
        w.net
            .host_mut(host)
            .join_remote(now, to, "call", who, token)
            .expect("join")
    };
    let forged = mint_token(b"wrong secret", "call", "mallory", common::EPOCH + 60).expect("token");
    let expired = mint_token(common::SECRET, "call", "eve", common::EPOCH - 1).expect("token");
    let stolen = mint_token(common::SECRET, "call", "alice", common::EPOCH + 60).expect("token");
    // Valid for two days: more than the verifier's 24 h cap.
    let for_too_long =
        mint_token(common::SECRET, "call", "trent", common::EPOCH + 2 * 86_400).expect("token");
    let mallory = join_with_token(&mut w, "mallory", forged);
    let eve = join_with_token(&mut w, "eve", expired);
    let thief = join_with_token(&mut w, "not-alice", stolen);
    let trent = join_with_token(&mut w, "trent", for_too_long);
    w.settle_until(|_| {
        [&mallory, &eve, &thief, &trent]
            .iter()
            .all(|c| matches!(c.state(), CallState::Ended(_)))
    });
    assert!(matches!(mallory.state(), CallState::Ended(r) if r.contains("not valid")));
    assert!(matches!(eve.state(), CallState::Ended(r) if r.contains("expired")));
    assert!(matches!(thief.state(), CallState::Ended(r) if r.contains("not valid")));
    assert!(
        matches!(trent.state(), CallState::Ended(r) if r.contains("more than 86400 s from now")),
        "{:?}",
        trent.state()
    );
    let server = w.server;
    let rejected: Vec<_> = std::iter::from_fn(|| w.net.host_mut(server).poll_event())
        .filter(|e| matches!(e, HubEvent::JoinRejected { .. }))
        .collect();
    assert_eq!(rejected.len(), 4);
    assert_eq!(
        w.net.host(server).members("call").len(),
        2,
        "nobody else got in"
    );
    w.run_for(Duration::from_secs(2));
    assert_eq!(
        w.net.host(server).association_count(),
        2,
        "rejected associations are closed"
    );
}

/// What a `Join` frame cannot carry is refused by `join_remote` itself,
/// before any association starts: a token over 4,096 bytes (it used to
/// panic the hub in a debug build when the frame was encoded, and leave the
/// call hanging until the join timeout in release), ids of 0 or over 255
/// bytes. A token of exactly 4,096 bytes goes, and is rejected at once for
/// what it is, a bad token.
#[test]
fn join_remote_refuses_what_a_join_frame_cannot_carry() {
    use dcengine::JoinError;
    let mut w = World::new(14, LinkConfig::default());
    let (now, to) = (w.net.now(), w.net.addr(w.server));
    let host = w.net.add_host(HubCluster::new(HubConfig::client(), 1));
    let hub = w.net.host_mut(host);
    let huge = Bytes::from(vec![7u8; 5000]);
    assert_eq!(
        hub.join_remote(now, to, "call", "alice", huge).err(),
        Some(JoinError::TokenTooLong {
            len: 5000,
            max: 4096
        })
    );
    let token = mint_token(common::SECRET, "call", "alice", common::EPOCH + 60).expect("token");
    let long = "x".repeat(256);
    for (call, who) in [
        ("", "alice"),
        ("call", ""),
        (&long[..], "alice"),
        ("call", &long[..]),
    ] {
        assert_eq!(
            hub.join_remote(now, to, call, who, token.clone()).err(),
            Some(JoinError::InvalidId),
            "{} / {} bytes",
            call.len(),
            who.len()
        );
    }
    assert_eq!(hub.association_count(), 0, "nothing started");
    let at_the_limit = hub
        .join_remote(now, to, "call", "alice", Bytes::from(vec![7u8; 4096]))
        .expect("a token of 4,096 bytes fits");
    w.run_for(Duration::from_secs(1));
    assert!(
        matches!(at_the_limit.state(), CallState::Ended(r) if r.contains("not valid")),
        "{:?}",
        at_the_limit.state()
    );
}

#[test]
fn a_second_join_with_the_same_id_is_a_second_endpoint() {
    let mut w = World::new(13, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "bob"]);
    let s = calls[0]
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            participants: ids(&["bob"]),
            ..chat(1)
        });
    s.expect("sender").send("to both bobs").expect("send");
    for bob in &calls[1..] {
        let r = receivers(&mut w, bob, 1).remove(0);
        w.run_for(Duration::from_millis(100));
        assert_eq!(drain(&r), vec![(1, b"to both bobs".to_vec())]);
    }
    // And one bob's broadcast reaches the other.
    let b = calls[1]
        .data_channel()
        .create_sender(chat(2))
        .expect("sender");
    b.send("hi twin").expect("send");
    let r = receivers(&mut w, &calls[2], 1).remove(0);
    assert_eq!(r.sender_id().as_str(), "bob");
}

// 9. Roster -----------------------------------------------------------------

#[test]
fn roster_follows_joins_and_leaves_and_a_leave_closes_receivers() {
    let mut w = World::new(14, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    assert_eq!(calls[0].participants(), ids(&["bob", "carol"]));
    let s = calls[2]
        .data_channel()
        .create_sender(chat(4))
        .expect("sender");
    s.send("from carol").expect("send");
    let rx: Vec<_> = calls[..2]
        .iter()
        .map(|c| receivers(&mut w, c, 1).remove(0))
        .collect();
    calls[2].leave();
    w.settle_until(|_| rx.iter().all(|r| r.is_closed()));
    w.settle_until(|_| {
        calls[0].participants() == ids(&["bob"]) && calls[1].participants() == ids(&["alice"])
    });
    assert!(s.is_closed(), "the leaver's senders close");
    assert!(matches!(calls[2].state(), CallState::Ended(_)));
    let (_, dave) = w.join("call", "dave");
    w.settle_until(|_| calls[0].participants() == ids(&["bob", "dave"]));
    assert_eq!(dave.participants(), ids(&["alice", "bob"]));
}

// 10. Peer-to-peer ----------------------------------------------------------

#[test]
fn peer_to_peer_two_engines_no_server() {
    // Engine A hosts the call with its own participant; engine B joins it
    // directly. Same API on both sides.
    let mut w = World::new(15, LinkConfig::default());
    let now = w.net.now();
    let server = w.server;
    let alice = w
        .net
        .host_mut(server)
        .join_local(now, "p2p", "alice")
        .expect("host");
    let (_b, bob) = w.join("p2p", "bob");
    w.settle_until(|_| bob.is_joined() && alice.participants() == ids(&["bob"]));
    let to_bob = alice.data_channel().create_sender(chat(9)).expect("sender");
    let to_alice = bob.data_channel().create_sender(chat(9)).expect("sender");
    to_bob.send("hi bob").expect("send");
    to_alice.send("hi alice").expect("send");
    let rb = receivers(&mut w, &bob, 1).remove(0);
    let ra = receivers(&mut w, &alice, 1).remove(0);
    w.run_for(Duration::from_millis(100));
    assert_eq!(drain(&rb), vec![(1, b"hi bob".to_vec())]);
    assert_eq!(drain(&ra), vec![(1, b"hi alice".to_vec())]);
    assert_eq!(ra.sender_id().as_str(), "bob");
}

// 11. FailedToStart ---------------------------------------------------------

#[test]
fn failed_to_start_before_the_join_and_after_leaving() {
    let mut w = World::new(16, LinkConfig::default());
    let (_h, alice) = w.join("call", "alice");
    assert_eq!(
        alice
            .data_channel()
            .create_sender(chat(1))
            .expect_err("must fail"),
        DataChannelError::FailedToStart,
        "not connected yet"
    );
    let others = [w.join("call", "bob").1, w.join("call", "carol").1];
    w.settle_until(|_| {
        [&alice, &others[0], &others[1]]
            .iter()
            .all(|c| c.participants().len() == 2)
    });
    let s = alice
        .data_channel()
        .create_sender(chat(1))
        .expect("ready now");
    alice.leave();
    w.settle_until(|_| matches!(alice.state(), CallState::Ended(_)));
    assert_eq!(
        alice
            .data_channel()
            .create_sender(chat(2))
            .expect_err("must fail"),
        DataChannelError::FailedToStart
    );
    assert_eq!(s.send("x"), Err(DataChannelError::SenderClosed));
    w.settle_until(|_| {
        others.iter().all(|c| {
            c.participants()
                == ids(&[if c.participant_id().as_str() == "bob" {
                    "carol"
                } else {
                    "bob"
                }])
        })
    });
}

// 12. MessageFailureForBandwidth --------------------------------------------

#[test]
fn a_full_queue_fails_durable_and_drops_lossy() {
    // Room for four 1000-byte messages (each also costs a small fixed overhead).
    let small = |c: &mut HubConfig| c.channel.sender_queue_bytes = 4400;
    let mut w = World::new(17, LinkConfig::default());
    let (_h, alice) = w.join_with("call", "alice", small);
    let _others = [w.join("call", "bob").1, w.join("call", "carol").1];
    w.settle_until(|_| alice.participants().len() == 2);
    let dc = alice.data_channel();
    let durable = dc.create_sender(chat(1)).expect("sender");
    let lossy = dc
        .create_sender(DataChannelSenderOptions {
            reliability: DataChannelReliability::Lossy,
            ..chat(2)
        })
        .expect("sender");
    // Without the driver running, the queues fill.
    for _ in 0..4 {
        durable.send(vec![0u8; 1000]).expect("fits");
        lossy.send(vec![0u8; 1000]).expect("fits");
    }
    assert_eq!(
        durable.send(vec![0u8; 1000]),
        Err(DataChannelError::MessageFailureForBandwidth)
    );
    assert_eq!(lossy.send(vec![0u8; 1000]), Ok(()), "Lossy drops silently");
    assert_eq!(lossy.dropped_messages(), 1);
    // Once the driver drains the queue, sends succeed again.
    w.run_for(Duration::from_millis(50));
    durable.send(vec![0u8; 1000]).expect("room again");
}

// Async forms ---------------------------------------------------------------

#[test]
fn async_receivers_and_messages_wake_across_threads() {
    let mut w = World::new(18, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let bob = calls[1].clone();
    let (seen, seqs) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        pollster::block_on(async {
            let dc = bob.data_channel();
            let r = dc.next_receiver().await.expect("a receiver");
            while let Some(m) = r.recv().await {
                let _ = seen.send(m.sequence_number);
            }
        })
    });
    let s = calls[0]
        .data_channel()
        .create_sender(chat(1))
        .expect("sender");
    for i in 0..5u8 {
        s.send(vec![i]).expect("send");
    }
    // Virtual time delivers; the reader thread runs in real time.
    w.run_for(Duration::from_millis(200));
    let real = Duration::from_secs(10);
    let got: Vec<u32> = (0..5)
        .map(|_| seqs.recv_timeout(real).expect("woken with a message"))
        .collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5]);
    s.close();
    w.run_for(Duration::from_millis(200));
    reader.join().expect("recv ends with the session");
    assert!(pollster::block_on(calls[2].ready()));
}

#[test]
fn handles_are_send_sync() {
    // (A hub is not `Send`: its SCTP sockets stay on the thread that made
    // them; the engine makes each worker's hub on the worker's thread.)
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<dcengine::Call>();
    shareable::<dcengine::DataChannelFeature>();
    shareable::<dcengine::DataChannelSender>();
    shareable::<dcengine::DataChannelReceiver>();
}

// Regressions --------------------------------------------------------------

#[test]
fn the_first_lossy_messages_arrive_on_a_perfect_link() {
    let mut w = World::new(19, LinkConfig::default());
    let calls = w.call_of("call", &["alice", "bob", "carol"]);
    let s = calls[0]
        .data_channel()
        .create_sender(DataChannelSenderOptions {
            reliability: DataChannelReliability::Lossy,
            ..chat(3)
        })
        .expect("sender");
    // Sent in the same turn as the sender opens, then in the next ones: on a
    // link that loses nothing, nothing may be lost.
    for i in 0..3u8 {
        s.send(vec![i]).expect("send");
    }
    w.run_for(Duration::from_millis(1));
    for i in 3..6u8 {
        s.send(vec![i]).expect("send");
    }
    for c in &calls[1..] {
        let r = receivers(&mut w, c, 1).remove(0);
        w.run_for(Duration::from_millis(200));
        let mut seqs: Vec<u32> = drain(&r).into_iter().map(|(s, _)| s).collect();
        seqs.sort();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6]);
    }
}

#[test]
fn a_receiver_stays_open_while_its_sender_is_open_even_unaddressed() {
    let short = |c: &mut HubConfig| {
        c.channel.receiver_idle_timeout = Duration::from_secs(10);
        c.channel.keepalive_interval = Duration::from_secs(3);
    };
    let mut w = World::with_server(20, LinkConfig::default(), short);
    let people: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|p| w.join_with("call", p, short).1)
        .collect();
    w.settle_until(|_| people.iter().all(|c| c.participants().len() == 2));
    let s = people[0]
        .data_channel()
        .create_sender(chat(1))
        .expect("sender");
    s.send("to all").expect("send");
    let bob_rx = receivers(&mut w, &people[1], 1).remove(0);
    // Alice talks only to carol for three idle timeouts...
    s.set_participants(ids(&["carol"])).expect("set");
    for _ in 0..30 {
        s.send("to carol").expect("send");
        w.run_for(Duration::from_secs(1));
    }
    assert!(!bob_rx.is_closed(), "keep-alives hold bob's receiver open");
    // ...then to bob again: he gets it on the same receiver.
    s.set_participants(ids(&["bob"])).expect("set");
    s.send("to bob again").expect("send");
    w.run_for(Duration::from_millis(200));
    let got: Vec<Vec<u8>> = drain(&bob_rx).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, vec![b"to all".to_vec(), b"to bob again".to_vec()]);
}

#[test]
fn a_slow_uplink_pushes_back_on_durable_senders() {
    let mut w = World::new(21, LinkConfig::default());
    let (alice_host, alice) = w.join("call", "alice");
    let others = [w.join("call", "bob").1, w.join("call", "carol").1];
    w.settle_until(|_| {
        alice.participants().len() == 2 && others.iter().all(|c| c.participants().len() == 2)
    });
    // 200 kbit/s from alice to the server.
    let server = w.server;
    w.net.set_link(
        alice_host,
        server,
        LinkConfig {
            rate_bps: Some(200_000),
            ..LinkConfig::default()
        },
    );
    let s = alice.data_channel().create_sender(chat(1)).expect("sender");
    let (mut accepted, mut refused) = (0u32, 0u32);
    for _ in 0..100 {
        for _ in 0..50 {
            match s.send(vec![7u8; 1000]) {
                Ok(()) => accepted += 1,
                Err(DataChannelError::MessageFailureForBandwidth) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        w.run_for(Duration::from_millis(100));
    }
    assert!(refused > 0, "the queue filled and pushed back");
    // ~25 kB/s for 10 s, plus what the queues hold: far below 5,000 messages.
    assert!(accepted < 2000, "accepted {accepted}: no backpressure");
    let r = receivers(&mut w, &others[0], 1).remove(0);
    w.run_for(Duration::from_secs(120));
    let got = drain(&r);
    assert_eq!(got.len(), accepted as usize, "everything accepted arrives");
    assert!(
        got.iter()
            .enumerate()
            .all(|(k, (seq, _))| *seq == k as u32 + 1)
    );
}

#[test]
fn a_slow_member_is_disconnected_rather_than_buffered_without_bound() {
    // The cap must exceed a sender's burst (a gap in its ordered stream
    // releases everything behind it at once); 1 MiB here, 4 MiB by default.
    let mut w = World::with_server(22, LinkConfig::default(), |c| {
        c.slow_consumer_buffer = 1024 * 1024
    });
    let (alice_host, alice) = w.join("call", "alice");
    let (bob_host, bob) = w.join("call", "bob");
    let (_, carol) = w.join("call", "carol");
    let calls = [alice, bob, carol];
    w.settle_until(|_| calls.iter().all(|c| c.participants().len() == 2));
    let server = w.server;
    // alice sends at 1 Mbit/s; bob's downlink takes 20 kbit/s.
    w.net.set_link(
        alice_host,
        server,
        LinkConfig {
            rate_bps: Some(1_000_000),
            ..LinkConfig::default()
        },
    );
    w.net.set_link(
        server,
        bob_host,
        LinkConfig {
            rate_bps: Some(20_000),
            ..LinkConfig::default()
        },
    );
    let s = calls[0]
        .data_channel()
        .create_sender(chat(1))
        .expect("sender");
    s.send(vec![0u8; 1000]).expect("send");
    let carol_rx = receivers(&mut w, &calls[2], 1).remove(0);
    let mut sent = 1;
    let mut got = 0;
    for _ in 0..300 {
        while sent < 3000 && s.send(vec![1u8; 1000]).is_ok() {
            sent += 1;
        }
        w.run_for(Duration::from_millis(100));
        got += drain(&carol_rx).len();
    }
    w.settle_until(|_| {
        got += drain(&carol_rx).len();
        got == sent
    });
    let stats = w.net.host(server).stats();
    assert_eq!(stats.slow_consumers, 1, "{stats:?}");
    // Bob is told why (his `Leave` waits only behind his shallow SCTP
    // queue, not behind the backlog the server dropped).
    w.settle_until(|_| matches!(calls[1].state(), CallState::Ended(_)));
    assert!(
        matches!(calls[1].state(), CallState::Ended(r) if r.contains("keep up")),
        "{:?}",
        calls[1].state()
    );
    let members: Vec<String> = w
        .net
        .host(server)
        .members("call")
        .into_iter()
        .map(|(_, p)| p.to_string())
        .collect();
    assert_eq!(
        members,
        vec!["alice", "carol"],
        "bob was removed; carol got everything"
    );
}

/// An application woken by its join already knows who is in the call: the
/// roster that follows `JoinAccepted` is applied before the call turns
/// joined.
#[test]
fn a_join_wakes_the_application_with_the_roster_in_place() {
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::{Context, Wake, Waker};

    struct SeeRoster {
        call: dcengine::Call,
        seen: Mutex<Option<Vec<String>>>,
    }
    impl Wake for SeeRoster {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            let roster = self
                .call
                .participants()
                .iter()
                .map(ToString::to_string)
                .collect();
            self.seen
                .lock()
                .expect("not poisoned")
                .get_or_insert(roster);
        }
    }

    let mut world = World::new(31, LinkConfig::default());
    world.call_of("c", &["alice", "bob"]);
    let (_, carol) = world.join("c", "carol");
    let see = Arc::new(SeeRoster {
        call: carol.clone(),
        seen: Mutex::new(None),
    });
    let waker = Waker::from(see.clone());
    let mut ready = pin!(carol.ready());
    assert!(
        ready
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
    );
    world.settle_until(|_| carol.is_joined());
    let seen = see.seen.lock().expect("not poisoned").clone();
    assert_eq!(seen, Some(vec!["alice".to_owned(), "bob".to_owned()]));
}
