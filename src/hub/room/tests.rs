//! The room alone: frames in, outputs out, no association anywhere.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::sched::TrafficPolicy;
use crate::wire::{ParticipantList, SetParticipants};

const CALL: &str = "call";

/// One output, flattened for assertions: what, to whom.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// A frame (by name) to a member, on a stream.
    Send(&'static str, MemberId, Delivery),
    Welcome(MemberAt, Vec<&'static str>),
    Violation(MemberAt),
    Expel(MemberAt, ErrorCode),
    Removed(MemberAt),
}

struct Rig {
    now: Instant,
    config: HubConfig,
    room: Room,
    out: Outputs,
}

impl Rig {
    fn new() -> Self {
        Self {
            now: Instant::now(),
            config: HubConfig::client(),
            room: Room::default(),
            out: Outputs::default(),
        }
    }

    /// What the room decided since the last call, flattened; the frames
    /// sent, in order, with their targets.
    fn take(&mut self) -> Vec<Seen> {
        let mut seen = Vec::new();
        for item in &self.out.items {
            match item {
                Output::Send { frame, targets, .. } => {
                    for t in &self.out.targets[targets.clone()] {
                        seen.push(Seen::Send(
                            self.out.frames[*frame].name(),
                            t.member,
                            t.delivery,
                        ));
                    }
                }
                Output::Welcome { at, frames } => seen.push(Seen::Welcome(
                    *at,
                    self.out.frames[frames.clone()]
                        .iter()
                        .map(Frame::name)
                        .collect(),
                )),
                Output::Violation { at, .. } => seen.push(Seen::Violation(*at)),
                Output::Expel { at, leave } => seen.push(Seen::Expel(*at, leave.code)),
                Output::Removed { at } => seen.push(Seen::Removed(*at)),
            }
        }
        self.out.clear();
        seen
    }

    fn admit(&mut self, who: &str, at: MemberAt) -> MemberId {
        self.room.admit(
            self.now,
            &self.config,
            CALL,
            ParticipantId::from(who),
            at,
            &mut self.out,
        )
    }

    fn frame(&mut self, from: MemberId, frame: impl Into<Frame>) {
        self.room.handle_frame(
            self.now,
            &self.config,
            CALL,
            from,
            frame.into(),
            &mut self.out,
        );
    }

    fn open(&mut self, from: MemberId, channel: u16, session: u32, reliability: Reliability) {
        self.frame(
            from,
            SenderOpened {
                channel,
                session,
                reliability,
                priority: Priority::Normal,
                bitrate_kbps: 0,
                origin: None,
            },
        );
    }

    fn data(&mut self, from: MemberId, channel: u16, session: u32, epoch: Option<u16>, len: usize) {
        self.frame(
            from,
            Data {
                channel,
                session,
                seq: 1,
                origin: None,
                epoch,
                payload: Bytes::from(vec![1; len]),
            },
        );
    }
}

fn at(i: u64) -> MemberAt {
    MemberAt::Assoc(AssocId(i))
}

#[test]
fn a_member_is_welcomed_with_the_roster_and_announced_to_the_others() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    assert_eq!(
        rig.take(),
        vec![Seen::Welcome(at(1), vec!["JoinAccepted"])],
        "nobody to tell yet"
    );
    let bob = rig.admit("bob", MemberAt::Hosted(7));
    assert_ne!(alice, bob);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Welcome(
                MemberAt::Hosted(7),
                vec!["JoinAccepted", "ParticipantJoined"]
            ),
            Seen::Send("ParticipantJoined", alice, Delivery::Reliable),
        ]
    );
    let events: Vec<_> = rig.out.events.drain(..).collect();
    assert!(matches!(
        &events[..],
        [HubEvent::ParticipantJoined { member: a, .. }, HubEvent::ParticipantJoined { member: b, .. }]
            if *a == alice && *b == bob
    ));
    let who: Vec<_> = rig.room.members().map(|(m, p)| (m, p.clone())).collect();
    assert_eq!(
        who,
        vec![(alice, "alice".into()), (bob, "bob".into())],
        "the roster"
    );
}

