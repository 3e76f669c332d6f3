//! Hub tests against a raw node that does not follow the protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::auth::{HmacVerifier, WallClock, mint_token};
use crate::proto::{Event, Node, NodeConfig};
use crate::wire::{
    CloseReason, Data, Join, JoinAccepted, PROTOCOL_VERSION, Priority, Reliability, SenderClosed,
    SenderOpened,
};

const SECRET: &[u8] = b"s";

struct Rig {
    now: Instant,
    hub: Hub,
    raw: Node,
    raw_assoc: AssocId,
    raw_frames: Vec<Frame>,
    raw_closed: bool,
}

const HUB: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 1);
const RAW: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 2);

impl Rig {
    fn new() -> Self {
        Self::with(|c| c)
    }

    /// A rig whose server is configured by `tweak`.
    fn with(tweak: impl FnOnce(HubConfig) -> HubConfig) -> Self {
        let now = crate::sim::start_instant();
        let clock = WallClock::new(now, Duration::from_secs(1000));
        let hub = Hub::new(tweak(HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ))));
        let mut raw = Node::new(NodeConfig::client());
        let raw_assoc = raw.connect(now, HUB).expect("connect");
        let mut rig = Self {
            now,
            hub,
            raw,
            raw_assoc,
            raw_frames: Vec::new(),
            raw_closed: false,
        };
        rig.pump();
        assert!(rig.raw.is_connected(raw_assoc));
        rig
    }

    /// Moves datagrams both ways for a second of virtual time.
    fn pump(&mut self) {
        for _ in 0..200 {
            self.now += Duration::from_millis(5);
            self.hub.handle_timeout(self.now);
            self.raw.handle_timeout(self.now);
            while let Some(t) = self.raw.poll_transmit() {
                self.hub.handle_datagram(self.now, RAW, t.payload);
            }
            while let Some(t) = self.hub.poll_transmit() {
                let _ = self.raw.handle_datagram(self.now, HUB, t.payload);
            }
            while let Some(e) = self.raw.poll_event() {
                match e {
                    Event::Frame { frame, .. } => self.raw_frames.push(frame),
                    Event::Closed { .. } => self.raw_closed = true,
                    _ => {}
                }
            }
        }
    }

    fn raw_send(&mut self, frame: Frame) {
        let now = self.now;
        self.raw
            .send(
                now,
                self.raw_assoc,
                Delivery::Reliable,
                &Message::Frame(frame),
            )
            .expect("send");
        self.pump();
    }

    fn raw_join(&mut self, call: &str, who: &str) {
        let token = mint_token(SECRET, call, who, 5000).expect("token");
        self.raw_send(
            Join {
                version: PROTOCOL_VERSION,
                call_id: ShortStr::truncated(call),
                participant_id: ShortStr::truncated(who),
                token,
            }
            .into(),
        );
    }
}

fn data(origin: Option<MemberId>) -> Frame {
    Data {
        channel: 1,
        session: 1,
        seq: 1,
        origin,
        epoch: None,
        payload: Bytes::from_static(b"x"),
    }
    .into()
}

#[test]
fn an_association_that_has_not_joined_can_only_join() {
    let mut rig = Rig::new();
    rig.raw_send(data(None));
    assert!(
        matches!(&rig.raw_frames[..], [Frame::JoinRejected(r)] if r.code == ErrorCode::NOT_JOINED),
        "{:?}",
        rig.raw_frames
    );
    assert!(rig.raw_closed, "and it is closed");
    assert_eq!(rig.hub.stats().protocol_errors, 1);
}

#[test]
fn a_wrong_protocol_version_is_rejected() {
    let mut rig = Rig::new();
    rig.raw_send(
        Join {
            version: PROTOCOL_VERSION + 1,
            call_id: ShortStr::truncated("c"),
            participant_id: ShortStr::truncated("p"),
            token: mint_token(SECRET, "c", "p", 5000).expect("token"),
        }
        .into(),
    );
    assert!(
        matches!(&rig.raw_frames[..], [Frame::JoinRejected(r)] if r.code == ErrorCode::VERSION_MISMATCH)
    );
    assert!(rig.raw_closed);
}

