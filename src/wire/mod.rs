//! The engine's own framing, carried inside SCTP user messages.
//!
//! Every SCTP user message the engine sends on its data streams holds exactly
//! one [`Message`]: either a single [`Frame`] or a [`Batch`] of frames packed
//! together (an SCTP stack's cost per SCTP message is high; packing many small
//! frames into one message is how the engine wins small-message rate).
//! `docs/protocol.md` is the specification; the same byte diagram is drawn
//! above each type here.
//!
//! # Conventions
//! - All integers are big-endian (network order).
//! - Lengths of variable-size fields are QUIC variable-length integers
//!   (RFC 9000 §16), and must use the shortest encoding; strings are a
//!   one-byte length followed by UTF-8.
//! - Each frame starts with a one-byte type. A frame is self-delimiting, so a
//!   batch is a count followed by frames back to back.
//!
//! # Guarantees
//! Decoding never panics on any input, never allocates more than the input
//! justifies (every count and length is checked against the bytes remaining
//! before anything is reserved), and rejects truncated input, overlong
//! lengths, unknown types, reserved bits and (with [`Codec::decode_exact`])
//! trailing bytes with a typed [`DecodeError`]. Decoding is canonical: any
//! input that decodes re-encodes to the same bytes.
//!
//! Payloads are taken with [`Buf::copy_to_bytes`], which is zero-copy when
//! decoding from [`Bytes`].
#![forbid(unsafe_code)]

pub mod dcep;
mod frames;
mod varint;

pub use frames::*;
pub use varint::VarInt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version this build speaks, sent in [`Join`] and [`JoinAccepted`].
pub const PROTOCOL_VERSION: u16 = 4;

/// Most participants a [`ParticipantList`] can hold (the seeds' limit).
pub const MAX_PARTICIPANTS: usize = 64;

/// Longest join token accepted on the wire, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// Longest payload a [`Data`] frame can carry, in bytes (the largest
/// configurable max message size, 256 KiB).
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;

/// Longest [`ShortStr`], in bytes.
pub const MAX_STR_LEN: usize = 255;

/// Why a frame could not be decoded.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended in the middle of a frame.
    #[error("input ended in the middle of a frame")]
    UnexpectedEnd,
    /// The frame type byte is not one this version knows.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// A specific frame was expected but another type was found.
    #[error("expected frame type {expected:#04x}, found {found:#04x}")]
    WrongFrameType {
        /// The type the decoder was asked for.
        expected: u8,
        /// The type on the wire.
        found: u8,
    },
    /// Bytes were left after the frame.
    #[error("{0} trailing bytes after the frame")]
    TrailingBytes(usize),
    /// A string was not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A length or count exceeded its limit.
    #[error("{what} is {len}, more than the limit {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// The length or count on the wire.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A variable-length integer did not use its shortest encoding.
    #[error("variable-length integer is not minimally encoded")]
    NonMinimalVarint,
    /// Flag bits reserved by this version were set.
    #[error("reserved flag bits set: {0:#04x}")]
    ReservedFlags(u8),
    /// A batch contained another batch.
    #[error("a batch cannot contain a batch")]
    NestedBatch,
    /// A field held a value outside its domain.
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// Which field.
        what: &'static str,
        /// The value on the wire.
        value: u64,
    },
}

/// One encodable, decodable unit of the wire format.
///
/// `decode` consumes exactly the bytes of one value and leaves the rest of
/// the buffer untouched; `encode` writes exactly [`Codec::encoded_len`] bytes.
pub trait Codec: Sized {
    /// Decodes one value from the front of `buf`.
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError>;

    /// Appends the encoding of `self` to `buf`.
    ///
    /// `buf` must have room for [`Codec::encoded_len`] bytes: a growable
    /// buffer (`Vec<u8>`, [`BytesMut`]) always has; a fixed slice that is too
    /// short panics, as [`BufMut`] does.
    fn encode(&self, buf: &mut impl BufMut);

    /// The exact number of bytes [`Codec::encode`] writes.
    fn encoded_len(&self) -> usize;

    /// Decodes one value that must span the whole of `buf`.
    fn decode_exact(mut buf: impl Buf) -> Result<Self, DecodeError> {
        let value = Self::decode(&mut buf)?;
        match buf.remaining() {
            0 => Ok(value),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }

    /// Encodes into a new, exactly sized buffer.
    fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out.freeze()
    }
}

// ---- Field helpers shared by the frames -------------------------------------

pub(crate) fn get_u8(buf: &mut impl Buf) -> Result<u8, DecodeError> {
    buf.try_get_u8().map_err(|_| DecodeError::UnexpectedEnd)
}

pub(crate) fn get_u16(buf: &mut impl Buf) -> Result<u16, DecodeError> {
    buf.try_get_u16().map_err(|_| DecodeError::UnexpectedEnd)
}

pub(crate) fn get_u32(buf: &mut impl Buf) -> Result<u32, DecodeError> {
    buf.try_get_u32().map_err(|_| DecodeError::UnexpectedEnd)
}

/// Reads a varint length and checks it against `max` and the bytes left.
pub(crate) fn get_len(
    buf: &mut impl Buf,
    what: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let len = VarInt::decode(buf)?.into_inner();
    if len > max as u64 {
        return Err(DecodeError::TooLong {
            what,
            len,
            max: max as u64,
        });
    }
    // `len <= max`, which fits in usize.
    let len = len as usize;
    if buf.remaining() < len {
        return Err(DecodeError::UnexpectedEnd);
    }
    Ok(len)
}

