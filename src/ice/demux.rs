//! The first-byte demultiplexer of the shared UDP port (RFC 7983 §7).
//!
//! ```text
//!              +----------------+
//!              |        [0..3] -+--> STUN        (IceLite)
//!              |                |
//!              |      [16..19] -+--> ZRTP        (Other: dropped)
//!  datagram -->|      [20..63] -+--> DTLS        (the DTLS layer)
//!              |      [64..79] -+--> TURN channel (Other: dropped)
//!              |    [128..191] -+--> RTP/RTCP    (Other: dropped)
//!              |   everything  |
//!              |        else  -+--> Other       (dropped and counted)
//!              +----------------+
//! ```
//!
//! This is for the encrypted mode (ICE + DTLS + SCTP, as browsers speak).
//! The plaintext mode (SCTP directly over UDP, RFC 6951) does not use it:
//! an SCTP packet starts with the sender's source port, whose first byte can
//! be anything, so a plaintext port carries SCTP alone.
#![forbid(unsafe_code)]

/// What a datagram on the shared port is, by its first byte (RFC 7983).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Demux {
    /// A STUN message (first byte 0..=3).
    Stun,
    /// A DTLS record (first byte 20..=63).
    Dtls,
    /// Anything else (ZRTP, TURN channels, RTP/RTCP, garbage, an empty
    /// datagram): dropped and counted.
    Other,
}

/// Classifies a datagram by its first byte, as RFC 7983 §7 says.
pub const fn classify(first_byte: u8) -> Demux {
    match first_byte {
        0..=3 => Demux::Stun,
        20..=63 => Demux::Dtls,
        _ => Demux::Other,
    }
}

/// Classifies a whole datagram: an empty one is [`Demux::Other`].
pub const fn classify_datagram(datagram: &[u8]) -> Demux {
    match datagram.first() {
        Some(&b) => classify(b),
        None => Demux::Other,
    }
}

/// Counts of what [`DemuxCounter::classify`] saw.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DemuxCounter {
    /// Datagrams classified [`Demux::Stun`].
    pub stun: u64,
    /// Datagrams classified [`Demux::Dtls`].
    pub dtls: u64,
    /// Datagrams classified [`Demux::Other`] (the caller drops them).
    pub other: u64,
}

impl DemuxCounter {
    /// Classifies `datagram` and counts it.
    pub fn classify(&mut self, datagram: &[u8]) -> Demux {
        let kind = classify_datagram(datagram);
        let slot = match kind {
            Demux::Stun => &mut self.stun,
            Demux::Dtls => &mut self.dtls,
            Demux::Other => &mut self.other,
        };
        *slot += 1;
        kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_first_byte() {
        for b in 0..=u8::MAX {
            let want = match b {
                0..=3 => Demux::Stun,
                20..=63 => Demux::Dtls,
                _ => Demux::Other,
            };
            assert_eq!(classify(b), want, "first byte {b}");
        }
        // The boundaries RFC 7983 draws, spelled out.
        assert_eq!(classify(3), Demux::Stun);
        assert_eq!(classify(4), Demux::Other);
        assert_eq!(classify(19), Demux::Other); // ZRTP
        assert_eq!(classify(20), Demux::Dtls);
        assert_eq!(classify(63), Demux::Dtls);
        assert_eq!(classify(64), Demux::Other); // TURN channel
        assert_eq!(classify(128), Demux::Other); // RTP
    }

    #[test]
    fn counter_counts_and_empty_is_other() {
        let mut c = DemuxCounter::default();
        assert_eq!(c.classify(&[]), Demux::Other);
        assert_eq!(c.classify(&[0x00, 0x01]), Demux::Stun);
        assert_eq!(c.classify(&[22, 0xfe, 0xfd]), Demux::Dtls);
        assert_eq!(c.classify(&[0x80]), Demux::Other);
        assert_eq!((c.stun, c.dtls, c.other), (1, 1, 2));
    }
}
