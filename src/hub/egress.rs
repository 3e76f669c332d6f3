//! Server egress: what the server has for one member, waiting for room in
//! that member's association.
//!
//! The server fans a message out by handing each target's [`MemberEgress`]
//! the same encoded `Bytes`. Each member's egress is scheduled like a
//! client's uplink: one flow per sender (route) it receives, **High before
//! Normal**, deficit round robin by bytes within a class, and the
//! association's SCTP queue kept only as deep as its [`EgressBudget`]
//! allows, so a slow member's backlog waits here, where the policy can act
//! on it:
//!
//! - a **Lossy** message that waited longer than the latency budget (the
//!   channel config's `lossy_latency_budget`, 100 ms by default) is dropped
//!   when its turn comes, and Lossy data is dropped on arrival once the
//!   member has [`Limits::lossy`] bytes of it waiting;
//! - **Durable** data and control frames are never dropped. Backpressure
//!   reaches their senders instead: once a route's flow holds more than
//!   [`Pause::flow`] bytes of Durable data, or the member more than
//!   [`Pause::member`], the flow reports itself *pressing*
//!   ([`MemberEgress::take_pressure`]), and the room pauses that sender
//!   (`FlowControl`); once the flow is down to a quarter of its bound and
//!   the member to half of its, it reports itself free again. A member
//!   that, with Durable data waiting, takes less than the configured
//!   minimum rate for the configured time ([`MemberEgress::too_slow`]) is
//!   a slow consumer, and so is one whose Durable backlog passes the hard
//!   bound [`Limits::durable`] (senders that ignore pauses): the hub closes
//!   its association with a reason (`Leave` with `SLOW_CONSUMER`), counted
//!   in `HubStats::slow_consumers`.
//!
//! Order: frames of one route (its `SenderOpened`, data, keep-alives,
//! `SenderClosed`) stay in order in their flow; member-level control frames
//! (`ParticipantJoined`, errors) go ahead of all flows; a `ParticipantLeft`
//! waits until every flow from that participant has drained, because a
//! client closes that participant's receivers when it reads it.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use crate::idhash::IdMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::pump::Scheduled;
use crate::proto::Delivery;
use crate::sched::{EgressBudget, FlowSpec, Head, Pick, Scheduler};
use crate::wire::{MemberId, Priority};

/// A route's flow in one member's egress: (origin member, channel).
type FlowKey = u64;

fn flow_key(origin: MemberId, channel: u16) -> FlowKey {
    (u64::from(origin.0) << 16) | u64::from(channel)
}

fn origin_of(k: FlowKey) -> MemberId {
    // The key holds a u32 member number above the 16-bit channel.
    MemberId(u32::try_from(k >> 16).unwrap_or(u32::MAX))
}

fn channel_of(k: FlowKey) -> u16 {
    (k & 0xffff) as u16
}

/// Which part of a member's egress a frame goes to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lane {
    /// Member-level control: ahead of every flow, never dropped.
    Control,
    /// A frame of a route (`SenderOpened`, `Data`, `KeepAlive`,
    /// `SenderClosed`), in that route's flow (origin, channel).
    Route {
        origin: MemberId,
        channel: u16,
        priority: Priority,
        /// The route is Lossy: its data may be dropped.
        lossy: bool,
        /// Payload bytes; 0 for control frames of the route (never
        /// dropped).
        len: usize,
        /// A `KeepAlive`: at most one waits per flow (a newer one adds
        /// nothing), and it counts toward no bound (so keep-alives can never
        /// make a member a slow consumer).
        keepalive: bool,
        /// When the server received it.
        queued_at: Instant,
        /// The round trip of the sender's path to the server, if measured:
        /// what its data takes to arrive after a resume (see
        /// [`Pause`]).
        sender_rtt: Option<Duration>,
    },
    /// `ParticipantLeft` of a member: after that member's flows.
    AfterFlowsOf(MemberId),
}

impl Lane {
    /// The egress operation that puts `bytes` in this lane.
    pub(super) fn op(self, delivery: Delivery, bytes: Bytes) -> EgressOp {
        EgressOp {
            lane: self,
            delivery,
            bytes,
        }
    }
}

/// One encoded frame for one member, and where it goes in its egress.
#[derive(Debug, Clone)]
pub(super) struct EgressOp {
    pub(super) lane: Lane,
    /// Its stream (`AfterFlowsOf` always goes ordered).
    pub(super) delivery: Delivery,
    pub(super) bytes: Bytes,
}