#[test]
fn data_fans_out_once_encoded_and_a_new_receiver_hears_of_its_sender_first() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let carol = rig.admit(
        "carol",
        MemberAt::Worker {
            worker: 1,
            assoc: AssocId(3),
        },
    );
    rig.take();
    rig.open(alice, 5, 1, Reliability::Lossy);
    assert!(rig.take().is_empty(), "nothing to announce before data");
    rig.data(alice, 5, 1, Some(0), 10);
    // Each new receiver: SenderOpened, then the first message ordered.
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderOpened", bob, Delivery::Reliable),
            Seen::Send("SenderOpened", carol, Delivery::Reliable),
            Seen::Send("Data", bob, Delivery::Reliable),
            Seen::Send("Data", carol, Delivery::Reliable),
        ]
    );
    rig.data(alice, 5, 1, Some(0), 10);
    // Encoded once, whatever the number of targets.
    let Some(Output::Send { frame, .. }) = rig.out.items.first() else {
        panic!("a send");
    };
    let frame = *frame;
    let (a, b) = (rig.out.encoded(frame), rig.out.encoded(frame));
    assert_eq!(a.as_ptr(), b.as_ptr(), "one encoding shared");
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("Data", bob, Delivery::Lossy),
            Seen::Send("Data", carol, Delivery::Lossy),
        ],
        "later messages on the Lossy stream; never back to the sender"
    );
    assert_eq!(rig.out.stats.messages_forwarded, 4);
}

#[test]
fn a_participant_list_narrows_the_targets_and_stale_data_is_dropped() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let _carol = rig.admit("carol", at(3));
    rig.take();
    rig.open(alice, 5, 1, Reliability::Lossy);
    let list = ParticipantList::try_from(vec![ShortStr::truncated("bob")]).expect("list");
    rig.frame(
        alice,
        SetParticipants {
            channel: 5,
            epoch: 1,
            participants: list,
        },
    );
    // Sent under the old list (epoch 0): overtook the change, dropped.
    rig.data(alice, 5, 1, Some(0), 10);
    assert!(rig.take().is_empty());
    assert_eq!(rig.out.stats.messages_stale, 1);
    rig.data(alice, 5, 1, Some(1), 10);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderOpened", bob, Delivery::Reliable),
            Seen::Send("Data", bob, Delivery::Reliable),
        ]
    );
    // An earlier session's data: stale.
    rig.data(alice, 5, 0, Some(1), 10);
    assert!(rig.take().is_empty());
    assert_eq!(rig.out.stats.messages_stale, 2);
}

#[test]
fn lossy_data_ahead_of_its_sender_opened_is_held_then_forwarded() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.take();
    // A WebRTC stack sends unordered data at once: it overtakes the
    // SenderOpened that went ordered before it.
    rig.data(alice, 5, 1, Some(0), 10);
    rig.data(alice, 5, 1, Some(0), 20);
    assert!(rig.take().is_empty(), "held");
    rig.open(alice, 5, 1, Reliability::Lossy);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderOpened", bob, Delivery::Reliable),
            Seen::Send("Data", bob, Delivery::Reliable),
            Seen::Send("Data", bob, Delivery::Lossy),
        ]
    );
    assert_eq!(rig.out.stats.messages_stale, 0);
    // Ahead of a replacing session: held too, released by its open.
    rig.data(alice, 5, 2, Some(0), 10);
    assert!(rig.take().is_empty());
    rig.open(alice, 5, 2, Reliability::Lossy);
    let seen = rig.take();
    assert!(seen.contains(&Seen::Send("SenderClosed", bob, Delivery::Reliable)));
    assert_eq!(
        seen.iter().filter(|s| matches!(s, Seen::Send("Data", ..))).count(),
        1,
        "{seen:?}"
    );
}

#[test]
fn lossy_data_ahead_of_its_participant_list_waits_for_it() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let carol = rig.admit("carol", at(3));
    rig.open(alice, 5, 1, Reliability::Lossy);
    rig.take();
    // Sent under epoch 1 (to bob only), arriving before the list change.
    rig.data(alice, 5, 1, Some(1), 10);
    assert!(rig.take().is_empty(), "not sent under the old list (everyone)");
    let list = ParticipantList::try_from(vec![ShortStr::truncated("bob")]).expect("list");
    rig.frame(
        alice,
        SetParticipants {
            channel: 5,
            epoch: 1,
            participants: list,
        },
    );
    let seen = rig.take();
    assert!(seen.contains(&Seen::Send("Data", bob, Delivery::Reliable)), "{seen:?}");
    assert!(!seen.iter().any(|s| matches!(s, Seen::Send(_, m, _) if *m == carol)));
}