#[test]
fn a_participant_cannot_claim_another_identity() {
    let mut rig = Rig::new();
    let now = rig.now;
    let victim = rig.hub.join_local(now, "call", "victim").expect("local");
    let bystander = rig.hub.join_local(now, "call", "bystander").expect("local");
    rig.raw_join("call", "mallory");
    assert!(matches!(
        rig.raw_frames.first(),
        Some(Frame::JoinAccepted(_))
    ));
    rig.raw_send(
        SenderOpened {
            channel: 1,
            session: 1,
            reliability: Reliability::Durable,
            priority: Priority::Normal,
            bitrate_kbps: 32,
            origin: None,
        }
        .into(),
    );
    // A data frame claiming to come from member 0 (the victim).
    rig.raw_send(data(Some(MemberId(0))));
    assert!(
        rig.raw_frames
            .iter()
            .any(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::PROTOCOL_VIOLATION)),
        "answered with an error"
    );
    assert!(
        bystander.data_channel().try_next_receiver().is_none(),
        "nothing forwarded"
    );
    // The honest frame goes through, stamped with mallory's own identity.
    rig.raw_send(data(None));
    let r = bystander
        .data_channel()
        .try_next_receiver()
        .expect("a receiver");
    assert_eq!(r.sender_id().as_str(), "mallory");
    assert!(
        victim.data_channel().try_next_receiver().is_some(),
        "broadcast reaches the victim too"
    );
    assert!(!rig.raw_closed, "an error does not end the membership");
}

#[test]
fn an_undecodable_message_is_answered_and_harms_nothing() {
    let mut rig = Rig::new();
    rig.raw_join("call", "p");
    let now = rig.now;
    rig.raw
        .send_encoded(
            now,
            rig.raw_assoc,
            Delivery::Reliable,
            Bytes::from_static(&[0x0a, 0xff]),
        )
        .expect("send");
    rig.pump();
    assert!(rig.raw_frames.iter().any(|f| matches!(f, Frame::Error(_))));
    assert_eq!(rig.hub.members("call").len(), 1, "still a member");
}

#[test]
fn a_silent_association_is_closed_after_the_join_timeout() {
    let mut rig = Rig::new();
    let deadline = rig.now + rig.hub.config.join_timeout + Duration::from_secs(2);
    while rig.now < deadline && !rig.raw_closed {
        rig.pump();
    }
    rig.pump();
    assert!(rig.raw_closed, "closed by the server");
    assert_eq!(rig.hub.node().association_count(), 0);
}

#[test]
fn hosted_participants_join_only_on_their_calls_home_worker() {
    let now = crate::sim::start_instant();
    let home = home_worker("call", 3);
    for worker in 0..3 {
        let mut config = HubConfig::client();
        config.workers = 3;
        config.worker = worker;
        let mut hub = Hub::new(config);
        let joined = hub.join_local(now, "call", "alice");
        if worker == home {
            assert!(joined.is_ok_and(|c| c.is_joined()));
        } else {
            assert_eq!(joined.err(), Some(JoinError::WrongWorker { home }));
        }
    }
    // One worker homes everything; the hash spreads calls over several.
    assert_eq!(home_worker("anything", 1), 0);
    let homes: std::collections::BTreeSet<usize> = (0..64)
        .map(|i| home_worker(&format!("call-{i}"), 3))
        .collect();
    assert_eq!(homes.len(), 3);
}

/// A server and `N` raw clients, with the datagrams from the server to
/// some of them held back.
struct HeldBack {
    now: Instant,
    hub: Hub,
    raws: Vec<(Node, AssocId)>,
    held: Vec<Vec<Bytes>>,
    /// 1,000-byte data frames each raw client got.
    data_seen: Vec<usize>,
    /// Control frames each raw client got about its own senders
    /// (`FlowControl`, and `SenderClosed` without origin).
    own_seen: Vec<Vec<Frame>>,
}

impl HeldBack {
    fn addr(i: usize) -> SocketAddr {
        SocketAddr::new(
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            10 + i as u16,
        )
    }

    /// `n` raw clients, all joined to "call".
    fn joined(n: usize) -> Self {
        Self::joined_with(n, |c| c)
    }

