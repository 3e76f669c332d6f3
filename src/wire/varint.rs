//! QUIC variable-length integers (RFC 9000 §16), minimal encoding enforced.

use bytes::{Buf, BufMut};

use super::{Codec, DecodeError, get_u8};

/// An integer below 2^62 in 1, 2, 4 or 8 bytes; the two high bits of the
/// first byte give the length.
///
/// ```text
/// +-+-+-+-+-+-+-+-+- - - - - - - - - - -+
/// |Len|  Value (6, 14, 30 or 62 bits)    |   Len: 00=1 01=2 10=4 11=8 bytes
/// +-+-+-+-+-+-+-+-+- - - - - - - - - - -+
/// ```
///
/// Decoding rejects encodings longer than needed, so every value has exactly
/// one encoding and decode → encode reproduces the input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VarInt(u64);

impl VarInt {
    /// The largest representable value, 2^62 − 1.
    #[cfg(feature = "_internal")]
    pub const MAX: u64 = (1 << 62) - 1;

    /// Wraps `value`, or `None` if it is 2^62 or more.
    #[cfg(feature = "_internal")]
    pub const fn new(value: u64) -> Option<Self> {
        if value <= Self::MAX {
            Some(Self(value))
        } else {
            None
        }
    }

    /// Wraps an in-memory length (always below 2^62 on supported targets).
    pub(crate) const fn from_len(len: usize) -> Self {
        Self(len as u64)
    }

    /// The value.
    pub const fn into_inner(self) -> u64 {
        self.0
    }

    const fn size_for(value: u64) -> usize {
        if value < 1 << 6 {
            1
        } else if value < 1 << 14 {
            2
        } else if value < 1 << 30 {
            4
        } else {
            8
        }
    }
}

impl Codec for VarInt {
    fn decode(buf: &mut impl Buf) -> Result<Self, DecodeError> {
        let first = get_u8(buf)?;
        let size = 1usize << (first >> 6);
        if buf.remaining() < size - 1 {
            return Err(DecodeError::UnexpectedEnd);
        }
        let mut value = u64::from(first & 0x3f);
        for _ in 1..size {
            value = (value << 8) | u64::from(buf.get_u8());
        }
        if Self::size_for(value) != size {
            return Err(DecodeError::NonMinimalVarint);
        }
        Ok(Self(value))
    }

    fn encode(&self, buf: &mut impl BufMut) {
        let v = self.0;
        match Self::size_for(v) {
            1 => buf.put_u8(v as u8),
            2 => buf.put_u16(0x4000 | v as u16),
            4 => buf.put_u32(0x8000_0000 | v as u32),
            _ => buf.put_u64(0xc000_0000_0000_0000 | v),
        }
    }

    fn encoded_len(&self) -> usize {
        Self::size_for(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_util::roundtrip;

    #[test]
    fn boundaries_roundtrip() {
        for v in [0, 63, 64, 16383, 16384, (1 << 30) - 1, 1 << 30, VarInt::MAX] {
            roundtrip(&VarInt::new(v).expect("in range"));
        }
        assert!(VarInt::new(VarInt::MAX + 1).is_none());
    }

    #[test]
    fn rfc9000_examples() {
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
        ];
        for (bytes, value) in cases {
            assert_eq!(VarInt::decode_exact(bytes), Ok(VarInt(value)));
        }
    }

    #[test]
    fn non_minimal_is_rejected() {
        // RFC 9000's example of 37 in two bytes.
        assert_eq!(
            VarInt::decode_exact(&[0x40u8, 0x25][..]),
            Err(DecodeError::NonMinimalVarint)
        );
        assert_eq!(
            VarInt::decode_exact(&[0x80u8, 0, 0][..]),
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
