//! The DataChannel feature: the application's handles ([`Call`],
//! [`DataChannelSender`], [`DataChannelReceiver`], ...) and their options
//! and errors, with the semantics of the Azure Communication Services
//! DataChannel API (see the crate documentation). The handles queue their
//! work for the [`crate::hub::Hub`] that owns the call and wake its driver;
//! the hub keeps the protocol state (a participant's own in a
//! [`participant::ParticipantCore`]).
#![forbid(unsafe_code)]

mod block;
mod handles;
pub(crate) mod shared;

pub(crate) use handles::close_and_release;
pub use handles::{Call, CallState, DataChannelFeature, DataChannelReceiver, DataChannelSender};
pub(crate) use shared::{CallShared, HubShared, Work};

use std::time::Duration;

use bytes::Bytes;

use crate::sched::TrafficPolicy;
use crate::wire::{MAX_PARTICIPANTS, Priority, Reliability};

/// Identifies a participant (like an ACS `CommunicationIdentifier`'s raw
/// id). At most 255 bytes of UTF-8 on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(String);

impl ParticipantId {
    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ParticipantId {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<String> for ParticipantId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Scheduling class of a sender (the seeds' `DataChannelPriority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DataChannelPriority {
    /// Default.
    #[default]
    Normal,
    /// Served before Normal.
    High,
}

/// Delivery class of a sender (the seeds' `DataChannelReliability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum DataChannelReliability {
    /// Unordered; messages may be dropped silently.
    Lossy,
    /// Lossless and ordered; a failure is reported, never silent. Default.
    #[default]
    Durable,
}

impl From<DataChannelPriority> for Priority {
    fn from(p: DataChannelPriority) -> Self {
        match p {
            DataChannelPriority::Normal => Priority::Normal,
            DataChannelPriority::High => Priority::High,
        }
    }
}

impl From<DataChannelReliability> for Reliability {
    fn from(r: DataChannelReliability) -> Self {
        match r {
            DataChannelReliability::Lossy => Reliability::Lossy,
            DataChannelReliability::Durable => Reliability::Durable,
        }
    }
}

/// How to create a sender (the seeds' `DataChannelSenderOptions`).
///
/// Written as a struct literal like the seeds' options object, or with
/// chainable setters named after the fields, each of which says its
/// default:
///
/// ```
/// # use dcengine::*;
/// let chat = DataChannelSenderOptions { channel_id: Some(10000), ..Default::default() };
/// let cursors = DataChannelSenderOptions::new()
///     .channel_id(10001)
///     .reliability(DataChannelReliability::Lossy)
///     .priority(DataChannelPriority::High)
///     .participants(["bob"]);
/// assert_eq!(chat.channel_id, Some(10000));
/// assert_eq!(cursors.participants, vec![ParticipantId::from("bob")]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelSenderOptions {
    /// The channel id, or `None` for a random one; see
    /// [`DataChannelSenderOptions::channel_id()`].
    pub channel_id: Option<u16>,
    /// The bitrate the sender intends to use, in kbit/s; see
    /// [`DataChannelSenderOptions::bitrate_kbps()`].
    pub bitrate_kbps: u32,
    /// The scheduling class; see [`DataChannelSenderOptions::priority()`].
    pub priority: DataChannelPriority,
    /// The delivery class; see [`DataChannelSenderOptions::reliability()`].
    pub reliability: DataChannelReliability,
    /// Who receives the messages (empty: everyone else); see
    /// [`DataChannelSenderOptions::participants()`].
    pub participants: Vec<ParticipantId>,
}

impl Default for DataChannelSenderOptions {
    fn default() -> Self {
        Self {
            channel_id: None,
            bitrate_kbps: 32,
            priority: DataChannelPriority::Normal,
            reliability: DataChannelReliability::Durable,
            participants: Vec::new(),
        }
    }
}

impl DataChannelSenderOptions {
    /// The defaults: a random channel id, 32 kbit/s, Normal, Durable, to
    /// everyone else in the call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The channel id, 1..=65535. `None` or `Some(0)` picks a free id at
    /// random from [`ChannelConfig::random_channel_ids()`]. A new sender on
    /// an id this participant already sends on closes the old sender.
    /// Default `None`.
    pub fn channel_id(mut self, id: impl Into<Option<u16>>) -> Self {
        self.channel_id = id.into();
        self
    }

    /// The bitrate the sender intends to use, in kbit/s. Default 32 (the
    /// seeds' samples). Messages are shaped to it (a token bucket one burst
    /// or one max-size message deep; never faster than the traffic rule of
    /// the sender's kind); 0 means no rate of its own, only the rule's.
    pub fn bitrate_kbps(mut self, kbps: u32) -> Self {
        self.bitrate_kbps = kbps;
        self
    }

