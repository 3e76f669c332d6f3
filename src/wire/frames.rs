//! The frames. Each one's byte layout is drawn above its type; the bit ruler
//! counts bits, one row is 32 bits, `...` is a variable-size field.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{
    Codec, DecodeError, MAX_PARTICIPANTS, MAX_PAYLOAD_LEN, MAX_TOKEN_LEN, ShortStr, VarInt,
    bytes_len, expect_type, get_bytes, get_flags, get_u8, get_u16, get_u32, put_bytes,
};

/// Frame type bytes (the first byte of every frame).
pub mod frame_type {
    /// [`super::Join`]
    pub const JOIN: u8 = 0x01;
    /// [`super::JoinAccepted`]
    pub const JOIN_ACCEPTED: u8 = 0x02;
    /// [`super::JoinRejected`]
    pub const JOIN_REJECTED: u8 = 0x03;
    /// [`super::Leave`]
    pub const LEAVE: u8 = 0x04;
    /// [`super::ParticipantJoined`]
    pub const PARTICIPANT_JOINED: u8 = 0x05;
    /// [`super::ParticipantLeft`]
    pub const PARTICIPANT_LEFT: u8 = 0x06;
    /// [`super::SenderOpened`]
    pub const SENDER_OPENED: u8 = 0x07;
    /// [`super::SenderClosed`]
    pub const SENDER_CLOSED: u8 = 0x08;
    /// [`super::SetParticipants`]
    pub const SET_PARTICIPANTS: u8 = 0x09;
    /// [`super::Data`]
    pub const DATA: u8 = 0x0a;
    /// [`super::ErrorFrame`]
    pub const ERROR: u8 = 0x0b;
    /// [`super::KeepAlive`]
    pub const KEEP_ALIVE: u8 = 0x0c;
    /// [`super::FlowControl`]
    pub const FLOW_CONTROL: u8 = 0x0d;
    /// [`super::Batch`]
    pub const BATCH: u8 = 0x0f;
}

/// Flag bit: a [`MemberId`] naming the original sender follows the fixed
/// fields (set by the server on the server-to-receiver leg, never by clients).
pub const FLAG_ORIGIN: u8 = 0x01;
/// Flag bit (on [`Data`] only): the participant-list epoch follows.
pub const FLAG_EPOCH: u8 = 0x02;
/// Flag bit (on [`FlowControl`] only): the sender is paused (clear: it may
/// go on).
pub const FLAG_PAUSED: u8 = 0x01;

/// A participant's number within its call, assigned by the server when the
/// participant joins and announced to the others (`ParticipantJoined`).
/// Frames name participants by this number rather than by their (long)
/// identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct MemberId(pub u32);

impl std::fmt::Display for MemberId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Delivery class of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum Reliability {
    /// Unordered; may drop silently.
    Lossy = 0,
    /// Lossless and ordered; failure is an error.
    #[default]
    Durable = 1,
}

impl Reliability {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        match get_u8(buf)? {
            0 => Ok(Self::Lossy),
            1 => Ok(Self::Durable),
            v => Err(DecodeError::InvalidValue {
                what: "reliability",
                value: v.into(),
            }),
        }
    }
}

/// Scheduling class of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
#[repr(u8)]
pub enum Priority {
    /// Served after High.
    #[default]
    Normal = 0,
    /// Served before Normal.
    High = 1,
}

impl Priority {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        match get_u8(buf)? {
            0 => Ok(Self::Normal),
            1 => Ok(Self::High),
            v => Err(DecodeError::InvalidValue {
                what: "priority",
                value: v.into(),
            }),
        }
    }
}

/// Why a sender session ended (in [`SenderClosed`]). Unknown values are kept
/// as they are so newer peers can add reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct CloseReason(pub u8);

impl CloseReason {
    /// The sender called `close()`.
    pub const CLOSED: Self = Self(0);
    /// A new sender on the same channel id replaced this session.
    pub const REPLACED: Self = Self(1);
    /// The sending participant left the call.
    pub const LEFT: Self = Self(2);
    /// The sender's association was lost.
    pub const ASSOCIATION_LOST: Self = Self(4);
    /// The server closed a Durable session that went over the traffic-limit
    /// rules (its excess would have left a hole in an ordered, lossless
    /// stream).
    pub const TRAFFIC_LIMIT: Self = Self(5);
    /// Receiver → server: the receiver of this session could not hold a
    /// Durable message (its buffer was full) and closed; the server stops
    /// sending it the session.
    pub const RECEIVER_OVERFLOW: Self = Self(6);
    /// Server → sender: the member has as many senders open as the server
    /// admits (`JoinAccepted.max_senders`); this one is refused.
    pub const TOO_MANY_SENDERS: Self = Self(7);
}

