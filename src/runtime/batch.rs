//! Pure helpers the I/O backends share: grouping transmits for UDP GSO,
//! splitting GRO-coalesced receives, and reading and writing the few socket
//! structures the io_uring backend sees as bytes (control messages, socket
//! addresses). No system calls here, so all of it is unit-tested.
#![forbid(unsafe_code)]
// The byte-level helpers serve the io_uring backend, which is Linux-only.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::net::SocketAddr;
use std::ops::Range;

/// Most segments one GSO send carries (the kernel's `UDP_MAX_SEGMENTS` is
/// 64 on older kernels, 128 on newer ones).
pub(super) const MAX_GSO_SEGMENTS: usize = 64;

/// Most payload bytes one GSO send carries: a UDP datagram's payload must
/// fit an IPv4 packet (65,535 − 20 − 8).
pub(super) const MAX_GSO_BYTES: usize = 65_507;

/// Consecutive transmits that one `sendmsg` can carry with UDP GSO
/// (`UDP_SEGMENT`): same destination, every segment of the same size
/// except the last, which may be shorter (it ends the batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GsoBatch {
    destination: SocketAddr,
    segment: usize,
    count: usize,
    bytes: usize,
    max_segments: usize,
    max_bytes: usize,
    /// A shorter segment was added: nothing may follow it.
    closed: bool,
}

impl GsoBatch {
    /// A batch holding one datagram of `len` bytes to `destination`; at
    /// most `max_segments` segments (1 disables GSO) and `max_bytes` bytes.
    pub(super) fn new(
        destination: SocketAddr,
        len: usize,
        max_segments: usize,
        max_bytes: usize,
    ) -> Self {
        Self {
            destination,
            segment: len,
            count: 1,
            bytes: len,
            max_segments,
            max_bytes,
            closed: len == 0,
        }
    }

    /// Adds the next datagram if it can join; `false` leaves the batch as
    /// it was (the datagram starts the next one).
    pub(super) fn try_add(&mut self, destination: SocketAddr, len: usize) -> bool {
        if self.is_full()
            || destination != self.destination
            || len == 0
            || len > self.segment
            || self.bytes + len > self.max_bytes
        {
            return false;
        }
        self.closed = len < self.segment;
        self.count += 1;
        self.bytes += len;
        true
    }

    /// No further datagram can join (so there is no point asking for one).
    pub(super) fn is_full(&self) -> bool {
        self.closed || self.count >= self.max_segments || self.bytes + self.segment > self.max_bytes
    }

    /// The `UDP_SEGMENT` size to ask for: `None` for a single datagram.
    pub(super) fn segment_size(&self) -> Option<usize> {
        (self.count > 1).then_some(self.segment)
    }

    /// How many datagrams the batch holds.
    pub(super) fn count(&self) -> usize {
        self.count
    }
}

/// The datagrams in a received buffer of `len` bytes that GRO coalesced
/// from segments of `stride` bytes (the last may be shorter). A `stride`
/// of 0, or one not smaller than `len`, means a single datagram.
pub(super) fn gro_segments(len: usize, stride: usize) -> impl Iterator<Item = Range<usize>> {
    let stride = if stride == 0 { len.max(1) } else { stride };
    (0..len)
        .step_by(stride)
        .map(move |start| start..(start + stride).min(len))
}

/// Size of a `cmsghdr` on this platform: `size_t cmsg_len; int
/// cmsg_level; int cmsg_type;`, aligned like `size_t` (Linux's layout).
const CMSG_HDR: usize = cmsg_align(size_of::<usize>() + 2 * size_of::<i32>());

const fn cmsg_align(len: usize) -> usize {
    let a = size_of::<usize>();
    (len + a - 1) & !(a - 1)
}

/// `CMSG_SPACE(len)`: room one control message with `len` data bytes takes.
pub(super) const fn cmsg_space(len: usize) -> usize {
    CMSG_HDR + cmsg_align(len)
}

