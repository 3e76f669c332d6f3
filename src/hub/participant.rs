//! The participant side of a call, sans-IO: turns the application's sender
//! operations into frames, and frames from the server (or the local room)
//! into receivers and messages. Used for calls joined over the network and
//! for participants hosted inside a hub alike (see [`super::client`]).
#![forbid(unsafe_code)]

use crate::idhash::IdMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_queue::SegQueue;

use crate::datachannel::shared::{
    CallShared, ReceiverShared, STATE_ENDED, SenderOp, SenderShared, Wakers, lock,
    message_cost,
};
use crate::datachannel::{
    DataChannelMessage, DataChannelPriority, DataChannelReceiver, DataChannelReliability,
    ParticipantId, ReceiverCloseReason, close_and_release,
};
use crate::proto::Delivery;
use crate::sched::{FlowSpec, Head, Pick, Scheduler};
use crate::wire::Codec;
use crate::wire::{
    CloseReason, Data, FlowControl, Frame, KeepAlive, MemberId, ParticipantList, Priority, Reliability,
    SenderClosed, SenderOpened, SetParticipants, ShortStr,
};

/// Frames to send, each on its stream.
pub(super) type Frames = Vec<(Delivery, Frame)>;

struct SenderEntry {
    shared: Arc<SenderShared>,
    /// The next sequence number (from 1), given in queue order.
    next_seq: u32,
    /// Counts participant-list changes; 0 is the list the server starts with
    /// (everyone), so a sender created with a list sends under epoch 1.
    epoch: u16,
    last_keepalive: Instant,
}

/// Data that arrived before the `SenderOpened` of its session (a Lossy
/// message can overtake it), held briefly and replayed when it comes.
#[derive(Default)]
struct Orphans {
    held: std::collections::VecDeque<(Instant, Data)>,
    bytes: usize,
}

/// How long, how many and how many bytes of early data are held.
const ORPHAN_TTL: std::time::Duration = std::time::Duration::from_secs(2);
const ORPHAN_MAX: usize = 256;
const ORPHAN_BYTES: usize = 1024 * 1024;

impl Orphans {
    /// Holds `d`; `false` if there is no room (the caller drops it).
    fn hold(&mut self, now: Instant, d: Data) -> bool {
        if self.held.len() >= ORPHAN_MAX || self.bytes + d.payload.len() > ORPHAN_BYTES {
            return false;
        }
        self.bytes += d.payload.len();
        self.held.push_back((now, d));
        true
    }

    /// Takes the held data of one session, in arrival order.
    fn take(&mut self, origin: MemberId, channel: u16, session: u32) -> Vec<Data> {
        let mut out = Vec::new();
        self.held.retain(|(_, d)| {
            let hit = d.origin == Some(origin) && d.channel == channel && d.session == session;
            if hit {
                out.push(d.clone());
            }
            !hit
        });
        self.bytes -= out.iter().map(|d| d.payload.len()).sum::<usize>();
        out
    }

    /// Drops what waited too long; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let mut dropped = 0;
        while let Some((at, d)) = self.held.front() {
            if now < *at + ORPHAN_TTL {
                break;
            }
            self.bytes -= d.payload.len();
            self.held.pop_front();
            dropped += 1;
        }
        dropped
    }
}

struct ReceiverEntry {
    shared: Arc<ReceiverShared>,
    last_activity: Instant,
    /// As its `SenderOpened` said (to open it again after an idle close).
    reliability: Reliability,
    priority: Priority,
}

/// Counters of one participant.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct ParticipantStats {
    /// Data for a session that is not (or no longer) current: discarded.
    pub(super) stale: u64,
    /// Frames a server should not send to a participant.
    pub(super) unexpected: u64,
    /// Lossy messages dropped because they waited past the latency budget.
    pub(super) lossy_late: u64,
    /// Senders announced past [`ChannelConfig::max_receivers`]: declined.
    ///
    /// [`ChannelConfig::max_receivers`]: crate::ChannelConfig::max_receivers
    pub(super) receivers_refused: u64,
    /// Messages larger than this participant's own `max_message_size`:
    /// dropped (a Durable receiver closes, as when its buffer is full).
    pub(super) oversize: u64,
}

/// Most participants a call's roster holds (a server admits far fewer):
/// past it, announcements are ignored and counted as unexpected.
const MAX_ROSTER: usize = 65_536;

/// A sender as a flow of the egress scheduler: its queue's head, once
/// taken off the lock-free queue to be looked at.
struct Flow {
    shared: Arc<SenderShared>,
    head: Option<SenderOp>,
    /// The server paused it (`FlowControl`): its data waits; its control
    /// operations still go, in order.
    paused: bool,
}

