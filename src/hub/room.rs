//! A call's room, as a pure function of its state: who is in it, which
//! senders are open, and where each frame a member sends goes.
//!
//! The room knows members by number and where each lives ([`MemberAt`]),
//! never associations' state: it takes frames from members and writes what
//! follows into [`Outputs`] — frames for members (each encoded at most
//! once, whatever the number of targets), welcomes, protocol violations,
//! members expelled or removed, and the embedder's events — for the hub to
//! carry out. So admission, routes, participant lists, sessions, fan-out
//! targets and policing are unit-tested here without a single association.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use crate::idhash::IdMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::HubConfig;
use super::HubEvent;
use super::HubStats;
use super::egress::Lane;
use crate::auth::JoinRejection;
use crate::datachannel::ParticipantId;
use crate::proto::{AssocId, Delivery};
use crate::sched::{TokenBucket, TrafficLimiter};
use crate::wire::{
    CloseReason, Codec, Data, ErrorCode, ErrorFrame, FlowControl, Frame, JoinAccepted, KeepAlive, Leave,
    MemberId, PROTOCOL_VERSION, ParticipantJoined, ParticipantLeft, Priority, Reliability,
    SenderClosed, SenderOpened, ShortStr,
};

/// Where a member of a room lives: how the hub reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MemberAt {
    /// An association of this hub.
    Assoc(AssocId),
    /// An association of another worker's hub (the room relays to it).
    Worker {
        /// That worker.
        worker: usize,
        /// Its association.
        assoc: AssocId,
    },
    /// A participant hosted by this hub: the call's key.
    Hosted(u64),
}

/// One member a frame goes to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Target {
    pub(super) member: MemberId,
    pub(super) at: MemberAt,
    pub(super) delivery: Delivery,
}

/// Something the hub must do because of what the room decided.
#[derive(Debug)]
pub(super) enum Output {
    /// Frame number `frame` of [`Outputs::frame`] to each target in
    /// `targets` (a range of [`Outputs::targets`]), in `lane`.
    Send {
        frame: usize,
        lane: Lane,
        targets: Range<usize>,
    },
    /// A new member's welcome: frames `frames` (its `JoinAccepted`, then
    /// one `ParticipantJoined` per member already there), ahead of
    /// anything else it gets.
    Welcome { at: MemberAt, frames: Range<usize> },
    /// A member broke the protocol: it is told `what` (in its egress, as
    /// control; the strike was counted).
    Violation { at: MemberAt, what: String },
    /// A member is removed for staying over the traffic rules: it is sent
    /// `leave` and its association closes. Its [`Output::Removed`] follows.
    Expel { at: MemberAt, leave: Leave },
    /// A member is no longer in the room (after the frames its leaving
    /// sent the others).
    Removed { at: MemberAt },
}

/// What the room decided, in order, for the hub to carry out. The buffers
/// are kept between inputs: fanning a message out allocates nothing but its
/// frames.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    pub(super) items: Vec<Output>,
    frames: Vec<Frame>,
    encoded: Vec<Option<Bytes>>,
    pub(super) targets: Vec<Target>,
    /// For the embedder.
    pub(super) events: Vec<HubEvent>,
    /// Counted while deciding.
    pub(super) stats: HubStats,
}

impl Outputs {
    /// Forgets what was carried out, keeping the buffers.
    pub(super) fn clear(&mut self) {
        self.items.clear();
        self.frames.clear();
        self.encoded.clear();
        self.targets.clear();
    }

    /// Frame number `i`.
    pub(super) fn frame(&self, i: usize) -> &Frame {
        &self.frames[i]
    }

    /// Frame number `i`, encoded as one message (once, however many ask).
    pub(super) fn encoded(&mut self, i: usize) -> Bytes {
        let frames = &self.frames;
        // A lone frame's message is the frame's encoding: encoded from the
        // reference (cloning the frame to wrap it cloned its payload's
        // `Bytes`, an allocation for a payload that still owned its `Vec`).
        self.encoded[i]
            .get_or_insert_with(|| frames[i].to_bytes())
            .clone()
    }

    fn add_frame(&mut self, frame: Frame) -> usize {
        self.frames.push(frame);
        self.encoded.push(None);
        self.frames.len() - 1
    }

    /// Sends `frame` in `lane` to the targets pushed by `targets`.
    fn send(&mut self, frame: Frame, lane: Lane, targets: impl FnOnce(&mut Vec<Target>)) {
        let start = self.targets.len();
        targets(&mut self.targets);
        if self.targets.len() == start {
            return;
        }
        let frame = self.add_frame(frame);
        let targets = start..self.targets.len();
        self.items.push(Output::Send {
            frame,
            lane,
            targets,
        });
    }
}

