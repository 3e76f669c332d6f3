//! The one loop that moves scheduled frames into SCTP, for a client's
//! uplink and the server's egress to each member alike, and the one
//! batcher that packs them into SCTP messages.
//!
//! SCTP has one FIFO per association: whatever the engine hands it is out
//! of the scheduler's hands. So an [`EgressBudget`] says how much the
//! association's SCTP queue may hold (about a bandwidth-delay product), the
//! scheduler picks what goes within that room (High senders get
//! [`HIGH_RESERVE`] more), and the budget learns from what was handed over.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::proto::{AssocId, Delivery, MAX_PACKET_MESSAGE, Node};
use crate::sched::EgressBudget;
use crate::wire::{Batch, Codec, Frame, Message};

/// The smallest egress budget: a few packets, so a slow path still moves.
pub(super) const MIN_EGRESS_BUDGET: usize = 2400;

/// Room High senders get beyond the egress budget: two packets.
const HIGH_RESERVE: usize = 2400;

/// Largest Durable batch: one packet (`MAX_PACKET_MESSAGE`, 1,200 B), so
/// the receiver delivers each packet's messages as it arrives instead of
/// reassembling a larger batch first, and the egress budget moves by
/// packets. Against 16 KiB batches it costs 7 % of the node pair's
/// throughput (1.37 vs 1.47 M msg/s, perf/README.md).
const BATCH_BYTES: usize = MAX_PACKET_MESSAGE;

/// Largest Lossy batch: one packet. A Lossy batch is abandoned whole when
/// one of its packets is lost, so one packet's worth loses least.
const LOSSY_BATCH_BYTES: usize = MAX_PACKET_MESSAGE;

/// How large a batch on `delivery`'s stream may grow.
fn batch_limit(delivery: Delivery) -> usize {
    match delivery {
        Delivery::Reliable => BATCH_BYTES,
        Delivery::Lossy => LOSSY_BATCH_BYTES,
    }
}

/// Bytes `assoc` holds in SCTP (in flight and unsent) on both streams.
pub(super) fn sctp_queued(node: &mut Node, assoc: AssocId) -> usize {
    node.queued_bytes(assoc)
}

/// How many bytes past the budget's room High senders may hand over while
/// the transport holds `queued`: up to [`HIGH_RESERVE`] past the budget —
/// the budget as it is outside its round-trip probes, so a probe that
/// drains the queue slows Normal traffic only.
fn high_reserve(budget: &EgressBudget, queued: usize) -> usize {
    let room = budget.room(queued);
    (budget.steady_budget() + HIGH_RESERVE)
        .saturating_sub(queued)
        .saturating_sub(room)
}

/// A new egress budget for an association, from the hub's configuration.
pub(super) fn new_budget(max: usize, queue_target: Duration) -> EgressBudget {
    EgressBudget::new(MIN_EGRESS_BUDGET, max, queue_target)
}

/// One frame as a scheduler hands it over: a [`Frame`] (a client's own
/// senders) or already encoded `Bytes` (the server's fan-out, encoded once
/// for every member).
pub(super) trait Piece: Sized {
    /// Its encoded length.
    fn encoded_len(&self) -> usize;
    /// It alone, as one SCTP message.
    fn into_message(self) -> Bytes;
    /// Several, as one batch message.
    fn batch(run: &mut Vec<Self>) -> Bytes;
}

impl Piece for Frame {
    fn encoded_len(&self) -> usize {
        Codec::encoded_len(self)
    }

    fn into_message(self) -> Bytes {
        Message::Frame(self).to_bytes()
    }

    fn batch(run: &mut Vec<Self>) -> Bytes {
        Message::Batch(Batch {
            frames: std::mem::take(run),
        })
        .to_bytes()
    }
}

impl Piece for Bytes {
    fn encoded_len(&self) -> usize {
        self.len()
    }

    fn into_message(self) -> Bytes {
        self
    }

    fn batch(run: &mut Vec<Self>) -> Bytes {
        let batch = Batch::concat(run);
        run.clear();
        batch
    }
}

