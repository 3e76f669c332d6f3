//! DCEP, the Data Channel Establishment Protocol (RFC 8832): how a WebRTC
//! stack opens a data channel in band. Its messages travel on the channel's
//! own SCTP stream with PPID 50 (WebRTC DCEP), before any data.
//!
//! The engine accepts the two channels its protocol rides on (labels
//! [`LABEL_RELIABLE`] and [`LABEL_LOSSY`], protocol [`PROTOCOL`]) and
//! refuses any other with a stream reset; `docs/protocol.md` §1 says how.

use bytes::{Buf, BufMut, Bytes};

use super::{Codec, DecodeError};

/// The SCTP payload protocol identifier of DCEP messages (RFC 8832 §8.1).
pub const PPID_DCEP: u32 = 50;

/// The label of the engine's reliable, ordered channel (control frames and
/// Durable data).
pub const LABEL_RELIABLE: &str = "dcengine";
/// The label of the engine's unordered channel (Lossy data).
pub const LABEL_LOSSY: &str = "dcengine-lossy";
/// The sub-protocol both channels announce.
pub const PROTOCOL: &str = "dcengine";

/// Longest label or protocol accepted, in bytes (RFC 8832 allows 65,535;
/// the engine's are short).
pub const MAX_LABEL_LEN: usize = 1024;

const TYPE_OPEN: u8 = 0x03;
const TYPE_ACK: u8 = 0x02;

/// A DCEP channel type (RFC 8832 §5.1): the high bit says unordered, the
/// low bits the reliability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "_internal", derive(arbitrary::Arbitrary))]
pub struct ChannelType(pub u8);

// The six types, named for the internal API and the tests.
#[cfg_attr(not(feature = "_internal"), allow(dead_code))]
impl ChannelType {
    /// Reliable and ordered (`DATA_CHANNEL_RELIABLE`).
    pub const RELIABLE: Self = Self(0x00);
    /// Reliable, unordered (`DATA_CHANNEL_RELIABLE_UNORDERED`).
    pub const RELIABLE_UNORDERED: Self = Self(0x80);
    /// At most the reliability parameter's retransmissions, ordered.
    pub const PARTIAL_RELIABLE_REXMIT: Self = Self(0x01);
    /// At most the reliability parameter's retransmissions, unordered.
    pub const PARTIAL_RELIABLE_REXMIT_UNORDERED: Self = Self(0x81);
    /// Retransmitted for at most the reliability parameter's milliseconds,
    /// ordered.
    pub const PARTIAL_RELIABLE_TIMED: Self = Self(0x02);
    /// Retransmitted for at most the reliability parameter's milliseconds,
    /// unordered.
    pub const PARTIAL_RELIABLE_TIMED_UNORDERED: Self = Self(0x82);

    /// Whether messages on the channel may arrive out of order.
    pub fn is_unordered(self) -> bool {
        self.0 & 0x80 != 0
    }

    /// Whether this is one of the six types RFC 8832 defines.
    pub fn is_known(self) -> bool {
        matches!(self.0 & 0x7f, 0x00..=0x02)
    }
}

/// `DATA_CHANNEL_OPEN` (RFC 8832 §5.1):
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Message Type |  Channel Type |            Priority           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Reliability Parameter                      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |         Label Length          |       Protocol Length         |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// \                                                               /
/// |                             Label                             |
/// /                                                               \
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// \                                                               /
/// |                            Protocol                           |
/// /                                                               \
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Message Type 0x03. Label and protocol are UTF-8, at most
/// [`MAX_LABEL_LEN`] bytes each here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataChannelOpen {
    /// Ordering and reliability.
    pub channel_type: ChannelType,
    /// Relative priority (RFC 8831 §6.4: 128 below normal, 256 normal, 512
    /// high, 1024 extra high).
    pub priority: u16,
    /// Retransmissions or milliseconds, by the channel type.
    pub reliability: u32,
    /// The channel's name.
    pub label: String,
    /// The sub-protocol.
    pub protocol: String,
}

/// A DCEP message: an open, or its acknowledgement (`DATA_CHANNEL_ACK`,
/// Message Type 0x02, nothing after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dcep {
    /// `DATA_CHANNEL_OPEN`.
    Open(DataChannelOpen),
    /// `DATA_CHANNEL_ACK`.
    Ack,
}

fn utf8(buf: &mut impl Buf, len: usize) -> Result<String, DecodeError> {
    if len > MAX_LABEL_LEN {
        return Err(DecodeError::TooLong {
            what: "DCEP label or protocol",
            len: len as u64,
            max: MAX_LABEL_LEN as u64,
        });
    }
    if buf.remaining() < len {
        return Err(DecodeError::UnexpectedEnd);
    }
    let bytes: Bytes = buf.copy_to_bytes(len);
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::InvalidUtf8)
}