/// How much one member may have waiting.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Lossy data bytes; more is dropped on arrival.
    pub lossy: usize,
    /// Durable data and control bytes; more makes the member a slow
    /// consumer (a hard bound on memory: honest senders are paused long
    /// before it).
    pub durable: usize,
}

/// When a member's egress asks for the senders feeding it to pause.
///
/// The bounds are sized to the path, between a floor and a cap: a paused
/// sender is resumed when its backlog is down to a quarter, and its data
/// arrives a round trip of its own path later, during which the member
/// takes what its rate allows. So a route's bound is at least
/// `rate × sender_rtt + budget`: the sender's bandwidth-delay product (at
/// the member's measured delivery rate, the sender's pace while paused by
/// it; the sender's round trip as the server measured it, or the member's
/// own where unknown) plus the member's egress budget (its own product and
/// standing queue). The member's bound is twice that. On a short or slow
/// path both are the floors; on a long fast one (the `wan` path: 1 Gbit/s,
/// 50 ms) they grow to a few megabytes, never past the caps. (Four of the
/// sender's products were tried first: an unpaused sender ran megabytes
/// ahead in bursts that delayed the receiver's acknowledgements on a
/// shared link, and the `wan` figure halved.)
#[derive(Debug, Clone, Copy)]
pub(super) struct Pause {
    /// Durable data bytes of one route waiting: the floor.
    pub flow: usize,
    /// Durable data and control bytes of the member waiting: the floor.
    pub member: usize,
    /// The most a route's bound grows to with the path.
    pub flow_max: usize,
    /// The most the member's bound grows to with the path.
    pub member_max: usize,
}

impl Pause {
    /// What the path asks to let wait for a route whose sender's round
    /// trip is `sender_rtt`, by `budget`'s estimates (0 before it has a
    /// delivery rate).
    fn path(budget: &EgressBudget, sender_rtt: Option<Duration>) -> usize {
        let Some(rate) = budget.delivery_rate() else {
            return 0;
        };
        let rtt = sender_rtt.or(budget.base_rtt()).unwrap_or_default();
        let sender = (rate * rtt.as_secs_f64()).round().min(usize::MAX as f64 / 4.0) as usize;
        sender.saturating_add(budget.steady_budget())
    }

    /// The bound of a route whose sender's round trip is `sender_rtt`, and
    /// the member's bound alongside it.
    fn bounds(&self, budget: &EgressBudget, sender_rtt: Option<Duration>) -> (usize, usize) {
        let path = Self::path(budget, sender_rtt);
        (
            path.clamp(self.flow, self.flow_max.max(self.flow)),
            path.saturating_mul(2)
                .clamp(self.member, self.member_max.max(self.member)),
        )
    }
}

/// A change in whether route (origin, channel) presses on its sender.
pub(super) type Pressure = (MemberId, u16, bool);

/// One flow's queue.
#[derive(Debug, Default)]
struct FlowQueue {
    items: VecDeque<Item>,
    /// Durable data bytes in `items`.
    durable: usize,
    /// The round trip of its sender's path, as its latest data said.
    sender_rtt: Option<Duration>,
    /// It reported itself pressing (and has not reported free since).
    pressing: bool,
}

/// What [`MemberEgress::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    Queued,
    /// Lossy data over [`Limits::lossy`]: dropped.
    Dropped,
    /// Durable data or control over [`Limits::durable`]: not queued; the
    /// member must be disconnected.
    Overflow,
}

#[derive(Debug)]
struct Item {
    delivery: Delivery,
    bytes: Bytes,
    /// Which bound it counts toward.
    class: Class,
    /// Payload bytes; 0 for a control frame.
    len: usize,
    queued_at: Instant,
}

/// Which of a member's bounds an item counts toward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Lossy data: [`Limits::lossy`]; dropped when late or over.
    Lossy,
    /// Durable data and control: [`Limits::durable`].
    Durable,
    /// A keep-alive: none (at most one per flow waits).
    KeepAlive,
}