    /// `n` raw clients, all joined to "call" on a server configured by
    /// `tweak`.
    fn joined_with(n: usize, tweak: impl FnOnce(HubConfig) -> HubConfig) -> Self {
        let now = crate::sim::start_instant();
        let clock = WallClock::new(now, Duration::from_secs(1000));
        let hub = Hub::new(tweak(HubConfig::server(Arc::new(
            HmacVerifier::new(SECRET, clock).expect("a secret"),
        ))));
        let raws = (0..n)
            .map(|_| {
                let mut n = Node::new(NodeConfig::client());
                let a = n.connect(now, HUB).expect("connect");
                (n, a)
            })
            .collect();
        let mut rig = Self {
            now,
            hub,
            raws,
            held: vec![Vec::new(); n],
            data_seen: vec![0; n],
            own_seen: vec![Vec::new(); n],
        };
        rig.route(200, &|_| false);
        let now = rig.now;
        for (i, (raw, assoc)) in rig.raws.iter_mut().enumerate() {
            assert!(raw.is_connected(*assoc));
            let who = format!("p{i}");
            let token = mint_token(SECRET, "call", &who, 5000).expect("token");
            let join = Join {
                version: PROTOCOL_VERSION,
                call_id: ShortStr::truncated("call"),
                participant_id: ShortStr::truncated(&who),
                token,
            };
            raw.send(
                now,
                *assoc,
                Delivery::Reliable,
                &Message::Frame(join.into()),
            )
            .expect("join");
        }
        rig.route(300, &|_| false);
        rig
    }

    /// Moves datagrams for `ms` of virtual time; hub → raw `i` is held
    /// back while `hold(i)`.
    fn route(&mut self, ms: u64, hold: &dyn Fn(usize) -> bool) {
        for _ in 0..ms {
            self.now += Duration::from_millis(1);
            let now = self.now;
            self.hub.handle_timeout(now);
            for (i, (raw, _)) in self.raws.iter_mut().enumerate() {
                raw.handle_timeout(now);
                if !hold(i) {
                    for d in self.held[i].drain(..) {
                        let _ = raw.handle_datagram(now, HUB, d);
                    }
                }
                while let Some(t) = raw.poll_transmit() {
                    self.hub.handle_datagram(now, Self::addr(i), t.payload);
                }
            }
            while let Some(t) = self.hub.poll_transmit() {
                let i = (t.destination.port() - 10) as usize;
                if hold(i) {
                    self.held[i].push(t.payload);
                } else {
                    let _ = self.raws[i].0.handle_datagram(now, HUB, t.payload);
                }
            }
            for (i, (raw, _)) in self.raws.iter_mut().enumerate() {
                while let Some(e) = raw.poll_event() {
                    match e {
                        Event::Frame {
                            frame: Frame::Data(d),
                            ..
                        } if d.payload.len() == 1000 => self.data_seen[i] += 1,
                        Event::Frame {
                            frame:
                                f @ (Frame::FlowControl(_)
                                | Frame::SenderClosed(SenderClosed { origin: None, .. })),
                            ..
                        } => self.own_seen[i].push(f),
                        _ => {}
                    }
                }
            }
        }
    }

    /// Raw client `i` sends `frame`.
    fn send(&mut self, i: usize, frame: Frame) {
        let (raw, assoc) = &mut self.raws[i];
        raw.send(self.now, *assoc, Delivery::Reliable, &Message::Frame(frame))
            .expect("send");
    }
}

/// Session 1 of a Durable sender on channel 1, as a client opens it.
fn durable_opened() -> Frame {
    SenderOpened {
        channel: 1,
        session: 1,
        reliability: Reliability::Durable,
        priority: Priority::Normal,
        bitrate_kbps: 0,
        origin: None,
    }
    .into()
}

/// Message `seq` of that session: 1,000 bytes (what `HeldBack` counts).
fn data_1000(seq: u32) -> Frame {
    Data {
        channel: 1,
        session: 1,
        seq,
        origin: None,
        epoch: None,
        payload: Bytes::from(vec![7u8; 1000]),
    }
    .into()
}