/// An error or rejection code, on the wire in `JoinRejected`, `Leave` and
/// `Error` frames (a [`JoinRejection`](crate::JoinRejection) carries one).
/// Unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// No error (a normal leave).
    pub const NONE: Self = Self(0);
    /// The peer speaks a protocol version this build does not.
    pub const VERSION_MISMATCH: Self = Self(1);
    /// The join token did not verify.
    pub const BAD_TOKEN: Self = Self(2);
    /// The join token has expired.
    pub const TOKEN_EXPIRED: Self = Self(3);
    /// A frame other than `Join` arrived before the join completed.
    pub const NOT_JOINED: Self = Self(4);
    /// A frame could not be decoded or was not allowed in this direction.
    pub const PROTOCOL_VIOLATION: Self = Self(5);
    /// The peer exceeded the traffic-limit rules.
    pub const TRAFFIC_LIMIT: Self = Self(6);
    /// The peer could not keep up with what it was sent.
    pub const SLOW_CONSUMER: Self = Self(7);
    /// The server is shutting down.
    pub const SHUTTING_DOWN: Self = Self(8);
    /// Any other failure.
    pub const INTERNAL: Self = Self(9);
    /// The call has as many members, or the participant as many
    /// endpoints in it, as the server admits.
    pub const CALL_FULL: Self = Self(10);
}

/// A list of at most [`MAX_PARTICIPANTS`] participant identifiers; empty
/// means broadcast. The server resolves identifiers to members when it
/// routes, so a listed participant who joins later, or joins from two
/// endpoints, is reached too.
///
/// ```text
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Count (8)    |  Count × ( Length (8) | UTF-8 id ) ...        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantList(Vec<ShortStr>);

/// More than [`MAX_PARTICIPANTS`] participants were given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} participants is more than the limit of {MAX_PARTICIPANTS}")]
pub struct TooManyParticipants(pub usize);

impl ParticipantList {
    /// The identifiers.
    pub fn ids(&self) -> &[ShortStr] {
        &self.0
    }
}

impl TryFrom<Vec<ShortStr>> for ParticipantList {
    type Error = TooManyParticipants;
    fn try_from(v: Vec<ShortStr>) -> Result<Self, TooManyParticipants> {
        if v.len() > MAX_PARTICIPANTS {
            Err(TooManyParticipants(v.len()))
        } else {
            Ok(Self(v))
        }
    }
}

impl Codec for ParticipantList {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let count = usize::from(get_u8(buf)?);
        if count > MAX_PARTICIPANTS {
            return Err(DecodeError::TooLong {
                what: "participant count",
                len: count as u64,
                max: MAX_PARTICIPANTS as u64,
            });
        }
        // Each id takes at least its length byte.
        if buf.remaining() < count {
            return Err(DecodeError::UnexpectedEnd);
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            ids.push(ShortStr::decode(buf)?);
        }
        Ok(Self(ids))
    }

    fn encode(&self, buf: &mut impl BufMut) {
        // The constructors keep the count within MAX_PARTICIPANTS.
        buf.put_u8(self.0.len() as u8);
        for id in &self.0 {
            id.encode(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        1 + self.0.iter().map(Codec::encoded_len).sum::<usize>()
    }
}

#[cfg(feature = "_internal")]
impl<'a> arbitrary::Arbitrary<'a> for ParticipantList {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut v = Vec::<ShortStr>::arbitrary(u)?;
        v.truncate(MAX_PARTICIPANTS);
        Ok(Self(v))
    }
}

#[cfg(feature = "_internal")]
fn arbitrary_bytes(u: &mut arbitrary::Unstructured<'_>, max: usize) -> arbitrary::Result<Bytes> {
    let len = u.int_in_range(0..=max.min(u.len()))?;
    Ok(Bytes::copy_from_slice(u.bytes(len)?))
}