/// What a scheduler must offer [`pump`]: its budget, and its frames in the
/// order they should go.
pub(super) trait Scheduled {
    /// What it hands over.
    type Piece: Piece;
    /// The association's egress budget.
    fn budget(&mut self) -> &mut EgressBudget;
    /// How long what is picked from now on waits in the transport (see
    /// [`crate::sched::Scheduler::set_transit`]).
    fn set_transit(&mut self, transit: Duration);
    /// Moves frames to `out` in the order they should go, while about
    /// `room` bytes last, then High flows alone for `high_reserve` more.
    /// Returns how many Lossy messages it dropped as late.
    fn pump(
        &mut self,
        now: Instant,
        room: usize,
        high_reserve: usize,
        out: &mut Vec<(Delivery, Self::Piece)>,
    ) -> u64;
    /// Whether something is left to send (possibly waiting for room or
    /// tokens).
    fn has_work(&self) -> bool;
}

/// What one [`pump`] did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Pumped {
    /// Lossy messages dropped as late.
    pub(super) dropped: u64,
    /// Work is left.
    pub(super) more: bool,
}

/// Lets `source` hand `assoc`'s SCTP queue what its budget allows, and
/// tells the budget what went: the one pump loop of uplinks and member
/// egresses.
pub(super) fn pump<S: Scheduled>(
    node: &mut Node,
    now: Instant,
    assoc: AssocId,
    source: &mut S,
) -> Pumped {
    let queued = sctp_queued(node, assoc);
    let budget = source.budget();
    budget.on_progress(queued, now);
    let room = budget.room(queued);
    let mut reserve = high_reserve(budget, queued);
    let mut transit = budget.drain_time(queued);
    let mut cap = None;
    let mut paced = false;
    if node.interleaves(assoc) {
        // SCTP puts Lossy messages ahead of the Durable stream's queue,
        // inside its messages even: High senders need not wait for that
        // queue to drain, only for the Lossy stream's own. And SCTP keeps
        // no more than the budget in flight, so what a large message still
        // has to send waits in SCTP's queue, where they pass it, rather than
        // in the path's.
        reserve = reserve.max(HIGH_RESERVE.saturating_sub(node.lossy_unsent(assoc)));
        //
        // On a slow path data is also released at about the bottleneck's
        // rate (the budget's pacer; `None` elsewhere), so the bottleneck's
        // queue stays near empty and a High message handed over waits for
        // the packet on the wire; then SCTP may keep twice the estimated
        // bandwidth-delay product in flight, so that the cap does not stop
        // the pacer's probes for more bandwidth.
        let was_paced = budget.is_paced();
        let rate = budget.pacing_rate(now, || node.in_flight(assoc));
        paced = rate.is_some();
        let mut in_flight = budget.steady_budget() + MAX_PACKET_MESSAGE;
        if rate.is_some() {
            let bdp = budget.bandwidth_delay().unwrap_or(0);
            in_flight = in_flight.max(2 * bdp + MAX_PACKET_MESSAGE);
        }
        node.set_max_in_flight(assoc, Some(in_flight));
        if rate.is_some() || was_paced {
            node.set_pacing_rate(now, assoc, rate);
        }
        cap = Some(in_flight);
        // What the scheduler picks from now on (the Lossy messages it may
        // drop as late: Durable ones wait whatever it takes) waits behind
        // what is in flight and the Lossy stream's queue, not the Durable
        // stream's; paced, what is in flight is less than the cap.
        let flying = if rate.is_some() {
            node.in_flight(assoc)
        } else {
            in_flight
        };
        transit = budget.drain_time(queued.min(flying + node.lossy_unsent(assoc)));
    }
    source.set_transit(transit);
    let mut out = Vec::new();
    let dropped = source.pump(now, room, reserve, &mut out);
    if let Some(cap) = cap {
        // Lossy messages handed over now go out in the next packet rather
        // than after the next acknowledgement frees room in flight: the cap
        // grows by what they need (two packets at most) before they are
        // handed over, whole (grown after, or by less than a message with
        // its chunk headers, it split a High message: its first fragment
        // went, the rest after the next acknowledgement, 10 ms later on a
        // 1 Mbit/s link; High p99 behind 32 KiB messages 27 -> 12 ms).
        let lossy: usize = out
            .iter()
            .filter(|(delivery, _)| *delivery == Delivery::Lossy)
            .map(|(_, piece)| piece.encoded_len())
            .sum();
        if lossy > 0 {
            let lossy = (lossy + node.lossy_unsent(assoc)).min(2 * MAX_PACKET_MESSAGE);
            node.set_max_in_flight(assoc, Some(lossy_cap(node, assoc, cap, lossy)));
        }
    }
    let handed = send_batched(node, now, assoc, out);
    if let Some(cap) = cap {
        // Lossy messages still unsent (waiting for the pacer) keep their
        // room until the next pump: they take none from the bulk. SCTP ends
        // a packet after them (vendored dcsctp change 9), so on a slow link
        // a High message waits for the packet on the wire, not for a full
        // one of bulk fragments behind it. Measured (tests/scheduling.rs,
        // 1 Mbit/s, a 32 KiB Normal message always queued): High p99 37 ->
        // 27 ms, the bulk 920 -> 907 kbit/s; without this growth 29 ms and
        // 868 kbit/s.
        let lossy = node.lossy_unsent(assoc).min(2 * MAX_PACKET_MESSAGE);
        if lossy > 0 {
            node.set_max_in_flight(assoc, Some(lossy_cap(node, assoc, cap, lossy)));
        }
    }
    let more = source.has_work();
    let budget = source.budget();
    budget.on_sent(handed, now);
    // Work left with the budget's room used up: the budget held the sender
    // back (work left for want of shaping tokens leaves room).
    if more && handed >= room {
        budget.on_limited();
    } else if paced && sctp_queued(node, assoc) > node.in_flight(assoc) {
        // Paced, SCTP holds data it has not sent: the pacer, not the
        // application, is what limits the sender (see
        // `EgressBudget::on_backlogged`).
        budget.on_backlogged();
    }
    Pumped { dropped, more }
}

