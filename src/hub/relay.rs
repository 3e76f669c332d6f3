//! Work that one worker's hub hands another's in a multi-worker engine.
//!
//! The kernel spreads associations over the workers' sockets by 4-tuple, so
//! the members of one call live on different workers. Each call is homed on
//! one worker ([`home_worker`]); the home hub holds the room and decides
//! fan-out, and the hubs owning members' associations relay their frames to
//! it and send what it addresses to them. See `docs/architecture.md`.

use std::time::Instant;

use super::egress::EgressOp;
use super::{Endpoint, Hub, Link};
use crate::datachannel::ParticipantId;
use crate::proto::{AssocId, Delivery};
use crate::wire::{CloseReason, Codec, Frame, Leave, MemberId, Message, ShortStr};

/// The worker that homes `call_id` in an engine of `workers` workers: a
/// fixed hash (FNV-1a), so every worker agrees without a lookup.
pub fn home_worker(call_id: &str, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in call_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % workers as u64) as usize
}

/// One unit of work for another worker's hub (opaque to the driver).
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) msg: RelayMsg,
}

impl Relay {
    pub(crate) fn new(msg: RelayMsg) -> Self {
        Self { msg }
    }
}

/// What workers tell each other. The owner of a member's association is
/// `worker`; the call's home holds the room.
#[derive(Debug)]
pub(crate) enum RelayMsg {
    /// Owner → home: a join to this call was verified on `worker`'s
    /// association `assoc`; admit it.
    Attach {
        worker: usize,
        assoc: AssocId,
        call_id: String,
        participant_id: ParticipantId,
    },
    /// Owner → home: a frame from that member.
    Frame {
        worker: usize,
        assoc: AssocId,
        frame: Frame,
    },
    /// Owner → home: that member is gone (left, lost, too slow).
    Detach {
        worker: usize,
        assoc: AssocId,
        why: CloseReason,
    },
    /// Home → owner: a frame for that member's egress.
    Egress { assoc: AssocId, op: EgressOp },
    /// Home → owner: send `leave` and close the association.
    Close { assoc: AssocId, leave: Leave },
}

/// Batches waiting for each worker.
#[derive(Debug)]
pub(crate) struct Outbox {
    batches: Vec<Vec<Relay>>,
    /// Workers with a non-empty batch, in the order they got their first.
    ready: Vec<usize>,
}

impl Outbox {
    pub(crate) fn new(workers: usize) -> Self {
        Self {
            batches: (0..workers).map(|_| Vec::new()).collect(),
            ready: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, worker: usize, relay: Relay) {
        let Some(batch) = self.batches.get_mut(worker) else {
            return;
        };
        if batch.is_empty() {
            self.ready.push(worker);
        }
        batch.push(relay);
    }

    pub(crate) fn poll(&mut self) -> Option<(usize, Vec<Relay>)> {
        let worker = self.ready.pop()?;
        Some((worker, std::mem::take(&mut self.batches[worker])))
    }
}

impl Hub {
    pub(super) fn on_relay(&mut self, now: Instant, relay: Relay) {
        match relay.msg {
            RelayMsg::Attach {
                worker,
                assoc,
                call_id,
                participant_id,
            } => self.attach(now, worker, assoc, &call_id, participant_id),
            RelayMsg::Frame {
                worker,
                assoc,
                frame,
            } => {
                if let Some((call_id, member)) = self.relayed.get(&(worker, assoc)).cloned() {
                    self.on_member_frame(now, &call_id, member, frame);
                }
            }
            RelayMsg::Detach { worker, assoc, why } => {
                if let Some((call_id, member)) = self.relayed.remove(&(worker, assoc)) {
                    self.remove_member(now, &call_id, member, why);
                }
            }
            RelayMsg::Egress { assoc, op } => {
                if matches!(self.links.get(&assoc), Some(Link::Relayed { .. })) {
                    self.sink.push(now, assoc, op);
                }
            }
            RelayMsg::Close { assoc, leave } => {
                if matches!(self.links.get(&assoc), Some(Link::Relayed { .. })) {
                    self.send(now, assoc, Delivery::Reliable, leave.into());
                    // The home has already removed the member: no Detach.
                    self.links.insert(assoc, Link::Closing);
                    self.drop_egress(assoc);
                    self.node.close(now, assoc);
                }
            }
        }
    }

    /// Home side: admits a member whose association lives on `worker`.
    fn attach(
        &mut self,
        now: Instant,
        worker: usize,
        assoc: AssocId,
        call_id: &str,
        participant_id: ParticipantId,
    ) {
        let room = self.rooms.entry(call_id.to_owned()).or_default();
        let member = MemberId(room.next_member);
        room.next_member += 1;
        let mut welcome: Vec<Frame> =
            vec![super::accepted_frame(&self.config.channel, member).into()];
        if let Some(room) = self.rooms.get(call_id) {
            welcome.extend(
                room.members
                    .iter()
                    .map(|(m, x)| super::joined_frame(*m, &x.participant_id).into()),
            );
        }
        for frame in welcome {
            let op = EgressOp::Control {
                delivery: Delivery::Reliable,
                bytes: Message::Frame(frame).to_bytes(),
            };
            self.sink
                .relay
                .push(worker, Relay::new(RelayMsg::Egress { assoc, op }));
        }
        self.relayed
            .insert((worker, assoc), (call_id.to_owned(), member));
        self.admit_member(
            now,
            call_id,
            member,
            participant_id,
            Endpoint::Relayed { worker, assoc },
        );
    }

    /// Owner side: a member of a call homed elsewhere is gone.
    pub(super) fn detach(&mut self, home: usize, assoc: AssocId, why: CloseReason) {
        let worker = self.config.worker;
        self.sink
            .relay
            .push(home, Relay::new(RelayMsg::Detach { worker, assoc, why }));
    }

    /// Home side: tells the owner of a relayed member to send `reason` and
    /// close it.
    pub(super) fn close_relayed(&mut self, worker: usize, assoc: AssocId, leave: Leave) {
        self.relayed.remove(&(worker, assoc));
        self.sink
            .relay
            .push(worker, Relay::new(RelayMsg::Close { assoc, leave }));
    }
}

/// A `Leave` with `code` and `reason`.
pub(super) fn leave(code: crate::wire::ErrorCode, reason: &str) -> Leave {
    Leave {
        code,
        reason: ShortStr::truncated(reason),
    }
}