/// A server's work per input follows what the input touched: with many
/// members backlogged (their acknowledgements held back), a datagram from
/// one of them pumps that member's egress alone. And holding back never
/// loses anything: once the datagrams flow, everyone gets everything.
#[test]
fn an_input_pumps_only_the_egress_it_touched() {
    const N: usize = 12;
    const MESSAGES: usize = 40;
    let mut rig = HeldBack::joined(N);
    assert_eq!(
        rig.hub.rooms["call"].members().count(),
        N,
        "everyone joined"
    );
    // Everyone but p0 stops hearing the server; p0 sends 40 kB to all.
    rig.send(0, durable_opened());
    for seq in 0..MESSAGES as u32 {
        rig.send(0, data_1000(seq));
    }
    rig.route(100, &|i| i != 0);
    let backlogged = rig.hub.egress.ready.len();
    assert!(backlogged >= N - 2, "members backlogged: {backlogged}");
    // p1 hears the server again and acknowledges: one datagram in, one
    // egress pumped.
    let now = rig.now;
    let (raw1, _) = &mut rig.raws[1];
    for d in rig.held[1].drain(..) {
        let _ = raw1.handle_datagram(now, HUB, d);
    }
    let mut acks = Vec::new();
    while let Some(t) = raw1.poll_transmit() {
        acks.push(t.payload);
    }
    assert!(!acks.is_empty(), "p1 acknowledges");
    for ack in acks {
        let before = rig.hub.egress.pumps;
        rig.hub.handle_datagram(now, HeldBack::addr(1), ack);
        let pumped = rig.hub.egress.pumps - before;
        assert!(pumped <= 1, "one datagram from p1 pumped {pumped} egresses");
    }
    // Let everything flow: nothing was lost while held.
    rig.route(5_000, &|_| false);
    assert_eq!(rig.data_seen[0], 0, "a sender does not hear itself");
    for (i, seen) in rig.data_seen.iter().enumerate().skip(1) {
        assert_eq!(*seen, MESSAGES, "p{i} got {seen}");
    }
}

