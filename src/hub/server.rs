//! The server role: associations that join calls, their admission, the
//! rooms' decisions carried out, and each member's egress.
//!
//! An association starts [`Link::Pending`] and may only send a `Join`,
//! which the [`crate::auth::JoinVerifier`] checks. Admitted, it becomes a
//! member of the call's room — here, or on the worker that homes the call
//! (see [`super::relay`]). What the room decides ([`Outputs`]) is carried
//! out here: frames go to each target's [`MemberEgress`] (or to another
//! worker's, or to a hosted participant), welcomes and violations straight
//! into SCTP, members removed close their associations. After each input,
//! slow consumers are disconnected and the egresses an input touched are
//! pumped.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use crate::idhash::IdMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::egress::{Lane, Limits, MemberEgress, Pause, Pressure, Pushed};
use super::pump::{self, Pumped, Scheduled};
use super::relay::{Relay, RelayMsg};
use super::room::{MemberAt, Output, Outputs, leave};
use super::{Hub, HubConfig, HubEvent, home_worker};
use crate::auth::{JoinRejection, JoinRequest};
use crate::datachannel::ParticipantId;
use crate::proto::{AssocId, Delivery};
use crate::wire::{
    CloseReason, Codec, ErrorCode, ErrorFrame, Frame, Join, JoinRejected, MemberId, Message,
    PROTOCOL_VERSION, ShortStr,
};

/// What one association of this hub is for.
#[derive(Debug)]
pub(super) enum Link {
    /// Server side: connected, not joined yet.
    Pending { since: Instant },
    /// Server side: a joined member.
    Member(Home),
    /// Being closed (rejected, left, timed out): frames are ignored.
    Closing,
    /// Client side: the uplink of this hub's call with this key.
    Uplink(u64),
}

/// Where a member association's room is.
#[derive(Debug)]
pub(super) enum Home {
    /// On this hub: member `member` of `call_id`.
    Here { call_id: String, member: MemberId },
    /// On worker `.0`, which the frames are relayed to and which relays
    /// back what to send.
    Worker(usize),
}

/// The egress of every member association this hub owns.
#[derive(Debug)]
pub(super) struct Egresses {
    by_assoc: IdMap<AssocId, MemberEgress>,
    /// Member associations with egress work.
    pub(super) ready: BTreeSet<AssocId>,
    /// Those of `ready` worth pumping after this input: new work, or their
    /// transport moved (`Node::poll_progress`). The others wait for
    /// acknowledgements that free room (an association with egress work
    /// always has data in flight after a pump, so one comes), and the
    /// hub's cost per input stays proportional to what the input touched,
    /// not to how many members are backlogged.
    to_pump: BTreeSet<AssocId>,
    /// Egress pumps so far (tests check the work per input is bounded).
    #[cfg(test)]
    pub(super) pumps: u64,
    /// Member associations over their Durable limit: disconnected after
    /// the current input.
    slow: Vec<AssocId>,
    limits: Limits,
    pause: Pause,
    /// Pressure changes of member egresses, for their rooms.
    pressure: Vec<(AssocId, Pressure)>,
    lossy_dropped: u64,
}

impl Egresses {
    pub(super) fn new(config: &HubConfig) -> Self {
        Self {
            by_assoc: IdMap::default(),
            ready: BTreeSet::new(),
            to_pump: BTreeSet::new(),
            #[cfg(test)]
            pumps: 0,
            slow: Vec::new(),
            limits: Limits {
                lossy: config.lossy_drop_buffer,
                durable: config.slow_consumer_buffer,
            },
            pause: Pause {
                flow: config.pause_route_backlog,
                member: config.pause_member_backlog,
                flow_max: config.pause_route_backlog_max,
                member_max: config.pause_member_backlog_max,
            },
            pressure: Vec::new(),
            lossy_dropped: 0,
        }
    }

