//! The sans-IO node driven through the deterministic network harness.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use dcengine::proto::{AssocId, CloseReason, Delivery, Event, Node, NodeConfig};
use dcengine::sim::{HostId, LinkConfig};
use dcengine::wire::{Data, Frame, Join, JoinAccepted, MemberId, Message, PROTOCOL_VERSION};

type Network = dcengine::sim::Network<Node>;

/// Drains every event of host `id`.
fn events(net: &mut Network, id: HostId) -> Vec<Event> {
    std::iter::from_fn(|| net.host_mut(id).poll_event()).collect()
}

/// A server and a client with the given link, connected. Returns the network,
/// the server and client host ids and the association ids on each side.
fn connected_pair(seed: u64, link: LinkConfig) -> (Network, HostId, HostId, AssocId, AssocId) {
    let mut net = Network::new(seed, link);
    let server = net.add_host(Node::new(NodeConfig::server()));
    let client = net.add_host(Node::new(NodeConfig::client()));
    let (now, to) = (net.now(), net.addr(server));
    let c_assoc = net.host_mut(client).connect(now, to).expect("connect");
    let mut s_assoc = None;
    let mut c_up = false;
    let ok = net.run_until(Duration::from_secs(10), |net| {
        for e in events(net, server) {
            if let Event::Connected { assoc, .. } = e {
                s_assoc = Some(assoc);
            }
        }
        for e in events(net, client) {
            if let Event::Connected { assoc, .. } = e {
                assert_eq!(assoc, c_assoc);
                c_up = true;
            }
        }
        c_up && s_assoc.is_some()
    });
    assert!(ok, "handshake did not complete");
    (net, server, client, s_assoc.expect("server side"), c_assoc)
}

fn data(seq: u32, payload: impl Into<Bytes>) -> Message {
    Message::Frame(Frame::Data(Data {
        channel: 1000,
        session: 1,
        seq,
        origin: None,
        epoch: None,
        payload: payload.into(),
    }))
}

#[test]
fn handshake_completes_on_both_sides() {
    let (net, server, client, s, c) = connected_pair(1, LinkConfig::default());
    assert!(net.host(server).is_connected(s));
    assert!(net.host(client).is_connected(c));
    assert_eq!(net.host(client).remote(c), Some(net.addr(server)));
}

