//! Node unit tests: error paths and bad input, through the simulator.

use std::time::Duration;

use bytes::Bytes;

use super::config::SCTP_PACKET_BYTES;
use super::*;
use crate::sim::{HostId, LinkConfig};
use crate::wire::{Data, Frame, Message};

type Network = crate::sim::Network<Node>;

fn pair(config: NodeConfig) -> (Network, HostId, HostId, AssocId, AssocId) {
    pair_with(9, config, NodeConfig::client())
}

/// A connected pair on a network seeded with `seed`.
fn pair_with(
    seed: u64,
    server_config: NodeConfig,
    client_config: NodeConfig,
) -> (Network, HostId, HostId, AssocId, AssocId) {
    let mut net = Network::new(seed, LinkConfig::default());
    let server = net.add_host(Node::new(server_config));
    let client = net.add_host(Node::new(client_config));
    let (now, to) = (net.now(), net.addr(server));
    let c = net.host_mut(client).connect(now, to).expect("connect");
    let mut s = None;
    assert!(net.run_until(Duration::from_secs(5), |net| {
        while let Some(e) = net.host_mut(server).poll_event() {
            if let Event::Connected { assoc, .. } = e {
                s = Some(assoc);
            }
        }
        s.is_some() && net.host(client).is_connected(c)
    }));
    while net.host_mut(client).poll_event().is_some() {}
    (net, server, client, s.expect("server assoc"), c)
}

fn small_data() -> Message {
    Message::Frame(Frame::Data(Data {
        channel: 1,
        session: 1,
        seq: 1,
        origin: None,
        epoch: None,
        payload: Bytes::from_static(b"x"),
    }))
}

#[test]
fn connect_errors_say_what_is_wrong() {
    let now = crate::sim::start_instant();
    let port0 = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let e = Node::new(NodeConfig::client())
        .connect(now, port0)
        .expect_err("port 0");
    assert_eq!(e, ConnectError::InvalidRemoteAddress(port0));
    assert_eq!(
        e.to_string(),
        "cannot start an association: invalid remote address: 127.0.0.1:0"
    );
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    let e = Node::new(NodeConfig::client().sctp_port(0))
        .connect(now, to)
        .expect_err("SCTP port 0");
    assert_eq!(e, ConnectError::InvalidSctpPort);
    // The engine's own violations read as before, from typed fields.
    let v = CloseReason::ProtocolViolation(Violation::StreamBeyondNegotiated {
        stream: 20,
        negotiated: 16,
    });
    assert_eq!(
        v.to_string(),
        "protocol violation: data on stream 20, beyond the 16 negotiated"
    );
}

#[test]
fn send_errors_are_typed_and_queue_nothing() {
    let mut net: Network = Network::new(1, LinkConfig::default());
    let server = net.add_host(Node::new(NodeConfig::server()));
    let client = net.add_host(Node::new(NodeConfig::client()));
    let (now, to) = (net.now(), net.addr(server));
    let node = net.host_mut(client);
    assert_eq!(
        node.send(now, AssocId(77), Delivery::Reliable, &small_data()),
        Err(SendError::UnknownAssociation)
    );
    let c = node.connect(now, to).expect("connect");
    assert_eq!(
        node.send(now, c, Delivery::Reliable, &small_data()),
        Err(SendError::NotConnected)
    );
    net.run_until(Duration::from_secs(5), |net| {
        net.host(client).is_connected(c)
    });
    let limit = NodeConfig::default().max_sctp_message_size as usize;
    let huge = Bytes::from(vec![0; limit + 1]);
    assert_eq!(
        net.host_mut(client)
            .send_encoded(now, c, Delivery::Reliable, huge),
        Err(SendError::TooLarge {
            size: limit + 1,
            limit
        })
    );
    assert_eq!(net.host(client).stats().messages_sent, 0);
}

#[test]
fn garbage_datagrams_are_counted_and_harm_nothing() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server());
    let now = net.now();
    let from = net.addr(client);
    let node = net.host_mut(server);
    for junk in [&b""[..], b"x", &[0u8; 12], &[0xffu8; 200]] {
        let placement = node.handle_datagram(now, from, Bytes::copy_from_slice(junk));
        assert_eq!(
            placement,
            Placement::Dropped(DropReason::UnknownAssociation)
        );
    }
    assert_eq!(node.stats().datagrams_dropped, 4);
    assert!(node.is_connected(s));
    // The association still works.
    net.host_mut(client)
        .send(now, c, Delivery::Reliable, &small_data())
        .expect("send");
    net.run_for(Duration::from_millis(200));
    assert!(
        std::iter::from_fn(|| net.host_mut(server).poll_event())
            .any(|e| matches!(e, Event::Frame { .. }))
    );
}

