//! Work that one worker's hub hands another's in a multi-worker engine.
//!
//! The kernel spreads associations over the workers' sockets by 4-tuple, so
//! the members of one call live on different workers. Each call is homed on
//! one worker ([`home_worker`]); the home hub holds the room and decides
//! fan-out, and the hubs owning members' associations relay their frames to
//! it and send what it addresses to them. See `docs/architecture.md`.

use std::time::Instant;

use super::Hub;
use super::egress::EgressOp;
use super::room::MemberAt;
use super::server::{Home, Link};
use crate::auth::JoinRejection;
use crate::datachannel::ParticipantId;
use crate::proto::{AssocId, Delivery};
use crate::wire::{CloseReason, Frame, Leave, MemberId};

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

/// What a relayed frame counts toward [`HubConfig::relay_backlog`]
/// (`super::HubConfig`): its payload, or a small frame's fixed cost. Both
/// sides compute it from the frame, so their counts agree.
pub(super) fn relay_cost(frame: &Frame) -> usize {
    match frame {
        Frame::Data(d) => d.payload.len() + 32,
        _ => 64,
    }
}

/// One unit of work for another worker's hub (opaque to the driver).
#[derive(Debug)]
pub(crate) struct Relay {
    pub(super) msg: RelayMsg,
}

impl Relay {
    pub(super) fn new(msg: RelayMsg) -> Self {
        Self { msg }
    }
}

/// What workers tell each other. The owner of a member's association is
/// `worker`; the call's home holds the room.
#[derive(Debug)]
pub(super) enum RelayMsg {
    /// Owner → home: a join to this call was verified on `worker`'s
    /// association `assoc`; admit it.
    Attach {
        worker: usize,
        assoc: AssocId,
        call_id: String,
        participant_id: ParticipantId,
    },
    /// Owner → home: a frame from that member, with the round trip the
    /// owner measured on its association (Durable data only).
    Frame {
        worker: usize,
        assoc: AssocId,
        frame: Frame,
        rtt: Option<std::time::Duration>,
    },
    /// Owner → home: that member is gone (left, lost, too slow).
    Detach {
        worker: usize,
        assoc: AssocId,
        why: CloseReason,
        /// What the `ParticipantLeft` event says, if more than `why`.
        detail: Option<String>,
    },
    /// Owner → home: that member's egress started (`pressing`) or stopped
    /// holding too much of the Durable data of (origin, channel): pause or
    /// resume that sender.
    Pressure {
        worker: usize,
        assoc: AssocId,
        origin: MemberId,
        channel: u16,
        pressing: bool,
    },
    /// Owner → home: the `FlowControl` pausing that member's session
    /// `session` on `channel` went into its association: what it sends
    /// from here on counts toward its overrun (`Room::pause_handed`).
    PauseHanded {
        worker: usize,
        assoc: AssocId,
        channel: u16,
        session: u32,
    },
    /// Home → owner: a `FlowControl` pausing that member's session (`op`,
    /// for its egress); the owner answers with `PauseHanded`.
    Pause {
        assoc: AssocId,
        channel: u16,
        session: u32,
        op: EgressOp,
    },
    /// Home → owner: the home took `bytes` (by [`relay_cost`]) of that
    /// member's relayed frames; the owner's count of what is on its way
    /// goes down by as much (and its reads resume below half of
    /// `HubConfig::relay_backlog`).
    Taken { assoc: AssocId, bytes: usize },
    /// Home → owner: a frame for the egress of each of these members (a
    /// fan-out sends one per worker, not one per member).
    Egress { assocs: Vec<AssocId>, op: EgressOp },
    /// Home → owner: send `leave` and close the association.
    Close { assoc: AssocId, leave: Leave },
    /// Home → owner: the call refused the member's join (it is full);
    /// refuse it as a rejected join.
    Refuse {
        assoc: AssocId,
        call_id: String,
        participant_id: ParticipantId,
        rejection: JoinRejection,
    },
}

/// Batches waiting for each worker.
#[derive(Debug)]
pub(super) struct Outbox {
    batches: Vec<Vec<Relay>>,
    /// Workers with a non-empty batch, in the order they got their first.
    ready: Vec<usize>,
}