impl Codec for Dcep {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        if !buf.has_remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        match buf.get_u8() {
            TYPE_ACK => Ok(Self::Ack),
            TYPE_OPEN => {
                if buf.remaining() < 11 {
                    return Err(DecodeError::UnexpectedEnd);
                }
                let channel_type = ChannelType(buf.get_u8());
                if !channel_type.is_known() {
                    return Err(DecodeError::InvalidValue {
                        what: "DCEP channel type",
                        value: u64::from(channel_type.0),
                    });
                }
                let priority = buf.get_u16();
                let reliability = buf.get_u32();
                let label_len = usize::from(buf.get_u16());
                let protocol_len = usize::from(buf.get_u16());
                let label = utf8(buf, label_len)?;
                let protocol = utf8(buf, protocol_len)?;
                Ok(Self::Open(DataChannelOpen {
                    channel_type,
                    priority,
                    reliability,
                    label,
                    protocol,
                }))
            }
            other => Err(DecodeError::UnknownFrameType(other)),
        }
    }

    fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Self::Ack => buf.put_u8(TYPE_ACK),
            Self::Open(o) => {
                // Longer strings are cut at the limit (on a character
                // boundary): the decoder takes nothing longer.
                let cut = |s: &str| -> usize {
                    let mut n = s.len().min(MAX_LABEL_LEN);
                    while !s.is_char_boundary(n) {
                        n -= 1;
                    }
                    n
                };
                let (label, protocol) = (&o.label[..cut(&o.label)], &o.protocol[..cut(&o.protocol)]);
                buf.put_u8(TYPE_OPEN);
                buf.put_u8(o.channel_type.0);
                buf.put_u16(o.priority);
                buf.put_u32(o.reliability);
                buf.put_u16(label.len() as u16);
                buf.put_u16(protocol.len() as u16);
                buf.put_slice(label.as_bytes());
                buf.put_slice(protocol.as_bytes());
            }
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Self::Ack => 1,
            Self::Open(o) => {
                12 + o.label.len().min(MAX_LABEL_LEN) + o.protocol.len().min(MAX_LABEL_LEN)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(label: &str, t: ChannelType) -> Dcep {
        Dcep::Open(DataChannelOpen {
            channel_type: t,
            priority: 256,
            reliability: 0,
            label: label.into(),
            protocol: PROTOCOL.into(),
        })
    }

    #[test]
    fn an_open_as_rfc_8832_draws_it() {
        let bytes = open(LABEL_RELIABLE, ChannelType::RELIABLE).to_bytes();
        assert_eq!(
            &bytes[..],
            &[
                0x03, 0x00, 0x01, 0x00, 0, 0, 0, 0, 0, 8, 0, 8, b'd', b'c', b'e', b'n', b'g',
                b'i', b'n', b'e', b'd', b'c', b'e', b'n', b'g', b'i', b'n', b'e'
            ][..]
        );
        assert_eq!(Dcep::decode_exact(bytes.clone()), Ok(open(LABEL_RELIABLE, ChannelType::RELIABLE)));
        assert_eq!(Dcep::Ack.to_bytes(), Bytes::from_static(&[0x02]));
        assert_eq!(Dcep::decode_exact(Bytes::from_static(&[0x02])), Ok(Dcep::Ack));
    }

    #[test]
    fn bad_opens_are_refused_with_a_reason() {
        let good = open("x", ChannelType::PARTIAL_RELIABLE_REXMIT_UNORDERED).to_bytes();
        for len in 0..good.len() {
            assert_eq!(
                Dcep::decode_exact(good.slice(..len)),
                Err(DecodeError::UnexpectedEnd),
                "cut at {len}"
            );
        }
        let mut bad_type = good.to_vec();
        bad_type[1] = 0x03;
        assert!(matches!(
            Dcep::decode_exact(Bytes::from(bad_type)),
            Err(DecodeError::InvalidValue { .. })
        ));
        let mut bad_utf8 = good.to_vec();
        bad_utf8[12] = 0xff;
        assert_eq!(Dcep::decode_exact(Bytes::from(bad_utf8)), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            Dcep::decode_exact(Bytes::from_static(&[0x07])),
            Err(DecodeError::UnknownFrameType(7))
        );
        let long = [0x03, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0];
        assert!(matches!(
            Dcep::decode_exact(Bytes::copy_from_slice(&long)),
            Err(DecodeError::TooLong { .. })
        ));
        assert!(ChannelType::PARTIAL_RELIABLE_TIMED_UNORDERED.is_unordered());
        assert!(!ChannelType::RELIABLE.is_unordered());
    }
}
