//! Authenticated state cookies: what makes a node's handshakes stateless.
//!
//! A node answers every INIT from one closed dcsctp socket (the listener),
//! which writes the association's parameters into the INIT-ACK's State
//! Cookie and forgets them; the association is created only when the peer
//! echoes the cookie back (COOKIE-ECHO, RFC 9260 5.1). dcsctp's cookie is
//! not authenticated (under DTLS, as in a browser, it need not be), so
//! anyone could forge a COOKIE-ECHO and open an association without ever
//! receiving an INIT-ACK: a flood from spoofed addresses would then cost
//! state after all. So the node seals each cookie on its way out and opens
//! it on its way back in:
//!
//! ```text
//!  State Cookie parameter (type 7) as dcsctp writes it, and as sealed:
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Type = 7             |     Length = 4 + N (+ 20)     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! /              dcsctp's cookie (N bytes, N % 4 == 0)            /
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Issued at (seconds, the node's clock)         |   sealed
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+   only
//! |  HMAC-SHA256 (first 16 bytes) over the domain, the cookie,    |
//! |  the issue time, the peer's address and the SCTP ports        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The 20 bytes go right after the cookie, so no padding changes and every
//! later byte of the packet only moves. A COOKIE-ECHO is accepted only from
//! the address and ports its INIT came from, within [`COOKIE_LIFETIME`] of
//! its INIT-ACK (RFC 9260's Valid.Cookie.Life); it reaches dcsctp as dcsctp
//! wrote it. Every checksum is verified before a packet is rewritten and
//! recomputed after (a zero checksum, RFC 9653, stays zero).
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How long after its INIT-ACK a cookie is accepted (RFC 9260's
/// Valid.Cookie.Life, 60 s).
pub(super) const COOKIE_LIFETIME: Duration = Duration::from_secs(60);

/// Bytes a sealed cookie has beyond dcsctp's: the issue time and the tag.
const SEAL_LEN: usize = 4 + TAG_LEN;
/// Bytes of the truncated HMAC-SHA256 tag.
const TAG_LEN: usize = 16;
/// Bytes of the SCTP common header.
const COMMON_HEADER: usize = 12;
/// Where the checksum sits in the common header.
const CHECKSUM: std::ops::Range<usize> = 8..12;
/// Bytes of an INIT-ACK chunk before its parameters: the chunk header and
/// initiate tag, a_rwnd, stream counts and initial TSN.
const INIT_ACK_FIXED: usize = 4 + 16;
/// Chunk types (RFC 9260).
pub(super) const CHUNK_INIT_ACK: u8 = 2;
pub(super) const CHUNK_COOKIE_ECHO: u8 = 10;
/// Parameter type State Cookie (RFC 9260 3.3.3).
const PARAM_STATE_COOKIE: u16 = 7;
/// Domain separation for the tag.
const DOMAIN: &[u8] = b"dcengine-sctp-cookie-v1";

/// CRC32c, the SCTP checksum (RFC 9260, appendix A).
pub(super) const CRC32C: Crc32c = Crc32c;

/// CRC32c with the CPU's CRC32C instructions where there are some (the
/// `crc32c` crate; a table otherwise): the node recomputes the checksum of
/// every packet it marks for an immediate SACK.
pub(super) struct Crc32c;

impl Crc32c {
    /// The checksum of `data`.
    pub(super) fn checksum(&self, data: &[u8]) -> u32 {
        crc32c::crc32c(data)
    }
}

/// Why a COOKIE-ECHO was not let through ([`CookieJar::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CookieError {
    /// Not an SCTP packet starting with a COOKIE-ECHO, or one whose lengths
    /// do not add up.
    #[error("malformed COOKIE-ECHO")]
    Malformed,
    /// The packet's checksum is wrong.
    #[error("bad checksum")]
    Checksum,
    /// The tag does not match: forged, altered, or echoed from another
    /// address or port than its INIT came from.
    #[error("cookie not issued by this node for this peer")]
    Forged,
    /// Issued more than [`COOKIE_LIFETIME`] ago (or in the future).
    #[error("stale cookie")]
    Stale,
}

/// The key that seals and opens cookies. Every node answering on the same
/// UDP port must hold the same key (a peer's COOKIE-ECHO may reach another
/// worker than its INIT did).
#[derive(Clone)]
pub(crate) struct CookieJar {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar(..)")
    }
}

