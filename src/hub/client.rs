//! The participant role: this hub's own calls, joined on a server over an
//! uplink association ([`Hub::join_remote`]) or hosted in one of its rooms
//! ([`Hub::join_local`]).
//!
//! Each call is a [`Participant`]: its [`ParticipantCore`] (the sans-IO
//! state behind the application's handles) and how it reaches its room.
//! The application's handles queue work on the hub's work queue; the hub
//! makes each sender a flow of its participant's scheduler and pumps the
//! scheduler into the uplink as its egress budget allows (the same loop as
//! the server's egress to members), or straight into the room for a hosted
//! participant.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::participant::{Frames, ParticipantCore};
use super::pump::{self, Pumped, Scheduled};
use super::room::MemberAt;
use super::server::Link;
use super::{Hub, JoinError, home_worker};
use crate::datachannel::{Call, CallShared, ParticipantId, Work};
use crate::proto::{AssocId, Delivery};
use crate::sched::EgressBudget;
use crate::wire::{
    CloseReason, ErrorCode, Frame, Join, Leave, MAX_TOKEN_LEN, MemberId, PROTOCOL_VERSION, ShortStr,
};

/// One of this hub's own calls.
pub(super) struct Participant {
    pub(super) core: ParticipantCore,
    pub(super) via: Via,
}

/// How a participant reaches its room.
pub(super) enum Via {
    /// Over an association to a server.
    Uplink {
        assoc: AssocId,
        /// How much the association's SCTP queue may hold.
        budget: Box<EgressBudget>,
        /// Sent once the association is up.
        join: Option<Join>,
    },
    /// Hosted here: member `member` of room `call_id`.
    Hosted { call_id: String, member: MemberId },
}

/// A participant's scheduler and its uplink's budget, for [`pump::pump`].
struct Uplink<'a> {
    core: &'a mut ParticipantCore,
    budget: &'a mut EgressBudget,
}

impl Scheduled for Uplink<'_> {
    type Piece = Frame;

    fn budget(&mut self) -> &mut EgressBudget {
        self.budget
    }

    fn set_transit(&mut self, transit: Duration) {
        self.core.set_transit(transit);
    }

    fn pump(&mut self, now: Instant, room: usize, reserve: usize, out: &mut Frames) -> u64 {
        self.core.pump(now, room, reserve, out);
        0 // Counted by the participant (its `lossy_late`).
    }

    fn has_work(&self) -> bool {
        self.core.has_work()
    }
}

/// Checks a call and a participant id: 1 to 255 bytes each.
fn ids(call_id: &str, participant_id: &str) -> Result<(ShortStr, ShortStr), JoinError> {
    if call_id.is_empty() || participant_id.is_empty() {
        return Err(JoinError::InvalidId);
    }
    let call = ShortStr::try_from(call_id).map_err(|_| JoinError::InvalidId)?;
    let pid = ShortStr::try_from(participant_id).map_err(|_| JoinError::InvalidId)?;
    Ok((call, pid))
}