#[test]
fn held_lossy_data_is_bounded_and_expires() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.take();
    for _ in 0..EARLY_FRAMES + 4 {
        rig.data(alice, 5, 1, Some(0), 10);
    }
    assert_eq!(rig.out.stats.messages_stale, 4, "past the frame bound");
    rig.data(alice, 6, 1, Some(0), EARLY_BYTES);
    assert_eq!(rig.out.stats.messages_stale, 5, "past the byte bound");
    // Its session opens too late: what was held is stale, not forwarded.
    rig.now += EARLY_HOLD;
    rig.open(alice, 5, 1, Reliability::Lossy);
    assert!(!rig.take().contains(&Seen::Send("Data", bob, Delivery::Reliable)));
    assert_eq!(rig.out.stats.messages_stale, 5 + EARLY_FRAMES as u64);
    // A leaver's held data goes with it.
    rig.data(alice, 7, 1, Some(0), 10);
    rig.room.remove(rig.now, CALL, alice, CloseReason::LEFT, None, &mut rig.out);
    assert_eq!(rig.out.stats.messages_stale, 6 + EARLY_FRAMES as u64);
    assert!(rig.room.early.is_empty());
}

#[test]
fn a_new_session_replaces_the_old_and_a_leaver_closes_its_senders_first() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.take();
    rig.open(alice, 5, 1, Reliability::Durable);
    rig.data(alice, 5, 1, None, 10);
    rig.take();
    rig.open(alice, 5, 2, Reliability::Durable);
    assert_eq!(
        rig.take(),
        vec![Seen::Send("SenderClosed", bob, Delivery::Reliable)],
        "the old session's receiver closes"
    );
    rig.data(alice, 5, 2, None, 10);
    rig.take();
    rig.frame(
        alice,
        Leave {
            code: ErrorCode::NONE,
            reason: ShortStr::default(),
        },
    );
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderClosed", bob, Delivery::Reliable),
            Seen::Send("ParticipantLeft", bob, Delivery::Reliable),
            Seen::Removed(at(1)),
        ]
    );
    assert_eq!(rig.room.members().count(), 1);
}

#[test]
fn a_receiver_that_declined_a_session_is_sent_no_more_of_it() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let carol = rig.admit("carol", at(3));
    rig.open(alice, 5, 1, Reliability::Durable);
    rig.data(alice, 5, 1, None, 10);
    rig.take();
    rig.frame(
        bob,
        SenderClosed {
            channel: 5,
            session: 1,
            reason: CloseReason::RECEIVER_OVERFLOW,
            origin: Some(alice),
        },
    );
    rig.data(alice, 5, 1, None, 10);
    assert_eq!(
        rig.take(),
        vec![Seen::Send("Data", carol, Delivery::Reliable)]
    );
}

#[test]
fn frames_a_participant_may_not_send_and_too_many_senders_are_violations() {
    let mut rig = Rig::new();
    // Announced: 1; tolerated: twice that.
    rig.config.max_senders_per_member = 1;
    let alice = rig.admit("alice", at(1));
    rig.take();
    rig.frame(alice, accepted_frame(&HubConfig::client(), alice));
    assert_eq!(rig.take(), vec![Seen::Violation(at(1))]);
    rig.open(alice, 1, 1, Reliability::Lossy);
    rig.open(alice, 2, 2, Reliability::Lossy);
    rig.open(alice, 2, 3, Reliability::Lossy); // A replacement is no new sender.
    assert!(rig.take().is_empty());
    rig.open(alice, 3, 4, Reliability::Lossy);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderClosed", alice, Delivery::Reliable),
            Seen::Violation(at(1))
        ],
        "refused, and told so"
    );
    // Oversize data is counted, never forwarded.
    rig.data(alice, 1, 1, Some(0), 40_000);
    assert!(rig.take().is_empty());
    assert_eq!(rig.out.stats.protocol_errors, 1);
}