/// How the scheduler treats sender `s`: its priority, and shaped at its
/// `bitrate_kbps` (0: no rate of its own) capped by the traffic rule of its
/// kind, in a bucket one burst or one max-size message deep.
fn flow_spec(
    s: &SenderShared,
    traffic: &crate::sched::TrafficPolicy,
    max_message_size: u32,
) -> FlowSpec {
    let reliability: Reliability = s.reliability.into();
    let priority: Priority = s.priority.into();
    let rule = traffic.rate_kbps(reliability, priority);
    let own = (s.bitrate_kbps > 0).then_some(s.bitrate_kbps);
    let kbps = match (own, rule) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    FlowSpec {
        priority,
        lossy: reliability == Reliability::Lossy,
        shaping: kbps.map(|kbps| {
            let rate = u64::from(kbps) * 125;
            let burst = (rate as f64 * traffic.burst.as_secs_f64()) as u64;
            (rate, burst.max(u64::from(max_message_size)))
        }),
    }
}

pub(super) struct ParticipantCore {
    pub(super) shared: Arc<CallShared>,
    flows: IdMap<u32, Flow>,
    sched: Scheduler<u32>,
    senders: IdMap<u16, SenderEntry>,
    receivers: IdMap<(MemberId, u16), ReceiverEntry>,
    orphans: Orphans,
    /// Frames for the server that receiving produced: receivers closed
    /// here, which the server stops sending to (see [`Self::take_notices`]).
    notices: Vec<Frame>,
    pub(super) stats: ParticipantStats,
    /// [`ParticipantCore::end`] ran: the call is over here too.
    ended: bool,
    /// Sessions whose receiver closed for idleness while their sender may
    /// still be open: a message of one announces a new receiver (same
    /// session, sequence numbers going on) instead of being dropped.
    /// Forgotten when the sender closes or leaves; at most
    /// `max_receivers`.
    idled: IdMap<(MemberId, u16), (u32, Reliability, Priority)>,
    /// The server's `JoinAccepted` (its max message size), until
    /// [`ParticipantCore::complete_join`] makes the call joined.
    accepted: Option<crate::wire::JoinAccepted>,
    /// The call's receiver idle timeout: the server's (its `JoinAccepted`),
    /// which every member of the call uses.
    idle_timeout: Duration,
    /// How often an idle sender sends a keep-alive: its own interval, at
    /// most a quarter of the call's idle timeout, so keep-alives always
    /// beat the receivers' timeout.
    keepalive_interval: Duration,
}

impl ParticipantCore {
    pub(super) fn new(shared: Arc<CallShared>) -> Self {
        let budget = shared.config.lossy_latency_budget;
        Self {
            accepted: None,
            ended: false,
            idled: IdMap::default(),
            idle_timeout: shared.config.receiver_idle_timeout,
            keepalive_interval: shared.config.keepalive_interval,
            shared,
            flows: IdMap::default(),
            sched: Scheduler::new(budget),
            senders: IdMap::default(),
            receivers: IdMap::default(),
            orphans: Orphans::default(),
            notices: Vec::new(),
            stats: ParticipantStats::default(),
        }
    }

    /// Moves the frames receiving produced for the server into `out`: a
    /// `SenderClosed` with the sender's origin for each Durable receiver
    /// closed because its buffer was full, so the server stops sending it
    /// that session (a new session of the sender opens a new receiver).
    pub(super) fn take_notices(&mut self, out: &mut Frames) {
        out.extend(
            self.notices
                .drain(..)
                .map(|frame| (Delivery::Reliable, frame)),
        );
    }

    /// Sender `s` has operations queued: makes it a flow of this
    /// participant's egress scheduler (or, once the call is over, drops
    /// them).
    pub(super) fn enqueue(&mut self, now: Instant, s: &Arc<SenderShared>) {
        // Clear first: an operation pushed from now on schedules again.
        s.scheduled.store(false, Ordering::SeqCst);
        if self.ended {
            // The call ended (it was left, its queues flushed, or it never
            // started): the sender is closed already.
            while let Some(op) = s.ops.pop() {
                if let SenderOp::Data(data, _) = op {
                    s.release(message_cost(data.len()));
                }
            }
            return;
        }
        if !self.flows.contains_key(&s.session) {
            let spec = flow_spec(s, self.shared.traffic(), self.shared.max_message_size());
            self.sched.insert(s.session, spec, now);
            self.flows.insert(
                s.session,
                Flow {
                    shared: s.clone(),
                    head: None,
                    paused: false,
                },
            );
        }
        self.sched.wake(s.session);
    }

    /// Whether a sender has something queued (possibly waiting for tokens
    /// or for room in the association).
    pub(super) fn has_work(&self) -> bool {
        self.sched.has_work()
    }