#[test]
fn malformed_message_is_reported_and_the_association_survives() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server());
    let now = net.now();
    let node = net.host_mut(client);
    node.send_encoded(
        now,
        c,
        Delivery::Reliable,
        Bytes::from_static(&[0x7f, 1, 2]),
    )
    .expect("send");
    node.send(now, c, Delivery::Reliable, &small_data())
        .expect("send");
    net.run_for(Duration::from_millis(200));
    let events: Vec<_> = std::iter::from_fn(|| net.host_mut(server).poll_event()).collect();
    assert_eq!(
        events[0],
        Event::Malformed {
            assoc: s,
            error: crate::wire::DecodeError::UnknownFrameType(0x7f)
        }
    );
    assert!(matches!(
        &events[1],
        Event::Frame {
            frame: Frame::Data(_),
            ..
        }
    ));
    assert_eq!(net.host(server).stats().messages_malformed, 1);
    assert!(net.host(server).is_connected(s));
}

#[test]
fn a_full_node_refuses_new_associations() {
    let config = NodeConfig {
        max_associations: 1,
        ..NodeConfig::server()
    };
    let (mut net, server, _client, _s, _c) = pair(config);
    let late = net.add_host(Node::new(NodeConfig::client()));
    let (now, to) = (net.now(), net.addr(server));
    let l = net.host_mut(late).connect(now, to).expect("connect");
    let idle = NodeConfig::default().idle_timeout;
    let mut reason = None;
    net.run_until(idle * 2, |net| {
        while let Some(e) = net.host_mut(late).poll_event() {
            if let Event::Closed { assoc, reason: r, .. } = e {
                assert_eq!(assoc, l);
                reason = Some(r);
            }
        }
        reason.is_some()
    });
    assert_eq!(reason, Some(CloseReason::TimedOut));
    assert_eq!(net.host(server).association_count(), 1);
}

#[test]
fn time_going_backwards_is_clamped() {
    let (mut net, server, client, _s, c) = pair(NodeConfig::server());
    let now = net.now();
    let past = now - Duration::from_secs(1);
    let node = net.host_mut(client);
    node.handle_timeout(past);
    node.send(past, c, Delivery::Reliable, &small_data())
        .expect("send");
    net.run_for(Duration::from_millis(200));
    assert!(
        std::iter::from_fn(|| net.host_mut(server).poll_event())
            .any(|e| matches!(e, Event::Frame { .. }))
    );
}

#[test]
fn keepalives_hold_an_idle_association_open() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server());
    let idle = NodeConfig::default().idle_timeout;
    net.run_for(idle * 4);
    assert!(net.host(client).is_connected(c));
    assert!(net.host(server).is_connected(s));
    // Keep-alives are consumed by the node, never surfaced as frames.
    assert!(net.host_mut(server).poll_event().is_none());
}

/// The INIT goes again one RTO after the `now` given to `connect`, on the
/// driver's clock, wherever the wall clock is. (The engine's former stack, sctp-proto,
/// started the T1-init timer at `Instant::now()`: a simulator whose virtual
/// time had run an hour ahead saw the INIT retransmitted at once, a loaded
/// machine whose wall clock ran ahead of virtual time saw it late.)
#[test]
fn an_init_is_retransmitted_one_rto_after_connect_on_the_drivers_clock() {
    let config = NodeConfig::client();
    let rto = config.rto_initial;
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    // Virtual time ahead of the wall clock, as a simulator's runs.
    let now = crate::sim::start_instant() + Duration::from_secs(3600);
    let mut node = Node::new(config);
    node.connect(now, to).expect("connect");
    let init = node.poll_transmit().expect("the INIT");
    assert_eq!(init.payload.get(12), Some(&1), "an INIT chunk");
    assert!(node.poll_transmit().is_none());
    assert_eq!(node.poll_timeout(), Some(now + rto), "T1-init on our clock");
    node.handle_timeout(now + rto - Duration::from_millis(1));
    assert!(node.poll_transmit().is_none(), "no INIT before the RTO");
    node.handle_timeout(now + rto);
    let again = node.poll_transmit().expect("the INIT, once the RTO passed");
    assert_eq!(again.payload.get(12), Some(&1), "an INIT chunk");
}