#[cfg(feature = "_internal")]
fn arbitrary_token(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Bytes> {
    arbitrary_bytes(u, MAX_TOKEN_LEN)
}

#[cfg(feature = "_internal")]
fn arbitrary_payload(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Bytes> {
    arbitrary_bytes(u, MAX_PAYLOAD_LEN)
}

fn get_member(buf: &mut impl Buf) -> Result<MemberId, DecodeError> {
    get_u32(buf).map(MemberId)
}

/// Reads the optional origin that follows the fixed fields when
/// [`FLAG_ORIGIN`] is set.
fn get_origin(buf: &mut impl Buf, flags: u8) -> Result<Option<MemberId>, DecodeError> {
    if flags & FLAG_ORIGIN != 0 {
        get_member(buf).map(Some)
    } else {
        Ok(None)
    }
}

fn origin_flag(origin: Option<MemberId>) -> u8 {
    if origin.is_some() { FLAG_ORIGIN } else { 0 }
}

fn put_origin(buf: &mut impl BufMut, origin: Option<MemberId>) {
    if let Some(m) = origin {
        buf.put_u32(m.0);
    }
}

fn origin_len(origin: Option<MemberId>) -> usize {
    if origin.is_some() { 4 } else { 0 }
}

/// A client asks to join a call (client → server, first frame on an
/// association).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x01  |     Protocol version (16)     | Call id len   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Call id (UTF-8, ≤ 255 bytes) ...                             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Particip. len |  Participant id (UTF-8, ≤ 255 bytes) ...      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Token length (varint, ≤ 4096)  |  Token ...                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct Join {
    /// The protocol version the client speaks ([`super::PROTOCOL_VERSION`]).
    pub version: u16,
    /// Which call to join.
    pub call_id: ShortStr,
    /// Who the client says it is; the token must prove it.
    pub participant_id: ShortStr,
    /// Proof of the right to join (opaque to the wire).
    #[cfg_attr(feature = "_internal", arbitrary(with = arbitrary_token))]
    pub token: Bytes,
}

impl Codec for Join {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::JOIN)?;
        Ok(Self {
            version: get_u16(buf)?,
            call_id: ShortStr::decode(buf)?,
            participant_id: ShortStr::decode(buf)?,
            token: get_bytes(buf, "token length", MAX_TOKEN_LEN)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        debug_assert!(self.token.len() <= MAX_TOKEN_LEN, "token too long");
        buf.put_u8(frame_type::JOIN);
        buf.put_u16(self.version);
        self.call_id.encode(buf);
        self.participant_id.encode(buf);
        put_bytes(buf, &self.token);
    }

    fn encoded_len(&self) -> usize {
        3 + self.call_id.encoded_len() + self.participant_id.encoded_len() + bytes_len(&self.token)
    }
}

/// The server accepts a join (server → client), with the limits it
/// enforces so the client can enforce the same ones first.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x02  |     Protocol version (16)     |  Member id …  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Member id (32, the client's own)           | Max msg size …|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Max message size (32, bytes)               | Idle timeout …|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Receiver idle timeout (32, ms)             | Traffic rules…|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Traffic rules (8 × 32, see TrafficRules)                   …
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … | Max senders (32, open senders a member may have)         …
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct JoinAccepted {
    /// The protocol version the server speaks.
    pub version: u16,
    /// The number the server gave this participant within the call.
    pub member: MemberId,
    /// Largest message the server accepts, in bytes.
    pub max_message_size: u32,
    /// After how long without messages a receiver closes, in milliseconds.
    pub idle_timeout_ms: u32,
    /// The traffic-limit rules the server polices.
    pub traffic: TrafficRules,
    /// Most senders the member may have open at once (0: no limit).
    pub max_senders: u32,
}

impl Codec for JoinAccepted {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::JOIN_ACCEPTED)?;
        Ok(Self {
            version: get_u16(buf)?,
            member: get_member(buf)?,
            max_message_size: get_u32(buf)?,
            idle_timeout_ms: get_u32(buf)?,
            traffic: TrafficRules {
                durable_kbps: get_u32(buf)?,
                lossy_kbps: get_u32(buf)?,
                high_lossy_kbps: get_u32(buf)?,
                broadcast_packets_per_second: get_u32(buf)?,
                packet_bytes: get_u32(buf)?,
                burst_ms: get_u32(buf)?,
                member_kbps: get_u32(buf)?,
                member_messages_per_second: get_u32(buf)?,
            },
            max_senders: get_u32(buf)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::JOIN_ACCEPTED);
        buf.put_u16(self.version);
        buf.put_u32(self.member.0);
        buf.put_u32(self.max_message_size);
        buf.put_u32(self.idle_timeout_ms);
        let t = &self.traffic;
        for v in [
            t.durable_kbps,
            t.lossy_kbps,
            t.high_lossy_kbps,
            t.broadcast_packets_per_second,
            t.packet_bytes,
            t.burst_ms,
            t.member_kbps,
            t.member_messages_per_second,
        ] {
            buf.put_u32(v);
        }
        buf.put_u32(self.max_senders);
    }

    fn encoded_len(&self) -> usize {
        15 + 8 * 4 + 4
    }
}

/// The traffic-limit rules a server polices, as [`JoinAccepted`] carries
/// them: eight 32-bit fields in this order. A rate of 0 means no such rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct TrafficRules {
    /// Durable senders, kbps (0: no rule).
    pub durable_kbps: u32,
    /// Normal-priority Lossy senders, kbps (0: no rule).
    pub lossy_kbps: u32,
    /// High-priority Lossy senders, kbps (0: no rule).
    pub high_lossy_kbps: u32,
    /// Senders to the whole call, packets a second (0: no rule).
    pub broadcast_packets_per_second: u32,
    /// Bytes of a message that count as one packet.
    pub packet_bytes: u32,
    /// How much of a second's allowance may go at once, in milliseconds.
    pub burst_ms: u32,
    /// One member's senders together, kbps (0: no rule).
    pub member_kbps: u32,
    /// One member's messages together, a second (0: no rule).
    pub member_messages_per_second: u32,
}

/// Implements [`Codec`] for a frame whose body is `code (16) | reason`.
macro_rules! code_reason_frame {
    ($name:ident, $ty:expr) => {
        impl Codec for $name {
            fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
                expect_type(buf, $ty)?;
                Ok(Self {
                    code: ErrorCode(get_u16(buf)?),
                    reason: ShortStr::decode(buf)?,
                })
            }

            fn encode(&self, buf: &mut impl BufMut) {
                buf.put_u8($ty);
                buf.put_u16(self.code.0);
                self.reason.encode(buf);
            }

            fn encoded_len(&self) -> usize {
                3 + self.reason.encoded_len()
            }
        }
    };
}

/// The server rejects a join; it closes the association after sending this.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x03  |         Error code (16)       |  Reason len   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Reason (UTF-8, ≤ 255 bytes) ...                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct JoinRejected {
    /// Why, as a code.
    pub code: ErrorCode,
    /// Why, for people.
    pub reason: ShortStr,
}
code_reason_frame!(JoinRejected, frame_type::JOIN_REJECTED);