#[test]
fn a_durable_session_over_the_rules_closes_and_its_sender_is_told() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.open(alice, 5, 1, Reliability::Durable);
    // 64 kbps, twice a 32 KiB bucket at the server: the third 32 KiB
    // message at once is over.
    for _ in 0..2 {
        rig.data(alice, 5, 1, None, 32 * 1024);
    }
    rig.take();
    rig.data(alice, 5, 1, None, 32 * 1024);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderClosed", bob, Delivery::Reliable),
            Seen::Send("SenderClosed", alice, Delivery::Reliable),
        ]
    );
    assert_eq!(rig.out.stats.policed, 1);
    // The session is gone: more of it is stale.
    rig.data(alice, 5, 1, None, 10);
    assert!(rig.take().is_empty());
    assert_eq!(rig.out.stats.messages_stale, 1);
}

#[test]
fn a_lossy_session_over_the_rules_is_told_once_and_an_abuser_is_expelled() {
    let mut rig = Rig::new();
    rig.config.policing_tolerance = (1, 3);
    rig.config.channel.traffic = TrafficPolicy {
        broadcast_packets_per_second: None,
        ..TrafficPolicy::default()
    };
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.open(alice, 5, 1, Reliability::Lossy);
    // 512 kbps: 64 kB a second, twice a 64 kB bucket at the server.
    for _ in 0..3 {
        rig.data(alice, 5, 1, Some(0), 32 * 1024);
    }
    rig.take();
    rig.data(alice, 5, 1, Some(0), 32 * 1024);
    assert_eq!(
        rig.take(),
        vec![Seen::Send("Error", alice, Delivery::Reliable)]
    );
    rig.data(alice, 5, 1, Some(0), 32 * 1024);
    rig.data(alice, 5, 1, Some(0), 32 * 1024);
    assert!(rig.take().is_empty(), "told once per session");
    // The fourth strike of a tolerance of three.
    rig.data(alice, 5, 1, Some(0), 32 * 1024);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Expel(at(1), ErrorCode::TRAFFIC_LIMIT),
            Seen::Send("SenderClosed", bob, Delivery::Reliable),
            Seen::Send("ParticipantLeft", bob, Delivery::Reliable),
            Seen::Removed(at(1)),
        ]
    );
    assert_eq!(rig.out.stats.traffic_abusers, 1);
    // Strikes refill at the tolerance's rate; a hosted participant is
    // trusted, never expelled.
    rig.now += Duration::from_secs(60);
    let host = rig.admit("host", MemberAt::Hosted(1));
    rig.open(host, 5, 1, Reliability::Lossy);
    for _ in 0..20 {
        rig.data(host, 5, 1, Some(0), 32 * 1024);
    }
    assert!(
        !rig.take()
            .iter()
            .any(|s| matches!(s, Seen::Expel(..) | Seen::Removed(_)))
    );
}

#[test]
fn keep_alives_reach_the_announced_receivers_on_the_lossy_stream() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let _carol = rig.admit("carol", at(3));
    rig.open(alice, 5, 1, Reliability::Durable);
    let list = ParticipantList::try_from(vec![ShortStr::truncated("bob")]).expect("list");
    rig.frame(
        alice,
        SetParticipants {
            channel: 5,
            epoch: 1,
            participants: list,
        },
    );
    rig.data(alice, 5, 1, None, 1);
    rig.take();
    rig.frame(
        alice,
        KeepAlive {
            channel: 5,
            session: 1,
            origin: None,
        },
    );
    assert_eq!(
        rig.take(),
        vec![Seen::Send("KeepAlive", bob, Delivery::Lossy)]
    );
}

/// A member opening a new session every few messages gets no fresh
/// allowance: the rules' state is its channel's, across sessions (on
/// today's main before this change, each session had a full bucket).
#[test]
fn rotating_sessions_brings_no_fresh_allowance() {
    let mut rig = Rig::new();
    let attacker = rig.admit("mallory", at(1));
    let honest = rig.admit("alice", at(2));
    let bob = rig.admit("bob", at(3));
    rig.open(honest, 9, 1, Reliability::Durable);
    let mut session = 0;
    let mut forwarded = 0;
    // 64 kbps: 64 KiB of depth at the server; ten sessions of two 32 KiB
    // messages each, all at one instant.
    for _ in 0..10 {
        session += 1;
        rig.open(attacker, 5, session, Reliability::Durable);
        for _ in 0..2 {
            rig.data(attacker, 5, session, None, 32 * 1024);
        }
        forwarded += rig
            .take()
            .iter()
            .filter(|s| matches!(s, Seen::Send("Data", m, _) if *m == bob))
            .count();
    }
    assert_eq!(forwarded, 2, "one bucket's worth, whatever the sessions");
    assert!(rig.out.stats.policed >= 8);
    // The honest member's sender is untouched.
    rig.data(honest, 9, 1, None, 32 * 1024);
    assert!(
        rig.take()
            .contains(&Seen::Send("Data", bob, Delivery::Reliable))
    );
}