    /// When a sender waiting for shaping tokens may go.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.sched.poll_timeout()
    }

    /// How long what is picked from now on waits in the transport (see
    /// [`crate::sched::Scheduler::set_transit`]).
    pub(super) fn set_transit(&mut self, transit: std::time::Duration) {
        self.sched.set_transit(transit);
    }

    /// Turns queued operations into frames in the scheduler's order
    /// (High before Normal, fair by bytes within a class, shaped), until
    /// about `room` bytes of frames are out or nothing is eligible. High
    /// senders may use `high_reserve` bytes more: a High message never
    /// waits for room behind Normal ones (the traffic rules bound what High
    /// senders send).
    pub(super) fn pump(
        &mut self,
        now: Instant,
        room: usize,
        high_reserve: usize,
        out: &mut Frames,
    ) {
        let mut used = 0;
        // Channels whose `SenderOpened` is in this batch.
        let mut opened_now: Vec<u16> = Vec::new();
        while used < room.saturating_add(high_reserve) {
            let normal = used < room;
            let Self { sched, flows, .. } = self;
            let pick = sched.next_of(now, normal, |k| {
                let f = flows.get_mut(&k)?;
                if f.head.is_none() {
                    f.head = f.shared.ops.pop();
                }
                Some(match f.head.as_ref()? {
                    // Paused: idle until the server resumes it.
                    SenderOp::Data(..) if f.paused => return None,
                    SenderOp::Data(data, at) => Head {
                        len: data.len().max(1),
                        // Untimed (Durable, no rules): the instant is unused.
                        queued_at: at.unwrap_or(now),
                    },
                    _ => Head {
                        len: 0,
                        queued_at: now,
                    },
                })
            });
            let Some(pick) = pick else { break };
            let (Pick::Send(k) | Pick::Drop(k)) = pick;
            let Some(f) = self.flows.get_mut(&k) else {
                continue;
            };
            let Some(op) = f.head.take() else { continue };
            let s = f.shared.clone();
            if let SenderOp::Data(data, _) = &op {
                s.release(message_cost(data.len()));
            }
            if matches!(pick, Pick::Drop(_)) {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.lossy_late += 1;
                continue;
            }
            let closing = matches!(op, SenderOp::Close(_));
            used += self.emit(now, &s, op, &mut opened_now, out);
            if closing {
                self.sched.remove(k);
                self.flows.remove(&k);
            }
        }
    }

    /// Turns one operation of `s` into a frame; returns its encoded size.
    fn emit(
        &mut self,
        now: Instant,
        s: &Arc<SenderShared>,
        op: SenderOp,
        opened_now: &mut Vec<u16>,
        out: &mut Frames,
    ) -> usize {
        let frame: Frame = match op {
            SenderOp::Open => {
                opened_now.push(s.channel);
                self.senders.insert(
                    s.channel,
                    SenderEntry {
                        shared: s.clone(),
                        next_seq: 1,
                        epoch: 0,
                        last_keepalive: now,
                    },
                );
                SenderOpened {
                    channel: s.channel,
                    session: s.session,
                    reliability: s.reliability.into(),
                    priority: s.priority.into(),
                    bitrate_kbps: s.bitrate_kbps,
                    origin: None,
                }
                .into()
            }
            SenderOp::Data(payload, _) => {
                let Some(e) = self
                    .senders
                    .get_mut(&s.channel)
                    .filter(|e| Arc::ptr_eq(&e.shared, s))
                else {
                    return 0; // Replaced before it opened: nothing to send on.
                };
                let seq = e.next_seq;
                e.next_seq = e.next_seq.wrapping_add(1);
                let lossy = s.reliability == DataChannelReliability::Lossy;
                let frame: Frame = Data {
                    channel: s.channel,
                    session: s.session,
                    seq,
                    origin: None,
                    epoch: lossy.then_some(e.epoch),
                    payload,
                }
                .into();
                // Lossy data sent in the same batch as its `SenderOpened`
                // would overtake it (SCTP sends unordered chunks first): it
                // goes ordered.
                let delivery = if lossy && !opened_now.contains(&s.channel) {
                    Delivery::Lossy
                } else {
                    Delivery::Reliable
                };
                let len = frame.encoded_len();
                out.push((delivery, frame));
                return len;
            }
            SenderOp::SetParticipants(participants) => {
                let Some(e) = self
                    .senders
                    .get_mut(&s.channel)
                    .filter(|e| Arc::ptr_eq(&e.shared, s))
                else {
                    return 0;
                };
                e.epoch = e.epoch.wrapping_add(1);
                // The handle checked count and lengths; nothing is dropped
                // here, and a list never turns into "everyone".
                let ids: Vec<ShortStr> = participants
                    .iter()
                    .filter_map(|p| ShortStr::try_from(p.as_str()).ok())
                    .take(crate::wire::MAX_PARTICIPANTS)
                    .collect();
                let Ok(participants) = ParticipantList::try_from(ids) else {
                    return 0;
                };
                SetParticipants {
                    channel: s.channel,
                    epoch: e.epoch,
                    participants,
                }
                .into()
            }
            SenderOp::Close(reason) => {
                if self
                    .senders
                    .get(&s.channel)
                    .is_some_and(|e| e.shared.session == s.session)
                {
                    self.senders.remove(&s.channel);
                }
                SenderClosed {
                    channel: s.channel,
                    session: s.session,
                    reason,
                    origin: None,
                }
                .into()
            }
        };
        let len = frame.encoded_len();
        out.push((Delivery::Reliable, frame));
        len
    }

    /// Makes the call joined if the server accepted it: called after the
    /// frames that arrived with the `JoinAccepted` (the roster follows it in
    /// the same message), so an application woken by the join already sees
    /// who is in the call.
    pub(super) fn complete_join(&mut self) {
        if let Some(a) = self.accepted.take() {
            if a.idle_timeout_ms > 0 {
                self.idle_timeout = Duration::from_millis(u64::from(a.idle_timeout_ms));
                self.keepalive_interval = self.keepalive_interval.min(self.idle_timeout / 4);
            }
            self.shared.set_joined(&a);
        }
    }

    /// A frame from the server (or, for a hosted participant, the room).
    pub(super) fn handle_frame(&mut self, now: Instant, frame: Frame) {
        if self.shared.state() == STATE_ENDED {
            return; // Over: late frames of a closing association change nothing.
        }
        match frame {
            // Joined once the welcome is in (see `complete_join`).
            Frame::JoinAccepted(a) => self.accepted = Some(a),
            Frame::JoinRejected(r) => self.end(&format!("join rejected: {}", r.reason)),
            Frame::ParticipantJoined(p) => {
                let mut control = lock(&self.shared.control);
                if control.roster.len() < MAX_ROSTER {
                    control
                        .roster
                        .insert(p.member, ParticipantId::from(p.participant_id.as_str()));
                } else {
                    self.stats.unexpected += 1;
                }
            }
            Frame::ParticipantLeft(p) => {
                lock(&self.shared.control).roster.remove(&p.member);
                self.idled.retain(|(m, _), _| *m != p.member);
                self.receivers.retain(|(m, _), r| {
                    if *m == p.member {
                        r.shared.close(ReceiverCloseReason::SenderLeft);
                    }
                    *m != p.member
                });
            }
            Frame::SenderOpened(SenderOpened {
                channel,
                session,
                reliability,
                priority,
                origin: Some(origin),
                ..
            }) => self.open_receiver(now, origin, channel, session, reliability, priority),
            Frame::Data(
                d @ Data {
                    origin: Some(_), ..
                },
            ) => self.deliver(now, d),
            Frame::SenderClosed(SenderClosed {
                channel,
                session,
                origin: Some(origin),
                reason,
            }) => {
                if self
                    .idled
                    .get(&(origin, channel))
                    .is_some_and(|(s, ..)| *s == session)
                {
                    self.idled.remove(&(origin, channel));
                }
                if let Some(r) = self.receivers.get(&(origin, channel))
                    && r.shared.session == session
                {
                    r.shared.close(ReceiverCloseReason::from_wire(reason));
                    self.receivers.remove(&(origin, channel));
                }
            }
            Frame::KeepAlive(KeepAlive {
                channel,
                session,
                origin: Some(origin),
            }) => {
                if let Some(r) = self.receivers.get_mut(&(origin, channel))
                    && r.shared.session == session
                {
                    r.last_activity = now;
                }
            }
            Frame::SenderClosed(SenderClosed {
                channel,
                session,
                reason,
                origin: None,
            }) => self.closed_by_server(channel, session, reason),
            Frame::FlowControl(FlowControl {
                channel,
                session,
                paused,
            }) => {
                if let Some(f) = self
                    .flows
                    .get_mut(&session)
                    .filter(|f| f.shared.channel == channel)
                {
                    tracing::trace!(call = %self.shared.call_id, channel, paused, "backpressure");
                    f.paused = paused;
                    if !paused {
                        self.sched.wake(session);
                    }
                }
            }
            Frame::Leave(l) => self.end(&format!("removed from the call: {}", l.reason)),
            Frame::Error(e) => {
                tracing::warn!(call = %self.shared.call_id, code = e.code.0, reason = %e.reason, "error from server");
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// The server closed one of this participant's senders (a Durable one
    /// over the traffic rules): it closes here too, so the application's
    /// next `send` fails with `SenderClosed`, and what it still had queued
    /// is dropped (the server would drop it as stale).
    fn closed_by_server(&mut self, channel: u16, session: u32, reason: crate::wire::CloseReason) {
        let Some(s) = self
            .senders
            .get(&channel)
            .filter(|e| e.shared.session == session)
            .map(|e| e.shared.clone())
        else {
            return;
        };
        tracing::warn!(
            call = %self.shared.call_id,
            channel,
            reason = reason.0,
            "the server closed a sender"
        );
        close_and_release(&s, reason);
        if let Some(f) = self.flows.get_mut(&session)
            && let Some(SenderOp::Data(data, _)) = &f.head
        {
            s.release(message_cost(data.len()));
            f.head = None;
        }
        // Nothing can be queued behind the close any more (the sender is
        // closed): keep the close, drop the data ahead of it.
        let mut keep = Vec::new();
        while let Some(op) = s.ops.pop() {
            match op {
                SenderOp::Data(data, _) => s.release(message_cost(data.len())),
                other => keep.push(other),
            }
        }
        for op in keep {
            s.ops.push(op);
        }
    }

    /// Delivers one data frame to its receiver, or holds it until the
    /// receiver's `SenderOpened` comes (a Lossy frame can overtake it).
    fn deliver(&mut self, now: Instant, d: Data) {
        let Some(origin) = d.origin else { return };
        let oversize = d.payload.len() > self.shared.config.max_message_size as usize;
        match self.receivers.get_mut(&(origin, d.channel)) {
            Some(r) if r.shared.session == d.session && oversize => {
                // Larger than this participant accepts: never delivered. A
                // Durable receiver can no longer be lossless.
                self.stats.oversize += 1;
                tracing::debug!(call = %self.shared.call_id, channel = d.channel, size = d.payload.len(), "a message over this participant's size limit dropped");
                if r.shared.reliability == DataChannelReliability::Durable {
                    self.decline(origin, d.channel, d.session);
                } else {
                    r.shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(r) if r.shared.session == d.session => {
                r.last_activity = now;
                let message = DataChannelMessage {
                    sequence_number: d.seq,
                    data: d.payload,
                };
                if !r.shared.deliver(message)
                    && r.shared.reliability == DataChannelReliability::Durable
                {
                    // It can no longer be lossless: close rather than lie.
                    self.decline(origin, d.channel, d.session);
                }
            }
            // Sessions count up per sender: a newer one may not be open yet.
            Some(r) if r.shared.session > d.session => self.stats.stale += 1,
            None if self
                .idled
                .get(&(origin, d.channel))
                .is_some_and(|(session, ..)| *session == d.session) =>
            {
                // Its receiver closed for idleness, its sender is open:
                // a new receiver, the session going on.
                if let Some((session, reliability, priority)) =
                    self.idled.remove(&(origin, d.channel))
                {
                    self.open_receiver(now, origin, d.channel, session, reliability, priority);
                    if self.receivers.contains_key(&(origin, d.channel)) {
                        self.deliver(now, d);
                    }
                }
            }
            _ => {
                if !self.orphans.hold(now, d) {
                    self.stats.stale += 1;
                }
            }
        }
    }

    /// Closes the receiver of `origin`'s session on `channel` (if open)
    /// and tells the server, which sends this participant that session no
    /// more.
    fn decline(&mut self, origin: MemberId, channel: u16, session: u32) {
        if let Some(r) = self.receivers.get(&(origin, channel))
            && r.shared.session == session
        {
            r.shared.close(ReceiverCloseReason::Overflow);
            self.receivers.remove(&(origin, channel));
        }
        self.notices.push(
            SenderClosed {
                channel,
                session,
                reason: CloseReason::RECEIVER_OVERFLOW,
                origin: Some(origin),
            }
            .into(),
        );
    }

    fn open_receiver(
        &mut self,
        now: Instant,
        origin: MemberId,
        channel: u16,
        session: u32,
        reliability: Reliability,
        priority: Priority,
    ) {
        self.idled.remove(&(origin, channel));
        if let Some(old) = self.receivers.get(&(origin, channel)) {
            if old.shared.session == session {
                return;
            }
            // A newer session replaces the old one.
            old.shared.close(ReceiverCloseReason::Replaced);
            self.receivers.remove(&(origin, channel));
        }
        let max = self.shared.config.max_receivers;
        if self.receivers.len() >= max || self.shared.new_receivers.len() >= max {
            self.stats.receivers_refused += 1;
            tracing::warn!(call = %self.shared.call_id, %origin, channel, max, "too many receivers: a sender declined");
            self.decline(origin, channel, session);
            return;
        }
        let sender_id = lock(&self.shared.control)
            .roster
            .get(&origin)
            .cloned()
            .unwrap_or_else(|| ParticipantId::from(origin.to_string()));
        let shared = Arc::new(ReceiverShared {
            call: self.shared.clone(),
            channel,
            sender_id,
            session,
            reliability: match reliability {
                Reliability::Lossy => DataChannelReliability::Lossy,
                Reliability::Durable => DataChannelReliability::Durable,
            },
            priority: match priority {
                Priority::Normal => DataChannelPriority::Normal,
                Priority::High => DataChannelPriority::High,
            },
            messages: SegQueue::new(),
            buffered_bytes: Default::default(),
            dropped: Default::default(),
            closed: Default::default(),
            waker: Default::default(),
            on_message: Default::default(),
            on_close: Default::default(),
            close_wakers: Wakers::default(),
            close_reason: Default::default(),
            wake_deferred: Default::default(),
        });
        self.receivers.insert(
            (origin, channel),
            ReceiverEntry {
                shared: shared.clone(),
                last_activity: now,
                reliability,
                priority,
            },
        );
        self.shared.announce(DataChannelReceiver { shared });
        for d in self.orphans.take(origin, channel, session) {
            self.deliver(now, d);
        }
    }

    /// Closes idle receivers and keeps idle senders' receivers alive.
    pub(super) fn tick(&mut self, now: Instant, out: &mut Frames) {
        self.take_notices(out);
        let (idle_timeout, keepalive_interval) = (self.idle_timeout, self.keepalive_interval);
        let max_idled = self.shared.config.max_receivers;
        let idled = &mut self.idled;
        self.receivers.retain(|key, r| {
            let alive = now < r.last_activity + idle_timeout;
            if !alive {
                r.shared.close(ReceiverCloseReason::Idle);
                if idled.len() < max_idled {
                    let kind = (r.shared.session, r.reliability, r.priority);
                    idled.insert(*key, kind);
                }
            }
            alive
        });
        self.stats.stale += self.orphans.expire(now);
        // A fixed cadence, data or not: a receiver the sender stopped
        // addressing must stay open as long as the sender is open.
        for e in self.senders.values_mut() {
            if now >= e.last_keepalive + keepalive_interval {
                e.last_keepalive = now;
                out.push((
                    Delivery::Lossy,
                    KeepAlive {
                        channel: e.shared.channel,
                        session: e.shared.session,
                        origin: None,
                    }
                    .into(),
                ));
            }
        }
    }

    /// Turns everything the senders queued into frames, in each sender's
    /// order, whatever the scheduler, shaping or room would say: the call
    /// is being left (or the engine shuts down), and what the application
    /// was told it accepted must still go.
    pub(super) fn flush(&mut self, now: Instant, out: &mut Frames) {
        let mut keys: Vec<u32> = self.flows.keys().copied().collect();
        keys.sort_unstable();
        let mut opened_now = Vec::new();
        for k in keys {
            let Some(f) = self.flows.get_mut(&k) else {
                continue;
            };
            let s = f.shared.clone();
            let head = f.head.take();
            for op in head.into_iter().chain(std::iter::from_fn(|| s.ops.pop())) {
                if let SenderOp::Data(data, _) = &op {
                    s.release(message_cost(data.len()));
                }
                self.emit(now, &s, op, &mut opened_now, out);
            }
            self.sched.remove(k);
            self.flows.remove(&k);
        }
    }

    /// The call is over: everything closes.
    pub(super) fn end(&mut self, reason: &str) {
        self.ended = true;
        self.idled.clear();
        self.shared.set_ended(reason);
        self.notices.clear();
        for (_, r) in self.receivers.drain() {
            r.shared.close(ReceiverCloseReason::CallEnded);
        }
        self.senders.clear();
        for (k, f) in self.flows.drain() {
            self.sched.remove(k);
            while f.shared.ops.pop().is_some() {}
            f.shared.queued_bytes.store(0, Ordering::Release);
            f.shared.writable_wakers.wake_all();
        }
    }

    /// How many receivers are open.
    #[cfg(test)]
    pub(super) fn receiver_count(&self) -> usize {
        self.receivers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datachannel::shared::STATE_JOINED;
    use crate::datachannel::{ChannelConfig, HubShared};
    use crate::wire::{JoinAccepted, PROTOCOL_VERSION, ParticipantJoined};
    use bytes::Bytes;

    fn joined(config: ChannelConfig, now: Instant) -> ParticipantCore {
        joined_with(config, now, 120_000)
    }

    /// Joined a call whose server announced an idle timeout of `idle_ms`.
    fn joined_with(config: ChannelConfig, now: Instant, idle_ms: u32) -> ParticipantCore {
        let hub = Arc::new(HubShared::default());
        let shared = Arc::new(CallShared::new(hub, 0, "call".into(), "me".into(), config));
        let mut core = ParticipantCore::new(shared);
        core.handle_frame(
            now,
            JoinAccepted {
                version: PROTOCOL_VERSION,
                member: MemberId(0),
                max_message_size: 32768,
                idle_timeout_ms: idle_ms,
                traffic: crate::wire::TrafficRules::default(),
                max_senders: 0,
            }
            .into(),
        );
        core.handle_frame(
            now,
            ParticipantJoined {
                member: MemberId(1),
                participant_id: ShortStr::truncated("bob"),
            }
            .into(),
        );
        core.complete_join();
        assert_eq!(core.shared.state(), STATE_JOINED);
        core
    }

    fn opened(session: u32, reliability: Reliability) -> Frame {
        SenderOpened {
            channel: 5,
            session,
            reliability,
            priority: Priority::High,
            bitrate_kbps: 32,
            origin: Some(MemberId(1)),
        }
        .into()
    }

    fn data(session: u32, seq: u32, len: usize) -> Frame {
        Data {
            channel: 5,
            session,
            seq,
            origin: Some(MemberId(1)),
            epoch: None,
            payload: Bytes::from(vec![0; len]),
        }
        .into()
    }

    /// The call's idle timeout is the server's (its `JoinAccepted`), and
    /// keep-alives go at least four times within it, whatever the
    /// participant's own configuration says.
    #[test]
    fn the_servers_idle_timeout_rules_receivers_and_keep_alives() {
        let now = crate::sim::start_instant();
        let mut core = joined_with(ChannelConfig::default(), now, 8_000);
        assert_eq!(core.keepalive_interval, std::time::Duration::from_secs(2));
        core.handle_frame(now, opened(1, Reliability::Durable));
        let receiver = core.shared.new_receivers.pop().expect("announced");
        let mut out = Frames::new();
        core.tick(now + std::time::Duration::from_millis(7_999), &mut out);
        assert!(!receiver.is_closed());
        core.tick(now + std::time::Duration::from_secs(8), &mut out);
        assert!(
            receiver.is_closed(),
            "closed on the call's 8 s, not its own 120 s"
        );
        // A server that announces none leaves the participant's own.
        let core = joined_with(ChannelConfig::default(), now, 0);
        assert_eq!(core.idle_timeout, std::time::Duration::from_secs(120));
        assert_eq!(core.keepalive_interval, std::time::Duration::from_secs(30));
    }

    #[test]
    fn messages_of_an_older_session_are_discarded() {
        let now = crate::sim::start_instant();
        let mut core = joined(ChannelConfig::default(), now);
        core.handle_frame(now, opened(1, Reliability::Durable));
        let first = core.shared.new_receivers.pop().expect("announced");
        assert_eq!(first.sender_id().as_str(), "bob");
        assert_eq!(first.priority(), DataChannelPriority::High);
        core.handle_frame(now, data(1, 1, 3));
        core.handle_frame(now, opened(2, Reliability::Durable));
        assert!(first.is_closed(), "the newer session closes the older");
        let second = core.shared.new_receivers.pop().expect("a new receiver");
        core.handle_frame(now, data(1, 2, 3)); // late, from the old session
        core.handle_frame(now, data(2, 1, 4));
        assert_eq!(first.read_message().map(|m| m.sequence_number), Some(1));
        assert!(first.read_message().is_none());
        assert_eq!(second.read_message().map(|m| m.data.len()), Some(4));
        assert_eq!(core.stats.stale, 1);
        assert_eq!(core.receiver_count(), 1);
        // A duplicate SenderOpened of the current session changes nothing.
        core.handle_frame(now, opened(2, Reliability::Durable));
        assert!(core.shared.new_receivers.pop().is_none());
        assert!(!second.is_closed());
    }

    #[test]
    fn a_full_receiver_drops_lossy_and_closes_durable() {
        let now = crate::sim::start_instant();
        // Room for two 40-byte messages.
        let config = ChannelConfig {
            receiver_buffer_bytes: 2 * message_cost(40),
            ..ChannelConfig::default()
        };
        let mut core = joined(config, now);
        core.handle_frame(now, opened(1, Reliability::Lossy));
        let lossy = core.shared.new_receivers.pop().expect("announced");
        for seq in 1..=3 {
            core.handle_frame(now, data(1, seq, 40));
        }
        assert_eq!(lossy.dropped_messages(), 1);
        assert!(!lossy.is_closed());
        assert!(lossy.read_message().is_some(), "reading frees room");
        core.handle_frame(now, data(1, 4, 40));
        assert_eq!(lossy.dropped_messages(), 1);

        core.handle_frame(now, opened(2, Reliability::Durable));
        let durable = core.shared.new_receivers.pop().expect("announced");
        for seq in 1..=3 {
            core.handle_frame(now, data(2, seq, 40));
        }
        assert!(
            durable.is_closed(),
            "a Durable receiver that cannot hold more closes"
        );
        assert_eq!(durable.close_reason(), Some(ReceiverCloseReason::Overflow));
        assert_eq!(lossy.close_reason(), Some(ReceiverCloseReason::Replaced), "session 2 replaced it");
        assert_eq!(core.receiver_count(), 0);
    }

    fn opened_by(origin: u32, channel: u16, session: u32, reliability: Reliability) -> Frame {
        SenderOpened {
            channel,
            session,
            reliability,
            priority: Priority::Normal,
            bitrate_kbps: 0,
            origin: Some(MemberId(origin)),
        }
        .into()
    }

    /// A call holds at most `max_receivers` receivers, open or announced
    /// and not taken; a sender past it is declined (the server is told)
    /// rather than held (on main before this change, without bound: a
    /// member rotating sessions grew it forever).
    #[test]
    fn receivers_past_the_bound_are_declined() {
        let now = crate::sim::start_instant();
        let mut core = joined(ChannelConfig::default().max_receivers(2), now);
        core.handle_frame(now, opened_by(1, 5, 1, Reliability::Durable));
        core.handle_frame(now, opened_by(1, 6, 1, Reliability::Durable));
        core.handle_frame(now, opened_by(1, 7, 1, Reliability::Durable));
        assert_eq!(core.shared.new_receivers.len(), 2);
        assert_eq!(core.stats.receivers_refused, 1);
        let mut notices = Frames::new();
        core.take_notices(&mut notices);
        assert!(matches!(
            &notices[..],
            [(_, Frame::SenderClosed(c))] if c.channel == 7 && c.reason == CloseReason::RECEIVER_OVERFLOW
        ));
        // Rotating sessions on one channel, never taken: still two.
        let first = core.shared.new_receivers.pop().expect("announced");
        for session in 2..100 {
            core.handle_frame(now, opened_by(1, 5, session, Reliability::Durable));
        }
        assert!(first.is_closed(), "replaced");
        assert!(core.shared.new_receivers.len() <= 2);
        assert!(core.receiver_count() <= 2);
    }

    /// A message larger than the participant's own limit is never
    /// delivered: Lossy ones are dropped and counted, a Durable receiver
    /// closes and the server is told (on main before this change, it was
    /// delivered whatever its size).
    #[test]
    fn messages_over_the_participants_own_limit_are_refused() {
        let now = crate::sim::start_instant();
        let mut core = joined(ChannelConfig::default().max_message_size(100), now);
        core.handle_frame(now, opened(1, Reliability::Lossy));
        let lossy = core.shared.new_receivers.pop().expect("announced");
        core.handle_frame(now, data(1, 1, 101));
        core.handle_frame(now, data(1, 2, 100));
        assert_eq!(lossy.read_message().map(|m| m.sequence_number), Some(2));
        assert_eq!(lossy.dropped_messages(), 1);
        core.handle_frame(now, opened(2, Reliability::Durable));
        let durable = core.shared.new_receivers.pop().expect("announced");
        core.handle_frame(now, data(2, 1, 100));
        core.handle_frame(now, data(2, 2, 101));
        assert_eq!(durable.read_message().map(|m| m.sequence_number), Some(1));
        assert!(durable.is_closed(), "it can no longer be lossless");
        assert_eq!(core.stats.oversize, 2);
        let mut notices = Frames::new();
        core.take_notices(&mut notices);
        assert!(matches!(
            &notices[..],
            [(_, Frame::SenderClosed(c))] if c.session == 2 && c.reason == CloseReason::RECEIVER_OVERFLOW
        ));
    }

    /// A message for a receiver that closed for idleness, from a sender
    /// still open, announces a new receiver of the same session, sequence
    /// numbers going on (on main before this change, it was dropped
    /// silently).
    #[test]
    fn a_message_after_an_idle_close_opens_a_new_receiver() {
        let now = crate::sim::start_instant();
        let mut core = joined_with(ChannelConfig::default(), now, 8_000);
        core.handle_frame(now, opened(1, Reliability::Durable));
        core.handle_frame(now, data(1, 1, 3));
        let first = core.shared.new_receivers.pop().expect("announced");
        let mut out = Frames::new();
        let later = now + std::time::Duration::from_secs(9);
        core.tick(later, &mut out);
        assert!(first.is_closed(), "idle");
        core.handle_frame(later, data(1, 2, 4));
        let again = core.shared.new_receivers.pop().expect("announced again");
        assert_eq!(again.sender_id().as_str(), "bob");
        assert_eq!(
            again.read_message().map(|m| (m.sequence_number, m.data.len())),
            Some((2, 4))
        );
        // Once its sender closed, nothing reopens it.
        core.tick(later + std::time::Duration::from_secs(9), &mut out);
        assert!(again.is_closed());
        core.handle_frame(
            later,
            SenderClosed {
                channel: 5,
                session: 1,
                reason: CloseReason::CLOSED,
                origin: Some(MemberId(1)),
            }
            .into(),
        );
        core.handle_frame(later, data(1, 3, 4));
        assert!(core.shared.new_receivers.pop().is_none());
    }
}