/// A participant leaves the call (either direction: a client leaving, or the
/// server removing it).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x04  |         Error code (16)       |  Reason len   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Reason (UTF-8, ≤ 255 bytes) ...                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct Leave {
    /// [`ErrorCode::NONE`] for a normal leave.
    pub code: ErrorCode,
    /// Why, for people.
    pub reason: ShortStr,
}
code_reason_frame!(Leave, frame_type::LEAVE);

/// An error report (either direction); the association stays open unless
/// the sender closes it.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x0b  |         Error code (16)       |  Reason len   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Reason (UTF-8, ≤ 255 bytes) ...                              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct ErrorFrame {
    /// What went wrong, as a code.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub reason: ShortStr,
}
code_reason_frame!(ErrorFrame, frame_type::ERROR);

/// Roster: a participant joined the call (server → clients; also sent for
/// every present participant right after [`JoinAccepted`]).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x05  |              Member id (32) ...               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Member id  | Particip. len |  Participant id (UTF-8) ...   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct ParticipantJoined {
    /// The member's number in the call.
    pub member: MemberId,
    /// The member's (authenticated) identifier.
    pub participant_id: ShortStr,
}

impl Codec for ParticipantJoined {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::PARTICIPANT_JOINED)?;
        Ok(Self {
            member: get_member(buf)?,
            participant_id: ShortStr::decode(buf)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::PARTICIPANT_JOINED);
        buf.put_u32(self.member.0);
        self.participant_id.encode(buf);
    }

    fn encoded_len(&self) -> usize {
        5 + self.participant_id.encoded_len()
    }
}

/// Roster: a participant left the call (server → clients).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x06  |              Member id (32) ...               |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Member id  |
/// +-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct ParticipantLeft {
    /// The member who left.
    pub member: MemberId,
}

impl Codec for ParticipantLeft {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::PARTICIPANT_LEFT)?;
        Ok(Self {
            member: get_member(buf)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::PARTICIPANT_LEFT);
        buf.put_u32(self.member.0);
    }

    fn encoded_len(&self) -> usize {
        5
    }
}

/// A sender session opened on a channel (client → server; server →
/// receivers with the origin set). Announces a new receiver at each target.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x07  |  Flags (8)    |        Channel id (16)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Session (32)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Reliability  |   Priority    |     Bitrate (32, kbps) ...    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Bitrate                    |  [Origin member id (32)] ...  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Flags: 0x01 ORIGIN (origin present); other bits reserved (0).
///   Reliability: 0 Lossy, 1 Durable. Priority: 0 Normal, 1 High.
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct SenderOpened {
    /// The channel id.
    pub channel: u16,
    /// The sender's session number on this channel (new per sender object).
    pub session: u32,
    /// Delivery class.
    pub reliability: Reliability,
    /// Scheduling class.
    pub priority: Priority,
    /// The sender's declared bitrate.
    pub bitrate_kbps: u32,
    /// The sending member (server → receiver leg only).
    pub origin: Option<MemberId>,
}

impl Codec for SenderOpened {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::SENDER_OPENED)?;
        let flags = get_flags(buf, FLAG_ORIGIN)?;
        Ok(Self {
            channel: get_u16(buf)?,
            session: get_u32(buf)?,
            reliability: Reliability::decode(buf)?,
            priority: Priority::decode(buf)?,
            bitrate_kbps: get_u32(buf)?,
            origin: get_origin(buf, flags)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::SENDER_OPENED);
        buf.put_u8(origin_flag(self.origin));
        buf.put_u16(self.channel);
        buf.put_u32(self.session);
        buf.put_u8(self.reliability as u8);
        buf.put_u8(self.priority as u8);
        buf.put_u32(self.bitrate_kbps);
        put_origin(buf, self.origin);
    }

    fn encoded_len(&self) -> usize {
        14 + origin_len(self.origin)
    }
}

/// A sender session closed (client → server; server → receivers with the
/// origin set). Its receivers close.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x08  |  Flags (8)    |        Channel id (16)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Session (32)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Reason (8)   |  [Origin member id (32)] ...                  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Flags: 0x01 ORIGIN; other bits reserved (0).
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct SenderClosed {
    /// The channel id.
    pub channel: u16,
    /// The session that closed.
    pub session: u32,
    /// Why.
    pub reason: CloseReason,
    /// The sending member: set on the server → receiver leg, and when a
    /// receiver tells the server it closed its receiver of that member's
    /// session ([`CloseReason::RECEIVER_OVERFLOW`]).
    pub origin: Option<MemberId>,
}

impl Codec for SenderClosed {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::SENDER_CLOSED)?;
        let flags = get_flags(buf, FLAG_ORIGIN)?;
        Ok(Self {
            channel: get_u16(buf)?,
            session: get_u32(buf)?,
            reason: CloseReason(get_u8(buf)?),
            origin: get_origin(buf, flags)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::SENDER_CLOSED);
        buf.put_u8(origin_flag(self.origin));
        buf.put_u16(self.channel);
        buf.put_u32(self.session);
        buf.put_u8(self.reason.0);
        put_origin(buf, self.origin);
    }

    fn encoded_len(&self) -> usize {
        9 + origin_len(self.origin)
    }
}

