//! Loopback UDP blast: one sender thread, one receiver thread, 127.0.0.1.
//!
//! Compares the receive/send loops an engine could be built on:
//!
//! | backend            | sender                                   | receiver                                     |
//! |--------------------|------------------------------------------|----------------------------------------------|
//! | `plain`            | `send_to`, blocking                      | `recv_from`, blocking                        |
//! | `mmsg`             | `sendmmsg` ×batch                        | `recvmmsg` ×batch                            |
//! | `gso-mmsg`         | `sendmsg` + `UDP_SEGMENT` (GSO)          | `recvmmsg` ×batch, no GRO                    |
//! | `gso-gro`          | `sendmsg` + `UDP_SEGMENT` (GSO)          | `recvmmsg` ×batch + `UDP_GRO`                |
//! | `tokio-uring`      | tokio-uring `send_to`, each awaited      | tokio-uring `recv_from`, each awaited        |
//! | `tokio-uring-inflight` | N `send_to` tasks in flight          | N `recv_from` tasks in flight                |
//! | `uring-ms-gso`     | io-uring `SendMsg` + GSO, K in flight    | io-uring `RecvMsgMulti` + buffer ring        |
//! | `uring-ms-gso-gro` | same                                     | same + `UDP_GRO`                             |
//!
//! Every run is bounded in count and time. It prints one JSON line on stdout
//! and one human-readable line on stderr.

use std::alloc::Layout;
use std::cell::Cell;
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, types};

/// How often a blocked receiver wakes up to check its idle and time limits.
const TICK: Duration = Duration::from_millis(20);
/// Largest UDP payload over IPv4.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// `UDP_MAX_SEGMENTS` in the kernel (64 in older kernels; we stay below it).
const MAX_GSO_SEGMENTS: usize = 64;
/// Size of a receive buffer that can hold one GRO-coalesced datagram.
const GRO_BUF: usize = 65_536;

// The control-message parser below assumes the Linux 64-bit layout of
// `struct cmsghdr` (size_t len, int level, int type).
const _: () = assert!(size_of::<libc::cmsghdr>() == 16);

const BACKENDS: &[&str] = &[
    "plain",
    "mmsg",
    "gso-mmsg",
    "gso-gro",
    "tokio-uring",
    "tokio-uring-inflight",
    "uring-ms-gso",
    "uring-ms-gso-gro",
];

#[derive(Clone, Debug)]
struct Config {
    backend: String,
    size: usize,
    count: u64,
    max_time: Duration,
    idle: Duration,
    /// recvmmsg/sendmmsg batch.
    batch: usize,
    /// Operations in flight (tokio-uring-inflight tasks; io-uring sendmsg SQEs).
    inflight: usize,
    /// Socket buffer size requested for SO_RCVBUF and SO_SNDBUF.
    sockbuf: usize,
}

impl Config {
    /// Segments per GSO `sendmsg`: as many as fit in one UDP datagram, at most 64.
    fn gso_segs(&self) -> usize {
        (MAX_UDP_PAYLOAD / self.size).clamp(1, MAX_GSO_SEGMENTS)
    }
}

#[derive(Default, Debug)]
struct Cpu {
    user: f64,
    sys: f64,
}

#[derive(Default, Debug)]
struct SendStats {
    sent: u64,
    bytes: u64,
    /// Send calls (syscalls or completions).
    ops: u64,
    errors: u64,
    secs: f64,
    /// When this thread started sending (after the start barrier).
    t0: Option<Instant>,
    cpu: Cpu,
}

#[derive(Default, Debug)]
struct RecvStats {
    received: u64,
    bytes: u64,
    /// Receive calls or completions that delivered data.
    ops: u64,
    errors: u64,
    truncated: u64,
    /// Seconds from the start to the last datagram received (the harness
    /// rebases it on the sender's start).
    secs: f64,
    /// When the last datagram arrived.
    last: Option<Instant>,
    cpu: Cpu,
}

#[derive(Debug)]
struct BufInfo {
    rcvbuf: i32,
    sndbuf: i32,
    capped: bool,
    forced: bool,
}

// ---------------------------------------------------------------------------
// Small libc helpers

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6
}