/// A client over the traffic rules is told: once per Lossy session (an
/// `Error`), and a Durable session is closed (`SenderClosed` without
/// origin) rather than forwarded with a hole.
#[test]
fn a_sender_over_the_rules_is_told() {
    let mut rig = Rig::new();
    let now = rig.now;
    let _bob = rig.hub.join_local(now, "call", "bob").expect("local");
    rig.raw_join("call", "alice");
    let open = |channel, reliability| -> Frame {
        SenderOpened {
            channel,
            session: 1,
            reliability,
            priority: Priority::Normal,
            bitrate_kbps: 0,
            origin: None,
        }
        .into()
    };
    let burst = |rig: &mut Rig, channel: u16, epoch: Option<u16>, n: u32| {
        let now = rig.now;
        for seq in 1..=n {
            let d = Data {
                channel,
                session: 1,
                seq,
                origin: None,
                epoch,
                payload: Bytes::from(vec![0u8; 1000]),
            };
            rig.raw
                .send(
                    now,
                    rig.raw_assoc,
                    Delivery::Reliable,
                    &Message::Frame(d.into()),
                )
                .expect("send");
        }
        rig.pump();
    };
    rig.raw_send(open(1, Reliability::Lossy));
    // 200 kB, then 100 kB a second later, against 128 kB and 64 kB a second.
    burst(&mut rig, 1, Some(0), 200);
    burst(&mut rig, 1, Some(0), 100);
    let errors = rig
        .raw_frames
        .iter()
        .filter(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::TRAFFIC_LIMIT))
        .count();
    assert_eq!(errors, 1, "told once: {:?}", rig.hub.stats());
    assert!(rig.hub.stats().policed > 100);
    assert!(!rig.raw_closed, "{:?}", rig.hub.stats());

    let mut rig = Rig::new();
    let now = rig.now;
    let bob = rig.hub.join_local(now, "call", "bob").expect("local");
    rig.raw_join("call", "alice");
    rig.raw_send(open(2, Reliability::Durable));
    burst(&mut rig, 2, None, 200);
    let closed: Vec<_> = rig
        .raw_frames
        .iter()
        .filter_map(|f| match f {
            Frame::SenderClosed(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        closed,
        [SenderClosed {
            channel: 2,
            session: 1,
            reason: CloseReason::TRAFFIC_LIMIT,
            origin: None,
        }]
    );
    assert_eq!(rig.hub.stats().policed, 1);
    let r = bob
        .data_channel()
        .try_next_receiver()
        .expect("bob's receiver");
    let mut seqs = Vec::new();
    while let Some(m) = r.read_message() {
        seqs.push(m.sequence_number);
    }
    assert!(
        r.is_closed(),
        "bob's receiver closed after an unbroken prefix"
    );
    assert_eq!(seqs, (1..=seqs.len() as u32).collect::<Vec<_>>());
    assert!(seqs.len() > 60, "{}", seqs.len());
}

/// Fan-out to members whose associations live on another worker goes as
/// one relay per worker (and stream) with the member list, not one per
/// member.
#[test]
fn fan_out_to_another_worker_is_one_relay_with_the_member_list() {
    use super::relay::RelayMsg;
    let now = crate::sim::start_instant();
    let mut config = HubConfig::client();
    config.workers = 2;
    config.worker = 0;
    config.channel.traffic = crate::sched::TrafficPolicy::unlimited();
    let call = call_homed_on_worker_0();
    let mut hub = Hub::new(config);
    // Five members on worker 1's associations, attached by their owner.
    hub.handle_relay(now, attach_from_worker_1(&call, 5));
    while hub.poll_relay().is_some() {}
    // A hosted participant sends one Durable message to everyone.
    let host = hub.join_local(now, &call, "host").expect("hosted");
    while hub.poll_relay().is_some() {}
    let sender = host
        .data_channel()
        .create_sender(crate::datachannel::DataChannelSenderOptions {
            channel_id: Some(9),
            reliability: crate::datachannel::DataChannelReliability::Durable,
            ..Default::default()
        })
        .expect("sender");
    sender.send(&b"to everyone"[..]).expect("send");
    hub.handle_timeout(now);
    let mut egress: Vec<(usize, Vec<AssocId>)> = Vec::new();
    while let Some((worker, batch)) = hub.poll_relay() {
        for relay in batch {
            if let RelayMsg::Egress { assocs, .. } = relay.msg {
                egress.push((worker, assocs));
            }
        }
    }
    let all: Vec<AssocId> = (1..=5).map(AssocId).collect();
    // `SenderOpened` for the five new receivers, then the message: one
    // relay each, to worker 1, naming all five.
    assert_eq!(egress, vec![(1, all.clone()), (1, all)]);
}

/// A call admits at most `max_members_per_call` members and a participant
/// at most `max_endpoints_per_participant` endpoints in it; one more join
/// is refused with `CALL_FULL`, a reason and an event, and nobody in the
/// call is affected (on main before this change, every join was admitted).
#[test]
fn a_full_call_refuses_joins_with_a_reason() {
    let mut rig = Rig::with(|c| c.max_members_per_call(2));
    let now = rig.now;
    let _a = rig.hub.join_local(now, "call", "alice").expect("local");
    let _b = rig.hub.join_local(now, "call", "bob").expect("local");
    rig.raw_join("call", "mallory");
    assert!(
        matches!(&rig.raw_frames[..], [Frame::JoinRejected(r)] if r.code == ErrorCode::CALL_FULL),
        "{:?}",
        rig.raw_frames
    );
    assert!(rig.raw_closed);
    assert!(std::iter::from_fn(|| rig.hub.poll_event()).any(|e| matches!(
        e,
        HubEvent::JoinRejected { rejection, .. } if rejection.code == ErrorCode::CALL_FULL
    )));
    assert_eq!(rig.hub.stats().joins_rejected, 1);
    assert_eq!(rig.hub.members("call").len(), 2);
    assert!(matches!(
        rig.hub.join_local(now, "call", "carol"),
        Err(JoinError::Refused(r)) if r.code == ErrorCode::CALL_FULL
    ));
    // Another call is not affected.
    assert!(rig.hub.join_local(now, "other", "carol").is_ok());

    let mut rig = Rig::with(|c| c.max_endpoints_per_participant(1));
    let now = rig.now;
    let _a = rig.hub.join_local(now, "call", "alice").expect("local");
    rig.raw_join("call", "alice");
    assert!(
        matches!(&rig.raw_frames[..], [Frame::JoinRejected(r)] if r.code == ErrorCode::CALL_FULL)
    );
    assert_eq!(rig.hub.members("call").len(), 1);
}

/// A call homed on this worker refuses a member of another worker's
/// association the same way: the owner is told to refuse the join.
#[test]
fn a_full_call_refuses_members_relayed_from_other_workers() {
    use super::relay::RelayMsg;
    let now = crate::sim::start_instant();
    let mut config = HubConfig::client().max_members_per_call(2);
    config.workers = 2;
    config.worker = 0;
    let call = call_homed_on_worker_0();
    let mut hub = Hub::new(config);
    hub.handle_relay(now, attach_from_worker_1(&call, 3));
    let mut refused = Vec::new();
    while let Some((worker, batch)) = hub.poll_relay() {
        for relay in batch {
            if let RelayMsg::Refuse {
                assoc, rejection, ..
            } = relay.msg
            {
                refused.push((worker, assoc, rejection.code));
            }
        }
    }
    assert_eq!(refused, vec![(1, AssocId(3), ErrorCode::CALL_FULL)]);
    assert_eq!(hub.members(&call).len(), 2);
}

/// A member that keeps breaking the protocol is told each time through
/// its egress (within its bounds), and past its tolerance it is expelled
/// with a reason; others are unaffected (on main before this change, each
/// error went straight into SCTP and the member was never expelled).
#[test]
fn a_member_that_keeps_breaking_the_protocol_is_expelled() {
    let mut rig = Rig::with(|c| c.policing_tolerance(1, 5));
    let now = rig.now;
    let host = rig.hub.join_local(now, "call", "host").expect("local");
    rig.raw_join("call", "mallory");
    rig.raw_frames.clear();
    let disallowed: Frame = JoinAccepted {
        version: PROTOCOL_VERSION,
        member: MemberId(9),
        max_message_size: 1,
        idle_timeout_ms: 1,
        traffic: crate::wire::TrafficRules::default(),
        max_senders: 0,
    }
    .into();
    for _ in 0..5 {
        rig.raw_send(disallowed.clone());
    }
    let errors = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| matches!(f, Frame::Error(e) if e.code == ErrorCode::PROTOCOL_VIOLATION))
            .count()
    };
    assert_eq!(errors(&rig.raw_frames), 5, "each one answered");
    assert!(!rig.raw_closed);
    // The tolerance refills one a second: a burst of ten more is too many.
    for _ in 0..10 {
        let now = rig.now;
        let (raw, assoc) = (&mut rig.raw, rig.raw_assoc);
        raw.send(now, assoc, Delivery::Reliable, &Message::Frame(disallowed.clone()))
            .expect("send");
    }
    rig.pump();
    assert!(
        rig.raw_frames.iter().any(
            |f| matches!(f, Frame::Leave(l) if l.code == ErrorCode::PROTOCOL_VIOLATION)
        ),
        "{:?}",
        rig.raw_frames
    );
    assert!(rig.raw_closed, "expelled");
    assert_eq!(rig.hub.members("call").len(), 1);
    assert!(host.is_joined(), "the others are unaffected");
}