#[test]
fn frames_flow_both_ways() {
    let (mut net, server, client, s, c) = connected_pair(2, LinkConfig::default());
    let now = net.now();
    let join = Message::Frame(Frame::Join(Join {
        version: PROTOCOL_VERSION,
        call_id: "call".try_into().expect("short"),
        participant_id: "alice".try_into().expect("short"),
        token: Bytes::from_static(b"token"),
    }));
    net.host_mut(client)
        .send(now, c, Delivery::Reliable, &join)
        .expect("send");
    net.host_mut(client)
        .send(now, c, Delivery::Lossy, &data(1, "lossy"))
        .expect("send");
    let accepted = JoinAccepted {
        version: PROTOCOL_VERSION,
        member: MemberId(3),
        max_message_size: 32768,
        idle_timeout_ms: 120_000,
        traffic: Default::default(),
        max_senders: 1024,
    };
    let batch = Message::Batch(dcengine::wire::Batch {
        frames: vec![
            accepted.clone().into(),
            match data(7, "hello") {
                Message::Frame(f) => f,
                Message::Batch(_) => unreachable!(),
            },
        ],
    });
    net.host_mut(server)
        .send(now, s, Delivery::Reliable, &batch)
        .expect("send");
    net.run_for(Duration::from_secs(1));

    let at_server: Vec<_> = events(&mut net, server);
    let Message::Frame(join) = join else {
        unreachable!()
    };
    assert!(at_server.contains(&Event::Frame {
        assoc: s,
        delivery: Delivery::Reliable,
        frame: join
    }));
    assert!(at_server.iter().any(|e| matches!(e,
        Event::Frame { delivery: Delivery::Lossy, frame: Frame::Data(d), .. } if d.payload == "lossy")));

    let at_client: Vec<_> = events(&mut net, client)
        .into_iter()
        .filter_map(|e| match e {
            Event::Frame { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(
        at_client.len(),
        2,
        "a batch arrives as its frames, in order"
    );
    assert_eq!(at_client[0], Frame::JoinAccepted(accepted));
    assert!(matches!(&at_client[1], Frame::Data(d) if d.seq == 7 && d.payload == "hello"));
}

/// 100,000 reliable ordered messages through 10 % loss, reordering and
/// duplication (both directions) arrive exactly once, in order.
#[test]
fn reliable_messages_survive_loss_reorder_and_duplication() {
    const COUNT: u32 = 100_000;
    const WINDOW: usize = 64 * 1024;
    let link = LinkConfig {
        latency: Duration::from_millis(20),
        jitter: Duration::from_millis(5),
        loss: 0.10,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        rate_bps: Some(100_000_000),
        ..LinkConfig::default()
    };
    let (mut net, server, client, _s, c) = connected_pair(3, link);
    let mut next = 1u32;
    let mut expected = 1u32;
    let mut pending_check: VecDeque<u32> = VecDeque::new();
    let done = net.run_until(Duration::from_secs(600), |net| {
        let now = net.now();
        let node = net.host_mut(client);
        while next <= COUNT && node.queued_bytes(c) < WINDOW {
            let payload = Bytes::from(next.to_be_bytes().repeat(8));
            node.send(now, c, Delivery::Reliable, &data(next, payload))
                .expect("send");
            next += 1;
        }
        for e in events(net, server) {
            match e {
                Event::Frame {
                    frame: Frame::Data(d),
                    delivery,
                    ..
                } => {
                    assert_eq!(delivery, Delivery::Reliable);
                    assert_eq!(d.seq, expected, "out of order, duplicated or lost");
                    assert_eq!(&d.payload[..4], &d.seq.to_be_bytes());
                    pending_check.push_back(d.seq);
                    expected += 1;
                }
                Event::Closed { reason, .. } => panic!("association closed: {reason}"),
                _ => {}
            }
        }
        expected > COUNT
    });
    assert!(done, "only {} of {COUNT} delivered", expected - 1);
    assert_eq!(pending_check.len(), COUNT as usize);
    let stats = net.total_stats();
    assert!(
        stats.lost > 1000 && stats.duplicated > 500 && stats.reordered > 500,
        "{stats:?}"
    );
}

#[test]
fn vanished_peer_is_reported_closed_within_the_idle_timeout() {
    let (mut net, server, client, _s, c) = connected_pair(4, LinkConfig::default());
    let idle = net.host(client).config().idle_timeout;
    let vanished_at = net.now();
    net.set_up(server, false);
    let mut closed = None;
    let ok = net.run_until(idle * 2, |net| {
        for e in events(net, client) {
            if let Event::Closed { assoc, reason, .. } = e {
                assert_eq!(assoc, c);
                closed = Some((net.now(), reason));
            }
        }
        closed.is_some()
    });
    assert!(ok, "the client never noticed");
    let (at, reason) = closed.expect("closed");
    assert_eq!(reason, CloseReason::TimedOut);
    let took = at - vanished_at;
    assert!(took <= idle, "took {took:?}, idle timeout {idle:?}");
    assert!(
        took >= idle - Duration::from_secs(1),
        "closed too early: {took:?}"
    );
    assert_eq!(net.host(client).association_count(), 0);
}

#[test]
fn graceful_close_reaches_both_sides() {
    let (mut net, server, client, s, c) = connected_pair(5, LinkConfig::default());
    let now = net.now();
    net.host_mut(client)
        .send(now, c, Delivery::Reliable, &data(1, "last words"))
        .expect("send");
    net.host_mut(client).close(now, c);
    // Well inside the 3 s close timeout: the shutdown itself completes.
    net.run_for(Duration::from_millis(500));
    let at_server = events(&mut net, server);
    assert!(
        at_server.iter().any(
            |e| matches!(e, Event::Frame { frame: Frame::Data(d), .. } if d.payload == "last words")
        ),
        "data queued before close is delivered"
    );
    assert!(
        at_server
            .iter()
            .any(|e| matches!(e, Event::Closed { assoc, .. } if *assoc == s))
    );
    assert!(events(&mut net, client).iter().any(
        |e| matches!(e, Event::Closed { assoc, reason: CloseReason::Local, .. } if *assoc == c)
    ));
    assert_eq!(net.host(client).association_count(), 0);
    assert_eq!(net.host(server).association_count(), 0);
}