#[test]
fn an_init_sent_to_a_client_node_is_dropped_not_a_panic() {
    let mut a = Node::new(NodeConfig::client());
    let mut b = Node::new(NodeConfig::client());
    let now = crate::sim::start_instant();
    let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    a.connect(now, addr(2)).expect("connect");
    let init = a.poll_transmit().expect("INIT");
    let placement = b.handle_datagram(now, addr(1), init.payload);
    assert_eq!(placement, Placement::Dropped(DropReason::NotAccepting));
    assert_eq!(b.stats().datagrams_dropped, 1);
    assert_eq!(b.association_count(), 0);
}

/// Every INIT is answered, and none holds anything: the association is
/// made from the COOKIE-ECHO, which only a peer that got the INIT-ACK can
/// send (the cookie is sealed for its address).
#[test]
fn an_init_flood_holds_no_state_and_a_real_peer_still_joins() {
    let (mut net, server, client, _, _) = pair(NodeConfig::server());
    let now = net.now();
    let addr = |p| std::net::SocketAddr::from(([10, 0, 0, 1], p));
    let before = net.host(server).association_count();
    let mut c = Node::new(NodeConfig::client());
    c.connect(now, addr(1)).expect("connect");
    let init = c.poll_transmit().expect("INIT").payload;
    let node = net.host_mut(server);
    let mut answers = Vec::new();
    for p in 0..10_000u16 {
        assert_eq!(
            node.handle_datagram(now, addr(1000 + p), init.clone()),
            Placement::Placed
        );
        let answer = node.poll_transmit().expect("an INIT-ACK");
        assert_eq!(answer.destination, addr(1000 + p));
        assert_eq!(answer.payload.get(12), Some(&2), "an INIT-ACK chunk");
        answers.push(answer.payload);
    }
    assert_eq!(node.association_count(), before, "no state per INIT");
    assert_eq!(node.stats().inits_answered, 10_000 + 1);
    assert_eq!(node.poll_timeout().is_some(), before > 0);
    // The real peer's handshake works through the flood.
    let to = net.addr(server);
    let c2 = net.host_mut(client).connect(now, to).expect("connect");
    assert!(net.run_until(Duration::from_secs(2), |net| net
        .host(client)
        .is_connected(c2)));
    // An INIT-ACK echoed back from another address than it went to: refused.
    let answer = &answers[0];
    let cookie_echo = cookie_echo_for(answer);
    let node = net.host_mut(server);
    assert_eq!(
        node.handle_datagram(now, addr(999), cookie_echo.clone()),
        Placement::Dropped(DropReason::InvalidCookie)
    );
    // From the right one it makes an association.
    let count = node.association_count();
    assert_eq!(
        node.handle_datagram(now, addr(1000), cookie_echo),
        Placement::Placed
    );
    assert_eq!(node.association_count(), count + 1);
    assert_eq!(node.stats().cookies_refused, 1);
}