/// One member of a room.
#[derive(Debug)]
struct Member {
    participant_id: ParticipantId,
    at: MemberAt,
    /// Server policing: how many more messages over the traffic rules it
    /// may send before it is expelled (see
    /// [`HubConfig::policing_tolerance`]).
    strikes: TokenBucket,
    /// How many more senders it may open (see
    /// [`HubConfig::session_opens`]).
    opens: TokenBucket,
    /// The traffic rules' state of each of its channels and kinds, kept
    /// across sessions (a new session brings no fresh allowance); one
    /// whose buckets are full is as good as new and may be forgotten.
    /// Keyed by what the member picks (its channel ids): std's hasher.
    rules: std::collections::HashMap<RuleKey, TrafficLimiter>,
    /// The member rules: all its senders together (see
    /// [`crate::TrafficPolicy::member_kbps`]).
    aggregate: TrafficLimiter,
    /// The round trip of its path to the server, as the server last
    /// measured it ([`Room::note_round_trip`]): its Durable data carries it
    /// to its receivers' egresses, which size their pause backlog by it.
    round_trip: Option<Duration>,
}

/// Which rule state a sender uses: its member's, for its channel and kind.
type RuleKey = (u16, Reliability, Priority);

/// The room's view of one open sender.
#[derive(Debug)]
struct Route {
    session: u32,
    reliability: Reliability,
    priority: Priority,
    bitrate_kbps: u32,
    epoch: u16,
    /// Empty: everyone else in the call.
    targets: Vec<ParticipantId>,
    /// Members that got `SenderOpened` (and so have a receiver).
    announced: BTreeSet<MemberId>,
    /// Members that closed their receiver of this session (a Durable one
    /// whose buffer was full): no longer sent it, nor announced it again.
    declined: BTreeSet<MemberId>,
    /// A message of this session was over the rules already.
    policed: bool,
    /// When a keep-alive of this session was last forwarded: at most one
    /// goes per eighth of the call's idle timeout, so a flood of them fans
    /// out nothing.
    last_keepalive: Option<Instant>,
    /// Durable data bytes taken so far (each message costs its payload
    /// plus [`MESSAGE_OVERHEAD`]).
    received: u64,
    /// Paused (`FlowControl`).
    paused: bool,
    /// While paused, where its overrun counts from: `received` when the
    /// `FlowControl` went into the member's association (its SCTP queue),
    /// in the order the member's data reaches the room. It may send at
    /// most [`HubConfig::pause_overrun`] more before it resumes. `None`
    /// while the pause is still on its way to that association.
    paused_at: Option<u64>,
    /// Pauses relayed to the worker owning the member's association that
    /// it has not yet reported handed over (see [`Room::pause_handed`]):
    /// until the last is, the room cannot tell which of the member's data
    /// was sent after the pause could reach it, and counts none as
    /// overrun. (Everything the owner took from the member before handing
    /// the pause over is relayed ahead of its report; without this, the
    /// data the owner acknowledged while the pause crossed the workers
    /// twice, unbounded when a worker is slow, counted as overrun.)
    handovers_due: u32,
}

/// What a message costs on top of its payload, in the backpressure's
/// accounting (so empty messages count).
const MESSAGE_OVERHEAD: u64 = 16;

impl Route {
    /// The lane of this route's frames (sent by `origin` on `channel`).
    fn lane(&self, origin: MemberId, channel: u16, len: usize, queued_at: Instant) -> Lane {
        Lane::Route {
            origin,
            channel,
            priority: self.priority,
            lossy: self.reliability == Reliability::Lossy,
            len,
            keepalive: false,
            queued_at,
            sender_rtt: None,
        }
    }

    /// Where its traffic rules' state is kept (in its member's `rules`).
    fn rule_key(&self, channel: u16) -> RuleKey {
        (channel, self.reliability, self.priority)
    }

    fn delivery(&self) -> Delivery {
        match self.reliability {
            Reliability::Durable => Delivery::Reliable,
            Reliability::Lossy => Delivery::Lossy,
        }
    }
}

/// A call's members and open senders. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Room {
    members: BTreeMap<MemberId, Member>,
    next_member: u32,
    routes: IdMap<(MemberId, u16), Route>,
    /// Backpressure: for each (origin, channel), the members whose egress
    /// holds too much of its Durable data. Kept per channel, not per
    /// session: a replacing session's data waits behind the old one's.
    pressure: IdMap<(MemberId, u16), BTreeSet<MemberId>>,
    /// Lossy `Data` that arrived before what it depends on: the
    /// `SenderOpened` of its session, or the `SetParticipants` of its epoch
    /// (both travel ordered on stream 0, Lossy data unordered on stream 1,
    /// so it may overtake them: a WebRTC stack sends unordered data at
    /// once). Held briefly per sending member, then forwarded when the
    /// frame it waits for comes, or dropped as stale.
    early: IdMap<MemberId, VecDeque<(Instant, Data)>>,
}