    /// The scheduling class. Default [`DataChannelPriority::Normal`].
    pub fn priority(mut self, priority: DataChannelPriority) -> Self {
        self.priority = priority;
        self
    }

    /// The delivery class. Default [`DataChannelReliability::Durable`].
    pub fn reliability(mut self, reliability: DataChannelReliability) -> Self {
        self.reliability = reliability;
        self
    }

    /// Who receives the messages: at most 64 participants; empty (the
    /// default) is everyone else in the call. Every endpoint that joined
    /// with a listed identifier receives them. The list is checked when the
    /// sender is created ([`DataChannelFeature::create_sender`]).
    pub fn participants(
        mut self,
        participants: impl IntoIterator<Item = impl Into<ParticipantId>>,
    ) -> Self {
        self.participants = participants.into_iter().map(Into::into).collect();
        self
    }
}

/// One received message (the seeds' `DataChannelMessage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelMessage {
    /// Per sender and channel, from 1; gaps mean messages went to others.
    pub sequence_number: u32,
    /// The payload.
    pub data: Bytes,
}

/// Why a [`DataChannelReceiver`] closed ([`DataChannelReceiver::close_reason`]).
/// Every way a session ends reaches each receiver as one of these: the
/// messages that arrived before it can still be read.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverCloseReason {
    /// The sender closed (`close`, or its last handle dropped).
    #[error("the sender closed")]
    SenderClosed,
    /// A new sender on the same channel replaced it (a new receiver
    /// announces the new session).
    #[error("a new sender on the channel replaced it")]
    Replaced,
    /// The sender's participant left the call (or its engine shut down).
    #[error("the sender left the call")]
    SenderLeft,
    /// The sender's connection to the server was lost.
    #[error("the sender's connection was lost")]
    SenderLost,
    /// The server closed the session: the sender was over the traffic
    /// rules (or ignored its backpressure); what arrived is an unbroken
    /// prefix.
    #[error("the server closed the sender (over the traffic rules)")]
    TrafficLimit,
    /// This receiver's buffer was full (the application did not read), or
    /// a message was over this participant's `max_message_size`: a
    /// Durable receiver cannot skip one, so it closed, and the server
    /// sends it no more of the session.
    #[error(
        "the receiver could not hold a message (its buffer was full, or the message too large)"
    )]
    Overflow,
    /// Nothing arrived for the call's idle timeout. If the sender is still
    /// open, its next message announces a new receiver of the same session.
    #[error("idle: nothing arrived for the idle timeout")]
    Idle,
    /// This participant's call ended (left, removed, shut down, or its
    /// connection lost); [`crate::Call::state`] says why.
    #[error("the call ended")]
    CallEnded,
    /// A close reason this build does not know (a newer server's).
    #[error("closed by the server (reason {0})")]
    Other(u8),
}

impl ReceiverCloseReason {
    /// The receiver-side meaning of a wire close reason.
    pub(crate) fn from_wire(reason: crate::wire::CloseReason) -> Self {
        use crate::wire::CloseReason as W;
        match reason {
            W::CLOSED => Self::SenderClosed,
            W::REPLACED => Self::Replaced,
            W::LEFT => Self::SenderLeft,
            W::ASSOCIATION_LOST => Self::SenderLost,
            W::TRAFFIC_LIMIT => Self::TrafficLimit,
            W::RECEIVER_OVERFLOW => Self::Overflow,
            other => Self::Other(other.0),
        }
    }
}

/// What can go wrong with the DataChannel API (the seeds' error codes, plus
/// misuse).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataChannelError {
    /// The call is not (or no longer) connected, so no sender can start.
    #[error("the data channel is not ready: the call is not connected")]
    FailedToStart,
    /// Every id of the random pool is in use by this participant's senders.
    #[error("no free random channel id is left")]
    RandomIdNotAvailable,
    /// The sender was closed (by `close()`, by a newer sender on the same
    /// channel id, or because the call ended).
    #[error("the sender is closed")]
    SenderClosed,
    /// The message is larger than [`DataChannelSender::max_message_size`].
    #[error("message of {size} bytes is over the limit of {limit} bytes")]
    MessageSizeOverLimit {
        /// The message's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A Durable message could not be queued: the channel's queue is full.
    #[error("not enough bandwidth: the channel's send queue is full")]
    MessageFailureForBandwidth,
    /// Sending now would break the traffic-limit rules.
    #[error("the message would exceed the traffic limit rules")]
    MessageFailureForTrafficLimit,
    /// A participant identifier was empty or longer than 255 bytes.
    #[error("participant identifiers must be 1 to 255 bytes: {0:?}")]
    InvalidParticipantId(String),
    /// More than 64 participants were given.
    #[error("{count} participants is more than the limit of {limit}")]
    TooManyParticipants {
        /// How many were given.
        count: usize,
        /// The limit (64).
        limit: usize,
    },
    /// The call has as many senders open as the server admits (it says how
    /// many when the call is joined); close one first.
    #[error("the call has {limit} senders open, as many as the server admits")]
    TooManySenders {
        /// The server's limit.
        limit: usize,
    },
}