    /// Takes `e`'s pressure changes (it is `assoc`'s egress).
    fn collect_pressure(pressure: &mut Vec<(AssocId, Pressure)>, assoc: AssocId, e: &mut MemberEgress) {
        pressure.extend(e.take_pressure().map(|p| (assoc, p)));
    }

    /// Queues `op` for association `assoc` of this hub.
    pub(super) fn push(&mut self, now: Instant, assoc: AssocId, op: super::egress::EgressOp) {
        let Some(e) = self.by_assoc.get_mut(&assoc) else {
            return; // Closing: its Closed event removes the member.
        };
        match e.push(op, now, self.limits) {
            Pushed::Queued => {
                self.ready.insert(assoc);
                self.to_pump.insert(assoc);
                Self::collect_pressure(&mut self.pressure, assoc, e);
            }
            Pushed::Dropped => self.lossy_dropped += 1,
            Pushed::Overflow => self.slow.push(assoc),
        }
    }

    pub(super) fn remove(&mut self, assoc: AssocId) -> Option<MemberEgress> {
        self.ready.remove(&assoc);
        self.by_assoc.remove(&assoc)
    }
}

/// The reason given to members and joins when the server shuts down.
pub(super) const SHUTTING_DOWN: &str = "the server is shutting down";

impl Hub {
    /// A frame on an association that is not an uplink.
    pub(super) fn on_server_frame(&mut self, now: Instant, assoc: AssocId, frame: Frame) {
        match self.links.get(&assoc) {
            None | Some(Link::Pending { .. }) => match frame {
                Frame::Join(join) => self.admit(now, assoc, join),
                _ => {
                    self.stats.protocol_errors += 1;
                    let reject = JoinRejected {
                        code: ErrorCode::NOT_JOINED,
                        reason: ShortStr::truncated("the first frame must be a join"),
                    };
                    self.send(now, assoc, Delivery::Reliable, reject.into());
                    self.links.insert(assoc, Link::Closing);
                    self.node.close(now, assoc);
                }
            },
            Some(Link::Member(Home::Here { call_id, member })) => {
                let (call_id, member) = (call_id.clone(), *member);
                let rtt = self.sender_round_trip(assoc, &frame);
                self.on_member_frame(now, &call_id, member, frame, rtt);
            }
            Some(Link::Member(Home::Worker(home))) => {
                let home = *home;
                if matches!(frame, Frame::Leave(_)) {
                    self.end_link(now, assoc, CloseReason::LEFT);
                    self.node.close(now, assoc);
                } else {
                    let worker = self.config.worker;
                    let cost = super::relay::relay_cost(&frame);
                    let rtt = self.sender_round_trip(assoc, &frame);
                    self.relay.push(
                        home,
                        Relay::new(RelayMsg::Frame {
                            worker,
                            assoc,
                            frame,
                            rtt,
                        }),
                    );
                    self.note_relayed(now, assoc, cost);
                }
            }
            Some(Link::Closing | Link::Uplink(_)) => {}
        }
    }

    /// The round trip of member association `assoc`'s path, for `frame`
    /// from it: read for data only (the receivers' egresses size their
    /// pause backlog by it; see [`HubConfig::pause_backlog_max`]).
    fn sender_round_trip(&self, assoc: AssocId, frame: &Frame) -> Option<Duration> {
        match frame {
            Frame::Data(_) => self.node.round_trip(assoc),
            _ => None,
        }
    }