impl CookieJar {
    /// A jar with `key`.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Self {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length")),
        }
    }

    /// The tag of `cookie` issued at `issued` to `remote` on `ports`
    /// (the peer's SCTP port, then ours).
    fn tag(&self, cookie: &[u8], issued: u32, remote: SocketAddr, ports: [u16; 2]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&(cookie.len() as u32).to_be_bytes());
        mac.update(cookie);
        mac.update(&issued.to_be_bytes());
        match remote {
            SocketAddr::V4(a) => {
                mac.update(&[4]);
                mac.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                mac.update(&[6]);
                mac.update(&a.ip().octets());
            }
        }
        mac.update(&remote.port().to_be_bytes());
        mac.update(&ports[0].to_be_bytes());
        mac.update(&ports[1].to_be_bytes());
        mac
    }

    /// The listener's INIT-ACK `packet` made ready for `remote`: addressed
    /// to the SCTP ports of the INIT it answers (`peer_port` the INIT's
    /// source, `our_port` its destination), its cookie sealed at `now_secs`.
    /// `None` if it is not an INIT-ACK with a cookie (nothing else should be
    /// sent for an INIT; the caller drops it).
    pub(crate) fn seal(
        &self,
        packet: &[u8],
        remote: SocketAddr,
        peer_port: u16,
        our_port: u16,
        now_secs: u32,
    ) -> Option<Bytes> {
        let chunk_len = chunk_len(packet, COMMON_HEADER, CHUNK_INIT_ACK)?;
        let chunk_end = COMMON_HEADER + chunk_len;
        // Find the State Cookie among the parameters.
        let mut at = COMMON_HEADER + INIT_ACK_FIXED;
        let (value, value_end) = loop {
            let header = packet.get(at..at + 4)?;
            let ty = u16::from_be_bytes([header[0], header[1]]);
            let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            if len < 4 || at + len > chunk_end {
                return None;
            }
            if ty == PARAM_STATE_COOKIE {
                break (&packet[at + 4..at + len], at + len);
            }
            at += len.next_multiple_of(4);
        };
        let param_at = value_end - value.len() - 4;
        let new_param_len = u16::try_from(value.len() + 4 + SEAL_LEN).ok()?;
        let new_chunk_len = u16::try_from(chunk_len + SEAL_LEN).ok()?;
        let tag = self
            .tag(value, now_secs, remote, [peer_port, our_port])
            .finalize()
            .into_bytes();
        let mut out = BytesMut::with_capacity(packet.len() + SEAL_LEN);
        out.put_u16(our_port);
        out.put_u16(peer_port);
        out.put_slice(&packet[4..COMMON_HEADER + 2]);
        out.put_u16(new_chunk_len);
        out.put_slice(&packet[COMMON_HEADER + 4..param_at + 2]);
        out.put_u16(new_param_len);
        out.put_slice(&packet[param_at + 4..value_end]);
        out.put_u32(now_secs);
        out.put_slice(&tag[..TAG_LEN]);
        out.put_slice(&packet[value_end..]);
        resign(&mut out, has_checksum(packet));
        Some(out.freeze())
    }

    /// A COOKIE-ECHO `packet` from `remote`, with its cookie checked
    /// (issued by this jar for this peer within [`COOKIE_LIFETIME`] of
    /// `now_secs`) and unsealed, as dcsctp expects it back.
    pub(crate) fn open(
        &self,
        packet: &[u8],
        remote: SocketAddr,
        now_secs: u32,
    ) -> Result<Bytes, CookieError> {
        let chunk_len =
            chunk_len(packet, COMMON_HEADER, CHUNK_COOKIE_ECHO).ok_or(CookieError::Malformed)?;
        if chunk_len < 4 + SEAL_LEN {
            return Err(CookieError::Malformed);
        }
        if has_checksum(packet) && checksum(packet) != stored_checksum(packet) {
            return Err(CookieError::Checksum);
        }
        let value = &packet[COMMON_HEADER + 4..COMMON_HEADER + chunk_len];
        let (cookie, seal) = value.split_at(value.len() - SEAL_LEN);
        let issued = u32::from_be_bytes([seal[0], seal[1], seal[2], seal[3]]);
        let peer_port = u16::from_be_bytes([packet[0], packet[1]]);
        let our_port = u16::from_be_bytes([packet[2], packet[3]]);
        self.tag(cookie, issued, remote, [peer_port, our_port])
            .verify_truncated_left(&seal[4..])
            .map_err(|_| CookieError::Forged)?;
        let age = now_secs.checked_sub(issued).ok_or(CookieError::Stale)?;
        if u64::from(age) > COOKIE_LIFETIME.as_secs() {
            return Err(CookieError::Stale);
        }
        let cookie_end = COMMON_HEADER + 4 + cookie.len();
        let mut out = BytesMut::with_capacity(packet.len() - SEAL_LEN);
        out.put_slice(&packet[..COMMON_HEADER + 2]);
        // `chunk_len` fits in a u16 and only shrinks.
        out.put_u16((chunk_len - SEAL_LEN) as u16);
        out.put_slice(&packet[COMMON_HEADER + 4..cookie_end]);
        out.put_slice(&packet[cookie_end + SEAL_LEN..]);
        resign(&mut out, has_checksum(packet));
        Ok(out.freeze())
    }
}