/// Reads a varint-length-prefixed byte string of at most `max` bytes.
pub(crate) fn get_bytes(
    buf: &mut impl Buf,
    what: &'static str,
    max: usize,
) -> Result<Bytes, DecodeError> {
    let len = get_len(buf, what, max)?;
    Ok(buf.copy_to_bytes(len))
}

pub(crate) fn put_bytes(buf: &mut impl BufMut, bytes: &[u8]) {
    VarInt::from_len(bytes.len()).encode(buf);
    buf.put_slice(bytes);
}

pub(crate) fn bytes_len(bytes: &[u8]) -> usize {
    VarInt::from_len(bytes.len()).encoded_len() + bytes.len()
}

/// Checks the type byte of a specific frame.
pub(crate) fn expect_type(buf: &mut impl Buf, expected: u8) -> Result<(), DecodeError> {
    match get_u8(buf)? {
        found if found == expected => Ok(()),
        found => Err(DecodeError::WrongFrameType { expected, found }),
    }
}

/// Reads a flags byte and rejects bits outside `allowed`.
pub(crate) fn get_flags(buf: &mut impl Buf, allowed: u8) -> Result<u8, DecodeError> {
    let flags = get_u8(buf)?;
    match flags & !allowed {
        0 => Ok(flags),
        reserved => Err(DecodeError::ReservedFlags(reserved)),
    }
}

/// A UTF-8 string of at most [`MAX_STR_LEN`] bytes (call and participant
/// ids, reasons).
///
/// ```text
///  0                   1                   2
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |  Length (8)   |  UTF-8 bytes (Length) ...     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr(String);

impl ShortStr {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Builds a `ShortStr` from `s`, cutting it at a character boundary so it
    /// fits in [`MAX_STR_LEN`] bytes. Use for human-readable reasons where a
    /// cut is acceptable; use `TryFrom` where it is not.
    pub fn truncated(s: &str) -> Self {
        let mut end = s.len().min(MAX_STR_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        Self(s[..end].to_owned())
    }
}

impl std::fmt::Display for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A string was longer than [`MAX_STR_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("string of {0} bytes is longer than {MAX_STR_LEN}")]
pub struct StrTooLong(pub usize);

impl TryFrom<String> for ShortStr {
    type Error = StrTooLong;
    fn try_from(s: String) -> Result<Self, StrTooLong> {
        if s.len() > MAX_STR_LEN {
            Err(StrTooLong(s.len()))
        } else {
            Ok(Self(s))
        }
    }
}

impl TryFrom<&str> for ShortStr {
    type Error = StrTooLong;
    fn try_from(s: &str) -> Result<Self, StrTooLong> {
        Self::try_from(s.to_owned())
    }
}

impl Codec for ShortStr {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let len = usize::from(get_u8(buf)?);
        if buf.remaining() < len {
            return Err(DecodeError::UnexpectedEnd);
        }
        let mut bytes = vec![0; len];
        buf.copy_to_slice(&mut bytes);
        String::from_utf8(bytes)
            .map(Self)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn encode(&self, buf: &mut impl BufMut) {
        // The constructors keep the length within u8.
        buf.put_u8(self.0.len() as u8);
        buf.put_slice(self.0.as_bytes());
    }

    fn encoded_len(&self) -> usize {
        1 + self.0.len()
    }
}

#[cfg(feature = "_internal")]
impl<'a> arbitrary::Arbitrary<'a> for ShortStr {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Self::truncated(&String::arbitrary(u)?))
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers for the frame tests: a prefilled buffer so unset bytes show.
    use super::*;

    /// Encodes `value` into a buffer pre-filled with 0xa5 of exactly
    /// `encoded_len` bytes, asserting that every byte was written.
    pub(crate) fn encode_checked<T: Codec>(value: &T) -> Vec<u8> {
        let len = value.encoded_len();
        let mut out = vec![0xa5u8; len];
        let mut slice = &mut out[..];
        value.encode(&mut slice);
        assert!(
            slice.is_empty(),
            "encode wrote fewer than encoded_len bytes"
        );
        out
    }

    /// Encode → decode → compare, and every strict prefix fails cleanly.
    pub(crate) fn roundtrip<T: Codec + PartialEq + std::fmt::Debug>(value: &T) {
        let bytes = encode_checked(value);
        let decoded = T::decode_exact(&bytes[..]).expect("decodes");
        assert_eq!(&decoded, value);
        for cut in 0..bytes.len() {
            assert!(
                T::decode_exact(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes decoded"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            T::decode_exact(&trailing[..]),
            Err(DecodeError::TrailingBytes(1))
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_str_truncates_at_char_boundary() {
        let s = "é".repeat(200); // 400 bytes
        let t = ShortStr::truncated(&s);
        assert_eq!(t.as_str().len(), 254);
        assert!(ShortStr::try_from(s).is_err());
    }

    #[test]
    fn short_str_rejects_bad_utf8_and_truncation() {
        assert_eq!(
            ShortStr::decode_exact(&[2u8, 0xff, 0xfe][..]),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            ShortStr::decode_exact(&[3u8, b'a'][..]),
            Err(DecodeError::UnexpectedEnd)
        );
        test_util::roundtrip(&ShortStr::try_from("alice").expect("short"));
    }
}