/// Limits and timers of the DataChannel feature. `Default` gives the values
/// below.
///
/// Built with chainable setters named after the fields, each of which says
/// its default; the fields are public for reading:
///
/// ```
/// # use std::time::Duration;
/// # use dcengine::{ChannelConfig, TrafficPolicy};
/// let channel = ChannelConfig::default()
///     .max_message_size(16 * 1024)
///     .receiver_idle_timeout(Duration::from_secs(60))
///     .traffic(TrafficPolicy::unlimited());
/// assert_eq!(channel.max_message_size, 16 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelConfig {
    /// Largest message a sender may send, in bytes; see
    /// [`ChannelConfig::max_message_size()`].
    pub max_message_size: u32,
    /// Silence after which a receiver closes; see
    /// [`ChannelConfig::receiver_idle_timeout()`].
    pub receiver_idle_timeout: Duration,
    /// Silence after which an open sender sends a keep-alive; see
    /// [`ChannelConfig::keepalive_interval()`].
    pub keepalive_interval: Duration,
    /// Bytes a sender may have queued; see
    /// [`ChannelConfig::sender_queue_bytes()`].
    pub sender_queue_bytes: usize,
    /// Bytes of unread messages a receiver holds; see
    /// [`ChannelConfig::receiver_buffer_bytes()`].
    pub receiver_buffer_bytes: usize,
    /// Where random channel ids come from; see
    /// [`ChannelConfig::random_channel_ids()`].
    pub random_channel_ids: std::ops::RangeInclusive<u16>,
    /// The traffic-limit rules; see [`ChannelConfig::traffic()`].
    pub traffic: TrafficPolicy,
    /// Whether a client adopts a server's stricter traffic rules; see
    /// [`ChannelConfig::follow_server_traffic_rules()`].
    pub follow_server_traffic_rules: bool,
    /// Longest wait before a Lossy message is dropped; see
    /// [`ChannelConfig::lossy_latency_budget()`].
    pub lossy_latency_budget: Duration,
    /// Most receivers a call holds (open, or announced and not yet taken);
    /// see [`ChannelConfig::max_receivers()`].
    pub max_receivers: usize,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_message_size: 32 * 1024,
            receiver_idle_timeout: Duration::from_secs(120),
            keepalive_interval: Duration::from_secs(30),
            sender_queue_bytes: 1024 * 1024,
            receiver_buffer_bytes: 8 * 1024 * 1024,
            random_channel_ids: 1..=u16::MAX,
            traffic: TrafficPolicy::default(),
            follow_server_traffic_rules: true,
            lossy_latency_budget: Duration::from_millis(100),
            max_receivers: 1024,
        }
    }
}

impl ChannelConfig {
    /// Largest message a sender may send, in bytes. Default 32 KiB; at most
    /// 256 KiB (a hub caps a larger value). A client sends at most the
    /// smaller of its own and the server's, and accepts at most its own: a
    /// larger incoming message is dropped (Lossy, counted) or closes its
    /// Durable receiver, which can no longer be lossless.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// A receiver with no message and no keep-alive for this long closes.
    /// Default 2 minutes.
    pub fn receiver_idle_timeout(mut self, timeout: Duration) -> Self {
        self.receiver_idle_timeout = timeout;
        self
    }

    /// An open sender that sent nothing for this long sends a keep-alive, so
    /// its receivers stay open. Default 30 s (a quarter of the idle timeout).
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// Bytes a sender may have queued before Durable sends fail with
    /// [`DataChannelError::MessageFailureForBandwidth`] (Lossy ones are
    /// dropped silently). Each message counts its payload plus 64 bytes, so
    /// the bound holds for tiny messages too. Default 1 MiB.
    pub fn sender_queue_bytes(mut self, bytes: usize) -> Self {
        self.sender_queue_bytes = bytes;
        self
    }

    /// Bytes of unread messages a receiver holds (payload plus 64 bytes
    /// each). Past it, Lossy messages are dropped (counted) and a Durable
    /// receiver closes, since it can no longer be lossless. Default 8 MiB.
    pub fn receiver_buffer_bytes(mut self, bytes: usize) -> Self {
        self.receiver_buffer_bytes = bytes;
        self
    }