/// The length of the chunk of type `ty` at `at` in `packet`, if there is
/// one and it fits.
fn chunk_len(packet: &[u8], at: usize, ty: u8) -> Option<usize> {
    let header = packet.get(at..at + 4)?;
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    (header[0] == ty && len >= 4 && at + len <= packet.len()).then_some(len)
}

/// Whether `packet` carries a checksum (RFC 9653 lets a packet carry zero
/// instead, when both ends agreed to).
fn has_checksum(packet: &[u8]) -> bool {
    packet.get(CHECKSUM).is_some_and(|c| c != [0; 4])
}

/// The checksum stored in `packet`'s common header.
fn stored_checksum(packet: &[u8]) -> u32 {
    let c = &packet[CHECKSUM];
    // Least significant byte first, as RFC 9260's reference code stores it.
    u32::from_le_bytes([c[0], c[1], c[2], c[3]])
}

/// The checksum `packet` should carry.
fn checksum(packet: &[u8]) -> u32 {
    let sum = crc32c::crc32c(&packet[..CHECKSUM.start]);
    let sum = crc32c::crc32c_append(sum, &[0; 4]);
    crc32c::crc32c_append(sum, &packet[CHECKSUM.end..])
}

/// Recomputes `packet`'s checksum, or leaves it zero.
fn resign(packet: &mut BytesMut, with_checksum: bool) {
    packet[CHECKSUM].fill(0);
    if with_checksum {
        let sum = CRC32C.checksum(packet);
        packet[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REMOTE: &str = "192.0.2.7:40000";

    /// An INIT-ACK as dcsctp's listener writes it: ports 5000/5000, a
    /// cookie between two other parameters.
    fn init_ack(cookie: &[u8]) -> Vec<u8> {
        let mut p = vec![0x13, 0x88, 0x13, 0x88, 1, 2, 3, 4, 0, 0, 0, 0];
        let params_len = 8 + (4 + cookie.len()) + 8;
        p.extend_from_slice(&[CHUNK_INIT_ACK, 0]);
        p.extend_from_slice(&((INIT_ACK_FIXED + params_len) as u16).to_be_bytes());
        p.extend_from_slice(&[9; 16]);
        p.extend_from_slice(&[0x80, 0x00, 0, 8, 0xaa, 0xbb, 0xcc, 0xdd]);
        p.extend_from_slice(&PARAM_STATE_COOKIE.to_be_bytes());
        p.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
        p.extend_from_slice(cookie);
        p.extend_from_slice(&[0xc0, 0x00, 0, 8, 1, 2, 3, 4]);
        let sum = CRC32C.checksum(&p);
        p[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
        p
    }

    /// The COOKIE-ECHO a peer sends back for `init_ack`, from `ports`
    /// (source, destination), with `bundled` bytes (a DATA chunk) after it.
    fn echo(init_ack: &[u8], bundled: &[u8]) -> Vec<u8> {
        let at = init_ack
            .windows(2)
            .position(|w| w == PARAM_STATE_COOKIE.to_be_bytes())
            .expect("cookie");
        let len = usize::from(u16::from_be_bytes([init_ack[at + 2], init_ack[at + 3]]));
        let cookie = &init_ack[at + 4..at + len];
        let mut p = vec![init_ack[2], init_ack[3], init_ack[0], init_ack[1], 5, 6, 7, 8, 0, 0, 0, 0];
        p.extend_from_slice(&[CHUNK_COOKIE_ECHO, 0]);
        p.extend_from_slice(&((4 + cookie.len()) as u16).to_be_bytes());
        p.extend_from_slice(cookie);
        p.extend_from_slice(bundled);
        let sum = CRC32C.checksum(&p);
        p[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
        p
    }

    fn remote() -> SocketAddr {
        REMOTE.parse().expect("address")
    }

    #[test]
    fn a_sealed_cookie_opens_to_what_dcsctp_wrote() {
        let jar = CookieJar::new(&[7; 32]);
        let cookie: Vec<u8> = (0..48).collect();
        let sealed = jar
            .seal(&init_ack(&cookie), remote(), 5001, 5002, 100)
            .expect("sealed");
        assert_eq!(&sealed[..4], &[0x13, 0x8a, 0x13, 0x89], "ports mirrored");
        assert_eq!(checksum(&sealed), stored_checksum(&sealed));
        assert_eq!(sealed.len(), init_ack(&cookie).len() + SEAL_LEN);
        // The parameter after the cookie survives.
        assert_eq!(&sealed[sealed.len() - 8..], &[0xc0, 0x00, 0, 8, 1, 2, 3, 4]);
        let data = [0, 3, 0, 8, 1, 2, 3, 4];
        let back = echo(&sealed, &data);
        let opened = jar.open(&back, remote(), 130).expect("opens");
        assert_eq!(checksum(&opened), stored_checksum(&opened));
        assert_eq!(&opened[COMMON_HEADER + 4..COMMON_HEADER + 4 + 48], &cookie[..]);
        assert_eq!(
            usize::from(u16::from_be_bytes([opened[14], opened[15]])),
            4 + 48
        );
        assert_eq!(&opened[opened.len() - 8..], &data, "bundled chunks kept");
    }

    #[test]
    fn a_forged_altered_replayed_or_stale_cookie_is_refused() {
        let jar = CookieJar::new(&[7; 32]);
        let sealed = jar
            .seal(&init_ack(&[1; 48]), remote(), 5000, 5000, 1_000)
            .expect("sealed");
        let back = echo(&sealed, &[]);
        assert!(jar.open(&back, remote(), 1_000).is_ok());
        // Another key (another engine), another address, another port.
        let other = CookieJar::new(&[8; 32]);
        assert_eq!(other.open(&back, remote(), 1_000), Err(CookieError::Forged));
        let elsewhere: SocketAddr = "192.0.2.8:40000".parse().expect("address");
        assert_eq!(jar.open(&back, elsewhere, 1_000), Err(CookieError::Forged));
        let mut ported = back.clone();
        ported[1] ^= 1;
        let sum = checksum(&ported);
        ported[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(jar.open(&ported, remote(), 1_000), Err(CookieError::Forged));
        // A cookie dcsctp would accept, never sealed.
        let forged = echo(&init_ack(&[1; 48]), &[0; 20]);
        assert_eq!(jar.open(&forged, remote(), 1_000), Err(CookieError::Forged));
        // One bit of the cookie flipped, checksum fixed.
        let mut altered = back.clone();
        altered[COMMON_HEADER + 10] ^= 1;
        let sum = checksum(&altered);
        altered[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
        assert_eq!(jar.open(&altered, remote(), 1_000), Err(CookieError::Forged));
        // A checksum that does not match.
        let mut corrupt = back.clone();
        corrupt[COMMON_HEADER + 10] ^= 1;
        assert_eq!(jar.open(&corrupt, remote(), 1_000), Err(CookieError::Checksum));
        // Age.
        assert!(jar.open(&back, remote(), 1_060).is_ok());
        assert_eq!(jar.open(&back, remote(), 1_061), Err(CookieError::Stale));
        assert_eq!(jar.open(&back, remote(), 999), Err(CookieError::Stale));
    }

    #[test]
    fn malformed_packets_are_refused_without_panicking() {
        let jar = CookieJar::new(&[7; 32]);
        let sealed = jar
            .seal(&init_ack(&[1; 48]), remote(), 5000, 5000, 0)
            .expect("sealed");
        let back = echo(&sealed, &[]);
        for len in 0..back.len() {
            let _ = jar.open(&back[..len], remote(), 0);
            let _ = jar.seal(&sealed[..len.min(sealed.len())], remote(), 1, 2, 0);
        }
        let mut short = back.clone();
        short[14..16].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(jar.open(&short, remote(), 0), Err(CookieError::Malformed));
        assert!(jar.seal(&back, remote(), 1, 2, 0).is_none(), "not an INIT-ACK");
    }
}