impl Hub {
    /// Joins `call_id` on the server at `server` as `participant_id`,
    /// proving it with `token`. The call is usable once
    /// [`Call::ready`] resolves `true`. Ids of 1 to 255 bytes and a token
    /// of at most 4,096 are checked first ([`JoinError::InvalidId`],
    /// [`JoinError::TokenTooLong`]): nothing starts if they do not fit.
    pub fn join_remote(
        &mut self,
        now: Instant,
        server: SocketAddr,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, JoinError> {
        let now = self.advance(now);
        let (call, pid) = ids(call_id, participant_id)?;
        // Checked before an association starts: a longer token cannot be
        // encoded in the `Join` frame (and the server would refuse it).
        if token.len() > MAX_TOKEN_LEN {
            return Err(JoinError::TokenTooLong {
                len: token.len(),
                max: MAX_TOKEN_LEN,
            });
        }
        if let Some(secure) = &mut self.secure {
            secure.connect(now, server)?;
        }
        let assoc = self.node.connect(now, server)?;
        // The uplink's egress budget steers by round trips: they must not
        // wait for the server's delayed acks.
        self.node.set_immediate_acks(assoc, true);
        let shared = self.new_call(call_id, participant_id);
        self.links.insert(assoc, Link::Uplink(shared.key));
        let via = Via::Uplink {
            assoc,
            budget: Box::new(pump::new_budget(
                self.config.uplink_buffer,
                self.config.queue_target,
            )),
            join: Some(Join {
                version: PROTOCOL_VERSION,
                call_id: call,
                participant_id: pid,
                token,
            }),
        };
        let core = ParticipantCore::new(shared.clone());
        self.participants
            .insert(shared.key, Participant { core, via });
        self.arm_tick(now);
        Ok(Call { shared })
    }

    /// Adds a participant hosted by this hub to `call_id` (created if
    /// needed). Hosted participants are trusted: no token. The call is
    /// joined at once. With several workers, only the call's home worker
    /// hosts its participants ([`JoinError::WrongWorker`] elsewhere).
    pub fn join_local(
        &mut self,
        now: Instant,
        call_id: &str,
        participant_id: &str,
    ) -> Result<Call, JoinError> {
        let now = self.advance(now);
        ids(call_id, participant_id)?;
        let home = home_worker(call_id, self.config.workers);
        if home != self.config.worker {
            return Err(JoinError::WrongWorker { home });
        }
        let pid = ParticipantId::from(participant_id);
        if let Some(room) = self.rooms.get(call_id) {
            room.check_admit(&self.config, &pid)
                .map_err(JoinError::Refused)?;
        }
        let shared = self.new_call(call_id, participant_id);
        let key = shared.key;
        let core = ParticipantCore::new(shared.clone());
        let via = Via::Hosted {
            call_id: call_id.to_owned(),
            member: MemberId(u32::MAX), // Set once admitted, below.
        };
        self.participants.insert(key, Participant { core, via });
        let member = self.admit_member(now, call_id, pid, MemberAt::Hosted(key));
        if let Some(Participant {
            via: Via::Hosted { member: m, .. },
            ..
        }) = self.participants.get_mut(&key)
        {
            *m = member;
        }
        self.arm_tick(now);
        self.finish_input(now);
        Ok(Call { shared })
    }

    fn new_call(&mut self, call_id: &str, participant_id: &str) -> Arc<CallShared> {
        let key = self.next_call_key;
        self.next_call_key += 1;
        let shared = Arc::new(CallShared::new(
            self.shared.clone(),
            key,
            call_id.to_owned(),
            participant_id.into(),
            self.config.channel.clone(),
        ));
        crate::datachannel::seed_call(
            &shared,
            self.config.seed ^ key.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        shared
    }

    /// The uplink of call `key` is up: its join goes.
    pub(super) fn on_uplink_connected(&mut self, now: Instant, key: u64) {
        if let Some(Participant {
            via: Via::Uplink { assoc, join, .. },
            ..
        }) = self.participants.get_mut(&key)
            && let Some(join) = join.take()
        {
            let assoc = *assoc;
            self.send(now, assoc, Delivery::Reliable, join.into());
        }
    }

    /// A frame from the server on call `key`'s uplink.
    pub(super) fn on_uplink_frame(&mut self, now: Instant, assoc: AssocId, key: u64, frame: Frame) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        // A rejected join, or the server removing this participant (it
        // shuts down, or finds it too slow or over the rules): the call is
        // over, and the server closes its side next. Closing this side at
        // once lets the two shutdowns meet rather than leave the server
        // waiting on a SACK this side would only send after its
        // delayed-ack timer.
        let over = matches!(frame, Frame::JoinRejected(_) | Frame::Leave(_));
        if matches!(frame, Frame::JoinAccepted(_)) {
            self.joining.push(key);
        }
        p.core.handle_frame(now, frame);
        if p.core.has_work() {
            // A sender resumed (`FlowControl`).
            self.backlog.insert(key);
        }
        let mut notices = Frames::new();
        p.core.take_notices(&mut notices);
        if over {
            self.node.close(now, assoc);
        } else {
            self.send_uplink(now, key, notices);
        }
    }

    /// Joins accepted by the frames just handled complete, now that the
    /// rest of the welcome (the roster) is in too.
    pub(super) fn complete_joins(&mut self) {
        for key in std::mem::take(&mut self.joining) {
            if let Some(p) = self.participants.get_mut(&key) {
                p.core.complete_join();
            }
        }
    }

    /// Call `key`'s uplink closed: the call is over, and the hub is done
    /// with it.
    pub(super) fn on_uplink_closed(&mut self, key: u64, reason: &crate::proto::CloseReason) {
        if let Some(mut p) = self.participants.remove(&key) {
            if let crate::proto::CloseReason::Undelivered(bytes) = reason {
                // A leave (or shutdown) whose close was forced: what the
                // senders had accepted did not all arrive. The receivers
                // see their sender lost; the application sees it here.
                tracing::warn!(
                    call = p.core.shared.call_id.as_str(),
                    bytes,
                    "the connection closed before the server acknowledged everything sent: messages lost"
                );
                p.core.shared.set_close_failed(&reason.to_string());
            }
            p.core.end(&format!("connection closed: {reason}"));
            p.core.shared.set_done();
        }
    }

    /// Sends frames of call `key` on its uplink outside the scheduler
    /// (keep-alives, notices), counting them in its egress budget.
    fn send_uplink(&mut self, now: Instant, key: u64, out: Frames) {
        let Some(Participant {
            via: Via::Uplink { assoc, budget, .. },
            ..
        }) = self.participants.get_mut(&key)
        else {
            return;
        };
        if out.is_empty() {
            return;
        }
        let handed = pump::send_batched(&mut self.node, now, *assoc, out);
        budget.on_sent(handed, now);
    }

    /// Takes the work the application queued.
    pub(super) fn process_work(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for work in shared.take_work() {
            match work {
                Work::Sender(s) => {
                    let key = s.call.key;
                    match self.participants.get_mut(&key) {
                        Some(p) => {
                            p.core.enqueue(now, &s);
                            self.backlog.insert(key);
                        }
                        None => {
                            // The call is gone: drop what was queued.
                            s.scheduled.store(false, Ordering::SeqCst);
                            while s.ops.pop().is_some() {}
                        }
                    }
                }
                Work::Leave(call) => self.leave(now, call.key),
                Work::WakeAt(s, at) => self.token_waits.entry(at).or_default().push(s),
            }
        }
    }

    /// The application left call `key` ([`Call::leave`]): what its
    /// senders accepted goes first, then the leave.
    fn leave(&mut self, now: Instant, key: u64) {
        let Some(p) = self.participants.get_mut(&key) else {
            return;
        };
        let mut out = Frames::new();
        p.core.flush(now, &mut out);
        match &p.via {
            Via::Uplink { assoc, .. } => {
                let assoc = *assoc;
                p.core.end("left the call");
                self.send_uplink(now, key, out);
                let leave = Leave {
                    code: ErrorCode::NONE,
                    reason: ShortStr::default(),
                };
                self.send(now, assoc, Delivery::Reliable, leave.into());
                // Graceful: SCTP delivers what it holds before it closes.
                self.node.close(now, assoc);
            }
            Via::Hosted { call_id, member } => {
                let (call_id, member) = (call_id.clone(), *member);
                for (_, frame) in out {
                    self.on_member_frame(now, &call_id, member, frame, Some(Duration::ZERO));
                }
                self.remove_member(now, &call_id, member, CloseReason::LEFT, None);
            }
        }
    }

    /// Shutting down: every uplink's queued sends go, then its `Leave`.
    pub(super) fn close_uplink(&mut self, now: Instant, assoc: AssocId, key: u64) {
        if let Some(p) = self.participants.get_mut(&key) {
            let mut out = Frames::new();
            p.core.flush(now, &mut out);
            p.core.end("the engine shut down");
            self.send_uplink(now, key, out);
        }
        let leave = Leave {
            code: ErrorCode::NONE,
            reason: ShortStr::default(),
        };
        self.send(now, assoc, Delivery::Reliable, leave.into());
    }

    /// Lets every call with queued sender work send what its scheduler
    /// picks: into its uplink as its egress budget allows, or straight into
    /// the room (a hosted participant).
    pub(super) fn pump_backlog(&mut self, now: Instant) {
        if self.backlog.is_empty() {
            return;
        }
        let keys: Vec<u64> = self.backlog.iter().copied().collect();
        for key in keys {
            let more = match self.participants.get_mut(&key) {
                Some(Participant {
                    core,
                    via: Via::Uplink { assoc, budget, .. },
                }) => {
                    let assoc = *assoc;
                    let mut uplink = Uplink {
                        core,
                        budget: budget.as_mut(),
                    };
                    let Pumped { more, .. } = pump::pump(&mut self.node, now, assoc, &mut uplink);
                    more
                }
                Some(Participant {
                    core,
                    via: Via::Hosted { call_id, member },
                }) => {
                    let mut out = Frames::new();
                    core.pump(now, usize::MAX, 0, &mut out);
                    let more = core.has_work();
                    let (call_id, member) = (call_id.clone(), *member);
                    for (_, frame) in out {
                        self.on_member_frame(now, &call_id, member, frame, Some(Duration::ZERO));
                    }
                    more
                }
                None => false,
            };
            if !more {
                self.backlog.remove(&key);
            }
        }
    }

    /// Timers of this hub's own calls: idle receivers, sender keep-alives,
    /// receivers' notices.
    pub(super) fn tick_participants(&mut self, now: Instant) {
        let mut keys: Vec<u64> = self.participants.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let Some(p) = self.participants.get_mut(&key) else {
                continue;
            };
            let mut out = Frames::new();
            p.core.tick(now, &mut out);
            if out.is_empty() {
                continue;
            }
            match &p.via {
                Via::Uplink { .. } => self.send_uplink(now, key, out),
                Via::Hosted { call_id, member } => {
                    let (call_id, member) = (call_id.clone(), *member);
                    for (_, frame) in out {
                        self.on_member_frame(now, &call_id, member, frame, Some(Duration::ZERO));
                    }
                }
            }
        }
    }

    /// Wakes the `writable()` waiters whose traffic-rule tokens are in.
    pub(super) fn wake_token_waiters(&mut self, now: Instant) {
        while let Some(entry) = self.token_waits.first_entry() {
            if *entry.key() > now {
                break;
            }
            for s in entry.remove() {
                s.token_wait.store(false, Ordering::SeqCst);
                s.writable_wakers.wake_all();
            }
        }
    }

    /// The participant core of call `key` (joined remotely or hosted).
    pub(super) fn core(&self, key: u64) -> Option<&ParticipantCore> {
        self.participants.get(&key).map(|p| &p.core)
    }
}