impl Outbox {
    pub(super) fn new(workers: usize) -> Self {
        Self {
            batches: (0..workers).map(|_| Vec::new()).collect(),
            ready: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, worker: usize, relay: Relay) {
        let Some(batch) = self.batches.get_mut(worker) else {
            return;
        };
        if batch.is_empty() {
            self.ready.push(worker);
        }
        batch.push(relay);
    }

    pub(super) fn poll(&mut self) -> Option<(usize, Vec<Relay>)> {
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
            } => {
                // Home side: admits a member whose association lives on
                // `worker` (its welcome is relayed back), or refuses it.
                if let Some(Err(rejection)) = self
                    .rooms
                    .get(&call_id)
                    .map(|r| r.check_admit(&self.config, &participant_id))
                {
                    self.stats.joins_rejected += 1;
                    let refuse = RelayMsg::Refuse {
                        assoc,
                        call_id,
                        participant_id,
                        rejection,
                    };
                    self.relay.push(worker, Relay::new(refuse));
                    return;
                }
                self.stats.joins_accepted += 1;
                let at = MemberAt::Worker { worker, assoc };
                let member = self.admit_member(now, &call_id, participant_id, at);
                self.relayed.insert((worker, assoc), (call_id, member));
            }
            RelayMsg::Frame {
                worker,
                assoc,
                frame,
                rtt,
            } => {
                *self.relay_taken.entry((worker, assoc)).or_default() += relay_cost(&frame);
                if let Some((call_id, member)) = self.relayed.get(&(worker, assoc)).cloned() {
                    self.on_member_frame(now, &call_id, member, frame, rtt);
                }
            }
            RelayMsg::Taken { assoc, bytes } => {
                let half = self.config.relay_backlog / 2;
                if let Some(pending) = self.relay_pending.get_mut(&assoc) {
                    *pending = pending.saturating_sub(bytes);
                    if *pending <= half && self.node.reads_held(assoc) {
                        tracing::debug!(?assoc, "reads resumed: the call's worker caught up");
                        self.node.hold_reads(now, assoc, false);
                    }
                }
            }
            RelayMsg::Pressure {
                worker,
                assoc,
                origin,
                channel,
                pressing,
            } => {
                if let Some((call_id, member)) = self.relayed.get(&(worker, assoc)).cloned() {
                    self.member_pressure(now, &call_id, member, origin, channel, pressing);
                }
            }
            RelayMsg::PauseHanded {
                worker,
                assoc,
                channel,
                session,
            } => {
                if let Some((call_id, member)) = self.relayed.get(&(worker, assoc))
                    && let Some(room) = self.rooms.get_mut(call_id)
                {
                    room.pause_handed(*member, channel, session);
                }
            }
            RelayMsg::Pause {
                assoc,
                channel,
                session,
                op,
            } => {
                if let Some(Link::Member(Home::Worker(home))) = self.links.get(&assoc) {
                    let home = *home;
                    // Control goes ahead of the member's egress: into its
                    // association at the end of this input, before anything
                    // the member sends later is relayed.
                    self.egress.push(now, assoc, op);
                    let worker = self.config.worker;
                    let handed = RelayMsg::PauseHanded {
                        worker,
                        assoc,
                        channel,
                        session,
                    };
                    self.relay.push(home, Relay::new(handed));
                }
            }
            RelayMsg::Detach {
                worker,
                assoc,
                why,
                detail,
            } => {
                if let Some((call_id, member)) = self.relayed.remove(&(worker, assoc)) {
                    self.remove_member(now, &call_id, member, why, detail);
                }
            }
            RelayMsg::Egress { assocs, op } => {
                for assoc in assocs {
                    if self.is_relayed_member(assoc) {
                        self.egress.push(now, assoc, op.clone());
                    }
                }
            }
            RelayMsg::Refuse {
                assoc,
                call_id,
                participant_id,
                rejection,
            } => {
                if self.is_relayed_member(assoc) {
                    // Counted at the home.
                    self.reject(now, assoc, &call_id, participant_id.as_str(), rejection);
                }
            }
            RelayMsg::Close { assoc, leave } => {
                if self.is_relayed_member(assoc) {
                    self.forget_relayed(now, assoc);
                    self.send(now, assoc, Delivery::Reliable, leave.into());
                    // The home has already removed the member: no Detach.
                    self.links.insert(assoc, Link::Closing);
                    self.egress.remove(assoc);
                    self.node.close(now, assoc);
                }
            }
        }
    }

    /// Owner side: `cost` more bytes of `assoc`'s frames went to its
    /// call's worker; past [`HubConfig::relay_backlog`](super::HubConfig)
    /// not yet taken there, the member's reads are held.
    pub(super) fn note_relayed(&mut self, now: Instant, assoc: AssocId, cost: usize) {
        let pending = self.relay_pending.entry(assoc).or_default();
        *pending += cost;
        if *pending > self.config.relay_backlog && !self.node.reads_held(assoc) {
            self.stats.relay_holds += 1;
            tracing::debug!(
                ?assoc,
                pending = *pending,
                "reads held: the call's worker is behind with this member's frames"
            );
            self.node.hold_reads(now, assoc, true);
        }
    }

    /// Owner side: `assoc` is no longer a relayed member (it left, was
    /// removed, is closing): its reads are let go (so a graceful close can
    /// drain what the peer sent; the frames are dropped with the link) and
    /// its count forgotten.
    pub(super) fn forget_relayed(&mut self, now: Instant, assoc: AssocId) {
        self.relay_pending.remove(&assoc);
        if self.node.reads_held(assoc) {
            self.node.hold_reads(now, assoc, false);
        }
    }

    /// Home side, at the end of a batch of relays: tells each owner how
    /// many bytes of its members' frames were taken.
    pub(super) fn acknowledge_relayed(&mut self) {
        for ((worker, assoc), bytes) in std::mem::take(&mut self.relay_taken) {
            self.relay
                .push(worker, Relay::new(RelayMsg::Taken { assoc, bytes }));
        }
    }

    fn is_relayed_member(&self, assoc: AssocId) -> bool {
        matches!(self.links.get(&assoc), Some(Link::Member(Home::Worker(_))))
    }

    /// Owner side: a member of a call homed elsewhere is gone (`detail`:
    /// what its `ParticipantLeft` says, if more than `why`).
    pub(super) fn detach(
        &mut self,
        home: usize,
        assoc: AssocId,
        why: CloseReason,
        detail: Option<String>,
    ) {
        let worker = self.config.worker;
        self.relay
            .push(
                home,
                Relay::new(RelayMsg::Detach {
                    worker,
                    assoc,
                    why,
                    detail,
                }),
            );
    }
}