/// Opening senders is policed too: past the burst, an open is refused
/// (the sender is told its session closed, as one over the rules) and is a
/// strike.
#[test]
fn session_opens_past_their_rate_are_refused() {
    let mut rig = Rig::new();
    rig.config.session_opens = (1, 3);
    let alice = rig.admit("alice", at(1));
    let _bob = rig.admit("bob", at(2));
    rig.take();
    for session in 1..=3 {
        rig.open(alice, 5, session, Reliability::Lossy);
    }
    assert!(rig.take().is_empty(), "three opens in the burst");
    rig.open(alice, 5, 4, Reliability::Lossy);
    assert_eq!(
        rig.take(),
        vec![Seen::Send("SenderClosed", alice, Delivery::Reliable)]
    );
    assert_eq!(rig.out.stats.policed, 1);
    // The refused session is no route: its data is never forwarded (held
    // as if its open were on the way, then stale once a later session
    // opens).
    rig.data(alice, 5, 4, Some(0), 10);
    assert!(rig.take().is_empty());
    // A second later the bucket has one more.
    rig.now += Duration::from_secs(1);
    rig.open(alice, 5, 5, Reliability::Lossy);
    assert!(rig.take().is_empty());
    assert_eq!(rig.out.stats.messages_stale, 1);
}

/// A flood of keep-alives fans out one per eighth of the call's idle
/// timeout per route (on main before this change: every one, to every
/// announced member).
#[test]
fn a_keep_alive_flood_fans_out_one_per_interval() {
    let mut rig = Rig::new();
    let mallory = rig.admit("mallory", at(1));
    let bob = rig.admit("bob", at(2));
    rig.open(mallory, 5, 1, Reliability::Durable);
    rig.data(mallory, 5, 1, None, 1);
    rig.take();
    let keep_alive = KeepAlive {
        channel: 5,
        session: 1,
        origin: None,
    };
    for _ in 0..1000 {
        rig.frame(mallory, keep_alive.clone());
    }
    assert_eq!(
        rig.take(),
        vec![Seen::Send("KeepAlive", bob, Delivery::Lossy)]
    );
    // 120 s idle timeout: the next one goes 15 s later.
    rig.now += Duration::from_millis(14_999);
    rig.frame(mallory, keep_alive.clone());
    assert!(rig.take().is_empty());
    rig.now += Duration::from_millis(1);
    rig.frame(mallory, keep_alive);
    assert_eq!(
        rig.take(),
        vec![Seen::Send("KeepAlive", bob, Delivery::Lossy)]
    );
}

/// Empty messages cost at least their overhead, and a member's messages
/// together have a rule of their own: a flood of empty Durable frames is
/// policed, its session closed, the rest dropped as stale (on main before
/// this change, all 50,000 went through).
#[test]
fn a_flood_of_empty_messages_is_policed() {
    // Broadcasts have their packet rule (80 a second); these cases are
    // about the bytes rule's minimum and the member rule.
    for (members_rule, expected) in [(None, 4_096), (Some(2000), 4_000)] {
        let mut rig = Rig::new();
        rig.config.channel.traffic = TrafficPolicy::default()
            .broadcast_packets_per_second(None)
            .member_messages_per_second(members_rule);
        let mallory = rig.admit("mallory", at(1));
        let bob = rig.admit("bob", at(2));
        rig.open(mallory, 5, 1, Reliability::Durable);
        let mut seen = Vec::new();
        for _ in 0..50_000 {
            rig.data(mallory, 5, 1, None, 0);
            seen.extend(rig.take());
        }
        let forwarded = seen
            .iter()
            .filter(|s| matches!(s, Seen::Send("Data", m, _) if *m == bob))
            .count();
        // 64 kbps Durable: 64 KiB deep at the server, 16 bytes a message
        // at least; or 2,000 messages a second, twice that deep.
        assert_eq!(forwarded, expected);
        assert!(seen.contains(&Seen::Send("SenderClosed", mallory, Delivery::Reliable)));
        assert_eq!(rig.out.stats.policed, 1);
        assert_eq!(rig.out.stats.messages_stale, 50_000 - expected as u64 - 1);
    }
}