/// A sender changes who its next messages go to (client → server).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x09  |        Channel id (16)        |  Epoch (16) … |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  … Epoch      |  Count (8)    |  Count × (Len (8) | UTF-8 id) |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Count ≤ 64 participant identifiers; 0 = broadcast to everyone
///   else in the call.
/// ```
///
/// The epoch counts the sender's list changes; [`Data`] frames that may
/// overtake this frame (Lossy ones) carry the epoch they were sent under.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct SetParticipants {
    /// The channel id.
    pub channel: u16,
    /// Which list this is (wrapping counter).
    pub epoch: u16,
    /// The targets; empty = broadcast.
    pub participants: ParticipantList,
}

impl Codec for SetParticipants {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::SET_PARTICIPANTS)?;
        Ok(Self {
            channel: get_u16(buf)?,
            epoch: get_u16(buf)?,
            participants: ParticipantList::decode(buf)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::SET_PARTICIPANTS);
        buf.put_u16(self.channel);
        buf.put_u16(self.epoch);
        self.participants.encode(buf);
    }

    fn encoded_len(&self) -> usize {
        5 + self.participants.encoded_len()
    }
}

/// One application message on a channel.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x0a  |  Flags (8)    |        Channel id (16)        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Session (32)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                     Sequence number (32)                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               [Origin member id (32), if ORIGIN]              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  [Epoch (16), if EPOCH]       |  Length (varint, ≤ 256 KiB)...|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Payload (Length bytes) ...                                   |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Flags: 0x01 ORIGIN, 0x02 EPOCH; other bits reserved (0).
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct Data {
    /// The channel id.
    pub channel: u16,
    /// The sender session this message belongs to.
    pub session: u32,
    /// Per sender and channel, counting from 1 (wrapping).
    pub seq: u32,
    /// The sending member (server → receiver leg only).
    pub origin: Option<MemberId>,
    /// The participant-list epoch the message was sent under.
    pub epoch: Option<u16>,
    /// The message.
    #[cfg_attr(feature = "_internal", arbitrary(with = arbitrary_payload))]
    pub payload: Bytes,
}

impl Data {
    /// Bytes of framing around a payload of `payload_len` bytes.
    pub fn overhead(origin: bool, epoch: bool, payload_len: usize) -> usize {
        12 + if origin { 4 } else { 0 }
            + if epoch { 2 } else { 0 }
            + VarInt::from_len(payload_len).encoded_len()
    }
}

impl Codec for Data {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::DATA)?;
        let flags = get_flags(buf, FLAG_ORIGIN | FLAG_EPOCH)?;
        let channel = get_u16(buf)?;
        let session = get_u32(buf)?;
        let seq = get_u32(buf)?;
        let origin = get_origin(buf, flags)?;
        let epoch = if flags & FLAG_EPOCH != 0 {
            Some(get_u16(buf)?)
        } else {
            None
        };
        Ok(Self {
            channel,
            session,
            seq,
            origin,
            epoch,
            payload: get_bytes(buf, "payload length", MAX_PAYLOAD_LEN)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        debug_assert!(self.payload.len() <= MAX_PAYLOAD_LEN, "payload too long");
        let epoch_flag = if self.epoch.is_some() { FLAG_EPOCH } else { 0 };
        buf.put_u8(frame_type::DATA);
        buf.put_u8(origin_flag(self.origin) | epoch_flag);
        buf.put_u16(self.channel);
        buf.put_u32(self.session);
        buf.put_u32(self.seq);
        put_origin(buf, self.origin);
        if let Some(e) = self.epoch {
            buf.put_u16(e);
        }
        put_bytes(buf, &self.payload);
    }

    fn encoded_len(&self) -> usize {
        Self::overhead(
            self.origin.is_some(),
            self.epoch.is_some(),
            self.payload.len(),
        ) + self.payload.len()
    }
}

/// Keeps a channel's receivers (or, with channel 0, the association) alive
/// while its sender is idle.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x0c  |  Flags (8)    |  Channel id (16, 0 = assoc.)  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Session (32)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |               [Origin member id (32), if ORIGIN]              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Flags: 0x01 ORIGIN; other bits reserved (0).
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct KeepAlive {
    /// The channel id, or 0 for the association itself.
    pub channel: u16,
    /// The sender session (0 with channel 0).
    pub session: u32,
    /// The sending member (server → receiver leg only).
    pub origin: Option<MemberId>,
}

impl KeepAlive {
    /// The association-level keep-alive (channel 0, session 0).
    pub const ASSOCIATION: Self = Self {
        channel: 0,
        session: 0,
        origin: None,
    };
}

impl Codec for KeepAlive {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::KEEP_ALIVE)?;
        let flags = get_flags(buf, FLAG_ORIGIN)?;
        Ok(Self {
            channel: get_u16(buf)?,
            session: get_u32(buf)?,
            origin: get_origin(buf, flags)?,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::KEEP_ALIVE);
        buf.put_u8(origin_flag(self.origin));
        buf.put_u16(self.channel);
        buf.put_u32(self.session);
        put_origin(buf, self.origin);
    }

    fn encoded_len(&self) -> usize {
        8 + origin_len(self.origin)
    }
}