fn rusage(who: libc::c_int) -> Cpu {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`; getrusage only writes to it.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    Cpu {
        user: tv_secs(ru.ru_utime),
        sys: tv_secs(ru.ru_stime),
    }
}

fn thread_cpu() -> Cpu {
    rusage(libc::RUSAGE_THREAD)
}

fn cpu_since(start: &Cpu, now: Cpu) -> Cpu {
    Cpu {
        user: now.user - start.user,
        sys: now.sys - start.sys,
    }
}

fn setsockopt_int(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` lives for the call and its size is passed exactly.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are valid for writes and `len` holds val's size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            opt,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(val)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets one socket buffer to `want` bytes. If `net.core.[rw]mem_max` caps it,
/// retries with the privileged `*BUFFORCE` option. Returns (value the kernel
/// reports, capped, forced); the kernel reports twice the requested size.
fn set_sockbuf(fd: RawFd, opt: libc::c_int, force: libc::c_int, want: usize) -> (i32, bool, bool) {
    let want = want as libc::c_int;
    setsockopt_int(fd, libc::SOL_SOCKET, opt, want).expect("setsockopt SO_*BUF");
    let got = getsockopt_int(fd, libc::SOL_SOCKET, opt).expect("getsockopt SO_*BUF");
    if got >= want * 2 {
        return (got, false, false);
    }
    match setsockopt_int(fd, libc::SOL_SOCKET, force, want) {
        Ok(()) => (
            getsockopt_int(fd, libc::SOL_SOCKET, opt).expect("getsockopt SO_*BUF"),
            true,
            true,
        ),
        Err(_) => (got, true, false),
    }
}

fn set_rcvtimeo(fd: RawFd, d: Duration) {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: `tv` lives for the call and its size is passed exactly.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_RCVTIMEO failed");
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Control buffer, aligned for `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

/// Writes a `UDP_SEGMENT` control message (GSO segment size) into `buf` and
/// returns the control length to put in `msg_controllen`.
fn write_gso_cmsg(buf: &mut CmsgBuf, seg: u16) -> usize {
    let hdr = size_of::<libc::cmsghdr>();
    // CMSG_LEN / CMSG_SPACE for a u16 payload (header is 8-byte aligned).
    let len = hdr + size_of::<u16>();
    let space = hdr + size_of::<u16>().next_multiple_of(8);
    buf.0 = [0; 64];
    buf.0[0..8].copy_from_slice(&len.to_ne_bytes());
    buf.0[8..12].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    buf.0[12..16].copy_from_slice(&libc::UDP_SEGMENT.to_ne_bytes());
    buf.0[hdr..hdr + 2].copy_from_slice(&seg.to_ne_bytes());
    space
}

/// Finds the `UDP_GRO` control message (segment size of a coalesced datagram).
fn gro_segment_size(ctrl: &[u8]) -> Option<usize> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut off = 0;
    while off + hdr <= ctrl.len() {
        let len = usize::from_ne_bytes(ctrl[off..off + 8].try_into().ok()?);
        let level = i32::from_ne_bytes(ctrl[off + 8..off + 12].try_into().ok()?);
        let ty = i32::from_ne_bytes(ctrl[off + 12..off + 16].try_into().ok()?);
        if len < hdr {
            return None;
        }
        if level == libc::SOL_UDP && ty == libc::UDP_GRO && off + hdr + 4 <= ctrl.len() {
            let seg = i32::from_ne_bytes(ctrl[off + hdr..off + hdr + 4].try_into().ok()?);
            return usize::try_from(seg).ok().filter(|&s| s > 0);
        }
        off += (len + 7) & !7;
    }
    None
}

/// Touches every page so the first receives do not pay for page faults
/// (a zeroed `Vec` is mapped lazily).
fn prefault(buf: &mut [u8]) {
    for b in buf.iter_mut().step_by(4096) {
        *b = 1;
    }
    std::hint::black_box(&*buf);
}

/// Datagrams (segments) carried by one received buffer of `len` bytes.
fn segments(len: usize, gro: Option<usize>) -> u64 {
    match gro {
        Some(seg) if len > 0 => len.div_ceil(seg) as u64,
        _ => 1,
    }
}

/// Receiver stop rule: count reached, idle for `idle`, or `max_time` passed.
struct Stopper {
    t0: Instant,
    last: Option<Instant>,
    idle: Duration,
    max_time: Duration,
    count: u64,
}

impl Stopper {
    fn new(cfg: &Config) -> Self {
        Stopper {
            t0: Instant::now(),
            last: None,
            idle: cfg.idle,
            max_time: cfg.max_time,
            count: cfg.count,
        }
    }
    fn done(&self, received: u64, now: Instant) -> bool {
        received >= self.count
            || now.duration_since(self.last.unwrap_or(self.t0)) > self.idle
            || now.duration_since(self.t0) > self.max_time
    }
    fn secs(&self) -> f64 {
        self.last
            .map_or(0.0, |l| l.duration_since(self.t0).as_secs_f64())
    }
}

fn enable_gro(fd: RawFd) {
    setsockopt_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).expect("setsockopt UDP_GRO");
}

// ---------------------------------------------------------------------------
// Plain send_to / recv_from

fn plain_tx(sock: UdpSocket, cfg: &Config, dst: SocketAddr, start: &Barrier) -> SendStats {
    let buf = vec![0xabu8; cfg.size];
    let mut s = SendStats::default();
    start.wait();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while s.sent < cfg.count {
        if s.ops.is_multiple_of(1024) && t0.elapsed() > cfg.max_time {
            break;
        }
        s.ops += 1;
        match sock.send_to(&buf, dst) {
            Ok(n) => {
                s.sent += 1;
                s.bytes += n as u64;
            }
            Err(_) => s.errors += 1,
        }
    }
    s.secs = t0.elapsed().as_secs_f64();
    s.t0 = Some(t0);
    s.cpu = cpu_since(&cpu0, thread_cpu());
    s
}

fn plain_rx(sock: UdpSocket, cfg: &Config, start: &Barrier) -> RecvStats {
    set_rcvtimeo(sock.as_raw_fd(), TICK);
    let mut buf = vec![0u8; 2048];
    let mut r = RecvStats::default();
    start.wait();
    let cpu0 = thread_cpu();
    let mut stop = Stopper::new(cfg);
    loop {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                r.received += 1;
                r.bytes += n as u64;
                r.ops += 1;
                // Reading the clock per datagram costs ~20 ns (vDSO); fine here.
                stop.last = Some(Instant::now());
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.done(r.received, Instant::now()) {
                    break;
                }
                continue;
            }
            Err(_) => r.errors += 1,
        }
        if r.received >= cfg.count
            || (r.received.is_multiple_of(256) && stop.done(r.received, Instant::now()))
        {
            break;
        }
    }
    r.secs = stop.secs();
    r.last = stop.last;
    r.cpu = cpu_since(&cpu0, thread_cpu());
    r
}

// ---------------------------------------------------------------------------
// sendmmsg / recvmmsg, sendmsg + GSO

fn mmsg_tx(sock: UdpSocket, cfg: &Config, dst: SocketAddrV4, start: &Barrier) -> SendStats {
    let fd = sock.as_raw_fd();
    let buf = vec![0xabu8; cfg.size];
    let mut name = sockaddr_in(dst);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: cfg.size,
    };
    // SAFETY: an all-zero `mmsghdr` is a valid value of this plain C struct.
    let mut hdrs: Vec<libc::mmsghdr> = (0..cfg.batch).map(|_| unsafe { zeroed() }).collect();
    for h in &mut hdrs {
        h.msg_hdr.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
        h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        h.msg_hdr.msg_iov = &mut iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let mut s = SendStats::default();
    start.wait();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while s.sent < cfg.count {
        if s.ops.is_multiple_of(64) && t0.elapsed() > cfg.max_time {
            break;
        }
        let n = (cfg.count - s.sent).min(cfg.batch as u64) as u32;
        s.ops += 1;
        // SAFETY: `hdrs` holds at least `n` initialised headers whose name,
        // iovec and payload pointers all outlive the call; the kernel only
        // reads them and writes `msg_len`.
        let rc = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), n, 0) };
        if rc < 0 {
            s.errors += 1;
        } else {
            s.sent += rc as u64;
            s.bytes += rc as u64 * cfg.size as u64;
        }
    }
    s.secs = t0.elapsed().as_secs_f64();
    s.t0 = Some(t0);
    s.cpu = cpu_since(&cpu0, thread_cpu());
    s
}

fn gso_tx(sock: UdpSocket, cfg: &Config, dst: SocketAddrV4, start: &Barrier) -> SendStats {
    let fd = sock.as_raw_fd();
    let segs = cfg.gso_segs();
    let buf = vec![0xabu8; cfg.size * segs];
    let mut name = sockaddr_in(dst);
    let mut ctrl = CmsgBuf([0; 64]);
    let ctrl_len = write_gso_cmsg(&mut ctrl, cfg.size as u16);
    let mut iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero `msghdr` is a valid value of this plain C struct.
    let mut msg: libc::msghdr = unsafe { zeroed() };
    msg.msg_name = (&mut name as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.0.as_mut_ptr().cast();
    msg.msg_controllen = ctrl_len;
    let mut s = SendStats::default();
    start.wait();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    while s.sent < cfg.count {
        if s.ops.is_multiple_of(64) && t0.elapsed() > cfg.max_time {
            break;
        }
        let n = (cfg.count - s.sent).min(segs as u64) as usize;
        iov.iov_len = n * cfg.size;
        msg.msg_iov = &mut iov;
        s.ops += 1;
        // SAFETY: `msg` points at `name`, `iov` (→ `buf`) and `ctrl`, all
        // alive and unmoved for the call; the kernel only reads them.
        let rc = unsafe { libc::sendmsg(fd, &msg, 0) };
        if rc < 0 {
            s.errors += 1;
        } else {
            s.sent += rc as u64 / cfg.size as u64;
            s.bytes += rc as u64;
        }
    }
    s.secs = t0.elapsed().as_secs_f64();
    s.t0 = Some(t0);
    s.cpu = cpu_since(&cpu0, thread_cpu());
    s
}

fn mmsg_rx(sock: UdpSocket, cfg: &Config, gro: bool, start: &Barrier) -> RecvStats {
    let fd = sock.as_raw_fd();
    if gro {
        enable_gro(fd);
    }
    set_rcvtimeo(fd, TICK);
    let buflen = if gro { GRO_BUF } else { 2048 };
    let batch = cfg.batch;
    let mut bufs = vec![0u8; buflen * batch];
    prefault(&mut bufs);
    let mut ctrls = vec![CmsgBuf([0; 64]); batch];
    let mut iovs: Vec<libc::iovec> = (0..batch)
        .map(|i| libc::iovec {
            // SAFETY: i * buflen < bufs.len(), so the offset stays in the allocation.
            iov_base: unsafe { bufs.as_mut_ptr().add(i * buflen) }.cast(),
            iov_len: buflen,
        })
        .collect();
    // SAFETY: an all-zero `mmsghdr` is a valid value of this plain C struct.
    let mut hdrs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { zeroed() }).collect();
    let mut r = RecvStats::default();
    start.wait();
    let cpu0 = thread_cpu();
    let mut stop = Stopper::new(cfg);
    loop {
        for (i, h) in hdrs.iter_mut().enumerate() {
            h.msg_hdr.msg_iov = &mut iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            if gro {
                h.msg_hdr.msg_control = ctrls[i].0.as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = 64;
            }
        }
        // SAFETY: every header points at its own iovec (→ a disjoint slice of
        // `bufs`) and control buffer, all alive and unmoved for the call;
        // `batch` is the length of `hdrs`.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                batch as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        let now = Instant::now();
        if rc > 0 {
            r.ops += 1;
            for (i, h) in hdrs.iter().take(rc as usize).enumerate() {
                let len = h.msg_len as usize;
                if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    r.truncated += 1;
                }
                let seg = if gro {
                    gro_segment_size(&ctrls[i].0[..h.msg_hdr.msg_controllen.min(64)])
                } else {
                    None
                };
                r.received += segments(len, seg);
                r.bytes += len as u64;
            }
            stop.last = Some(now);
        } else if rc < 0 {
            let e = io::Error::last_os_error();
            if !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) {
                r.errors += 1;
            }
        }
        if stop.done(r.received, now) {
            break;
        }
    }
    r.secs = stop.secs();
    r.last = stop.last;
    r.cpu = cpu_since(&cpu0, thread_cpu());
    r
}

// ---------------------------------------------------------------------------
// io-uring crate: SendMsg + GSO, K in flight / RecvMsgMulti + provided-buffer ring

const BGID: u16 = 7;
const RECV_TAG: u64 = u64::MAX;

fn uring_tx(sock: UdpSocket, cfg: &Config, dst: SocketAddrV4, start: &Barrier) -> SendStats {
    let fd = types::Fd(sock.as_raw_fd());
    let k = cfg.inflight.max(1);
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build((k as u32).next_power_of_two().max(8))
        .expect("io_uring setup (blocked by seccomp?)");
    let segs = cfg.gso_segs();
    let buf = vec![0xabu8; cfg.size * segs];
    let name = sockaddr_in(dst);
    struct Slot {
        msg: libc::msghdr,
        iov: libc::iovec,
        ctrl: CmsgBuf,
    }
    // Boxed so the kernel-visible addresses stay put while SQEs are in flight.
    let mut slots: Vec<Box<Slot>> = (0..k)
        .map(|_| {
            Box::new(Slot {
                // SAFETY: an all-zero `msghdr` is a valid value of this plain C struct.
                msg: unsafe { zeroed() },
                iov: libc::iovec {
                    iov_base: buf.as_ptr() as *mut libc::c_void,
                    iov_len: 0,
                },
                ctrl: CmsgBuf([0; 64]),
            })
        })
        .collect();
    let mut free: Vec<usize> = (0..k).collect();
    let mut s = SendStats::default();
    let mut queued: u64 = 0;
    let mut inflight = 0usize;
    start.wait();
    let cpu0 = thread_cpu();
    let t0 = Instant::now();
    loop {
        let time_up = t0.elapsed() > cfg.max_time;
        while !time_up && queued < cfg.count {
            let Some(i) = free.pop() else { break };
            let n = (cfg.count - queued).min(segs as u64) as usize;
            let slot = &mut *slots[i];
            slot.iov.iov_len = n * cfg.size;
            let clen = write_gso_cmsg(&mut slot.ctrl, cfg.size as u16);
            slot.msg.msg_name =
                (&name as *const libc::sockaddr_in as *mut libc::sockaddr_in).cast();
            slot.msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            slot.msg.msg_iov = &mut slot.iov;
            slot.msg.msg_iovlen = 1;
            slot.msg.msg_control = slot.ctrl.0.as_mut_ptr().cast();
            slot.msg.msg_controllen = clen;
            let sqe = opcode::SendMsg::new(fd, &slot.msg)
                .build()
                .user_data(i as u64);
            // SAFETY: the slot (msghdr, iovec, cmsg), `name` and `buf` stay
            // alive and unmoved until this SQE's completion is reaped below:
            // the slot index only returns to `free` after its CQE.
            unsafe { ring.submission().push(&sqe) }.expect("submission queue full");
            queued += n as u64;
            inflight += 1;
        }
        if inflight == 0 {
            break;
        }
        let ts = types::Timespec::from(Duration::from_millis(100));
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        for cqe in ring.completion() {
            let i = cqe.user_data() as usize;
            let res = cqe.result();
            s.ops += 1;
            if res < 0 {
                s.errors += 1;
            } else {
                s.sent += res as u64 / cfg.size as u64;
                s.bytes += res as u64;
            }
            free.push(i);
            inflight -= 1;
        }
    }
    s.secs = t0.elapsed().as_secs_f64();
    s.t0 = Some(t0);
    s.cpu = cpu_since(&cpu0, thread_cpu());
    drop(ring);
    s
}

fn uring_rx(sock: UdpSocket, cfg: &Config, gro: bool, start: &Barrier) -> RecvStats {
    let raw = sock.as_raw_fd();
    if gro {
        enable_gro(raw);
    }
    let fd = types::Fd(raw);
    // Without GRO a buffer holds one datagram (+ the recvmsg_out header, name,
    // control); with GRO one coalesced super-datagram of up to 64 KiB.
    let (nbufs, buflen): (u16, usize) = if gro {
        (256, GRO_BUF + 512)
    } else {
        (4096, 2048)
    };
    let mask = nbufs - 1;
    let mut ring: IoUring = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(8192)
        .build(64)
        .expect("io_uring setup (blocked by seccomp?)");
    let layout = Layout::from_size_align(nbufs as usize * size_of::<types::BufRingEntry>(), 4096)
        .expect("buffer ring layout");
    // SAFETY: the layout has a non-zero size.
    let ring_mem = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<types::BufRingEntry>();
    assert!(!ring_mem.is_null(), "buffer ring allocation failed");
    let mut bufs = vec![0u8; nbufs as usize * buflen];
    prefault(&mut bufs);
    let base = bufs.as_mut_ptr();
    // SAFETY: `ring_mem` is page-aligned, zeroed, holds `nbufs` entries and
    // outlives the ring (it is freed only after `ring` is dropped below).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(ring_mem as u64, nbufs, BGID, 0)
    }
    .expect("register provided-buffer ring (kernel >= 5.19)");
    // SAFETY: `ring_mem` points at the first entry of the registered ring.
    let tail_ptr = unsafe { types::BufRingEntry::tail(ring_mem) }.cast_mut();
    // SAFETY: the tail is a naturally aligned u16 shared with the kernel,
    // which reads it concurrently; it must be accessed atomically.
    let tail = unsafe { AtomicU16::from_ptr(tail_ptr) };
    let provide = |slot: u16, bid: u16| {
        // SAFETY: slot < nbufs, so the entry is inside the ring allocation;
        // the kernel does not read entries between head and the published tail.
        let e = unsafe { &mut *ring_mem.add(slot as usize) };
        // SAFETY: bid < nbufs, so the offset stays inside `bufs`.
        e.set_addr(unsafe { base.add(bid as usize * buflen) } as u64);
        e.set_len(buflen as u32);
        e.set_bid(bid);
    };
    for bid in 0..nbufs {
        provide(bid, bid);
    }
    let mut local_tail: u16 = nbufs;
    tail.store(local_tail, Ordering::Release);

    // SAFETY: an all-zero `msghdr` is a valid value of this plain C struct.
    let mut msghdr: libc::msghdr = unsafe { zeroed() };
    msghdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msghdr.msg_controllen = if gro { 64 } else { 0 };
    let arm = |ring: &mut IoUring| {
        let sqe = opcode::RecvMsgMulti::new(fd, &msghdr, BGID)
            .build()
            .user_data(RECV_TAG);
        // SAFETY: `msghdr` outlives the ring (declared before any completion
        // loop, dropped after it); the kernel reads only its name/control lengths.
        unsafe { ring.submission().push(&sqe) }.expect("submission queue full");
    };
    arm(&mut ring);
    ring.submit().expect("io_uring_enter");

    let mut r = RecvStats::default();
    let mut rearms = 0u64;
    start.wait();
    let cpu0 = thread_cpu();
    let mut stop = Stopper::new(cfg);
    loop {
        let ts = types::Timespec::from(TICK);
        let args = types::SubmitArgs::new().timespec(&ts);
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => panic!("io_uring_enter: {e}"),
        }
        let mut rearm = false;
        let mut got = false;
        for cqe in ring.completion() {
            let res = cqe.result();
            let flags = cqe.flags();
            if !cqueue::more(flags) {
                rearm = true;
            }
            if res < 0 {
                if res != -libc::ENOBUFS {
                    r.errors += 1;
                }
                continue;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                r.errors += 1;
                continue;
            };
            let start_off = bid as usize * buflen;
            let data = &bufs[start_off..start_off + res as usize];
            match types::RecvMsgOut::parse(data, &msghdr) {
                Ok(out) => {
                    let n = out.payload_data().len();
                    if out.is_payload_truncated() {
                        r.truncated += 1;
                    }
                    let seg = if gro {
                        gro_segment_size(out.control_data())
                    } else {
                        None
                    };
                    r.received += segments(n, seg);
                    r.bytes += n as u64;
                    r.ops += 1;
                    got = true;
                }
                Err(()) => r.errors += 1,
            }
            provide(local_tail & mask, bid);
            local_tail = local_tail.wrapping_add(1);
        }
        tail.store(local_tail, Ordering::Release);
        let now = Instant::now();
        if got {
            stop.last = Some(now);
        }
        if stop.done(r.received, now) {
            break;
        }
        if rearm {
            rearms += 1;
            arm(&mut ring);
        }
    }
    r.secs = stop.secs();
    r.last = stop.last;
    r.cpu = cpu_since(&cpu0, thread_cpu());
    if rearms > 1 {
        eprintln!("  (uring receiver re-armed multishot {rearms} times: buffer ring ran dry)");
    }
    drop(ring);
    // SAFETY: the ring that referenced this memory has been dropped (closed).
    unsafe { std::alloc::dealloc(ring_mem.cast(), layout) };
    drop(bufs);
    r
}

// ---------------------------------------------------------------------------
// tokio-uring

async fn tokio_uring_send_worker(
    sock: Rc<tokio_uring::net::UdpSocket>,
    cfg: Rc<Config>,
    dst: SocketAddr,
    t0: Instant,
    claimed: Rc<Cell<u64>>,
    s: Rc<Cell<(u64, u64, u64)>>,
) {
    let mut buf = vec![0xabu8; cfg.size];
    let mut ops = 0u64;
    while claimed.get() < cfg.count {
        if ops.is_multiple_of(1024) && t0.elapsed() > cfg.max_time {
            break;
        }
        claimed.set(claimed.get() + 1);
        ops += 1;
        let (res, b) = sock.send_to(buf, dst).await;
        buf = b;
        let (sent, bytes, errors) = s.get();
        match res {
            Ok(n) => s.set((sent + 1, bytes + n as u64, errors)),
            Err(_) => s.set((sent, bytes, errors + 1)),
        }
    }
}

fn tokio_uring_tx(
    sock: UdpSocket,
    cfg: &Config,
    dst: SocketAddr,
    inflight: usize,
    start: &Barrier,
) -> SendStats {
    let cfg = Rc::new(cfg.clone());
    tokio_uring::start(async move {
        let sock = Rc::new(tokio_uring::net::UdpSocket::from_std(sock));
        let claimed = Rc::new(Cell::new(0u64));
        let counts = Rc::new(Cell::new((0u64, 0u64, 0u64)));
        start.wait();
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        if inflight <= 1 {
            tokio_uring_send_worker(
                sock.clone(),
                cfg.clone(),
                dst,
                t0,
                claimed.clone(),
                counts.clone(),
            )
            .await;
        } else {
            let handles: Vec<_> = (0..inflight)
                .map(|_| {
                    tokio_uring::spawn(tokio_uring_send_worker(
                        sock.clone(),
                        cfg.clone(),
                        dst,
                        t0,
                        claimed.clone(),
                        counts.clone(),
                    ))
                })
                .collect();
            for h in handles {
                h.await.expect("send task panicked");
            }
        }
        let (sent, bytes, errors) = counts.get();
        SendStats {
            sent,
            bytes,
            ops: claimed.get(),
            errors,
            secs: t0.elapsed().as_secs_f64(),
            t0: Some(t0),
            cpu: cpu_since(&cpu0, thread_cpu()),
        }
    })
}

#[derive(Default)]
struct TuRx {
    received: Cell<u64>,
    bytes: Cell<u64>,
    errors: Cell<u64>,
    last: Cell<Option<Instant>>,
}

async fn tokio_uring_recv_worker(sock: Rc<tokio_uring::net::UdpSocket>, count: u64, st: Rc<TuRx>) {
    let mut buf = vec![0u8; 2048];
    while st.received.get() < count {
        let (res, b) = sock.recv_from(buf).await;
        buf = b;
        match res {
            Ok((n, _)) => {
                st.received.set(st.received.get() + 1);
                st.bytes.set(st.bytes.get() + n as u64);
                st.last.set(Some(Instant::now()));
            }
            Err(_) => st.errors.set(st.errors.get() + 1),
        }
    }
}

fn tokio_uring_rx(sock: UdpSocket, cfg: &Config, inflight: usize, start: &Barrier) -> RecvStats {
    tokio_uring::start(async move {
        let sock = Rc::new(tokio_uring::net::UdpSocket::from_std(sock));
        let st = Rc::new(TuRx::default());
        start.wait();
        let cpu0 = thread_cpu();
        let mut stop = Stopper::new(cfg);
        // The workers await each recv_from; a watchdog ends the run on count,
        // idle or time (cancelling a pending recv would lose its datagram, so
        // the workers are never timed out individually).
        for _ in 0..inflight.max(1) {
            tokio_uring::spawn(tokio_uring_recv_worker(sock.clone(), cfg.count, st.clone()));
        }
        loop {
            tokio::time::sleep(TICK).await;
            stop.last = st.last.get();
            if stop.done(st.received.get(), Instant::now()) {
                break;
            }
        }
        RecvStats {
            received: st.received.get(),
            bytes: st.bytes.get(),
            ops: st.received.get(),
            errors: st.errors.get(),
            truncated: 0,
            secs: stop.secs(),
            last: stop.last,
            cpu: cpu_since(&cpu0, thread_cpu()),
        }
    })
}

// ---------------------------------------------------------------------------
// Harness

fn run(cfg: &Config) -> (SendStats, RecvStats, Cpu, BufInfo) {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    let (rcvbuf, rcap, rforce) = set_sockbuf(
        rx.as_raw_fd(),
        libc::SO_RCVBUF,
        libc::SO_RCVBUFFORCE,
        cfg.sockbuf,
    );
    let (sndbuf, scap, sforce) = set_sockbuf(
        tx.as_raw_fd(),
        libc::SO_SNDBUF,
        libc::SO_SNDBUFFORCE,
        cfg.sockbuf,
    );
    let bufinfo = BufInfo {
        rcvbuf,
        sndbuf,
        capped: rcap || scap,
        forced: rforce || sforce,
    };
    let dst = match rx.local_addr().expect("local_addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    };
    let start = Arc::new(Barrier::new(3));
    let b = cfg.backend.as_str();

    let rcfg = cfg.clone();
    let rstart = start.clone();
    let rb = b.to_owned();
    let receiver = std::thread::Builder::new()
        .name("rx".into())
        .spawn(move || match rb.as_str() {
            "plain" => plain_rx(rx, &rcfg, &rstart),
            "mmsg" | "gso-mmsg" => mmsg_rx(rx, &rcfg, false, &rstart),
            "gso-gro" => mmsg_rx(rx, &rcfg, true, &rstart),
            "tokio-uring" => tokio_uring_rx(rx, &rcfg, 1, &rstart),
            "tokio-uring-inflight" => tokio_uring_rx(rx, &rcfg, rcfg.inflight, &rstart),
            "uring-ms-gso" => uring_rx(rx, &rcfg, false, &rstart),
            "uring-ms-gso-gro" => uring_rx(rx, &rcfg, true, &rstart),
            other => panic!("unknown backend {other}"),
        })
        .expect("spawn receiver");

    let scfg = cfg.clone();
    let sstart = start.clone();
    let sb = b.to_owned();
    let sender = std::thread::Builder::new()
        .name("tx".into())
        .spawn(move || match sb.as_str() {
            "plain" => plain_tx(tx, &scfg, SocketAddr::V4(dst), &sstart),
            "mmsg" => mmsg_tx(tx, &scfg, dst, &sstart),
            "gso-mmsg" | "gso-gro" => gso_tx(tx, &scfg, dst, &sstart),
            "tokio-uring" => tokio_uring_tx(tx, &scfg, SocketAddr::V4(dst), 1, &sstart),
            "tokio-uring-inflight" => {
                tokio_uring_tx(tx, &scfg, SocketAddr::V4(dst), scfg.inflight, &sstart)
            }
            "uring-ms-gso" | "uring-ms-gso-gro" => uring_tx(tx, &scfg, dst, &sstart),
            other => panic!("unknown backend {other}"),
        })
        .expect("spawn sender");

    start.wait();
    let p0 = rusage(libc::RUSAGE_SELF);
    let s = sender.join().expect("sender panicked");
    let mut r = receiver.join().expect("receiver panicked");
    // Both rates are measured from the sender's first send: the receiver's
    // own start can be late by a scheduling delay on a busy 2-core machine.
    if let (Some(t0), Some(last)) = (s.t0, r.last) {
        r.secs = last.saturating_duration_since(t0).as_secs_f64();
    }
    let proc_cpu = cpu_since(&p0, rusage(libc::RUSAGE_SELF));
    (s, r, proc_cpu, bufinfo)
}

fn json_line(cfg: &Config, s: &SendStats, r: &RecvStats, p: &Cpu, b: &BufInfo) -> String {
    let rate = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let loss = s.sent.saturating_sub(r.received);
    format!(
        concat!(
            "{{\"backend\":\"{}\",\"size\":{},\"count\":{},\"batch\":{},\"inflight\":{},\"gso_segs\":{},",
            "\"sent\":{},\"received\":{},\"loss\":{},\"loss_pct\":{:.3},",
            "\"send_secs\":{:.6},\"recv_secs\":{:.6},\"sent_per_s\":{:.0},\"recv_per_s\":{:.0},\"recv_mb_s\":{:.2},",
            "\"send_ops\":{},\"recv_ops\":{},\"send_errors\":{},\"recv_errors\":{},\"truncated\":{},",
            "\"tx_cpu_user\":{:.4},\"tx_cpu_sys\":{:.4},\"rx_cpu_user\":{:.4},\"rx_cpu_sys\":{:.4},",
            "\"proc_cpu\":{:.4},\"rcvbuf\":{},\"sndbuf\":{},\"buf_capped\":{},\"buf_forced\":{}}}"
        ),
        cfg.backend,
        cfg.size,
        cfg.count,
        cfg.batch,
        cfg.inflight,
        cfg.gso_segs(),
        s.sent,
        r.received,
        loss,
        if s.sent > 0 {
            100.0 * loss as f64 / s.sent as f64
        } else {
            0.0
        },
        s.secs,
        r.secs,
        rate(s.sent, s.secs),
        rate(r.received, r.secs),
        if r.secs > 0.0 {
            r.bytes as f64 / r.secs / 1e6
        } else {
            0.0
        },
        s.ops,
        r.ops,
        s.errors,
        r.errors,
        r.truncated,
        s.cpu.user,
        s.cpu.sys,
        r.cpu.user,
        r.cpu.sys,
        p.user + p.sys,
        b.rcvbuf,
        b.sndbuf,
        b.capped,
        b.forced,
    )
}

fn human_line(cfg: &Config, s: &SendStats, r: &RecvStats, p: &Cpu) -> String {
    let rate = |n: u64, secs: f64| {
        if secs > 0.0 {
            n as f64 / secs / 1e3
        } else {
            0.0
        }
    };
    format!(
        "{:<21} {:>5} B  sent {:>9.0} k/s  recv {:>9.0} k/s {:>8.1} MB/s  loss {:>6.2} %  cpu tx {:>5.2}s rx {:>5.2}s proc {:>5.2}s",
        cfg.backend,
        cfg.size,
        rate(s.sent, s.secs),
        rate(r.received, r.secs),
        if r.secs > 0.0 {
            r.bytes as f64 / r.secs / 1e6
        } else {
            0.0
        },
        if s.sent > 0 {
            100.0 * s.sent.saturating_sub(r.received) as f64 / s.sent as f64
        } else {
            0.0
        },
        s.cpu.user + s.cpu.sys,
        r.cpu.user + r.cpu.sys,
        p.user + p.sys,
    )
}

const USAGE: &str = "usage: udp-backends [--backend NAME|all] [--size BYTES|all] [--count N] [--max-secs S]
                    [--idle-ms MS] [--batch N] [--inflight N] [--sockbuf BYTES] [--list]
  backends: plain mmsg gso-mmsg gso-gro tokio-uring tokio-uring-inflight uring-ms-gso uring-ms-gso-gro
  defaults: --backend all --size all (100 and 1200) --count 2000000 --max-secs 10 --idle-ms 1000
            --batch 32 --inflight 32 (tokio-uring-inflight) / 8 (uring-ms-*) --sockbuf 8388608
  One JSON line per run on stdout, a human-readable line per run on stderr.";

fn main() {
    let mut backends: Vec<String> = BACKENDS.iter().map(|s| s.to_string()).collect();
    let mut sizes = vec![100usize, 1200];
    let mut base = Config {
        backend: String::new(),
        size: 0,
        count: 2_000_000,
        max_time: Duration::from_secs(10),
        idle: Duration::from_millis(1000),
        batch: 32,
        inflight: 0,
        sockbuf: 8 << 20,
    };
    let mut inflight: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| panic!("{a} needs a value\n{USAGE}"))
        };
        let num = |v: String| -> u64 {
            v.parse()
                .unwrap_or_else(|_| panic!("not a number: {v}\n{USAGE}"))
        };
        match a.as_str() {
            "--backend" => {
                let v = val();
                if v != "all" {
                    assert!(
                        BACKENDS.contains(&v.as_str()),
                        "unknown backend {v}\n{USAGE}"
                    );
                    backends = vec![v];
                }
            }
            "--size" => {
                let v = val();
                if v != "all" {
                    sizes = vec![num(v) as usize];
                }
            }
            "--count" => base.count = num(val()),
            "--max-secs" => base.max_time = Duration::from_secs(num(val())),
            "--idle-ms" => base.idle = Duration::from_millis(num(val())),
            "--batch" => base.batch = num(val()).max(1) as usize,
            "--inflight" => inflight = Some(num(val()).max(1) as usize),
            "--sockbuf" => base.sockbuf = num(val()) as usize,
            "--list" => {
                println!("{}", BACKENDS.join("\n"));
                return;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => panic!("unknown argument {other}\n{USAGE}"),
        }
    }
    for &size in &sizes {
        assert!(
            (1..=1472).contains(&size),
            "size must be 1..=1472 (one loopback-MTU-sized datagram)"
        );
        for b in &backends {
            let mut cfg = base.clone();
            cfg.backend = b.clone();
            cfg.size = size;
            cfg.inflight = match b.as_str() {
                "tokio-uring-inflight" => inflight.unwrap_or(32),
                "uring-ms-gso" | "uring-ms-gso-gro" => inflight.unwrap_or(8),
                _ => 1,
            };
            let (s, r, p, bi) = run(&cfg);
            println!("{}", json_line(&cfg, &s, &r, &p, &bi));
            eprintln!("{}", human_line(&cfg, &s, &r, &p));
        }
    }
}