    /// A frame from member `from` of `call_id` (remote, relayed from
    /// another worker, or hosted), with the round trip of its path if
    /// measured (`rtt`): the room decides, the hub carries out.
    pub(super) fn on_member_frame(
        &mut self,
        now: Instant,
        call_id: &str,
        from: MemberId,
        frame: Frame,
        rtt: Option<Duration>,
    ) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        if let Some(rtt) = rtt {
            room.note_round_trip(from, rtt);
        }
        room.handle_frame(now, &self.config, call_id, from, frame, &mut self.outputs);
        // As `room_done`, without looking the room up again (a SipHash of
        // the call id per frame: call ids are the clients' choice).
        if room.is_empty() {
            self.rooms.remove(call_id);
        }
        self.carry_out(now);
    }

    /// Removes member `member` from `call_id`'s room.
    pub(super) fn remove_member(
        &mut self,
        now: Instant,
        call_id: &str,
        member: MemberId,
        why: CloseReason,
        detail: Option<String>,
    ) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        room.remove(now, call_id, member, why, detail, &mut self.outputs);
        self.room_done(now, call_id);
    }

    /// Admits `participant_id`, living at `at`, to `call_id`'s room
    /// (created if needed).
    pub(super) fn admit_member(
        &mut self,
        now: Instant,
        call_id: &str,
        participant_id: ParticipantId,
        at: MemberAt,
    ) -> MemberId {
        let room = self.rooms.entry(call_id.to_owned()).or_default();
        let member = room.admit(
            now,
            &self.config,
            call_id,
            participant_id,
            at,
            &mut self.outputs,
        );
        self.room_done(now, call_id);
        member
    }

    /// After a room decided: carries its outputs out, and forgets the room
    /// once nobody is left.
    fn room_done(&mut self, now: Instant, call_id: &str) {
        if self
            .rooms
            .get(call_id)
            .is_some_and(super::room::Room::is_empty)
        {
            self.rooms.remove(call_id);
        }
        self.carry_out(now);
    }

    /// Does what the rooms decided ([`Outputs`]), in order.
    fn carry_out(&mut self, now: Instant) {
        let spare = self.spare_outputs.pop().unwrap_or_default();
        let mut out = std::mem::replace(&mut self.outputs, spare);
        self.stats += std::mem::take(&mut out.stats);
        self.events.extend(out.events.drain(..));
        let mut items = std::mem::take(&mut out.items);
        for item in items.drain(..) {
            match item {
                Output::Send {
                    frame,
                    lane,
                    targets,
                } => self.send_to_targets(now, &mut out, frame, lane, targets),
                Output::Welcome { at, frames } => match at {
                    MemberAt::Assoc(assoc) => {
                        let welcome = frames.map(|i| (Delivery::Reliable, out.frame(i).clone()));
                        pump::send_batched(&mut self.node, now, assoc, welcome);
                    }
                    MemberAt::Worker { worker, assoc } => {
                        for i in frames {
                            let op = Lane::Control.op(Delivery::Reliable, out.encoded(i));
                            let assocs = vec![assoc];
                            self.relay
                                .push(worker, Relay::new(RelayMsg::Egress { assocs, op }));
                        }
                    }
                    MemberAt::Hosted(key) => {
                        if let Some(p) = self.participants.get_mut(&key) {
                            for i in frames {
                                p.core.handle_frame(now, out.frame(i).clone());
                            }
                            p.core.complete_join();
                        }
                    }
                },
                Output::Violation { at, what } => self.violation(now, at, &what),
                Output::Expel { at, leave } => match at {
                    MemberAt::Assoc(assoc) => {
                        self.send(now, assoc, Delivery::Reliable, leave.into());
                    }
                    MemberAt::Worker { worker, assoc } => {
                        self.relayed.remove(&(worker, assoc));
                        self.relay
                            .push(worker, Relay::new(RelayMsg::Close { assoc, leave }));
                    }
                    MemberAt::Hosted(_) => {}
                },
                Output::Removed { at } => match at {
                    MemberAt::Assoc(assoc) => {
                        // Left or expelled: its association closes (one
                        // closing already, or lost, has no member link).
                        if matches!(self.links.get(&assoc), Some(Link::Member(_))) {
                            self.links.insert(assoc, Link::Closing);
                            self.egress.remove(assoc);
                            self.node.close(now, assoc);
                        }
                    }
                    MemberAt::Worker { worker, assoc } => {
                        self.relayed.remove(&(worker, assoc));
                    }
                    MemberAt::Hosted(key) => {
                        if let Some(mut p) = self.participants.remove(&key) {
                            p.core.end("left the call");
                            p.core.shared.set_done();
                        }
                    }
                },
            }
        }
        out.items = items;
        out.clear();
        let mut spare = std::mem::replace(&mut self.outputs, out);
        // As a fresh one: whatever was decided meanwhile was carried out
        // by the nested call that decided it.
        spare.clear();
        spare.events.clear();
        spare.stats = Default::default();
        self.spare_outputs.push(spare);
    }

    /// Gives frame `frame` of `out` to each of `targets`: the encoded bytes
    /// to a remote member's egress (here, or relayed to its worker: one
    /// relay per worker and stream with the member list), the frame to a
    /// hosted one.
    fn send_to_targets(
        &mut self,
        now: Instant,
        out: &mut Outputs,
        frame: usize,
        lane: Lane,
        targets: Range<usize>,
    ) {
        let mut relays: Vec<(usize, Delivery, Vec<AssocId>)> = Vec::new();
        // A pause for a member of another worker: that worker says when it
        // handed it over (the member's overrun counts from there).
        let pause = match out.frame(frame) {
            Frame::FlowControl(fc) if fc.paused => Some((fc.channel, fc.session)),
            _ => None,
        };
        for i in targets {
            let t = out.targets[i];
            match t.at {
                MemberAt::Worker { worker, assoc } if pause.is_some() => {
                    let (channel, session) = pause.unwrap_or_default();
                    let op = lane.op(t.delivery, out.encoded(frame));
                    let msg = RelayMsg::Pause {
                        assoc,
                        channel,
                        session,
                        op,
                    };
                    self.relay.push(worker, Relay::new(msg));
                }
                MemberAt::Assoc(assoc) => {
                    let op = lane.op(t.delivery, out.encoded(frame));
                    self.egress.push(now, assoc, op);
                }
                MemberAt::Worker { worker, assoc } => match relays
                    .iter_mut()
                    .find(|(w, d, _)| *w == worker && *d == t.delivery)
                {
                    Some((_, _, assocs)) => assocs.push(assoc),
                    None => relays.push((worker, t.delivery, vec![assoc])),
                },
                MemberAt::Hosted(key) => {
                    if let Some(p) = self.participants.get_mut(&key) {
                        p.core.handle_frame(now, out.frame(frame).clone());
                        if p.core.has_work() {
                            // A sender resumed (`FlowControl`).
                            self.backlog.insert(key);
                        }
                    }
                }
            }
        }
        for (worker, delivery, assocs) in relays {
            let op = lane.op(delivery, out.encoded(frame));
            self.relay
                .push(worker, Relay::new(RelayMsg::Egress { assocs, op }));
        }
    }

    /// Tells a member that broke the protocol what it did wrong: through
    /// its egress, like every frame the server sends a member, so its
    /// bounds hold (one that stops reading becomes a slow consumer).
    fn violation(&mut self, now: Instant, at: MemberAt, what: &str) {
        let error = || {
            let frame: Frame = ErrorFrame {
                code: ErrorCode::PROTOCOL_VIOLATION,
                reason: ShortStr::truncated(what),
            }
            .into();
            Lane::Control.op(Delivery::Reliable, Message::Frame(frame).to_bytes())
        };
        match at {
            MemberAt::Assoc(assoc) => {
                self.stats.protocol_errors += 1;
                self.egress.push(now, assoc, error());
            }
            MemberAt::Worker { worker, assoc } => {
                self.stats.protocol_errors += 1;
                let assocs = vec![assoc];
                let op = error();
                self.relay
                    .push(worker, Relay::new(RelayMsg::Egress { assocs, op }));
            }
            MemberAt::Hosted(_) => {}
        }
    }

    /// An SCTP message on `assoc` was no valid engine message. A member is
    /// told through its egress, and it is a strike in its room; anything
    /// else (not joined yet, this hub's own uplink) is answered at once.
    pub(super) fn malformed(&mut self, now: Instant, assoc: AssocId, what: &str) {
        match self.links.get(&assoc) {
            Some(Link::Member(Home::Here { call_id, member })) => {
                let (call_id, member) = (call_id.clone(), *member);
                if let Some(room) = self.rooms.get_mut(&call_id) {
                    room.violation(now, &call_id, member, what.to_owned(), &mut self.outputs);
                    self.room_done(now, &call_id);
                }
            }
            Some(Link::Member(Home::Worker(_))) => self.violation(now, MemberAt::Assoc(assoc), what),
            _ => self.protocol_error(now, assoc, what),
        }
    }

    /// Answers a frame that broke the protocol (straight into SCTP: the
    /// association is not a member, so it has no egress).
    pub(super) fn protocol_error(&mut self, now: Instant, assoc: AssocId, what: &str) {
        self.stats.protocol_errors += 1;
        let frame = ErrorFrame {
            code: ErrorCode::PROTOCOL_VIOLATION,
            reason: ShortStr::truncated(what),
        };
        self.send(now, assoc, Delivery::Reliable, frame.into());
    }

    /// The verifier's answer to a join.
    fn verify(&self, now: Instant, join: &Join) -> Result<(), JoinRejection> {
        if join.version != PROTOCOL_VERSION {
            return Err(JoinRejection {
                code: ErrorCode::VERSION_MISMATCH,
                reason: format!(
                    "protocol version {} is not {PROTOCOL_VERSION}",
                    join.version
                ),
            });
        }
        if join.call_id.as_str().is_empty() || join.participant_id.as_str().is_empty() {
            return Err(JoinRejection::bad_token());
        }
        match &self.config.verifier {
            Some(v) => v.verify(
                &JoinRequest {
                    call_id: join.call_id.as_str(),
                    participant_id: join.participant_id.as_str(),
                    token: &join.token,
                },
                now,
            ),
            None => Err(JoinRejection {
                code: ErrorCode::INTERNAL,
                reason: "this hub serves no calls".into(),
            }),
        }
    }

    /// Checks a join and admits or rejects it.
    fn admit(&mut self, now: Instant, assoc: AssocId, join: Join) {
        let call_id = join.call_id.as_str();
        let pid = ParticipantId::from(join.participant_id.as_str());
        let home = home_worker(call_id, self.config.workers);
        let verdict = self.verify(now, &join).and_then(|()| match self.rooms.get(call_id) {
            Some(room) if home == self.config.worker => room.check_admit(&self.config, &pid),
            _ => Ok(()),
        });
        if let Err(rejection) = verdict {
            self.stats.joins_rejected += 1;
            self.reject(now, assoc, call_id, pid.as_str(), rejection);
            return;
        }
        let egress = MemberEgress::new(
            self.config.channel.lossy_latency_budget,
            pump::new_budget(self.config.uplink_buffer, self.config.queue_target),
            self.egress.pause,
        );
        self.egress.by_assoc.insert(assoc, egress);
        // The egress budget steers by round trips: they must not wait for
        // the member's delayed acks.
        self.node.set_immediate_acks(assoc, true);
        if home != self.config.worker {
            // The call lives on another worker: it admits the member (and
            // counts it) and relays back what to send it.
            self.links.insert(assoc, Link::Member(Home::Worker(home)));
            self.relay.push(
                home,
                Relay::new(RelayMsg::Attach {
                    worker: self.config.worker,
                    assoc,
                    call_id: call_id.to_owned(),
                    participant_id: pid,
                }),
            );
            return;
        }
        self.stats.joins_accepted += 1;
        // The welcome goes out before the link exists; the link is in
        // place before anyone else hears of the member.
        let room = self.rooms.entry(call_id.to_owned()).or_default();
        let member = room.admit(
            now,
            &self.config,
            call_id,
            pid,
            MemberAt::Assoc(assoc),
            &mut self.outputs,
        );
        self.links.insert(
            assoc,
            Link::Member(Home::Here {
                call_id: call_id.to_owned(),
                member,
            }),
        );
        self.carry_out(now);
    }

    /// Refuses the join on `assoc`: the client is told why, the
    /// association closes, the embedder hears of it (the caller counts it).
    pub(super) fn reject(
        &mut self,
        now: Instant,
        assoc: AssocId,
        call_id: &str,
        participant_id: &str,
        rejection: JoinRejection,
    ) {
        tracing::debug!(call = call_id, participant = participant_id, %rejection, "join refused");
        let frame = JoinRejected {
            code: rejection.code,
            reason: ShortStr::truncated(&rejection.reason),
        };
        self.send(now, assoc, Delivery::Reliable, frame.into());
        self.links.insert(assoc, Link::Closing);
        self.egress.remove(assoc);
        self.node.close(now, assoc);
        self.events.push_back(HubEvent::JoinRejected {
            remote: self
                .node
                .remote(assoc)
                .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
            call_id: call_id.to_owned(),
            participant_id: participant_id.to_owned(),
            rejection,
        });
    }

    /// A member association of this hub stops being one (it is being
    /// closed): its egress is dropped and its member removed from the call
    /// (here, or by a `Detach` to the call's home).
    pub(super) fn end_link(&mut self, now: Instant, assoc: AssocId, why: CloseReason) {
        self.egress.remove(assoc);
        match self.links.insert(assoc, Link::Closing) {
            Some(Link::Member(Home::Here { call_id, member })) => {
                self.remove_member(now, &call_id, member, why, None);
            }
            Some(Link::Member(Home::Worker(home))) => {
                self.forget_relayed(now, assoc);
                self.detach(home, assoc, why, None);
            }
            _ => {}
        }
    }

    /// A member association closed (`Node` reported it gone).
    pub(super) fn on_member_closed(
        &mut self,
        now: Instant,
        assoc: AssocId,
        home: Home,
        reason: &crate::proto::CloseReason,
    ) {
        self.egress.remove(assoc);
        let detail = Some(format!("its association ended: {reason}"));
        match home {
            Home::Here { call_id, member } => {
                self.remove_member(now, &call_id, member, CloseReason::ASSOCIATION_LOST, detail);
            }
            // The call's home says the same (the reason travels along).
            Home::Worker(home) => {
                self.relay_pending.remove(&assoc);
                self.detach(home, assoc, CloseReason::ASSOCIATION_LOST, detail);
            }
        }
    }

    /// Shutting down: a member is sent what its egress holds, then
    /// `Leave`.
    pub(super) fn close_member(&mut self, now: Instant, assoc: AssocId) {
        // What the member sent is read and relayed, held or not: its own
        // close drains it.
        self.forget_relayed(now, assoc);
        if let Some(mut e) = self.egress.remove(assoc) {
            let mut out = Vec::new();
            e.pump(now, usize::MAX, 0, &mut out);
            pump::send_batched(&mut self.node, now, assoc, out);
        }
        let leave = leave(ErrorCode::SHUTTING_DOWN, SHUTTING_DOWN);
        self.send(now, assoc, Delivery::Reliable, leave.into());
    }

    /// After any input: members found too slow are disconnected, the
    /// member egresses with work that the input touched send what their
    /// budgets allow, and the senders their backlogs press on are paused
    /// or resumed (which may send more: repeated until nothing changes).
    pub(super) fn finish_input(&mut self, now: Instant) {
        loop {
            self.cut_slow_consumers(now);
            self.stats.lossy_dropped_slow += std::mem::take(&mut self.egress.lossy_dropped);
            while let Some(assoc) = self.node.poll_progress() {
                if self.egress.ready.contains(&assoc) {
                    self.egress.to_pump.insert(assoc);
                }
            }
            for assoc in std::mem::take(&mut self.egress.to_pump) {
                if !self.egress.ready.contains(&assoc) {
                    continue;
                }
                #[cfg(test)]
                {
                    self.egress.pumps += 1;
                }
                let Some(e) = self.egress.by_assoc.get_mut(&assoc) else {
                    self.egress.ready.remove(&assoc);
                    continue;
                };
                let Pumped { dropped, more } = pump::pump(&mut self.node, now, assoc, e);
                Egresses::collect_pressure(&mut self.egress.pressure, assoc, e);
                self.stats.lossy_dropped_slow += dropped;
                if !more {
                    self.egress.ready.remove(&assoc);
                }
            }
            if self.egress.pressure.is_empty() {
                break;
            }
            self.apply_pressure(now);
            // A hosted sender resumed sends now.
            self.pump_backlog(now);
        }
    }

    /// Members found too slow (over their hard bound, or under the
    /// minimum rate) are disconnected.
    fn cut_slow_consumers(&mut self, now: Instant) {
        while !self.egress.slow.is_empty() {
            for assoc in std::mem::take(&mut self.egress.slow) {
                if !self.egress.by_assoc.contains_key(&assoc) {
                    continue; // Already handled.
                }
                self.stats.slow_consumers += 1;
                tracing::info!(?assoc, "disconnected: a slow consumer");
                // Not a `Leave` and a graceful close: both would wait behind
                // what the member's SCTP queue already holds, which on its
                // path can take longer than the close may. The ABORT says
                // why, and goes at once.
                self.end_link(now, assoc, CloseReason::ASSOCIATION_LOST);
                self.node.abort_with_cause(
                    now,
                    assoc,
                    crate::proto::CloseReason::Local,
                    "could not keep up with what the call sent",
                );
            }
        }
    }

    /// The slow-consumer rate rule (see
    /// [`HubConfig::slow_consumer_rate`]), checked on the hub's tick: the
    /// members under it are disconnected after this input.
    pub(super) fn check_consumer_rates(&mut self, now: Instant) {
        let kbps = self.config.slow_consumer_min_kbps;
        if kbps == 0 {
            return;
        }
        let (rate, grace) = (u64::from(kbps) * 125, self.config.slow_consumer_grace);
        let mut slow: Vec<AssocId> = self
            .egress
            .by_assoc
            .iter_mut()
            .filter_map(|(a, e)| e.too_slow(now, rate, grace).then_some(*a))
            .collect();
        slow.sort_unstable();
        if !slow.is_empty() {
            tracing::debug!(members = slow.len(), "under the slow-consumer rate");
        }
        self.egress.slow.extend(slow);
    }

    /// Gives the rooms the pressure changes of member egresses: here, or
    /// relayed to the call's home.
    fn apply_pressure(&mut self, now: Instant) {
        for (assoc, (origin, channel, pressing)) in std::mem::take(&mut self.egress.pressure) {
            match self.links.get(&assoc) {
                Some(Link::Member(Home::Here { call_id, member })) => {
                    let (call_id, member) = (call_id.clone(), *member);
                    self.member_pressure(now, &call_id, member, origin, channel, pressing);
                }
                Some(Link::Member(Home::Worker(home))) => {
                    let worker = self.config.worker;
                    self.relay.push(
                        *home,
                        Relay::new(RelayMsg::Pressure {
                            worker,
                            assoc,
                            origin,
                            channel,
                            pressing,
                        }),
                    );
                }
                _ => {} // Gone: its room forgot its pressure.
            }
        }
    }

    /// Member `target` of `call_id` has (`pressing`) or no longer has too
    /// much of (origin, channel)'s Durable data waiting.
    pub(super) fn member_pressure(
        &mut self,
        now: Instant,
        call_id: &str,
        target: MemberId,
        origin: MemberId,
        channel: u16,
        pressing: bool,
    ) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        room.pressure(now, target, origin, channel, pressing, &mut self.outputs);
        self.room_done(now, call_id);
    }
}