/// The in-flight cap that lets `assoc` send `lossy` bytes of Lossy
/// messages now: `cap` or what is in flight already, whichever is more
/// (SCTP counts what is in flight with its chunk headers, about 20 bytes a
/// chunk, and a cap that just shrank may be under it), plus `lossy` and its
/// headers. Room for only a part of a message would split it.
fn lossy_cap(node: &Node, assoc: AssocId, cap: usize, lossy: usize) -> usize {
    let in_flight = node.in_flight(assoc);
    cap.max(in_flight + in_flight / 16) + lossy + 64
}

/// Sends `out` in order on `assoc`, packing runs on the same stream into
/// batches of at most one packet, all handed to SCTP at once so its packets
/// fill across them ([`Node::send_encoded_many`]); returns the bytes handed
/// to SCTP.
pub(super) fn send_batched<P: Piece>(
    node: &mut Node,
    now: Instant,
    assoc: AssocId,
    out: impl IntoIterator<Item = (Delivery, P)>,
) -> usize {
    let mut out = out.into_iter().peekable();
    if out.peek().is_none() {
        return 0;
    }
    let before = sctp_queued(node, assoc);
    let mut messages = Vec::new();
    let mut run: Vec<P> = Vec::new();
    let mut run_len = 0;
    let mut run_delivery = Delivery::Reliable;
    let flush = |messages: &mut Vec<(Delivery, Bytes)>, run: &mut Vec<P>, delivery: Delivery| {
        let message = if run.len() == 1 {
            run.pop().map(Piece::into_message)
        } else {
            Some(P::batch(run))
        };
        messages.extend(message.map(|m| (delivery, m)));
    };
    for (delivery, piece) in out {
        let len = piece.encoded_len();
        if !run.is_empty() && (delivery != run_delivery || run_len + len > batch_limit(delivery)) {
            flush(&mut messages, &mut run, run_delivery);
            run_len = 0;
        }
        run_delivery = delivery;
        run_len += len;
        run.push(piece);
    }
    if !run.is_empty() {
        flush(&mut messages, &mut run, run_delivery);
    }
    // A failure means the association is going away; its Closed event does
    // the cleanup.
    let _ = node.send_encoded_many(now, assoc, messages);
    sctp_queued(node, assoc).saturating_sub(before)
}
