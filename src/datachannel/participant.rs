//! The participant side of a call, sans-IO: turns the application's sender
//! operations into frames, and frames from the server (or the local room)
//! into receivers and messages. Used for calls joined over the network and
//! for participants hosted inside a hub alike.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_queue::SegQueue;

use super::handles::DataChannelReceiver;
use super::shared::{
    CallShared, ReceiverShared, STATE_JOINED, SenderOp, SenderShared, Wakers, lock, message_cost,
};
use super::{DataChannelMessage, DataChannelPriority, DataChannelReliability, ParticipantId};
use crate::proto::Delivery;
use crate::wire::{
    Data, Frame, KeepAlive, MemberId, ParticipantList, Priority, Reliability, SenderClosed,
    SenderOpened, SetParticipants, ShortStr,
};

/// Frames to send, each on its stream.
pub(crate) type Out = Vec<(Delivery, Frame)>;

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
}

/// Counters of one participant.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ParticipantStats {
    /// Data for a session that is not (or no longer) current: discarded.
    pub(crate) stale: u64,
    /// Frames a server should not send to a participant.
    pub(crate) unexpected: u64,
}

pub(crate) struct ParticipantCore {
    pub(crate) shared: Arc<CallShared>,
    senders: HashMap<u16, SenderEntry>,
    receivers: HashMap<(MemberId, u16), ReceiverEntry>,
    orphans: Orphans,
    pub(crate) stats: ParticipantStats,
}

impl ParticipantCore {
    pub(crate) fn new(shared: Arc<CallShared>) -> Self {
        Self {
            shared,
            senders: HashMap::new(),
            receivers: HashMap::new(),
            orphans: Orphans::default(),
            stats: ParticipantStats::default(),
        }
    }

    /// Turns the queued operations of `s` into frames.
    pub(crate) fn process_sender(&mut self, now: Instant, s: &Arc<SenderShared>, out: &mut Out) {
        // Clear first: an operation pushed while draining schedules again.
        s.scheduled.store(false, Ordering::SeqCst);
        let joined = self.shared.state() == STATE_JOINED;
        // Lossy data sent in the same turn as its `SenderOpened` would
        // overtake it (SCTP sends unordered chunks first): send it ordered.
        let mut opened_now = false;
        while let Some(op) = s.ops.pop() {
            if let SenderOp::Data(data) = &op {
                s.queued_bytes
                    .fetch_sub(message_cost(data.len()), Ordering::SeqCst);
            }
            if !joined {
                continue; // The call ended: the sender is closed already.
            }
            match op {
                SenderOp::Open => {
                    opened_now = true;
                    out.push((
                        Delivery::Reliable,
                        SenderOpened {
                            channel: s.channel,
                            session: s.session,
                            reliability: s.reliability.into(),
                            priority: s.priority.into(),
                            bitrate_kbps: s.bitrate_kbps,
                            origin: None,
                        }
                        .into(),
                    ));
                    self.senders.insert(
                        s.channel,
                        SenderEntry {
                            shared: s.clone(),
                            next_seq: 1,
                            epoch: 0,
                            last_keepalive: now,
                        },
                    );
                }
                SenderOp::Data(payload) => {
                    let Some(e) = self
                        .senders
                        .get_mut(&s.channel)
                        .filter(|e| Arc::ptr_eq(&e.shared, s))
                    else {
                        continue; // Replaced before it opened: nothing to send on.
                    };
                    let seq = e.next_seq;
                    e.next_seq = e.next_seq.wrapping_add(1);
                    let lossy = s.reliability == DataChannelReliability::Lossy;
                    out.push((
                        if lossy && !opened_now {
                            Delivery::Lossy
                        } else {
                            Delivery::Reliable
                        },
                        Data {
                            channel: s.channel,
                            session: s.session,
                            seq,
                            origin: None,
                            epoch: lossy.then_some(e.epoch),
                            payload,
                        }
                        .into(),
                    ));
                }
                SenderOp::SetParticipants(participants) => {
                    let Some(e) = self
                        .senders
                        .get_mut(&s.channel)
                        .filter(|e| Arc::ptr_eq(&e.shared, s))
                    else {
                        continue;
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
                        continue;
                    };
                    out.push((
                        Delivery::Reliable,
                        SetParticipants {
                            channel: s.channel,
                            epoch: e.epoch,
                            participants,
                        }
                        .into(),
                    ));
                }
                SenderOp::Close(reason) => {
                    out.push((
                        Delivery::Reliable,
                        SenderClosed {
                            channel: s.channel,
                            session: s.session,
                            reason,
                            origin: None,
                        }
                        .into(),
                    ));
                    if self
                        .senders
                        .get(&s.channel)
                        .is_some_and(|e| e.shared.session == s.session)
                    {
                        self.senders.remove(&s.channel);
                    }
                }
            }
        }
    }