/// Everything the server has waiting for one member association.
#[derive(Debug)]
pub(super) struct MemberEgress {
    sched: Scheduler<FlowKey>,
    /// Non-empty flows only (a flow is removed when it drains, which is
    /// also when deficit round robin forgets its deficit).
    flows: IdMap<FlowKey, FlowQueue>,
    control: VecDeque<(Delivery, Bytes)>,
    /// `ParticipantLeft` frames waiting for their participant's flows.
    left: Vec<(MemberId, Bytes)>,
    /// Non-empty flows per origin.
    origins: IdMap<MemberId, u32>,
    durable_bytes: usize,
    lossy_bytes: usize,
    /// How much the association's SCTP queue may hold.
    budget: EgressBudget,
    pause: Pause,
    /// Changes of pressure not yet taken.
    pressure: Vec<Pressure>,
    /// Since when Durable bytes have been waiting without a break, and how
    /// many were sent since then (see [`MemberEgress::too_slow`]).
    busy: Option<(Instant, u64)>,
}

impl MemberEgress {
    pub(super) fn new(lossy_budget: Duration, budget: EgressBudget, pause: Pause) -> Self {
        Self {
            sched: Scheduler::new(lossy_budget),
            flows: IdMap::default(),
            control: VecDeque::new(),
            left: Vec::new(),
            origins: IdMap::default(),
            durable_bytes: 0,
            lossy_bytes: 0,
            budget,
            pause,
            pressure: Vec::new(),
            busy: None,
        }
    }

    /// The pressure changes since the last call: each route flow that
    /// started or stopped pressing on its sender, in order.
    pub(super) fn take_pressure(&mut self) -> std::vec::Drain<'_, Pressure> {
        self.pressure.drain(..)
    }

    /// Whether this member is a slow consumer at `now`: Durable bytes
    /// have been waiting for it without a break for `grace` and it took
    /// less than `min_rate` bytes a second of them meanwhile. Each `grace`
    /// it keeps up starts a new measurement.
    pub(super) fn too_slow(&mut self, now: Instant, min_rate: u64, grace: Duration) -> bool {
        let Some((since, sent)) = self.busy else {
            return false;
        };
        let span = now.saturating_duration_since(since);
        if span < grace || grace.is_zero() {
            return false;
        }
        let needed = (min_rate as f64 * span.as_secs_f64()) as u64;
        if sent < needed {
            return true;
        }
        self.busy = Some((now, 0));
        false
    }

    /// Durable bytes went from none to some: the clock of
    /// [`MemberEgress::too_slow`] starts.
    fn add_durable(&mut self, n: usize, now: Instant) {
        if self.durable_bytes == 0 {
            self.busy = Some((now, 0));
        }
        self.durable_bytes += n;
    }

    /// `n` Durable bytes left (`sent`: to SCTP; otherwise moved, e.g. a
    /// `ParticipantLeft` released to the control lane).
    fn sub_durable(&mut self, n: usize, sent: bool) {
        self.durable_bytes -= n;
        if self.durable_bytes == 0 {
            self.busy = None;
        } else if sent && let Some((_, total)) = &mut self.busy {
            *total += n as u64;
        }
    }

    /// Bytes waiting (not yet handed to SCTP).
    #[cfg(test)]
    pub(super) fn queued(&self) -> usize {
        self.durable_bytes + self.lossy_bytes
    }

    /// Queues `op` unless the limits say otherwise.
    pub(super) fn push(&mut self, op: EgressOp, now: Instant, limits: Limits) -> Pushed {
        let EgressOp {
            lane,
            delivery,
            bytes,
        } = op;
        match lane {
            Lane::Control => {
                if self.durable_bytes + bytes.len() > limits.durable {
                    return Pushed::Overflow;
                }
                self.add_durable(bytes.len(), now);
                self.control.push_back((delivery, bytes));
            }
            Lane::AfterFlowsOf(origin) => {
                if self.durable_bytes + bytes.len() > limits.durable {
                    return Pushed::Overflow;
                }
                self.add_durable(bytes.len(), now);
                if self.origins.contains_key(&origin) {
                    self.left.push((origin, bytes));
                } else {
                    self.control.push_back((Delivery::Reliable, bytes));
                }
            }
            Lane::Route {
                origin,
                channel,
                priority,
                lossy,
                len,
                keepalive,
                queued_at,
                sender_rtt,
            } => {
                let k = flow_key(origin, channel);
                let class = if keepalive {
                    let queued = self.flows.get(&k).is_some_and(|q| {
                        q.items.iter().any(|i| i.class == Class::KeepAlive)
                    });
                    if queued {
                        return Pushed::Queued; // The waiting one does.
                    }
                    Class::KeepAlive
                } else if lossy && len > 0 {
                    if self.lossy_bytes + bytes.len() > limits.lossy {
                        return Pushed::Dropped;
                    }
                    self.lossy_bytes += bytes.len();
                    Class::Lossy
                } else {
                    if self.durable_bytes + bytes.len() > limits.durable {
                        return Pushed::Overflow;
                    }
                    self.add_durable(bytes.len(), now);
                    Class::Durable
                };
                let data = class == Class::Durable && len > 0;
                let queue = self.flows.entry(k).or_insert_with(|| {
                    // A new flow. (A replacing session of the same channel
                    // with another priority joins the old session's flow
                    // while that one drains, keeping their order.)
                    self.sched.insert(
                        k,
                        FlowSpec {
                            priority,
                            lossy,
                            shaping: None,
                        },
                        now,
                    );
                    *self.origins.entry(origin).or_default() += 1;
                    FlowQueue::default()
                });
                if data {
                    queue.durable += bytes.len();
                    if sender_rtt.is_some() {
                        queue.sender_rtt = sender_rtt;
                    }
                    let (flow, member) = self.pause.bounds(&self.budget, queue.sender_rtt);
                    let member_over = self.durable_bytes > member;
                    if !queue.pressing && (queue.durable > flow || member_over) {
                        queue.pressing = true;
                        self.pressure.push((origin, channel, true));
                    }
                }
                queue.items.push_back(Item {
                    delivery,
                    bytes,
                    class,
                    len,
                    queued_at,
                });
                self.sched.wake(k);
            }
        }
        Pushed::Queued
    }

    /// The last flow from `origin` drained: its `ParticipantLeft` may go.
    fn flow_drained(&mut self, origin: MemberId, out: &mut Vec<(Delivery, Bytes)>) {
        let Some(n) = self.origins.get_mut(&origin) else {
            return;
        };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.origins.remove(&origin);
        let mut i = 0;
        while i < self.left.len() {
            if self.left[i].0 == origin {
                let (_, bytes) = self.left.remove(i);
                self.sub_durable(bytes.len(), true);
                out.push((Delivery::Reliable, bytes));
            } else {
                i += 1;
            }
        }
    }
}