/// The per-sender rules alone would let a member with many senders send
/// without bound: the member rule caps them together (on main before this
/// change, every sender had its own allowance and nothing more).
#[test]
fn a_members_senders_together_are_capped() {
    let mut rig = Rig::new();
    rig.config.policing_tolerance = (1000, 100_000);
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let list = ParticipantList::try_from(vec![ShortStr::truncated("bob")]).expect("list");
    let mut forwarded = 0;
    for channel in 1..=100 {
        rig.open(alice, channel, u32::from(channel), Reliability::Lossy);
        rig.frame(
            alice,
            SetParticipants {
                channel,
                epoch: 1,
                participants: list.clone(),
            },
        );
        rig.data(alice, channel, u32::from(channel), Some(1), 8 * 1024);
        forwarded += rig
            .take()
            .iter()
            .filter(|s| matches!(s, Seen::Send("Data", m, _) if *m == bob))
            .count();
    }
    // 2,048 kbps: 256,000 bytes a second, twice that deep at the server.
    assert_eq!(forwarded, 512_000 / (8 * 1024));
    assert!(rig.out.stats.policed >= 30);
}

/// The FlowControl frames in `seen`, to whom, paused or not.
fn flow_controls(rig: &Rig) -> Vec<(MemberId, bool)> {
    let mut got = Vec::new();
    for item in &rig.out.items {
        if let Output::Send { frame, targets, .. } = item
            && let Frame::FlowControl(fc) = &rig.out.frames[*frame]
        {
            for t in &rig.out.targets[targets.clone()] {
                got.push((t.member, fc.paused));
            }
        }
    }
    got
}

/// Backpressure in the room: the first member whose egress presses on a
/// Durable sender pauses it, the last to stop resumes it; a Lossy sender
/// is never paused; a member leaving frees what it pressed.
#[test]
fn the_first_member_pressing_pauses_a_durable_sender_and_the_last_resumes_it() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    let carol = rig.admit("carol", at(3));
    rig.open(alice, 1, 1, Reliability::Durable);
    rig.data(alice, 1, 1, None, 100);
    rig.take();
    let now = rig.now;
    rig.room.pressure(now, bob, alice, 1, true, &mut rig.out);
    assert_eq!(flow_controls(&rig), vec![(alice, true)], "paused");
    assert_eq!(rig.out.stats.senders_paused, 1);
    rig.take();
    rig.room.pressure(now, carol, alice, 1, true, &mut rig.out);
    assert!(flow_controls(&rig).is_empty(), "paused already");
    rig.take();
    rig.room.pressure(now, bob, alice, 1, false, &mut rig.out);
    assert!(flow_controls(&rig).is_empty(), "carol still presses");
    rig.take();
    // Carol leaves: nobody presses any more.
    rig.room
        .remove(now, CALL, carol, CloseReason::LEFT, None, &mut rig.out);
    assert_eq!(flow_controls(&rig), vec![(alice, false)], "resumed");
    rig.take();
    // Lossy senders are never paused.
    rig.open(bob, 2, 2, Reliability::Lossy);
    rig.room.pressure(now, alice, bob, 2, true, &mut rig.out);
    assert!(flow_controls(&rig).is_empty(), "Lossy: dropped, not paused");
}

/// A new session on a channel whose data still presses on a member
/// starts paused: its data would wait behind the old session's anyway.
#[test]
fn a_new_session_behind_a_pressing_backlog_starts_paused() {
    let mut rig = Rig::new();
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.open(alice, 1, 1, Reliability::Durable);
    rig.data(alice, 1, 1, None, 100);
    let now = rig.now;
    rig.room.pressure(now, bob, alice, 1, true, &mut rig.out);
    rig.take();
    rig.open(alice, 1, 2, Reliability::Durable);
    assert_eq!(flow_controls(&rig), vec![(alice, true)]);
    let paused_session = rig.out.frames.iter().find_map(|f| match f {
        Frame::FlowControl(fc) => Some(fc.session),
        _ => None,
    });
    assert_eq!(paused_session, Some(2), "the new session is paused");
    rig.take();
    rig.room.pressure(now, bob, alice, 1, false, &mut rig.out);
    assert_eq!(flow_controls(&rig), vec![(alice, false)], "resumed");
}