/// Writes one control message carrying a `u16` (e.g. `UDP_SEGMENT`) at the
/// start of `buf`; returns the `msg_controllen` to use, or `None` if `buf`
/// is too small.
pub(super) fn write_cmsg_u16(buf: &mut [u8], level: i32, kind: i32, value: u16) -> Option<usize> {
    let space = cmsg_space(2);
    let buf = buf.get_mut(..space)?;
    buf.fill(0);
    let len = CMSG_HDR + 2;
    buf[..size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    let at = size_of::<usize>();
    buf[at..at + 4].copy_from_slice(&level.to_ne_bytes());
    buf[at + 4..at + 8].copy_from_slice(&kind.to_ne_bytes());
    buf[CMSG_HDR..CMSG_HDR + 2].copy_from_slice(&value.to_ne_bytes());
    Some(space)
}

/// Finds the control message `(level, kind)` in `control` (a received
/// `msg_control` area, `msg_controllen` bytes) and reads its data as a
/// native-endian `int`, which is how `UDP_GRO` reports the segment size.
/// Malformed input yields `None`, never a panic.
pub(super) fn read_cmsg_int(control: &[u8], level: i32, kind: i32) -> Option<i32> {
    let mut at = 0usize;
    while at.checked_add(CMSG_HDR)? <= control.len() {
        let word = size_of::<usize>();
        let len = usize::from_ne_bytes(control[at..at + word].try_into().ok()?);
        let lvl = i32::from_ne_bytes(control[at + word..at + word + 4].try_into().ok()?);
        let typ = i32::from_ne_bytes(control[at + word + 4..at + word + 8].try_into().ok()?);
        if len < CMSG_HDR || at.checked_add(len)? > control.len() {
            return None;
        }
        if lvl == level && typ == kind {
            let data = control.get(at + CMSG_HDR..at + len)?;
            return Some(i32::from_ne_bytes(data.get(..4)?.try_into().ok()?));
        }
        at = at.checked_add(cmsg_align(len))?;
    }
    None
}

/// Reads a `sockaddr_in` or `sockaddr_in6` as the kernel wrote it (family
/// in native byte order, port and address in network order). `af_inet` and
/// `af_inet6` are the platform's family numbers. Unknown families and
/// short input yield `None`.
pub(super) fn read_sockaddr(name: &[u8], af_inet: u16, af_inet6: u16) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(name.get(..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(name.get(2..4)?.try_into().ok()?);
    if family == af_inet {
        let ip: [u8; 4] = name.get(4..8)?.try_into().ok()?;
        Some(SocketAddr::from((ip, port)))
    } else if family == af_inet6 {
        let flowinfo = u32::from_be_bytes(name.get(4..8)?.try_into().ok()?);
        let ip: [u8; 16] = name.get(8..24)?.try_into().ok()?;
        let scope = u32::from_ne_bytes(name.get(24..28)?.try_into().ok()?);
        Some(SocketAddr::V6(std::net::SocketAddrV6::new(
            ip.into(),
            port,
            flowinfo,
            scope,
        )))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Groups lengths the way a backend does: each batch takes what
    /// `try_add` accepts; the first refused datagram starts the next.
    fn group(items: &[(u16, usize)], max_segments: usize, max_bytes: usize) -> Vec<Vec<usize>> {
        let mut out: Vec<Vec<usize>> = Vec::new();
        let mut batch: Option<GsoBatch> = None;
        for &(port, len) in items {
            if let Some(b) = batch.as_mut()
                && b.try_add(addr(port), len)
            {
                if let Some(last) = out.last_mut() {
                    last.push(len);
                }
                continue;
            }
            batch = Some(GsoBatch::new(addr(port), len, max_segments, max_bytes));
            out.push(vec![len]);
        }
        out
    }

    #[test]
    fn equal_sizes_to_one_destination_form_one_batch() {
        let items = vec![(1, 1200); 10];
        assert_eq!(group(&items, 64, MAX_GSO_BYTES), vec![vec![1200; 10]]);
    }

    #[test]
    fn a_shorter_segment_ends_the_batch() {
        let items = [(1, 1200), (1, 1200), (1, 500), (1, 1200), (1, 1200)];
        assert_eq!(
            group(&items, 64, MAX_GSO_BYTES),
            vec![vec![1200, 1200, 500], vec![1200, 1200]]
        );
    }

    #[test]
    fn a_longer_segment_or_another_destination_starts_a_new_batch() {
        let items = [(1, 500), (1, 1200), (2, 1200), (2, 1200), (1, 1200)];
        assert_eq!(
            group(&items, 64, MAX_GSO_BYTES),
            vec![vec![500], vec![1200], vec![1200, 1200], vec![1200]]
        );
    }

    #[test]
    fn batches_respect_the_segment_and_byte_caps() {
        let items = vec![(1, 1200); 150];
        let g = group(&items, 64, MAX_GSO_BYTES);
        // 54 × 1,200 = 64,800 fits the 65,507-byte cap, 55 would not.
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![54, 54, 42]);
        let small = vec![(1, 100); 150];
        let g = group(&small, 64, MAX_GSO_BYTES);
        assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![64, 64, 22]);
        // One segment per send turns GSO off.
        assert_eq!(group(&small[..3], 1, MAX_GSO_BYTES).len(), 3);
    }

    #[test]
    fn batch_reports_its_segment_size_only_when_batched() {
        let mut b = GsoBatch::new(addr(1), 1200, 64, MAX_GSO_BYTES);
        assert_eq!(b.segment_size(), None);
        assert!(b.try_add(addr(1), 1200));
        assert_eq!(b.segment_size(), Some(1200));
        assert_eq!(b.count(), 2);
        assert!(b.try_add(addr(1), 1));
        assert!(b.is_full());
        assert!(!b.try_add(addr(1), 1));
        assert!(!GsoBatch::new(addr(1), 100, 64, MAX_GSO_BYTES).try_add(addr(1), 0));
    }

    #[test]
    fn gro_splits_by_stride_with_a_short_tail() {
        let r: Vec<_> = gro_segments(3000, 1200).collect();
        assert_eq!(r, vec![0..1200, 1200..2400, 2400..3000]);
        let r: Vec<_> = gro_segments(2400, 1200).collect();
        assert_eq!(r, vec![0..1200, 1200..2400]);
        assert_eq!(gro_segments(700, 1200).collect::<Vec<_>>(), vec![0..700]);
        assert_eq!(gro_segments(700, 0).collect::<Vec<_>>(), vec![0..700]);
        assert_eq!(gro_segments(0, 1200).count(), 0);
        assert_eq!(gro_segments(0, 0).count(), 0);
    }

    #[test]
    fn control_messages_round_trip_and_malformed_ones_are_ignored() {
        let mut buf = [0u8; 64];
        let space = write_cmsg_u16(&mut buf, 17, 103, 1200).expect("room");
        assert_eq!(space, cmsg_space(2));
        // A u16 written is not an int read, but the header walk is shared:
        // put an int-sized message after it and find that.
        let mut control = buf[..space].to_vec();
        let mut second = [0u8; 32];
        let len = CMSG_HDR + 4;
        second[..size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
        let at = size_of::<usize>();
        second[at..at + 4].copy_from_slice(&17i32.to_ne_bytes());
        second[at + 4..at + 8].copy_from_slice(&104i32.to_ne_bytes());
        second[CMSG_HDR..CMSG_HDR + 4].copy_from_slice(&1200i32.to_ne_bytes());
        control.extend_from_slice(&second[..cmsg_space(4)]);
        assert_eq!(read_cmsg_int(&control, 17, 104), Some(1200));
        assert_eq!(read_cmsg_int(&control, 17, 105), None);
        assert_eq!(read_cmsg_int(&[], 17, 104), None);
        assert_eq!(read_cmsg_int(&control[..CMSG_HDR + 1], 17, 103), None);
        assert!(write_cmsg_u16(&mut [0u8; 4], 17, 103, 1).is_none());
        // A length pointing past the end, or below the header, is refused.
        let mut bad = control.clone();
        bad[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(read_cmsg_int(&bad, 17, 104), None);
        bad[..size_of::<usize>()].copy_from_slice(&1usize.to_ne_bytes());
        assert_eq!(read_cmsg_int(&bad, 17, 104), None);
    }

    #[test]
    fn socket_addresses_are_read_from_kernel_bytes() {
        let mut v4 = [0u8; 16];
        v4[..2].copy_from_slice(&2u16.to_ne_bytes());
        v4[2..4].copy_from_slice(&5000u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(read_sockaddr(&v4, 2, 10), Some(addr(5000)));
        let mut v6 = [0u8; 28];
        v6[..2].copy_from_slice(&10u16.to_ne_bytes());
        v6[2..4].copy_from_slice(&443u16.to_be_bytes());
        v6[23] = 1;
        assert_eq!(
            read_sockaddr(&v6, 2, 10),
            Some("[::1]:443".parse().expect("addr"))
        );
        assert_eq!(read_sockaddr(&v6[..20], 2, 10), None);
        assert_eq!(read_sockaddr(&v4[..6], 2, 10), None);
        let mut unknown = v4;
        unknown[..2].copy_from_slice(&1u16.to_ne_bytes());
        assert_eq!(read_sockaddr(&unknown, 2, 10), None);
    }
}