/// Lossy `Data` frames held per member until their session or epoch
/// arrives ([`Room`]'s `early`).
const EARLY_FRAMES: usize = 64;
/// Their payload bytes per member.
const EARLY_BYTES: usize = 32 * 1024;
/// How long one is held: a Lossy message older than this is late anyway.
const EARLY_HOLD: std::time::Duration = std::time::Duration::from_millis(250);

/// Whether `a` is after `b` in wrapping serial order (RFC 1982, 32 bits).
fn after_u32(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

/// Whether `a` is after `b` in wrapping serial order (16 bits).
fn after_u16(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 15
}

/// A call's `JoinAccepted` for `member`: the server's limits and rules.
pub(super) fn accepted_frame(config: &HubConfig, member: MemberId) -> JoinAccepted {
    let channel = &config.channel;
    JoinAccepted {
        version: PROTOCOL_VERSION,
        member,
        max_message_size: channel.max_message_size,
        idle_timeout_ms: u32::try_from(channel.receiver_idle_timeout.as_millis())
            .unwrap_or(u32::MAX),
        traffic: channel.traffic.to_rules(),
        max_senders: u32::try_from(config.max_senders_per_member).unwrap_or(u32::MAX),
    }
}

fn joined_frame(member: MemberId, pid: &ParticipantId) -> Frame {
    ParticipantJoined {
        member,
        participant_id: ShortStr::truncated(pid.as_str()),
    }
    .into()
}

/// The traffic rules' state of `member`'s senders of `key` (a fresh one if
/// it had none, or it was forgotten as full).
fn rules_of<'a>(
    member: &'a mut Member,
    key: RuleKey,
    config: &HubConfig,
    now: Instant,
) -> &'a TrafficLimiter {
    let (_, reliability, priority) = key;
    let channel = &config.channel;
    member.rules.entry(key).or_insert_with(|| {
        channel.traffic.limiter(
            reliability,
            priority,
            channel.max_message_size,
            channel.traffic.server_slack,
            now,
        )
    })
}

/// A `Leave` with `code` and `reason`.
pub(super) fn leave(code: ErrorCode, reason: &str) -> Leave {
    Leave {
        code,
        reason: ShortStr::truncated(reason),
    }
}

impl Room {
    /// Whether nobody is left.
    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Who is in the room.
    pub(super) fn members(&self) -> impl Iterator<Item = (MemberId, &ParticipantId)> {
        self.members.iter().map(|(m, x)| (*m, &x.participant_id))
    }

    /// Whether one more endpoint of `participant_id` may join: the call's
    /// and the participant's bounds.
    pub(super) fn check_admit(
        &self,
        config: &HubConfig,
        participant_id: &ParticipantId,
    ) -> Result<(), JoinRejection> {
        if self.members.len() >= config.max_members_per_call {
            return Err(JoinRejection {
                code: ErrorCode::CALL_FULL,
                reason: format!(
                    "the call is full ({} members)",
                    config.max_members_per_call
                ),
            });
        }
        let endpoints = self
            .members
            .values()
            .filter(|m| &m.participant_id == participant_id)
            .count();
        if endpoints >= config.max_endpoints_per_participant {
            return Err(JoinRejection {
                code: ErrorCode::CALL_FULL,
                reason: format!(
                    "{participant_id} has {endpoints} endpoints in the call already"
                ),
            });
        }
        Ok(())
    }