/// A COOKIE-ECHO answering `init_ack` (the cookie copied back, checksum
/// recomputed), as any peer would send it.
fn cookie_echo_for(init_ack: &[u8]) -> Bytes {
    let chunk_end = 12 + usize::from(u16::from_be_bytes([init_ack[14], init_ack[15]]));
    let mut at = 12 + 20;
    let cookie = loop {
        let ty = u16::from_be_bytes([init_ack[at], init_ack[at + 1]]);
        let len = usize::from(u16::from_be_bytes([init_ack[at + 2], init_ack[at + 3]]));
        assert!(at + len <= chunk_end, "a cookie in the INIT-ACK");
        if ty == 7 {
            break &init_ack[at + 4..at + len];
        }
        at += len.next_multiple_of(4);
    };
    // The INIT-ACK's initiate tag is the tag the peer now uses.
    let tag = &init_ack[16..20];
    let mut p = Vec::new();
    p.extend_from_slice(&init_ack[2..4]);
    p.extend_from_slice(&init_ack[0..2]);
    p.extend_from_slice(tag);
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(&[10, 0]);
    p.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
    p.extend_from_slice(cookie);
    let sum = super::cookie::CRC32C.checksum(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    Bytes::from(p)
}

/// A COOKIE-ECHO whose cookie the node did not seal — one dcsctp itself
/// would accept (it authenticates nothing) — creates nothing.
#[test]
fn a_forged_cookie_echo_creates_nothing() {
    use dcsctp::api::{DcSctpSocket, Options, Socket, SocketEvent};
    let mut server = Node::new(NodeConfig::server());
    let now = crate::sim::start_instant();
    let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    // A plain dcsctp listener's INIT-ACK: an unsealed cookie.
    let mut c = Node::new(NodeConfig::client());
    c.connect(now, addr(1)).expect("connect");
    let init = c.poll_transmit().expect("INIT").payload;
    let mut plain = Socket::new("plain", &Options::default());
    plain.handle_input(&init);
    let Some(SocketEvent::SendPacket(init_ack)) = plain.poll_event() else {
        panic!("an INIT-ACK");
    };
    let forged = cookie_echo_for(&init_ack);
    assert_eq!(
        server.handle_datagram(now, addr(2), forged),
        Placement::Dropped(DropReason::InvalidCookie)
    );
    assert_eq!(server.association_count(), 0);
    assert!(server.poll_transmit().is_none(), "nothing answered");
    // A sealed one, one bit of its cookie flipped (checksum recomputed).
    assert_eq!(server.handle_datagram(now, addr(3), init), Placement::Placed);
    let sealed = server.poll_transmit().expect("INIT-ACK").payload;
    let mut altered = cookie_echo_for(&sealed).to_vec();
    altered[20] ^= 1;
    altered[8..12].fill(0);
    let sum = super::cookie::CRC32C.checksum(&altered);
    altered[8..12].copy_from_slice(&sum.to_le_bytes());
    assert_eq!(
        server.handle_datagram(now, addr(3), Bytes::from(altered)),
        Placement::Dropped(DropReason::InvalidCookie)
    );
    // And too late: past the cookie's lifetime.
    let late = now + super::cookie::COOKIE_LIFETIME + Duration::from_secs(2);
    assert_eq!(
        server.handle_datagram(late, addr(3), cookie_echo_for(&sealed)),
        Placement::Dropped(DropReason::InvalidCookie)
    );
    assert_eq!(server.association_count(), 0);
    assert_eq!(server.stats().cookies_refused, 3);
}

#[test]
fn a_server_says_which_inits_it_drops_and_which_it_refuses() {
    let mut server = Node::new(NodeConfig::server());
    let now = crate::sim::start_instant();
    let addr = |p| std::net::SocketAddr::from(([127, 0, 0, 1], p));
    let init = || {
        let mut c = Node::new(NodeConfig::client());
        c.connect(now, addr(1)).expect("connect");
        c.poll_transmit().expect("INIT").payload
    };
    // A corrupted INIT (its checksum no longer holds): SCTP turns it down.
    let mut bad = init().to_vec();
    bad[8] ^= 0xff;
    let placement = server.handle_datagram(now, addr(2), Bytes::from(bad));
    assert_eq!(placement, Placement::Dropped(DropReason::InitRejected));
    assert_eq!(server.stats().datagrams_dropped, 1);
    // Closing everything: a new INIT is refused (answered with an ABORT),
    // not dropped.
    server.close_all(now);
    assert_eq!(
        server.handle_datagram(now, addr(3), init()),
        Placement::Refused
    );
    assert_eq!(server.stats().associations_refused, 1);
    assert_eq!(server.stats().datagrams_dropped, 1);
    assert!(server.poll_transmit().is_some(), "the ABORT");
}

/// A message of `MAX_PACKET_MESSAGE` bytes leaves in one datagram of
/// `SCTP_PACKET_BYTES`; one byte more takes two (SCTP fragments it).
#[test]
fn a_message_of_max_packet_message_bytes_fills_exactly_one_packet() {
    let (mut net, _, client, _, c) = pair(NodeConfig::server());
    let now = net.now();
    let node = net.host_mut(client);
    while node.poll_transmit().is_some() {}
    let datagrams = |node: &mut Node, len: usize| {
        node.send_encoded(now, c, Delivery::Reliable, Bytes::from(vec![0u8; len]))
            .expect("send");
        std::iter::from_fn(|| node.poll_transmit())
            .map(|t| t.payload.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(datagrams(node, MAX_PACKET_MESSAGE), vec![SCTP_PACKET_BYTES]);
    let two = datagrams(node, MAX_PACKET_MESSAGE + 1);
    assert_eq!(two.len(), 2, "{two:?}");
    assert!(two.iter().all(|&n| n <= SCTP_PACKET_BYTES), "{two:?}");
}

/// `send_encoded_many` fills packets across messages larger than a packet
/// (three of `MAX_PACKET_MESSAGE + 13` bytes: four datagrams, not six) and
/// leaves those that fit a packet in packets of their own.
#[test]
fn send_encoded_many_fills_packets_across_messages_larger_than_one() {
    // Each on a fresh association: the initial congestion window (4
    // packets) takes one batch.
    let datagrams = |len: usize| {
        let (mut net, _, client, _, c) = pair(NodeConfig::server());
        let now = net.now();
        let node = net.host_mut(client);
        while node.poll_transmit().is_some() {}
        let sent = node.stats().messages_sent;
        let messages = (0..3).map(|_| (Delivery::Reliable, Bytes::from(vec![0u8; len])));
        node.send_encoded_many(now, c, messages).expect("send");
        assert_eq!(node.stats().messages_sent - sent, 3);
        std::iter::from_fn(|| node.poll_transmit())
            .map(|t| t.payload.len())
            .collect::<Vec<_>>()
    };
    let large = datagrams(MAX_PACKET_MESSAGE + 13);
    assert_eq!(large.len(), 4, "{large:?}");
    assert!(large[..3].iter().all(|&n| n == SCTP_PACKET_BYTES), "{large:?}");
    assert_eq!(datagrams(MAX_PACKET_MESSAGE), vec![SCTP_PACKET_BYTES; 3]);
}

/// With immediate acks on (`Node::set_immediate_acks`), every packet with
/// DATA asks for an immediate SACK (RFC 7053 I bit, the checksum still
/// valid), so the peer acknowledges each one at once rather than every
/// second one or after its delayed-ack timer; off (the default), none does.
#[test]
fn immediate_acks_mark_every_data_packet() {
    let (mut net, server, client, _, c) = pair(NodeConfig::server());
    // The first DATA of an association is acknowledged at once whatever
    // its flags (RFC 9260 6.2): past it first.
    let t = net.now();
    net.host_mut(client)
        .send(t, c, Delivery::Reliable, &small_data())
        .expect("send");
    net.run_until(Duration::from_secs(1), |_| false);
    let now = net.now();
    while net.host_mut(client).poll_transmit().is_some() {}
    while net.host_mut(server).poll_event().is_some() {}
    // Two packets' worth in one run.
    let run = |node: &mut Node| {
        node.send_encoded(
            now,
            c,
            Delivery::Reliable,
            Bytes::from(vec![7u8; 2 * MAX_PACKET_MESSAGE]),
        )
        .expect("send");
        let packets: Vec<Bytes> = std::iter::from_fn(|| node.poll_transmit())
            .map(|t| t.payload)
            .collect();
        assert_eq!(packets.len(), 2);
        let marked = packets
            .iter()
            .filter(|p| {
                let at = node::last_data_chunk(p).expect("a DATA chunk");
                p[at + 1] & node::FLAG_IMMEDIATE_SACK != 0
            })
            .count();
        (packets, marked)
    };
    let client_addr = net.addr(client);
    let server_addr = net.addr(server);
    // Off (the default): no packet is marked, and the peer holds the SACK
    // for a lone packet until a second arrives.
    let (plain, marked) = run(net.host_mut(client));
    assert_eq!(marked, 0, "off by default");
    let peer = net.host_mut(server);
    let placement = peer.handle_datagram(now, client_addr, plain[0].clone());
    assert_eq!(placement, Placement::Placed);
    assert_eq!(std::iter::from_fn(|| peer.poll_transmit()).count(), 0);
    let placement = peer.handle_datagram(now, client_addr, plain[1].clone());
    assert_eq!(placement, Placement::Placed);
    let sacks: Vec<Bytes> = std::iter::from_fn(|| peer.poll_transmit())
        .map(|t| t.payload)
        .collect();
    let node = net.host_mut(client);
    for sack in sacks {
        assert_eq!(
            node.handle_datagram(now, server_addr, sack),
            Placement::Placed
        );
    }
    while node.poll_transmit().is_some() {}
    // On: every packet is marked, the peer takes them (the checksum holds)
    // and answers a lone one at once.
    node.set_immediate_acks(c, true);
    let (packets, marked) = run(node);
    assert_eq!(marked, 2, "every one, not only the last");
    let peer = net.host_mut(server);
    let placement = peer.handle_datagram(now, client_addr, packets[0].clone());
    assert_eq!(placement, Placement::Placed);
    assert_eq!(std::iter::from_fn(|| peer.poll_transmit()).count(), 1);
    assert_eq!(peer.stats().datagrams_dropped, 0);
}

/// Handshakes complete through loss, duplication and reordering: a lost
/// INIT-ACK (the INIT is answered again, statelessly) and a lost COOKIE-ACK
/// (the retransmitted COOKIE-ECHO, still sealed, reaches the association
/// made from the first and is answered again) included. Seeds 12 and 13
/// lose a COOKIE-ACK.
#[test]
fn handshakes_complete_through_a_lossy_link() {
    for seed in 0..20 {
        let link = LinkConfig {
            loss: 0.10,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_delay: Duration::from_millis(20),
            ..LinkConfig::default()
        };
        let mut net = Network::new(seed, link);
        let server = net.add_host(Node::new(NodeConfig::server()));
        let client = net.add_host(Node::new(NodeConfig::client()));
        let (now, to) = (net.now(), net.addr(server));
        let c = net.host_mut(client).connect(now, to).expect("connect");
        assert!(
            net.run_until(Duration::from_secs(5), |net| net
                .host(client)
                .is_connected(c)),
            "seed {seed}"
        );
        assert_eq!(net.host(server).association_count(), 1, "seed {seed}");
    }
}

/// A connected pair whose client may send messages of up to 1 MiB, more
/// than the server accepts.
fn pair_with_big_client(seed: u64) -> (Network, HostId, HostId, AssocId, AssocId) {
    pair_with(
        seed,
        NodeConfig::server(),
        // Past the default receive buffer.
        NodeConfig::client().max_sctp_message_size(2 * NodeConfig::default().receive_buffer),
    )
}

/// Runs until both ends report their association closed; returns the
/// reasons (server's, client's).
fn both_closed(net: &mut Network, server: HostId, client: HostId) -> (CloseReason, CloseReason) {
    let (mut at_s, mut at_c) = (None, None);
    // Up to 5 minutes of virtual time: filling a 4 MiB receive buffer ends
    // with zero-window probes on a backed-off timer.
    assert!(net.run_until(Duration::from_secs(300), |net| {
        while let Some(e) = net.host_mut(server).poll_event() {
            if let Event::Closed { reason, .. } = e {
                at_s = Some(reason);
            }
        }
        while let Some(e) = net.host_mut(client).poll_event() {
            if let Event::Closed { reason, .. } = e {
                at_c = Some(reason);
            }
        }
        at_s.is_some() && at_c.is_some()
    }));
    (at_s.expect("server closed"), at_c.expect("client closed"))
}

/// A message over `max_sctp_message_size` (but within the receive buffer)
/// ends the association with an ABORT that says why, on both ends; it is
/// never delivered, and never silently dropped.
#[test]
fn a_message_over_the_limit_is_answered_with_an_abort_that_says_why() {
    let (mut net, server, client, _, c) = pair_with_big_client(21);
    let limit = NodeConfig::default().max_sctp_message_size as usize;
    let now = net.now();
    net.host_mut(client)
        .send_encoded(now, c, Delivery::Reliable, Bytes::from(vec![0u8; 300_000]))
        .expect("the client's own limit is higher");
    let (at_s, at_c) = both_closed(&mut net, server, client);
    assert_eq!(
        at_s,
        CloseReason::ProtocolViolation(Violation::MessageTooLarge {
            size: 300_000,
            limit
        })
    );
    assert_eq!(
        at_c,
        CloseReason::Aborted(Some(format!(
            "message of 300000 bytes over the limit of {limit}"
        )))
    );
    assert_eq!(net.host(server).stats().oversize_messages, 1);
    assert_eq!(net.host(server).stats().messages_received, 0);
}

/// A message larger than the receive buffer can never be reassembled: the
/// receiver aborts once its buffer is full, rather than stalling the
/// association with the peer retransmitting into it forever.
#[test]
fn a_message_larger_than_the_receive_buffer_aborts_rather_than_stalls() {
    let (mut net, server, client, _, c) = pair_with_big_client(22);
    let buffer = NodeConfig::default().receive_buffer as usize;
    let now = net.now();
    net.host_mut(client)
        .send_encoded(now, c, Delivery::Reliable, Bytes::from(vec![0u8; buffer + 100_000]))
        .expect("the client's own limit is higher");
    let (at_s, at_c) = both_closed(&mut net, server, client);
    assert_eq!(at_s, CloseReason::ReceiveBufferExhausted);
    assert_eq!(
        at_c,
        CloseReason::Aborted(Some("Reassembly queue is exhausted".into()))
    );
}

/// The peer resets the engine's control stream (what closing its data
/// channel does): what it sent before arrives, then the association is
/// closed gracefully with the reason. A reset of the Lossy stream changes
/// nothing: later messages on it arrive.
#[test]
fn a_stream_reset_by_the_peer_loses_nothing_and_closes_the_control_stream_with_a_reason() {
    let (mut net, server, client, _, c) = pair(NodeConfig::server());
    let now = net.now();
    let node = net.host_mut(client);
    node.send(now, c, Delivery::Lossy, &small_data()).expect("send");
    assert!(node.reset_stream(now, c, Delivery::Lossy));
    net.run_for(Duration::from_millis(200));
    let now = net.now();
    net.host_mut(client)
        .send(now, c, Delivery::Lossy, &small_data())
        .expect("after the reset of stream 1");
    net.host_mut(client)
        .send(now, c, Delivery::Reliable, &small_data())
        .expect("send");
    assert!(net.host_mut(client).reset_stream(now, c, Delivery::Reliable));
    let mut frames = Vec::new();
    let (mut at_s, mut at_c) = (None, None);
    assert!(net.run_until(Duration::from_secs(10), |net| {
        while let Some(e) = net.host_mut(server).poll_event() {
            match e {
                Event::Frame { delivery, .. } => frames.push(delivery),
                Event::Closed { reason, .. } => at_s = Some(reason),
                _ => {}
            }
        }
        while let Some(e) = net.host_mut(client).poll_event() {
            if let Event::Closed { reason, .. } = e {
                at_c = Some(reason);
            }
        }
        at_s.is_some() && at_c.is_some()
    }));
    assert_eq!(
        frames,
        [Delivery::Lossy, Delivery::Lossy, Delivery::Reliable],
        "nothing lost"
    );
    assert_eq!(at_s, Some(CloseReason::StreamReset));
    assert_eq!(at_c, Some(CloseReason::PeerClosed), "a graceful close");
}

/// Every frame event `host` has, with the stream kind it came on.
fn frames(net: &mut Network, host: HostId) -> Vec<(Delivery, Frame)> {
    std::iter::from_fn(|| net.host_mut(host).poll_event())
        .filter_map(|e| match e {
            Event::Frame { delivery, frame, .. } => Some((delivery, frame)),
            _ => None,
        })
        .collect()
}

#[test]
fn channels_opened_with_dcep_carry_the_engine_protocol_on_the_peers_streams() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server());
    let now = net.now();
    // As a WebRTC stack that is the DTLS client would: even stream ids.
    assert!(net.host_mut(client).open_channels(now, c, 2, 4));
    net.run_for(Duration::from_millis(200));
    assert_eq!(net.host(server).stats().dcep_opened, 2);
    for (sender, assoc, receiver) in [(client, c, server), (server, s, client)] {
        let now = net.now();
        let node = net.host_mut(sender);
        node.send(now, assoc, Delivery::Reliable, &small_data())
            .expect("reliable");
        node.send(now, assoc, Delivery::Lossy, &small_data())
            .expect("lossy");
        net.run_for(Duration::from_millis(200));
        let got = frames(&mut net, receiver);
        let kinds: Vec<Delivery> = got.iter().map(|(d, _)| *d).collect();
        assert!(
            kinds.contains(&Delivery::Reliable) && kinds.contains(&Delivery::Lossy),
            "{got:?}"
        );
    }
    // What went on the wire used streams 2 and 4, never 0 or 1: the peer
    // (which only knows 2 and 4 now) took every message as the engine's.
    assert_eq!(net.host(server).stats().messages_ignored, 0);
    assert_eq!(net.host(client).stats().messages_ignored, 0);
}

#[test]
fn a_dcep_open_of_anything_else_is_refused_with_a_stream_reset() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server());
    let send_open = |net: &mut Network, stream: u16, label: &str, t: crate::wire::dcep::ChannelType| {
        let now = net.now();
        let open = crate::wire::dcep::Dcep::Open(crate::wire::dcep::DataChannelOpen {
            channel_type: t,
            priority: 256,
            reliability: 0,
            label: label.into(),
            protocol: crate::wire::dcep::PROTOCOL.into(),
        });
        use crate::wire::Codec;
        net.host_mut(client).send_raw(now, c, stream, 50, &open.to_bytes());
        net.run_for(Duration::from_millis(200));
    };
    use crate::wire::dcep::ChannelType;
    send_open(&mut net, 6, "chat", ChannelType::RELIABLE);
    // The engine's label with a type that does not fit it.
    send_open(&mut net, 8, "dcengine", ChannelType::RELIABLE_UNORDERED);
    assert_eq!(net.host(server).stats().dcep_refused, 2);
    assert_eq!(net.host(server).stats().dcep_opened, 0);
    // Nothing else changed: the pre-agreed streams still carry the protocol.
    let now = net.now();
    net.host_mut(client)
        .send(now, c, Delivery::Reliable, &small_data())
        .expect("reliable");
    net.run_for(Duration::from_millis(200));
    assert_eq!(frames(&mut net, server).len(), 1);
    assert!(net.host(server).is_connected(s));
}