/// Pauses or resumes a Durable sender (server → the sending client): a
/// receiver of it has more of its data waiting at the server than the
/// server's bound (`FLAG_PAUSED` set), or none does any more (clear).
/// While paused, the client sends none of that sender's data (its control
/// frames still go); the application sees its `buffered_amount` grow and
/// `writable()` wait. A server tolerates a bounded overrun after a pause
/// (what was already on its way), and closes the sender past it.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x0d  |  Flags (8)    |  Channel id (16)              |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         Session (32)                          |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
///   Flags: 0x01 PAUSED; other bits reserved (0).
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct FlowControl {
    /// The sender's channel id.
    pub channel: u16,
    /// The sender's session.
    pub session: u32,
    /// Paused (`true`) or free to send (`false`).
    pub paused: bool,
}

impl Codec for FlowControl {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::FLOW_CONTROL)?;
        let flags = get_flags(buf, FLAG_PAUSED)?;
        Ok(Self {
            channel: get_u16(buf)?,
            session: get_u32(buf)?,
            paused: flags & FLAG_PAUSED != 0,
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::FLOW_CONTROL);
        buf.put_u8(if self.paused { FLAG_PAUSED } else { 0 });
        buf.put_u16(self.channel);
        buf.put_u32(self.session);
    }

    fn encoded_len(&self) -> usize {
        8
    }
}

/// Any one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
#[allow(missing_docs)] // The variants are the frames of the same names.
pub enum Frame {
    Join(Join),
    JoinAccepted(JoinAccepted),
    JoinRejected(JoinRejected),
    Leave(Leave),
    ParticipantJoined(ParticipantJoined),
    ParticipantLeft(ParticipantLeft),
    SenderOpened(SenderOpened),
    SenderClosed(SenderClosed),
    SetParticipants(SetParticipants),
    Data(Data),
    Error(ErrorFrame),
    KeepAlive(KeepAlive),
    FlowControl(FlowControl),
}

impl Frame {
    /// The frame type's name, for logs and errors (cheap: no formatting of
    /// the contents).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Join(_) => "Join",
            Self::JoinAccepted(_) => "JoinAccepted",
            Self::JoinRejected(_) => "JoinRejected",
            Self::Leave(_) => "Leave",
            Self::ParticipantJoined(_) => "ParticipantJoined",
            Self::ParticipantLeft(_) => "ParticipantLeft",
            Self::SenderOpened(_) => "SenderOpened",
            Self::SenderClosed(_) => "SenderClosed",
            Self::SetParticipants(_) => "SetParticipants",
            Self::Data(_) => "Data",
            Self::Error(_) => "Error",
            Self::KeepAlive(_) => "KeepAlive",
            Self::FlowControl(_) => "FlowControl",
        }
    }
}

/// Calls `$body` with `$f` bound to the frame inside any [`Frame`] variant.
macro_rules! each_frame {
    ($frame:expr, $f:ident => $body:expr) => {
        match $frame {
            Frame::Join($f) => $body,
            Frame::JoinAccepted($f) => $body,
            Frame::JoinRejected($f) => $body,
            Frame::Leave($f) => $body,
            Frame::ParticipantJoined($f) => $body,
            Frame::ParticipantLeft($f) => $body,
            Frame::SenderOpened($f) => $body,
            Frame::SenderClosed($f) => $body,
            Frame::SetParticipants($f) => $body,
            Frame::Data($f) => $body,
            Frame::Error($f) => $body,
            Frame::KeepAlive($f) => $body,
            Frame::FlowControl($f) => $body,
        }
    };
}

impl Codec for Frame {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        use frame_type as t;
        let ty = *buf.chunk().first().ok_or(DecodeError::UnexpectedEnd)?;
        Ok(match ty {
            t::JOIN => Self::Join(Join::decode(buf)?),
            t::JOIN_ACCEPTED => Self::JoinAccepted(JoinAccepted::decode(buf)?),
            t::JOIN_REJECTED => Self::JoinRejected(JoinRejected::decode(buf)?),
            t::LEAVE => Self::Leave(Leave::decode(buf)?),
            t::PARTICIPANT_JOINED => Self::ParticipantJoined(ParticipantJoined::decode(buf)?),
            t::PARTICIPANT_LEFT => Self::ParticipantLeft(ParticipantLeft::decode(buf)?),
            t::SENDER_OPENED => Self::SenderOpened(SenderOpened::decode(buf)?),
            t::SENDER_CLOSED => Self::SenderClosed(SenderClosed::decode(buf)?),
            t::SET_PARTICIPANTS => Self::SetParticipants(SetParticipants::decode(buf)?),
            t::DATA => Self::Data(Data::decode(buf)?),
            t::ERROR => Self::Error(ErrorFrame::decode(buf)?),
            t::KEEP_ALIVE => Self::KeepAlive(KeepAlive::decode(buf)?),
            t::FLOW_CONTROL => Self::FlowControl(FlowControl::decode(buf)?),
            t::BATCH => return Err(DecodeError::NestedBatch),
            other => return Err(DecodeError::UnknownFrameType(other)),
        })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        each_frame!(self, f => f.encode(buf))
    }

    fn encoded_len(&self) -> usize {
        each_frame!(self, f => f.encoded_len())
    }
}