    /// Where random channel ids come from (0 is never picked; an empty
    /// range makes random ids fail with
    /// [`DataChannelError::RandomIdNotAvailable`]). Default 1..=65535.
    pub fn random_channel_ids(mut self, ids: std::ops::RangeInclusive<u16>) -> Self {
        self.random_channel_ids = ids;
        self
    }

    /// The traffic-limit rules: checked by `send` on clients, policed by
    /// servers. Default: the concept document's (see [`TrafficPolicy`]). A
    /// server sends its rules with `JoinAccepted`, and a client enforces
    /// the stricter of its own and the server's, rule by rule.
    pub fn traffic(mut self, traffic: TrafficPolicy) -> Self {
        self.traffic = traffic;
        self
    }

    /// Whether a client adopts the server's traffic rules when they are
    /// stricter than its own. Default `true`; `false` only to exercise a
    /// server's policing (the server drops what a client sends over its
    /// rules, closes Durable sessions that go over them and disconnects a
    /// client that keeps at it).
    pub fn follow_server_traffic_rules(mut self, follow: bool) -> Self {
        self.follow_server_traffic_rules = follow;
        self
    }

    /// A Lossy message that would wait longer than this (for shaping
    /// tokens or behind other traffic) is dropped and counted instead.
    /// Default 100 ms.
    pub fn lossy_latency_budget(mut self, budget: Duration) -> Self {
        self.lossy_latency_budget = budget;
        self
    }

    /// Most receivers one call holds: open ones, and announced ones the
    /// application has not taken yet. Each may hold
    /// `receiver_buffer_bytes`, so a server (or a member rotating
    /// sessions) cannot make a client hold more than this many. A sender
    /// announced past it gets no receiver: the server is told (as for a
    /// receiver whose buffer is full) and sends that session no more
    /// (logged, counted). Default 1,024.
    pub fn max_receivers(mut self, max: usize) -> Self {
        self.max_receivers = max;
        self
    }
}

/// Largest configurable message size.
pub(crate) const MAX_MESSAGE_SIZE_LIMIT: u32 = 256 * 1024;

fn check_participants(list: &[ParticipantId]) -> Result<(), DataChannelError> {
    if list.len() > MAX_PARTICIPANTS {
        return Err(DataChannelError::TooManyParticipants {
            count: list.len(),
            limit: MAX_PARTICIPANTS,
        });
    }
    match list
        .iter()
        .find(|p| p.0.is_empty() || p.0.len() > crate::wire::MAX_STR_LEN)
    {
        Some(bad) => Err(DataChannelError::InvalidParticipantId(bad.0.clone())),
        None => Ok(()),
    }
}

/// Seeds a call's random channel-id picker.
pub(crate) fn seed_call(call: &CallShared, seed: u64) {
    shared::lock(&call.control).rng = seed;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_config_setters_set_their_field() {
        let ms = Duration::from_millis;
        let c = ChannelConfig::default()
            .max_message_size(1)
            .receiver_idle_timeout(ms(2))
            .keepalive_interval(ms(3))
            .sender_queue_bytes(4)
            .receiver_buffer_bytes(5)
            .random_channel_ids(6..=7)
            .traffic(TrafficPolicy::unlimited())
            .follow_server_traffic_rules(false)
            .lossy_latency_budget(ms(8))
            .max_receivers(9);
        let expected = ChannelConfig {
            max_message_size: 1,
            receiver_idle_timeout: ms(2),
            keepalive_interval: ms(3),
            sender_queue_bytes: 4,
            receiver_buffer_bytes: 5,
            random_channel_ids: 6..=7,
            traffic: TrafficPolicy::unlimited(),
            follow_server_traffic_rules: false,
            lossy_latency_budget: ms(8),
            max_receivers: 9,
        };
        assert_eq!(c, expected);
    }

    #[test]
    fn sender_options_setters_set_their_field() {
        let o = DataChannelSenderOptions::new()
            .channel_id(9)
            .bitrate_kbps(10)
            .priority(DataChannelPriority::High)
            .reliability(DataChannelReliability::Lossy)
            .participants(["bob", "carol"]);
        let expected = DataChannelSenderOptions {
            channel_id: Some(9),
            bitrate_kbps: 10,
            priority: DataChannelPriority::High,
            reliability: DataChannelReliability::Lossy,
            participants: vec!["bob".into(), "carol".into()],
        };
        assert_eq!(o, expected);
        assert_eq!(o.channel_id(None).channel_id, None);
        assert_eq!(
            DataChannelSenderOptions::new(),
            DataChannelSenderOptions::default()
        );
    }
}