/// Paced (`Node::set_pacing_rate`), new DATA leaves at the rate, a packet
/// at a time on the node's own timer, however much is queued; unpaced again,
/// SCTP's congestion window alone decides.
#[test]
fn a_paced_association_sends_at_its_rate() {
    let (mut net, server, client, _, c) = pair(NodeConfig::server());
    let now = net.now();
    let node = net.host_mut(client);
    // 12,000 bytes a second: a full packet every 100 ms.
    node.set_pacing_rate(now, c, Some(12_000.0));
    for _ in 0..40 {
        node.send_encoded(now, c, Delivery::Reliable, Bytes::from(vec![0u8; 1000]))
            .expect("send");
    }
    let sent = |net: &Network| net.link_stats(client, server).sent;
    let before = sent(&net);
    net.run_for(Duration::from_millis(1050));
    // A packet at once, then one each 100 ms (and the odd packet that is
    // not new data: acknowledgements of the server's control messages).
    let paced = sent(&net) - before;
    assert!((10..=13).contains(&paced), "{paced} packets in 1.05 s");
    let now = net.now();
    net.host_mut(client).set_pacing_rate(now, c, None);
    let before = sent(&net);
    net.run_for(Duration::from_millis(500));
    assert!(sent(&net) - before > 2 * 5, "unpaced: {}", sent(&net) - before);
}