/// Many frames packed into one SCTP message.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Type = 0x0f  |  Count (varint) ...  |  Frame 1 ...           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Frame 2 ... Frame Count (each self-delimiting, never a batch)|
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct Batch {
    /// The frames, in order.
    pub frames: Vec<Frame>,
}

/// The shortest possible frame (a [`JoinRejected`], [`Leave`] or
/// [`ErrorFrame`] with an empty reason: type, code, reason length), used to
/// bound counts.
const MIN_FRAME_LEN: usize = 4;

impl Codec for Batch {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        expect_type(buf, frame_type::BATCH)?;
        let count = VarInt::decode(buf)?.into_inner();
        let max = (buf.remaining() / MIN_FRAME_LEN) as u64;
        if count > max {
            return Err(DecodeError::TooLong {
                what: "batch count",
                len: count,
                max,
            });
        }
        // `count <= remaining / 4`, so it fits in usize and the reservation
        // is justified by the input.
        let mut frames = Vec::with_capacity(count as usize);
        for _ in 0..count {
            frames.push(Frame::decode(buf)?);
        }
        Ok(Self { frames })
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(frame_type::BATCH);
        VarInt::from_len(self.frames.len()).encode(buf);
        for f in &self.frames {
            f.encode(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        1 + VarInt::from_len(self.frames.len()).encoded_len()
            + self.frames.iter().map(Codec::encoded_len).sum::<usize>()
    }
}

impl Batch {
    /// Bytes a batch holding `count` frames of `frames_len` bytes in all takes.
    pub fn len_with(count: usize, frames_len: usize) -> usize {
        1 + VarInt::from_len(count).encoded_len() + frames_len
    }

    /// The encoding of a batch of frames that are already encoded, each
    /// the encoding of one frame (never a batch), without decoding them: a
    /// server fanning one encoded frame out to many members packs it into
    /// each member's batch by copying its bytes.
    pub fn concat(frames: &[Bytes]) -> Bytes {
        let len = frames.iter().map(Bytes::len).sum();
        let mut out = BytesMut::with_capacity(Self::len_with(frames.len(), len));
        out.put_u8(frame_type::BATCH);
        VarInt::from_len(frames.len()).encode(&mut out);
        for f in frames {
            out.extend_from_slice(f);
        }
        out.freeze()
    }
}

/// What one SCTP user message holds: one frame, or a batch of frames.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub enum Message {
    /// A single frame.
    Frame(Frame),
    /// Several frames.
    Batch(Batch),
}

impl Message {
    /// The frames, in order.
    pub fn into_frames(self) -> impl Iterator<Item = Frame> {
        let v = match self {
            Self::Frame(f) => vec![f],
            Self::Batch(b) => b.frames,
        };
        v.into_iter()
    }
}

impl Codec for Message {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        match buf.chunk().first() {
            Some(&frame_type::BATCH) => Batch::decode(buf).map(Self::Batch),
            _ => Frame::decode(buf).map(Self::Frame),
        }
    }

    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::Frame(f) => f.encode(buf),
            Self::Batch(b) => b.encode(buf),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Frame(f) => f.encoded_len(),
            Self::Batch(b) => b.encoded_len(),
        }
    }
}

macro_rules! into_frame {
    ($($name:ident => $variant:ident),* $(,)?) => {$(
        impl From<$name> for Frame {
            fn from(f: $name) -> Self {
                Frame::$variant(f)
            }
        }
    )*};
}