impl Scheduled for MemberEgress {
    type Piece = Bytes;

    fn budget(&mut self) -> &mut EgressBudget {
        &mut self.budget
    }

    fn has_work(&self) -> bool {
        !self.control.is_empty() || self.sched.has_work()
    }

    fn set_transit(&mut self, transit: Duration) {
        self.sched.set_transit(transit);
    }

    fn pump(
        &mut self,
        now: Instant,
        room: usize,
        high_reserve: usize,
        out: &mut Vec<(Delivery, Bytes)>,
    ) -> u64 {
        while let Some((delivery, bytes)) = self.control.pop_front() {
            self.sub_durable(bytes.len(), true);
            out.push((delivery, bytes));
        }
        let mut used = 0;
        let mut dropped = 0;
        while used < room.saturating_add(high_reserve) {
            let normal = used < room;
            let Self { sched, flows, .. } = self;
            let pick = sched.next_of(now, normal, |k| {
                flows.get(&k)?.items.front().map(|i| Head {
                    len: if i.len == 0 { 0 } else { i.bytes.len() },
                    queued_at: i.queued_at,
                })
            });
            let Some(pick) = pick else { break };
            let (Pick::Send(k) | Pick::Drop(k)) = pick;
            let Some(queue) = self.flows.get_mut(&k) else {
                continue;
            };
            let Some(item) = queue.items.pop_front() else {
                continue;
            };
            let drained = queue.items.is_empty();
            if item.class == Class::Durable && item.len > 0 {
                queue.durable -= item.bytes.len();
            }
            let member_after = match item.class {
                Class::Durable => self.durable_bytes - item.bytes.len(),
                _ => self.durable_bytes,
            };
            let (flow, member) = self.pause.bounds(&self.budget, queue.sender_rtt);
            let member_low = member_after <= member / 2;
            let freed = queue.pressing && (drained || queue.durable <= flow / 4 && member_low);
            if freed {
                queue.pressing = false;
                self.pressure.push((origin_of(k), channel_of(k), false));
            }
            match item.class {
                Class::Lossy => self.lossy_bytes -= item.bytes.len(),
                Class::Durable => self.sub_durable(item.bytes.len(), matches!(pick, Pick::Send(_))),
                Class::KeepAlive => {}
            }
            match pick {
                Pick::Send(_) => {
                    used += item.bytes.len();
                    out.push((item.delivery, item.bytes));
                }
                Pick::Drop(_) => dropped += 1,
            }
            if drained {
                self.flows.remove(&k);
                self.sched.remove(k);
                self.flow_drained(origin_of(k), out);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        lossy: 10_000,
        durable: 20_000,
    };

    const PAUSE: Pause = Pause {
        flow: 8_000,
        member: 16_000,
        flow_max: 8_000,
        member_max: 16_000,
    };

    fn egress() -> MemberEgress {
        MemberEgress::new(
            Duration::from_millis(100),
            EgressBudget::new(2400, 256 * 1024, Duration::from_millis(5)),
            PAUSE,
        )
    }

    fn route(
        origin: u32,
        prio: Priority,
        lossy: bool,
        tag: u8,
        len: usize,
        at: Instant,
    ) -> EgressOp {
        let lane = Lane::Route {
            origin: MemberId(origin),
            channel: 7,
            priority: prio,
            lossy,
            len,
            keepalive: false,
            queued_at: at,
            sender_rtt: None,
        };
        let delivery = if lossy {
            Delivery::Lossy
        } else {
            Delivery::Reliable
        };
        lane.op(delivery, Bytes::from(vec![tag; len.max(1)]))
    }

    fn tags(out: &[(Delivery, Bytes)]) -> Vec<u8> {
        out.iter().map(|(_, b)| b[0]).collect()
    }

    #[test]
    fn high_first_control_ahead_and_left_after_the_flows() {
        let t = crate::sim::start_instant();
        let mut e = egress();
        for i in 0..3 {
            assert_eq!(
                e.push(route(1, Priority::Normal, false, 10 + i, 100, t), t, LIMITS),
                Pushed::Queued
            );
        }
        let left =
            Lane::AfterFlowsOf(MemberId(1)).op(Delivery::Reliable, Bytes::from_static(&[99]));
        assert_eq!(e.push(left, t, LIMITS), Pushed::Queued);
        assert_eq!(
            e.push(route(2, Priority::High, false, 20, 100, t), t, LIMITS),
            Pushed::Queued
        );
        let ctl = Lane::Control.op(Delivery::Reliable, Bytes::from_static(&[1]));
        assert_eq!(e.push(ctl, t, LIMITS), Pushed::Queued);
        let mut out = Vec::new();
        assert_eq!(e.pump(t, 10_000, 0, &mut out), 0);
        assert_eq!(tags(&out), vec![1, 20, 10, 11, 12, 99]);
        assert_eq!(e.queued(), 0);
        assert!(!e.has_work());
        // A participant with nothing queued leaves at once.
        let left =
            Lane::AfterFlowsOf(MemberId(3)).op(Delivery::Reliable, Bytes::from_static(&[98]));
        e.push(left, t, LIMITS);
        out.clear();
        e.pump(t, 0, 0, &mut out);
        assert_eq!(tags(&out), vec![98]);
    }

    #[test]
    fn room_limits_what_goes_and_high_gets_the_reserve() {
        let t = crate::sim::start_instant();
        let mut e = egress();
        for _ in 0..10 {
            e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        }
        e.push(route(2, Priority::High, false, 2, 1000, t), t, LIMITS);
        let mut out = Vec::new();
        e.pump(t, 0, 0, &mut out);
        assert!(out.is_empty());
        // No room for Normal, but the reserve lets High through.
        e.pump(t, 0, 2400, &mut out);
        assert_eq!(tags(&out), vec![2]);
        out.clear();
        e.pump(t, 2500, 0, &mut out);
        assert_eq!(
            out.len(),
            3,
            "sends while room lasts (the last one overshoots)"
        );
        assert_eq!(e.queued(), 7000);
    }

    #[test]
    fn lossy_is_dropped_late_or_over_its_limit_durable_overflows() {
        let t = crate::sim::start_instant();
        let mut e = egress();
        for _ in 0..10 {
            assert_eq!(
                e.push(route(1, Priority::Normal, true, 1, 1000, t), t, LIMITS),
                Pushed::Queued
            );
        }
        assert_eq!(
            e.push(route(1, Priority::Normal, true, 1, 1000, t), t, LIMITS),
            Pushed::Dropped
        );
        // Waited past the 100 ms budget: all dropped when their turn comes.
        let mut out = Vec::new();
        assert_eq!(
            e.pump(t + Duration::from_millis(101), 100_000, 0, &mut out),
            10
        );
        assert!(out.is_empty());
        assert_eq!(e.queued(), 0);
        for _ in 0..20 {
            assert_eq!(
                e.push(route(2, Priority::Normal, false, 2, 1000, t), t, LIMITS),
                Pushed::Queued
            );
        }
        assert_eq!(
            e.push(route(2, Priority::Normal, false, 2, 1000, t), t, LIMITS),
            Pushed::Overflow
        );
        // Durable data is never dropped for lateness.
        assert_eq!(e.pump(t + Duration::from_secs(10), 100_000, 0, &mut out), 0);
        assert_eq!(out.len(), 20);
    }

    /// Keep-alives never count toward a bound and at most one waits per
    /// flow: a flood of them cannot make a member a slow consumer (on main
    /// before this change, they counted as Durable bytes and queued
    /// without limit until the member was cut).
    #[test]
    fn keep_alives_wait_one_per_flow_and_count_toward_no_bound() {
        let t = crate::sim::start_instant();
        let mut e = egress();
        let keep_alive = Lane::Route {
            origin: MemberId(1),
            channel: 7,
            priority: Priority::Normal,
            lossy: false,
            len: 0,
            keepalive: true,
            queued_at: t,
            sender_rtt: None,
        };
        for _ in 0..100_000 {
            let op = keep_alive.op(Delivery::Lossy, Bytes::from_static(&[5; 12]));
            assert_eq!(e.push(op, t, LIMITS), Pushed::Queued);
        }
        assert_eq!(e.queued(), 0, "counted toward no bound");
        // Data behind it still counts; the keep-alive goes once.
        assert_eq!(
            e.push(route(1, Priority::Normal, false, 1, 100, t), t, LIMITS),
            Pushed::Queued
        );
        let mut out = Vec::new();
        e.pump(t, 100_000, 0, &mut out);
        assert_eq!(tags(&out), vec![5, 1]);
        assert_eq!(e.queued(), 0);
        // Once sent, the next keep-alive queues again.
        e.push(keep_alive.op(Delivery::Lossy, Bytes::from_static(&[5])), t, LIMITS);
        out.clear();
        e.pump(t, 100_000, 0, &mut out);
        assert_eq!(tags(&out), vec![5]);
    }
    /// A flow over its bound presses once; it is free again at a quarter
    /// of it. The member's bound makes every flow that gets data press.
    #[test]
    fn a_flow_presses_past_its_bound_and_is_free_again_at_a_quarter() {
        let t = crate::sim::start_instant();
        let mut e = egress();
        // 8 × 1,000 bytes: at the flow bound (8,000), not over.
        for _ in 0..8 {
            e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        }
        assert_eq!(e.take_pressure().count(), 0);
        e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(1), 7, true)]
        );
        e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        assert_eq!(e.take_pressure().count(), 0, "once");
        let mut out = Vec::new();
        // Down to 3,000 bytes: still over a quarter (2,000).
        e.pump(t, 7000, 0, &mut out);
        assert_eq!(e.take_pressure().count(), 0);
        e.pump(t, 1000, 0, &mut out);
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(1), 7, false)]
        );
        out.clear();
        e.pump(t, 100_000, 0, &mut out);
        assert_eq!(e.take_pressure().count(), 0);
        // Past the member's bound (16,000), a small flow presses too.
        for origin in 10..26 {
            e.push(route(origin, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        }
        assert_eq!(e.take_pressure().count(), 0, "16,000: at the bound");
        e.push(route(30, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(30), 7, true)]
        );
        // Drained: free.
        e.pump(t, 100_000, 0, &mut out);
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(30), 7, false)]
        );
        // Lossy data presses on nothing.
        for _ in 0..9 {
            e.push(route(2, Priority::Normal, true, 2, 1000, t), t, LIMITS);
        }
        assert_eq!(e.take_pressure().count(), 0);
    }

    /// The pause bounds follow the path: the sender's bandwidth-delay
    /// product (the member's delivery rate times the sender's round trip,
    /// the member's own where unknown) plus the
    /// member's budget, the member's bound twice that; never under the
    /// floors nor over the caps. Each flow is judged by its own sender's
    /// round trip, and is free again at a quarter of its bound.
    #[test]
    fn the_pause_bounds_are_sized_to_the_path_between_floor_and_cap() {
        let t = crate::sim::start_instant();
        let ms = Duration::from_millis;
        let pause = Pause {
            flow: 8_000,
            member: 16_000,
            flow_max: 1_000_000,
            member_max: 2_000_000,
        };
        // 1 MB/s, 20 ms: the member's product is 20 kB (its budget).
        let budget = EgressBudget::measured(20_000, 1e6, ms(20), t);
        assert_eq!(pause.bounds(&budget, None), (40_000, 80_000));
        assert_eq!(pause.bounds(&budget, Some(ms(100))), (120_000, 240_000));
        assert_eq!(pause.bounds(&budget, Some(ms(1000))), (1_000_000, 2_000_000));
        // A slow member: the floors.
        let slow = EgressBudget::measured(2_400, 10_000.0, ms(20), t);
        assert_eq!(pause.bounds(&slow, Some(ms(50))), (8_000, 16_000));
        // No estimate yet: the floors.
        let new = EgressBudget::new(2_400, 1 << 20, ms(5));
        assert_eq!(pause.bounds(&new, Some(ms(50))), (8_000, 16_000));
        // Caps at or under the floors: fixed at the floors.
        let fixed = Pause {
            flow_max: 0,
            member_max: 0,
            ..pause
        };
        assert_eq!(fixed.bounds(&budget, Some(ms(100))), (8_000, 16_000));

        let mut e = MemberEgress::new(ms(100), budget, pause);
        let limits = Limits {
            lossy: 10_000,
            durable: 4_000_000,
        };
        let push = |e: &mut MemberEgress, origin: u32, rtt: Option<Duration>| {
            let mut op = route(origin, Priority::Normal, false, 1, 1000, t);
            if let Lane::Route { sender_rtt, .. } = &mut op.lane {
                *sender_rtt = rtt;
            }
            assert_eq!(e.push(op, t, limits), Pushed::Queued);
        };
        // A sender 100 ms away: 120 kB wait before it is paused (the floor
        // would have paused it at 8 kB).
        for _ in 0..120 {
            push(&mut e, 1, Some(ms(100)));
        }
        assert_eq!(e.take_pressure().count(), 0);
        push(&mut e, 1, Some(ms(100)));
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(1), 7, true)]
        );
        // Free again at a quarter: 30 kB.
        let mut out = Vec::new();
        e.pump(t, 90_000, 0, &mut out);
        assert_eq!(e.take_pressure().count(), 0, "31 kB left");
        e.pump(t, 1_000, 0, &mut out);
        assert_eq!(
            e.take_pressure().collect::<Vec<_>>(),
            vec![(MemberId(1), 7, false)]
        );
    }

    /// The rate rule: Durable data waiting the whole `grace` while the
    /// member took less than the minimum rate makes it too slow; one that
    /// keeps up starts a new measurement; an empty queue stops the clock.
    #[test]
    fn a_member_under_the_minimum_rate_for_the_grace_is_too_slow() {
        let t = crate::sim::start_instant();
        let s = Duration::from_secs(1);
        let (rate, grace) = (1000, 5 * s);
        let mut e = egress();
        for _ in 0..15 {
            e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        }
        assert!(!e.too_slow(t + 4 * s, rate, grace), "within the grace");
        let mut out = Vec::new();
        // 6,000 bytes in 5 s: over 1,000 B/s.
        e.pump(t + 4 * s, 5000, 0, &mut out);
        assert!(!e.too_slow(t + 5 * s, rate, grace), "it kept up");
        // From then on it takes 4,000 in 5 s: under.
        e.pump(t + 9 * s, 3000, 0, &mut out);
        assert!(!e.too_slow(t + 9 * s, rate, grace));
        assert!(e.too_slow(t + 10 * s, rate, grace), "too slow");
        // An egress that drains stops the clock.
        let mut e = egress();
        e.push(route(1, Priority::Normal, false, 1, 1000, t), t, LIMITS);
        e.pump(t, 100_000, 0, &mut out);
        assert!(!e.too_slow(t + 60 * s, rate, grace));
    }
}