/// A message of `i` for the hold test: 1,000 bytes, its index first.
fn numbered(i: u32) -> Message {
    let mut payload = vec![(i % 251) as u8; 1_000];
    payload[..4].copy_from_slice(&i.to_be_bytes());
    Message::Frame(Frame::Data(Data {
        channel: 1,
        session: 1,
        seq: i,
        origin: None,
        epoch: None,
        payload: Bytes::from(payload),
    }))
}

/// A driver that holds its reads (`Node::hold_reads`) closes the peer's
/// window (512 KiB): the peer's transport stops with most of 2 MB still
/// queued, for
/// as long as the hold lasts (a minute here; nothing gives up, nothing is
/// read), then everything arrives in order once it is let go.
#[test]
fn held_reads_stop_the_peer_and_lose_nothing() {
    let (mut net, server, client, s, c) = pair(NodeConfig::server().receive_buffer(512 * 1024));
    let frames = |net: &mut Network| {
        let mut got = Vec::new();
        while let Some(e) = net.host_mut(server).poll_event() {
            match e {
                Event::Frame { frame: Frame::Data(d), .. } => got.push(d.seq),
                Event::Closed { reason, .. } => panic!("closed: {reason}"),
                _ => {}
            }
        }
        got
    };
    let now = net.now();
    net.host_mut(server).hold_reads(now, s, true);
    assert!(net.host(server).reads_held(s));
    for i in 1..=2_000 {
        net.host_mut(client)
            .send(now, c, Delivery::Reliable, &numbered(i))
            .expect("queued");
    }
    net.run_until(Duration::from_secs(60), |_| false);
    assert!(frames(&mut net).is_empty(), "nothing read while held");
    let waiting = net.host(client).queued_bytes(c);
    assert!(waiting > 1_400_000, "the peer stopped: {waiting} bytes wait");
    let now = net.now();
    net.host_mut(server).hold_reads(now, s, false);
    let mut got = frames(&mut net);
    assert!(!got.is_empty(), "what waited is read at once");
    let start = net.now();
    // The window update goes at once: new data follows within a few round
    // trips (20 ms each), not at the peer's next zero window probe.
    let waited = got.len();
    net.run_until(Duration::from_secs(10), |net| {
        got.extend(frames(net));
        got.len() > waited
    });
    assert!(
        net.now() - start < Duration::from_millis(100),
        "went on after {:?}",
        net.now() - start
    );
    net.run_until(Duration::from_secs(60), |net| {
        got.extend(frames(net));
        got.len() == 2_000
    });
    assert_eq!(got, (1..=2_000).collect::<Vec<u32>>());
    // 1.5 MB at a 20 ms round trip, the peer's congestion window growing
    // again (measured: 2.3 s).
    let took = net.now() - start;
    assert!(took < Duration::from_secs(5), "went on: {took:?}");
}