into_frame!(
    Join => Join,
    JoinAccepted => JoinAccepted,
    JoinRejected => JoinRejected,
    Leave => Leave,
    ParticipantJoined => ParticipantJoined,
    ParticipantLeft => ParticipantLeft,
    SenderOpened => SenderOpened,
    SenderClosed => SenderClosed,
    SetParticipants => SetParticipants,
    Data => Data,
    ErrorFrame => Error,
    KeepAlive => KeepAlive,
    FlowControl => FlowControl,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::{encode_checked, roundtrip};

    fn s(v: &str) -> ShortStr {
        ShortStr::try_from(v).expect("short")
    }

    pub(crate) fn samples() -> Vec<Frame> {
        vec![
            Join {
                version: 1,
                call_id: s("call-1"),
                participant_id: s("8:acs:alice"),
                token: Bytes::from_static(b"tok"),
            }
            .into(),
            JoinAccepted {
                version: 1,
                member: MemberId(7),
                max_message_size: 32768,
                idle_timeout_ms: 120_000,
                traffic: TrafficRules {
                    durable_kbps: 64,
                    lossy_kbps: 512,
                    high_lossy_kbps: 200,
                    broadcast_packets_per_second: 80,
                    packet_bytes: 1200,
                    burst_ms: 1000,
                    member_kbps: 2048,
                    member_messages_per_second: 2000,
                },
                max_senders: 1024,
            }
            .into(),
            JoinRejected {
                code: ErrorCode::BAD_TOKEN,
                reason: s("bad token"),
            }
            .into(),
            Leave {
                code: ErrorCode::NONE,
                reason: s(""),
            }
            .into(),
            ParticipantJoined {
                member: MemberId(9),
                participant_id: s("bob"),
            }
            .into(),
            ParticipantLeft {
                member: MemberId(9),
            }
            .into(),
            SenderOpened {
                channel: 10000,
                session: 3,
                reliability: Reliability::Lossy,
                priority: Priority::High,
                bitrate_kbps: 32,
                origin: Some(MemberId(1)),
            }
            .into(),
            SenderClosed {
                channel: 10000,
                session: 3,
                reason: CloseReason::REPLACED,
                origin: None,
            }
            .into(),
            SetParticipants {
                channel: 1000,
                epoch: 2,
                participants: vec![s("alice"), s("bob")].try_into().expect("≤ 64"),
            }
            .into(),
            Data {
                channel: 1000,
                session: 1,
                seq: 42,
                origin: Some(MemberId(5)),
                epoch: Some(2),
                payload: Bytes::from(vec![0x5a; 300]),
            }
            .into(),
            Data {
                channel: 1,
                session: 1,
                seq: u32::MAX,
                origin: None,
                epoch: None,
                payload: Bytes::new(),
            }
            .into(),
            ErrorFrame {
                code: ErrorCode::TRAFFIC_LIMIT,
                reason: s("slow down"),
            }
            .into(),
            KeepAlive::ASSOCIATION.into(),
            FlowControl {
                channel: 7,
                session: 9,
                paused: true,
            }
            .into(),
            FlowControl {
                channel: 65535,
                session: u32::MAX,
                paused: false,
            }
            .into(),
        ]
    }

    #[test]
    fn every_sample_roundtrips() {
        for f in samples() {
            roundtrip(&f);
            roundtrip(&Message::Frame(f));
        }
        roundtrip(&Batch { frames: samples() });
        roundtrip(&Message::Batch(Batch::default()));
    }

    #[test]
    fn data_layout_matches_the_diagram() {
        let d = Data {
            channel: 0x1234,
            session: 0x0102_0304,
            seq: 0x0a0b_0c0d,
            origin: Some(MemberId(0x1122_3344)),
            epoch: Some(0x5566),
            payload: Bytes::from_static(b"hi"),
        };
        assert_eq!(
            encode_checked(&d),
            [
                0x0a, 0x03, 0x12, 0x34, 1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 0x11, 0x22, 0x33, 0x44,
                0x55, 0x66, 2, b'h', b'i'
            ]
        );
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        assert_eq!(
            Frame::decode_exact(&[0x7fu8][..]),
            Err(DecodeError::UnknownFrameType(0x7f))
        );
        assert_eq!(
            Frame::decode_exact(&[][..]),
            Err(DecodeError::UnexpectedEnd)
        );
        // Data with a reserved flag bit.
        assert_eq!(
            Frame::decode_exact(&[0x0au8, 0x80, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0][..]),
            Err(DecodeError::ReservedFlags(0x80))
        );
        // A payload length beyond what is left.
        assert_eq!(
            Frame::decode_exact(&[0x0au8, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 5, 1][..]),
            Err(DecodeError::UnexpectedEnd)
        );
        // A payload length beyond the limit.
        let mut over = vec![0x0au8, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
        VarInt::new(MAX_PAYLOAD_LEN as u64 + 1)
            .expect("small")
            .encode(&mut over);
        assert!(matches!(
            Frame::decode_exact(&over[..]),
            Err(DecodeError::TooLong { .. })
        ));
        // 65 participants.
        let mut sp = vec![0x09u8, 0, 1, 0, 0, 65];
        sp.extend(std::iter::repeat_n(0, 65));
        assert!(matches!(
            Frame::decode_exact(&sp[..]),
            Err(DecodeError::TooLong { .. })
        ));
        // Bad enum values.
        assert_eq!(
            Frame::decode_exact(&[0x07u8, 0, 0, 1, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::InvalidValue {
                what: "reliability",
                value: 2
            })
        );
        // A batch inside a batch, and a count the input cannot hold.
        assert_eq!(
            Message::decode_exact(&[0x0fu8, 1, 0x0f, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::NestedBatch)
        );
        assert!(matches!(
            Message::decode_exact(&[0x0fu8, 0x3f, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::TooLong { .. })
        ));
    }

    #[test]
    fn batch_of_shortest_frames_decodes() {
        // A code/reason frame with an empty reason is 4 bytes; a batch of
        // only such frames used to fail the count bound (it assumed 5).
        let short = ErrorFrame {
            code: ErrorCode::NONE,
            reason: s(""),
        };
        assert_eq!(encode_checked(&short).len(), MIN_FRAME_LEN);
        for n in [1, 2, 5, 64] {
            roundtrip(&Batch {
                frames: vec![short.clone().into(); n],
            });
        }
        // The bound still rejects a count the input cannot hold.
        assert_eq!(
            Message::decode_exact(&[0x0fu8, 2, 0x0b, 0, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::TooLong {
                what: "batch count",
                len: 2,
                max: 1
            })
        );
    }

    #[test]
    fn payload_decoding_is_zero_copy_from_bytes() {
        let d = Data {
            channel: 1,
            session: 1,
            seq: 1,
            origin: None,
            epoch: None,
            payload: Bytes::from(vec![1u8; 64]),
        };
        let wire = d.to_bytes();
        let mut buf = wire.clone();
        let Frame::Data(back) = Frame::decode(&mut buf).expect("decodes") else {
            panic!("not data")
        };
        let range = wire.as_ptr_range();
        assert!(range.contains(&back.payload.as_ptr()), "payload was copied");
    }
}