/// A sender that ignores its pause may send what was on its way
/// (`pause_overrun`); past that its session closes (`TRAFFIC_LIMIT`),
/// the receivers keep an unbroken prefix, and it is a strike.
#[test]
fn a_paused_sender_that_keeps_sending_is_closed_past_the_overrun() {
    let mut rig = Rig::new();
    rig.config = rig.config.clone().pause_overrun(10_000);
    let alice = rig.admit("alice", at(1));
    let bob = rig.admit("bob", at(2));
    rig.open(alice, 1, 1, Reliability::Durable);
    rig.data(alice, 1, 1, None, 100);
    let now = rig.now;
    rig.room.pressure(now, bob, alice, 1, true, &mut rig.out);
    rig.take();
    // 9 × (1,000 + 16) bytes fit the overrun; the 10th does not.
    for _ in 0..9 {
        rig.data(alice, 1, 1, None, 1000);
        assert_eq!(
            rig.take(),
            vec![Seen::Send("Data", bob, Delivery::Reliable)],
            "within the overrun: forwarded"
        );
    }
    rig.data(alice, 1, 1, None, 1000);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderClosed", bob, Delivery::Reliable),
            Seen::Send("SenderClosed", alice, Delivery::Reliable),
        ],
        "closed: bob's receiver, and alice's sender"
    );
    assert_eq!(rig.room.members().count(), 2, "nobody disconnected");
}

/// A sender whose association another worker owns: its pause travels to
/// that worker, which takes data from it meanwhile (acknowledging it, so
/// an honest client keeps sending); the overrun counts only from when
/// that worker reports the pause handed over (`pause_handed`), and for
/// the last pause relayed. Then, past the overrun, it is closed as ever.
#[test]
fn a_relayed_senders_overrun_counts_from_when_its_pause_was_handed_over() {
    let mut rig = Rig::new();
    rig.config = rig.config.clone().pause_overrun(10_000);
    // Only the pause polices here.
    rig.config.channel.traffic = TrafficPolicy::unlimited();
    let relayed = MemberAt::Worker {
        worker: 1,
        assoc: AssocId(1),
    };
    let alice = rig.admit("alice", relayed);
    let bob = rig.admit("bob", at(2));
    rig.open(alice, 1, 1, Reliability::Durable);
    rig.data(alice, 1, 1, None, 100);
    let now = rig.now;
    rig.room.pressure(now, bob, alice, 1, true, &mut rig.out);
    assert_eq!(flow_controls(&rig), vec![(alice, true)]);
    rig.take();
    let forwarded = vec![Seen::Send("Data", bob, Delivery::Reliable)];
    // On its way: 50 × 1,016 bytes, five times the overrun, all sent
    // before alice could know.
    for _ in 0..50 {
        rig.data(alice, 1, 1, None, 1000);
        assert_eq!(rig.take(), forwarded, "the pause is on its way");
    }
    // Resumed and paused again before the first pause was handed over:
    // the first report is not the last pause's.
    rig.room.pressure(now, bob, alice, 1, false, &mut rig.out);
    rig.room.pressure(now, bob, alice, 1, true, &mut rig.out);
    assert_eq!(flow_controls(&rig), vec![(alice, false), (alice, true)]);
    rig.take();
    rig.room.pause_handed(alice, 1, 2); // Another session's: ignored.
    rig.room.pause_handed(alice, 1, 1);
    for _ in 0..50 {
        rig.data(alice, 1, 1, None, 1000);
        assert_eq!(rig.take(), forwarded, "the last pause is on its way");
    }
    rig.room.pause_handed(alice, 1, 1);
    // Handed over: 9 × 1,016 bytes fit the overrun; the 10th does not.
    for _ in 0..9 {
        rig.data(alice, 1, 1, None, 1000);
        assert_eq!(rig.take(), forwarded, "within the overrun");
    }
    rig.data(alice, 1, 1, None, 1000);
    assert_eq!(
        rig.take(),
        vec![
            Seen::Send("SenderClosed", bob, Delivery::Reliable),
            Seen::Send("SenderClosed", alice, Delivery::Reliable),
        ],
        "past the overrun: closed"
    );
}
