//! Hub tests against a raw node that does not follow the protocol.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::auth::{HmacVerifier, WallClock, mint_token};
use crate::proto::{Event, Node, NodeConfig};

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
        let now = crate::sim::start_instant();
        let clock = WallClock::new(now, Duration::from_secs(1000));
        let hub = Hub::new(HubConfig::server(Arc::new(HmacVerifier::new(
            SECRET, clock,
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
                self.raw.handle_datagram(self.now, HUB, t.payload);
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