/// A call id homed on worker 0 of two.
fn call_homed_on_worker_0() -> String {
    (0..)
        .map(|i| format!("call-{i}"))
        .find(|c| home_worker(c, 2) == 0)
        .expect("a call homed on worker 0")
}

/// `Attach` relays for `n` members of `call` on worker 1's associations
/// 1..=n, as their owner sends them.
fn attach_from_worker_1(call: &str, n: u64) -> Vec<super::relay::Relay> {
    use super::relay::{Relay, RelayMsg};
    (1..=n)
        .map(|i| {
            Relay::new(RelayMsg::Attach {
                worker: 1,
                assoc: AssocId(i),
                call_id: call.to_owned(),
                participant_id: ParticipantId::from(format!("remote-{i}")),
            })
        })
        .collect()
}

/// A member that ignores its pause cannot grow another member's queue:
/// while p1 hears nothing (its egress backs up), p0 is paused; p0 keeps
/// sending past the overrun the server tolerates, and its session is
/// closed (`TRAFFIC_LIMIT`) — p1 is not disconnected, and once it hears
/// the server again it gets an unbroken prefix, like everyone else.
#[test]
fn a_sender_that_ignores_its_pause_is_closed_and_hurts_no_receiver() {
    const N: usize = 4;
    let mut rig = HeldBack::joined_with(N, |c| {
        c.pause_backlog(8 * 1024, 64 * 1024)
            .pause_overrun(32 * 1024)
    });
    rig.send(0, durable_opened());
    let hold = |i: usize| i == 1;
    let mut seq = 0;
    // Until paused, and well past: 200 kB, far over the overrun.
    for _ in 0..20 {
        for _ in 0..10 {
            seq += 1;
            rig.send(0, data_1000(seq));
        }
        rig.route(20, &hold);
    }
    let paused = rig.own_seen[0]
        .iter()
        .any(|f| matches!(f, Frame::FlowControl(fc) if fc.paused && fc.session == 1));
    assert!(paused, "p0 was paused: {:?}", rig.own_seen[0]);
    let closed = rig.own_seen[0].iter().any(|f| {
        matches!(f, Frame::SenderClosed(c) if c.reason == CloseReason::TRAFFIC_LIMIT)
    });
    assert!(closed, "and closed: {:?}", rig.own_seen[0]);
    let stats = rig.hub.stats();
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
    assert!(stats.policed >= 1);
    rig.route(2_000, &|_| false);
    let prefix = rig.data_seen[2];
    assert!(
        (8..200).contains(&prefix),
        "a prefix was forwarded: {prefix}"
    );
    assert_eq!(rig.data_seen[1], prefix, "p1 got the same prefix");
    assert_eq!(rig.data_seen[3], prefix);
    assert_eq!(rig.hub.rooms["call"].members().count(), N, "nobody cut");
}