    /// A frame from the server (or, for a hosted participant, the room).
    pub(crate) fn handle_frame(&mut self, now: Instant, frame: Frame) {
        if self.shared.state() == super::shared::STATE_ENDED {
            return; // Over: late frames of a closing association change nothing.
        }
        match frame {
            Frame::JoinAccepted(a) => self.shared.set_joined(a.max_message_size),
            Frame::JoinRejected(r) => self.end(&format!("join rejected: {}", r.reason)),
            Frame::ParticipantJoined(p) => {
                lock(&self.shared.control)
                    .roster
                    .insert(p.member, ParticipantId::from(p.participant_id.as_str()));
            }
            Frame::ParticipantLeft(p) => {
                lock(&self.shared.control).roster.remove(&p.member);
                self.receivers.retain(|(m, _), r| {
                    if *m == p.member {
                        r.shared.close();
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
                ..
            }) => {
                if let Some(r) = self.receivers.get(&(origin, channel))
                    && r.shared.session == session
                {
                    r.shared.close();
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
            Frame::Leave(l) => self.end(&format!("removed from the call: {}", l.reason)),
            Frame::Error(e) => {
                tracing::warn!(call = %self.shared.call_id, code = e.code.0, reason = %e.reason, "error from server");
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// Delivers one data frame to its receiver, or holds it until the
    /// receiver's `SenderOpened` comes (a Lossy frame can overtake it).
    fn deliver(&mut self, now: Instant, d: Data) {
        let Some(origin) = d.origin else { return };
        match self.receivers.get_mut(&(origin, d.channel)) {
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
                    r.shared.close();
                    self.receivers.remove(&(origin, d.channel));
                }
            }
            // Sessions count up per sender: a newer one may not be open yet.
            Some(r) if r.shared.session > d.session => self.stats.stale += 1,
            _ => {
                if !self.orphans.hold(now, d) {
                    self.stats.stale += 1;
                }
            }
        }
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
        if let Some(old) = self.receivers.get(&(origin, channel)) {
            if old.shared.session == session {
                return;
            }
            // A newer session replaces the old one.
            old.shared.close();
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
        });
        self.receivers.insert(
            (origin, channel),
            ReceiverEntry {
                shared: shared.clone(),
                last_activity: now,
            },
        );
        self.shared.announce(DataChannelReceiver { shared });
        for d in self.orphans.take(origin, channel, session) {
            self.deliver(now, d);
        }
    }

    /// Closes idle receivers and keeps idle senders' receivers alive.
    pub(crate) fn tick(&mut self, now: Instant, out: &mut Out) {
        let config = &self.shared.config;
        self.receivers.retain(|_, r| {
            let alive = now < r.last_activity + config.receiver_idle_timeout;
            if !alive {
                r.shared.close();
            }
            alive
        });
        self.stats.stale += self.orphans.expire(now);
        // A fixed cadence, data or not: a receiver the sender stopped
        // addressing must stay open as long as the sender is open.
        for e in self.senders.values_mut() {
            if now >= e.last_keepalive + config.keepalive_interval {
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

    /// The call is over: everything closes.
    pub(crate) fn end(&mut self, reason: &str) {
        self.shared.set_ended(reason);
        for (_, r) in self.receivers.drain() {
            r.shared.close();
        }
        for (_, s) in self.senders.drain() {
            while s.shared.ops.pop().is_some() {}
            s.shared.queued_bytes.store(0, Ordering::Release);
        }
    }

    /// How many receivers are open.
    #[cfg(test)]
    pub(crate) fn receiver_count(&self) -> usize {
        self.receivers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datachannel::{ChannelConfig, HubShared};
    use crate::wire::{JoinAccepted, PROTOCOL_VERSION, ParticipantJoined};
    use bytes::Bytes;

    fn joined(config: ChannelConfig, now: Instant) -> ParticipantCore {
        let hub = Arc::new(HubShared::default());
        let shared = Arc::new(CallShared::new(hub, 0, "call".into(), "me".into(), config));
        let mut core = ParticipantCore::new(shared);
        core.handle_frame(
            now,
            JoinAccepted {
                version: PROTOCOL_VERSION,
                member: MemberId(0),
                max_message_size: 32768,
                idle_timeout_ms: 120_000,
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
        assert_eq!(core.receiver_count(), 0);
    }
}