    /// Admits `participant_id`, living at `at`: it is welcomed (its
    /// `JoinAccepted` and who is here) and everyone else is told.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        config: &HubConfig,
        call_id: &str,
        participant_id: ParticipantId,
        at: MemberAt,
        out: &mut Outputs,
    ) -> MemberId {
        let member = MemberId(self.next_member);
        self.next_member += 1;
        let start = out.frames.len();
        out.add_frame(accepted_frame(config, member).into());
        for (m, x) in &self.members {
            out.add_frame(joined_frame(*m, &x.participant_id));
        }
        out.items.push(Output::Welcome {
            at,
            frames: start..out.frames.len(),
        });
        let members = &self.members;
        out.send(
            joined_frame(member, &participant_id),
            Lane::Control,
            |targets| {
                targets.extend(members.iter().map(|(m, x)| Target {
                    member: *m,
                    at: x.at,
                    delivery: Delivery::Reliable,
                }));
            },
        );
        let (rate, burst) = config.policing_tolerance;
        let (opens, opens_burst) = config.session_opens;
        self.members.insert(
            member,
            Member {
                participant_id: participant_id.clone(),
                at,
                strikes: TokenBucket::new(rate, burst, now),
                opens: TokenBucket::new(opens, opens_burst, now),
                rules: std::collections::HashMap::new(),
                aggregate: config.channel.traffic.member_limiter(
                    config.channel.max_message_size,
                    config.channel.traffic.server_slack,
                    now,
                ),
                round_trip: None,
            },
        );
        out.events.push(HubEvent::ParticipantJoined {
            call_id: call_id.to_owned(),
            participant_id,
            member,
        });
        member
    }

    /// Removes `member`: its senders close everywhere (`why`), everyone is
    /// told, and [`Output::Removed`] comes last.
    pub(super) fn remove(
        &mut self,
        now: Instant,
        call_id: &str,
        member: MemberId,
        why: CloseReason,
        detail: Option<String>,
        out: &mut Outputs,
    ) {
        let Some(gone) = self.members.remove(&member) else {
            return;
        };
        if let Some(held) = self.early.remove(&member) {
            out.stats.messages_stale += held.len() as u64;
        }
        let mut theirs: Vec<u16> = self
            .routes
            .keys()
            .filter(|(m, _)| *m == member)
            .map(|(_, channel)| *channel)
            .collect();
        theirs.sort_unstable();
        for channel in theirs {
            if let Some(route) = self.routes.remove(&(member, channel)) {
                self.close_route(now, member, channel, &route, why, out);
            }
        }
        for route in self.routes.values_mut() {
            route.announced.remove(&member);
            route.declined.remove(&member);
        }
        // What it pressed on is free of it; what it sent presses no more.
        self.pressure.retain(|(origin, _), _| *origin != member);
        let mut freed: Vec<(MemberId, u16)> = Vec::new();
        for (key, set) in &mut self.pressure {
            if set.remove(&member) && set.is_empty() {
                freed.push(*key);
            }
        }
        freed.sort_unstable();
        for (origin, channel) in freed {
            self.pressure.remove(&(origin, channel));
            self.set_paused(origin, channel, false, out);
        }
        let members = &self.members;
        out.send(
            ParticipantLeft { member }.into(),
            Lane::AfterFlowsOf(member),
            |targets| {
                targets.extend(members.iter().map(|(m, x)| Target {
                    member: *m,
                    at: x.at,
                    delivery: Delivery::Reliable,
                }));
            },
        );
        out.items.push(Output::Removed { at: gone.at });
        let reason = detail.unwrap_or_else(|| {
            match why {
                CloseReason::LEFT => "left",
                CloseReason::ASSOCIATION_LOST => "its association ended",
                CloseReason::TRAFFIC_LIMIT => "over the traffic rules",
                _ => "removed",
            }
            .to_owned()
        });
        out.events.push(HubEvent::ParticipantLeft {
            call_id: call_id.to_owned(),
            participant_id: gone.participant_id,
            member,
            reason,
        });
    }

    /// Tells the members that heard of `route` (no longer in the room)
    /// that it closed: in the route's flow, after what it still has queued.
    fn close_route(
        &self,
        now: Instant,
        origin: MemberId,
        channel: u16,
        route: &Route,
        reason: CloseReason,
        out: &mut Outputs,
    ) {
        let closed = SenderClosed {
            channel,
            session: route.session,
            reason,
            origin: Some(origin),
        };
        let lane = route.lane(origin, channel, 0, now);
        self.send_to_announced(route, closed.into(), lane, Delivery::Reliable, out);
    }

    /// Sends `frame` to the members that have a receiver of `route`.
    fn send_to_announced(
        &self,
        route: &Route,
        frame: Frame,
        lane: Lane,
        delivery: Delivery,
        out: &mut Outputs,
    ) {
        let members = &self.members;
        out.send(frame, lane, |targets| {
            targets.extend(route.announced.iter().filter_map(|m| {
                members.get(m).map(|x| Target {
                    member: *m,
                    at: x.at,
                    delivery,
                })
            }));
        });
    }

    /// Sends one control frame to member `to`.
    fn send_to(&self, to: MemberId, frame: Frame, out: &mut Outputs) {
        let Some(x) = self.members.get(&to) else {
            return;
        };
        let at = x.at;
        out.send(frame, Lane::Control, |targets| {
            targets.push(Target {
                member: to,
                at,
                delivery: Delivery::Reliable,
            });
        });
    }

    /// `from` broke the protocol: it is told `what` (through its egress,
    /// within its bounds), and it is a strike.
    pub(super) fn violation(
        &mut self,
        now: Instant,
        call_id: &str,
        from: MemberId,
        what: String,
        out: &mut Outputs,
    ) {
        let Some(x) = self.members.get(&from) else {
            return;
        };
        let at = x.at;
        if self.strike(now, call_id, from, true, out) {
            out.items.push(Output::Violation { at, what });
        }
    }

    /// The server measured `rtt` as the round trip of member `member`'s
    /// path; its Durable data carries the latest to the
    /// receivers' egresses (see [`HubConfig::pause_backlog_max`]).
    pub(super) fn note_round_trip(&mut self, member: MemberId, rtt: Duration) {
        if let Some(m) = self.members.get_mut(&member) {
            m.round_trip = Some(rtt);
        }
    }

    /// A frame from member `from`.
    pub(super) fn handle_frame(
        &mut self,
        now: Instant,
        config: &HubConfig,
        call_id: &str,
        from: MemberId,
        frame: Frame,
        out: &mut Outputs,
    ) {
        if !self.members.contains_key(&from) {
            return;
        }
        match frame {
            Frame::SenderOpened(o) if o.origin.is_none() => {
                let channel = o.channel;
                self.open(now, config, call_id, from, o, out);
                self.release_early(now, config, call_id, from, channel, out);
            }
            Frame::SetParticipants(p) => {
                if let Some(route) = self.routes.get_mut(&(from, p.channel)) {
                    route.epoch = p.epoch;
                    route.targets = p
                        .participants
                        .ids()
                        .iter()
                        .map(|s| ParticipantId::from(s.as_str()))
                        .collect();
                    self.release_early(now, config, call_id, from, p.channel, out);
                }
            }
            Frame::Data(d) if d.origin.is_none() => {
                self.forward(now, config, call_id, from, d, out);
            }
            Frame::SenderClosed(c) if c.origin.is_none() => {
                if self
                    .routes
                    .get(&(from, c.channel))
                    .is_some_and(|r| r.session == c.session)
                    && let Some(route) = self.routes.remove(&(from, c.channel))
                {
                    self.close_route(now, from, c.channel, &route, c.reason, out);
                }
            }
            // A receiver of `origin`'s session closed on this member's side.
            Frame::SenderClosed(SenderClosed {
                channel,
                session,
                reason: CloseReason::RECEIVER_OVERFLOW,
                origin: Some(origin),
            }) => {
                if let Some(route) = self
                    .routes
                    .get_mut(&(origin, channel))
                    .filter(|r| r.session == session)
                {
                    route.announced.remove(&from);
                    route.declined.insert(from);
                }
            }
            Frame::KeepAlive(k) if k.origin.is_none() => {
                let every = config.channel.receiver_idle_timeout / 8;
                if let Some(route) = self
                    .routes
                    .get_mut(&(from, k.channel))
                    .filter(|r| r.session == k.session)
                    .filter(|r| r.last_keepalive.is_none_or(|t| now >= t + every))
                {
                    route.last_keepalive = Some(now);
                    let route = &self.routes[&(from, k.channel)];
                    let mut lane = route.lane(from, k.channel, 0, now);
                    if let Lane::Route { keepalive, .. } = &mut lane {
                        *keepalive = true;
                    }
                    let ka = KeepAlive {
                        origin: Some(from),
                        ..k
                    };
                    self.send_to_announced(route, ka.into(), lane, Delivery::Lossy, out);
                }
            }
            Frame::Leave(_) => self.remove(now, call_id, from, CloseReason::LEFT, None, out),
            Frame::Error(e) => {
                // Peer-controlled: debug level, so a chatty peer cannot flood logs.
                tracing::debug!(call = call_id, member = %from, code = e.code.0, reason = %e.reason, "error from participant");
            }
            other => self.violation(
                now,
                call_id,
                from,
                format!("{} is not allowed from a participant", other.name()),
                out,
            ),
        }
    }

    /// `from` opens a sender (a session on a channel); a newer session on
    /// the same channel replaces the old one. Opening is policed (see
    /// [`HubConfig::session_opens`]); the rules' state of the channel
    /// carries over from earlier sessions.
    fn open(
        &mut self,
        now: Instant,
        config: &HubConfig,
        call_id: &str,
        from: MemberId,
        o: SenderOpened,
        out: &mut Outputs,
    ) {
        if self
            .routes
            .get(&(from, o.channel))
            .is_some_and(|old| old.session == o.session)
        {
            return;
        }
        // The client keeps to the limit announced in `JoinAccepted`; the
        // server tolerates twice that, since one sender's close and
        // another's open travel in different flows and may cross.
        let theirs = self.routes.keys().filter(|(m, _)| *m == from).count();
        if !self.routes.contains_key(&(from, o.channel))
            && theirs >= config.max_senders_per_member.saturating_mul(2)
        {
            // Past it: a protocol violation, and the sender is refused
            // (closed on the client, so its sends fail instead of
            // vanishing).
            let refused = SenderClosed {
                channel: o.channel,
                session: o.session,
                reason: CloseReason::TOO_MANY_SENDERS,
                origin: None,
            };
            self.send_to(from, refused.into(), out);
            self.violation(now, call_id, from, "too many open senders".into(), out);
            return;
        }
        // The client has moved on from the old session either way.
        if let Some(old) = self.routes.remove(&(from, o.channel)) {
            self.close_route(now, from, o.channel, &old, CloseReason::REPLACED, out);
        }
        let Some(member) = self.members.get_mut(&from) else {
            return;
        };
        let key = (o.channel, o.reliability, o.priority);
        let max_rules = 4 * config.max_senders_per_member.max(1);
        if member.rules.len() >= max_rules {
            member.rules.retain(|_, l| !l.is_full(now));
        }
        let room_for_rules =
            member.rules.contains_key(&key) || member.rules.len() < max_rules;
        if !room_for_rules || !member.opens.try_take(1, now) {
            // Refused: the sender is closed on the client, as one over the
            // rules, and it is a strike.
            out.stats.policed += 1;
            let refused = SenderClosed {
                channel: o.channel,
                session: o.session,
                reason: CloseReason::TRAFFIC_LIMIT,
                origin: None,
            };
            if self.strike(now, call_id, from, false, out) {
                self.send_to(from, refused.into(), out);
            }
            return;
        }
        rules_of(member, key, config, now);
        let route = Route {
            session: o.session,
            reliability: o.reliability,
            priority: o.priority,
            bitrate_kbps: o.bitrate_kbps,
            epoch: 0,
            targets: Vec::new(),
            announced: BTreeSet::new(),
            declined: BTreeSet::new(),
            policed: false,
            last_keepalive: None,
            received: 0,
            paused: false,
            paused_at: None,
            handovers_due: 0,
        };
        self.routes.insert((from, o.channel), route);
        // Its channel's data still presses on some member: it starts paused.
        if self
            .pressure
            .get(&(from, o.channel))
            .is_some_and(|p| !p.is_empty())
        {
            self.set_paused(from, o.channel, true, out);
        }
    }

    /// Member `target`'s egress holds too much (`pressing`), or no longer
    /// does, of (origin, channel)'s Durable data: the first to press
    /// pauses that sender, the last to stop resumes it.
    pub(super) fn pressure(
        &mut self,
        _now: Instant,
        target: MemberId,
        origin: MemberId,
        channel: u16,
        pressing: bool,
        out: &mut Outputs,
    ) {
        if !self.members.contains_key(&target) || !self.members.contains_key(&origin) {
            return; // Gone: its removal cleared what it pressed.
        }
        let key = (origin, channel);
        let set = self.pressure.entry(key).or_default();
        let changed = if pressing {
            set.insert(target) && set.len() == 1
        } else {
            set.remove(&target) && set.is_empty()
        };
        if set.is_empty() {
            self.pressure.remove(&key);
        }
        if changed {
            self.set_paused(origin, channel, pressing, out);
        }
    }

    /// Pauses or resumes the Durable sender open on (origin, channel), if
    /// one is and it is not so already: it is told (`FlowControl`).
    fn set_paused(&mut self, origin: MemberId, channel: u16, paused: bool, out: &mut Outputs) {
        let Some(route) = self
            .routes
            .get_mut(&(origin, channel))
            .filter(|r| r.reliability == Reliability::Durable)
        else {
            return;
        };
        if route.paused == paused {
            return;
        }
        route.paused = paused;
        route.paused_at = None;
        if paused {
            out.stats.senders_paused += 1;
            // The `FlowControl` reaches a member of this hub in the input
            // that decided it (control goes ahead of the member's egress);
            // one of another worker's, once that worker says so.
            let relayed = self
                .members
                .get(&origin)
                .is_some_and(|m| matches!(m.at, MemberAt::Worker { .. }));
            if relayed {
                route.handovers_due += 1;
            } else {
                route.paused_at = Some(route.received);
            }
        }
        let frame = FlowControl {
            channel,
            session: route.session,
            paused,
        };
        self.send_to(origin, frame.into(), out);
    }

    /// The worker owning `member`'s association handed the `FlowControl`
    /// pausing session `session` on `channel` over to it: once the last
    /// pause relayed is, what the member sends from here on counts toward
    /// its overrun.
    pub(super) fn pause_handed(&mut self, member: MemberId, channel: u16, session: u32) {
        let Some(route) = self
            .routes
            .get_mut(&(member, channel))
            .filter(|r| r.session == session)
        else {
            return; // Closed or replaced since.
        };
        route.handovers_due = route.handovers_due.saturating_sub(1);
        if route.handovers_due == 0 && route.paused && route.paused_at.is_none() {
            route.paused_at = Some(route.received);
        }
    }

    /// Holds a Lossy frame that came before its session or epoch (see
    /// [`Room`]'s `early`), within the per-member bounds; what does not fit,
    /// or waited too long, is dropped as stale.
    fn hold_early(&mut self, now: Instant, from: MemberId, d: Data, out: &mut Outputs) {
        let held = self.early.entry(from).or_default();
        while held.front().is_some_and(|(at, _)| now >= *at + EARLY_HOLD) {
            held.pop_front();
            out.stats.messages_stale += 1;
        }
        let bytes: usize = held.iter().map(|(_, d)| d.payload.len()).sum();
        if held.len() >= EARLY_FRAMES || bytes + d.payload.len() > EARLY_BYTES {
            out.stats.messages_stale += 1;
            return;
        }
        held.push_back((now, d));
    }

    /// Forwards what `from` had held on `channel` once a frame it waited
    /// for came (a `SenderOpened` or a `SetParticipants`).
    fn release_early(
        &mut self,
        now: Instant,
        config: &HubConfig,
        call_id: &str,
        from: MemberId,
        channel: u16,
        out: &mut Outputs,
    ) {
        let Some(held) = self.early.get_mut(&from) else {
            return;
        };
        let (mine, rest): (VecDeque<_>, VecDeque<_>) =
            held.drain(..).partition(|(_, d)| d.channel == channel);
        *held = rest;
        if held.is_empty() {
            self.early.remove(&from);
        }
        for (at, d) in mine {
            if now >= at + EARLY_HOLD {
                out.stats.messages_stale += 1;
            } else {
                // Forwarded if it now fits its route; held again if it is
                // still ahead of it; else stale.
                self.forward(now, config, call_id, from, d, out);
            }
        }
    }

    /// Fans a data frame out to its sender's targets.
    fn forward(
        &mut self,
        now: Instant,
        config: &HubConfig,
        call_id: &str,
        from: MemberId,
        d: Data,
        out: &mut Outputs,
    ) {
        if d.payload.len() > config.channel.max_message_size as usize {
            // The client checks this; one that does not is breaking the rules.
            out.stats.protocol_errors += 1;
            return;
        }
        let current = self.routes.get(&(from, d.channel));
        // Lossy data (it carries its epoch) may overtake the ordered frame
        // it depends on: its session's `SenderOpened`, or the
        // `SetParticipants` of its epoch. Held until it comes.
        let early = d.epoch.is_some_and(|epoch| match current {
            None => true,
            Some(r) if r.session == d.session => {
                r.reliability == Reliability::Lossy && after_u16(epoch, r.epoch)
            }
            Some(r) => after_u32(d.session, r.session),
        });
        if early {
            self.hold_early(now, from, d, out);
            return;
        }
        let Some(route) = self
            .routes
            .get_mut(&(from, d.channel))
            .filter(|r| r.session == d.session)
        else {
            out.stats.messages_stale += 1;
            return;
        };
        // A Lossy message may overtake its sender's latest participant list:
        // one sent under another list is dropped rather than misdelivered.
        if route.reliability == Reliability::Lossy && d.epoch != Some(route.epoch) {
            out.stats.messages_stale += 1;
            return;
        }
        // Policing: a client that skips its own limiter loses the excess, and
        // one that keeps at it is expelled.
        let (len, broadcast) = (d.payload.len(), route.targets.is_empty());
        let admitted = self.members.get_mut(&from).is_none_or(|m| {
            let rules = rules_of(m, route.rule_key(d.channel), config, now);
            if !rules.try_admit(len, broadcast, now) {
                return false;
            }
            // And the member's senders together.
            m.aggregate.try_admit(len, true, now) || {
                rules_of(m, route.rule_key(d.channel), config, now).refund(len, broadcast);
                false
            }
        });
        if !admitted {
            let first = !std::mem::replace(&mut route.policed, true);
            self.policed(now, call_id, from, &d, first, out);
            return;
        }
        if route.reliability == Reliability::Durable {
            route.received += d.payload.len() as u64 + MESSAGE_OVERHEAD;
            let overrun = route
                .paused_at
                .is_some_and(|at| route.received - at > config.pause_overrun as u64);
            let hosted = |m: &Member| matches!(m.at, MemberAt::Hosted(_));
            if overrun && !self.members.get(&from).is_some_and(hosted) {
                // It ignores its pause: its receivers' queues would grow
                // without bound. A Durable session with a hole is not
                // Durable: closed, as one over the rules.
                // Warn: an engine client honouring its pauses never gets
                // here, so this names a hostile member or a bug.
                let past = route.received - route.paused_at.unwrap_or(route.received);
                let at = self.members.get(&from).map(|m| m.at);
                tracing::warn!(
                    call = call_id,
                    member = %from,
                    ?at,
                    channel = d.channel,
                    session = d.session,
                    past,
                    allowed = config.pause_overrun,
                    "closed a Durable sender: it sent more than pause_overrun past its pause"
                );
                let first = !std::mem::replace(&mut route.policed, true);
                self.policed(now, call_id, from, &d, first, out);
                return;
            }
        }
        let route = &self.routes[&(from, d.channel)];
        let len = d.payload.len().max(1);
        let control = route.lane(from, d.channel, 0, now);
        let mut lane = route.lane(from, d.channel, len, now);
        if let Lane::Route { sender_rtt, .. } = &mut lane {
            *sender_rtt = self.members.get(&from).and_then(|m| m.round_trip);
        }
        let addressed = |m: &MemberId, x: &Member| {
            *m != from
                && !route.declined.contains(m)
                && (route.targets.is_empty() || route.targets.contains(&x.participant_id))
        };
        let new = |m: &MemberId, x: &Member| addressed(m, x) && !route.announced.contains(m);
        let members = &self.members;
        // New receivers get `SenderOpened` first, and their first message
        // goes ordered after it (unordered data would overtake it).
        let opened = SenderOpened {
            channel: d.channel,
            session: d.session,
            reliability: route.reliability,
            priority: route.priority,
            bitrate_kbps: route.bitrate_kbps,
            origin: Some(from),
        };
        out.send(opened.into(), control, |targets| {
            targets.extend(
                members
                    .iter()
                    .filter(|(m, x)| new(m, x))
                    .map(|(m, x)| Target {
                        member: *m,
                        at: x.at,
                        delivery: Delivery::Reliable,
                    }),
            );
        });
        let delivery = route.delivery();
        let mut forwarded = 0;
        let data = Data {
            origin: Some(from),
            epoch: None,
            ..d
        };
        out.send(data.into(), lane, |targets| {
            for (m, x) in members.iter().filter(|(m, x)| addressed(m, x)) {
                forwarded += 1;
                targets.push(Target {
                    member: *m,
                    at: x.at,
                    delivery: if route.announced.contains(m) {
                        delivery
                    } else {
                        Delivery::Reliable
                    },
                });
            }
        });
        out.stats.messages_forwarded += forwarded;
        let route = self
            .routes
            .get_mut(&(from, d.channel))
            .expect("looked up above");
        for t in &out.targets[out.targets.len() - forwarded as usize..] {
            route.announced.insert(t.member);
        }
    }

    /// `from` broke the traffic rules (or, `protocol`, the protocol) once
    /// more: one strike. Past its tolerance (see
    /// [`HubConfig::policing_tolerance`]) it is expelled and removed
    /// (`false`: it is gone). Hosted participants are trusted: never
    /// expelled.
    fn strike(
        &mut self,
        now: Instant,
        call_id: &str,
        from: MemberId,
        protocol: bool,
        out: &mut Outputs,
    ) -> bool {
        let Some(member) = self.members.get_mut(&from) else {
            return false;
        };
        if matches!(member.at, MemberAt::Hosted(_)) || member.strikes.try_take(1, now) {
            return true;
        }
        let leave = if protocol {
            tracing::info!(call = call_id, member = %from, "disconnected: persistently breaking the protocol");
            leave(
                ErrorCode::PROTOCOL_VIOLATION,
                "persistently breaking the protocol",
            )
        } else {
            out.stats.traffic_abusers += 1;
            tracing::info!(call = call_id, member = %from, "disconnected: over the traffic rules");
            leave(
                ErrorCode::TRAFFIC_LIMIT,
                "persistently over the traffic limit rules",
            )
        };
        out.items.push(Output::Expel {
            at: member.at,
            leave,
        });
        self.remove(now, call_id, from, CloseReason::ASSOCIATION_LOST, None, out);
        false
    }

    /// A message of `from` was over the traffic rules and dropped. One who
    /// keeps at it is expelled. Otherwise: a Durable session with a hole is
    /// not Durable, so its route closes (`SenderClosed` with
    /// `TRAFFIC_LIMIT` to its receivers, after what they got) and the
    /// sender is told (`SenderClosed` without origin), so the sending
    /// application sees its sender closed instead of a silent gap; a Lossy
    /// one may drop: the sender gets one `Error` per session (`first`).
    fn policed(
        &mut self,
        now: Instant,
        call_id: &str,
        from: MemberId,
        d: &Data,
        first: bool,
        out: &mut Outputs,
    ) {
        out.stats.policed += 1;
        if !self.strike(now, call_id, from, false, out) {
            return;
        }
        let Some(reliability) = self.routes.get(&(from, d.channel)).map(|r| r.reliability) else {
            return;
        };
        let notice: Frame = match reliability {
            Reliability::Durable => {
                let Some(route) = self.routes.remove(&(from, d.channel)) else {
                    return;
                };
                tracing::info!(call = call_id, member = %from, channel = d.channel, "closed a Durable sender over the traffic rules");
                self.close_route(
                    now,
                    from,
                    d.channel,
                    &route,
                    CloseReason::TRAFFIC_LIMIT,
                    out,
                );
                SenderClosed {
                    channel: d.channel,
                    session: d.session,
                    reason: CloseReason::TRAFFIC_LIMIT,
                    origin: None,
                }
                .into()
            }
            Reliability::Lossy if first => ErrorFrame {
                code: ErrorCode::TRAFFIC_LIMIT,
                reason: ShortStr::truncated(&format!(
                    "Lossy messages on channel {} dropped: over the traffic limit rules",
                    d.channel
                )),
            }
            .into(),
            Reliability::Lossy => return,
        };
        self.send_to(from, notice, out);
    }
}

#[cfg(test)]
mod tests;