/// A member relayed from another worker that ignores its pause is closed
/// past the overrun all the same, however late the workers take each
/// other's relays: the overrun counts from when its owner handed the pause
/// over, and it keeps sending after. p0's association is on worker 1, the
/// call homed on worker 0; p1 hears nothing (its egress backs up).
#[test]
fn a_relayed_sender_that_ignores_its_pause_is_closed() {
    use crate::sim::Host as _;
    let mut now = crate::sim::start_instant();
    let clock = WallClock::new(now, Duration::from_secs(1000));
    let config = HubConfig::server(Arc::new(
        HmacVerifier::new(SECRET, clock).expect("a secret"),
    ))
    .channel(crate::ChannelConfig::default().traffic(crate::TrafficPolicy::unlimited()))
    .pause_backlog(8 * 1024, 64 * 1024)
    .pause_overrun(32 * 1024);
    let mut server = HubCluster::new(config, 2);
    server.set_relay_delay(Duration::from_millis(5));
    let call = call_homed_on_worker_0();
    let addr = |port: u16| SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), port);
    let on = |server: &HubCluster, w: usize| {
        (10..)
            .map(addr)
            .find(|a| server.worker_for(*a) == w)
            .expect("an address")
    };
    let addrs = [on(&server, 1), on(&server, 0)];
    let mut raws: Vec<(Node, AssocId)> = (0..2)
        .map(|_| {
            let mut n = Node::new(NodeConfig::client());
            let a = n.connect(now, HUB).expect("connect");
            (n, a)
        })
        .collect();
    let mut own_seen: Vec<Frame> = Vec::new();
    let mut held: Vec<Bytes> = Vec::new();
    // Moves datagrams for `ms` of virtual time; server → p1 held back
    // while `hold`.
    let mut route = |ms: u64,
                     hold: bool,
                     now: &mut Instant,
                     server: &mut HubCluster,
                     raws: &mut Vec<(Node, AssocId)>| {
        for _ in 0..ms {
            *now += Duration::from_millis(1);
            server.handle_timeout(*now);
            for (i, (raw, _)) in raws.iter_mut().enumerate() {
                raw.handle_timeout(*now);
                if i == 1 && !hold {
                    for d in held.drain(..) {
                        let _ = raw.handle_datagram(*now, HUB, d);
                    }
                }
                while let Some(t) = raw.poll_transmit() {
                    server.handle_datagram(*now, addrs[i], t.payload);
                }
            }
            while let Some(t) = server.poll_transmit() {
                let i = addrs.iter().position(|a| *a == t.destination).expect("a raw");
                if i == 1 && hold {
                    held.push(t.payload);
                } else {
                    let _ = raws[i].0.handle_datagram(*now, HUB, t.payload);
                }
            }
            while let Some(e) = raws[0].0.poll_event() {
                if let Event::Frame {
                    frame:
                        f @ (Frame::FlowControl(_)
                        | Frame::SenderClosed(SenderClosed { origin: None, .. })),
                    ..
                } = e
                {
                    own_seen.push(f);
                }
            }
            while raws[1].0.poll_event().is_some() {}
        }
    };
    route(200, false, &mut now, &mut server, &mut raws);
    for (i, (raw, assoc)) in raws.iter_mut().enumerate() {
        assert!(raw.is_connected(*assoc));
        let who = format!("p{i}");
        let token = mint_token(SECRET, &call, &who, 5000).expect("token");
        let join = Join {
            version: PROTOCOL_VERSION,
            call_id: ShortStr::truncated(&call),
            participant_id: ShortStr::truncated(&who),
            token,
        };
        raw.send(now, *assoc, Delivery::Reliable, &Message::Frame(join.into()))
            .expect("join");
    }
    route(300, false, &mut now, &mut server, &mut raws);
    assert_eq!(server.members(&call).len(), 2, "both joined");
    let send = |raws: &mut Vec<(Node, AssocId)>, now: Instant, frame: Frame| {
        let (raw, assoc) = &mut raws[0];
        raw.send(now, *assoc, Delivery::Reliable, &Message::Frame(frame))
            .expect("send");
    };
    send(&mut raws, now, durable_opened());
    // 300 kB, far past the overrun, in 30 ms steps.
    let mut seq = 0;
    for _ in 0..30 {
        for _ in 0..10 {
            seq += 1;
            send(&mut raws, now, data_1000(seq));
        }
        route(30, true, &mut now, &mut server, &mut raws);
    }
    let paused = own_seen
        .iter()
        .any(|f| matches!(f, Frame::FlowControl(fc) if fc.paused && fc.session == 1));
    assert!(paused, "p0 was paused: {own_seen:?}");
    let closed = own_seen.iter().any(|f| {
        matches!(f, Frame::SenderClosed(c) if c.reason == CloseReason::TRAFFIC_LIMIT)
    });
    assert!(closed, "and closed: {own_seen:?}");
    let stats = server.stats();
    assert!(stats.policed >= 1, "{stats:?}");
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
}

/// Inside a `WakeBatch` (a worker's batch of I/O completions), a receiver
/// with new messages wakes its reader once, when the batch ends; outside
/// one, once per message as before.
#[test]
fn a_wake_batch_wakes_a_reader_once_for_all_its_messages() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::datachannel::shared::WakeBatch;

    let mut rig = Rig::new();
    let now = rig.now;
    let bob = rig.hub.join_local(now, "call", "bob").expect("local");
    rig.raw_join("call", "alice");
    rig.raw_send(
        SenderOpened {
            channel: 2,
            session: 1,
            reliability: Reliability::Durable,
            priority: Priority::Normal,
            bitrate_kbps: 0,
            origin: None,
        }
        .into(),
    );
    let burst = |rig: &mut Rig, seqs: std::ops::RangeInclusive<u32>| {
        let now = rig.now;
        for seq in seqs {
            let d = Data {
                channel: 2,
                session: 1,
                seq,
                origin: None,
                epoch: None,
                payload: Bytes::from(vec![0u8; 100]),
            };
            rig.raw
                .send(
                    now,
                    rig.raw_assoc,
                    Delivery::Reliable,
                    &Message::Frame(d.into()),
                )
                .expect("send");
        }
        rig.pump();
    };
    // The first message opens bob's receiver.
    burst(&mut rig, 1..=1);
    let r = bob
        .data_channel()
        .try_next_receiver()
        .expect("bob's receiver");
    assert_eq!(r.read_message().map(|m| m.sequence_number), Some(1));
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    r.on_message_ready(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let batch = WakeBatch::open();
    burst(&mut rig, 2..=11);
    assert_eq!(wakes.load(Ordering::SeqCst), 0, "not before the batch ends");
    drop(batch);
    assert_eq!(wakes.load(Ordering::SeqCst), 1);
    let mut seqs = Vec::new();
    while let Some(m) = r.read_message() {
        seqs.push(m.sequence_number);
    }
    assert_eq!(seqs, (2..=11).collect::<Vec<_>>());
    // Without a batch: at once.
    burst(&mut rig, 12..=12);
    assert_eq!(wakes.load(Ordering::SeqCst), 2);
}
