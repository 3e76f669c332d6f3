//! The io_uring backend (Linux 6.0 or newer).
//!
//! - Receive: one multishot `recvmsg` (`RecvMsgMulti`) that picks its
//!   buffers from a registered provided-buffer ring. Each completion holds
//!   one datagram, or one GRO train (`UDP_GRO` is on; the `UDP_GRO` control
//!   message gives the segment size to split it by). The kernel ends the
//!   multishot when it runs out of buffers (`ENOBUFS`) or on an error; a
//!   completion without the `MORE` flag says so and the next turn re-arms
//!   it. A buffer goes back to the ring as soon as its datagram is handed to
//!   the hub: the payload is **copied** into a `Bytes` first (one copy per
//!   datagram train), because the hub (SCTP reassembly) may keep
//!   received data for as long as it likes and a ring buffer cannot wait
//!   for that. Handing ring buffers to the hub without a copy would need a
//!   `Bytes` owner that returns the buffer on drop and a ring that tolerates
//!   long-held buffers; not done yet.
//! - Send: `sendmsg` from a fixed set of send slots; consecutive transmits
//!   to one destination with equal sizes (the last may be shorter) go in one
//!   `sendmsg` with UDP GSO (`UDP_SEGMENT`), up to 64 segments or 64 KiB,
//!   each segment pointing at its own `Bytes` (no copy). A slot keeps its
//!   message header, address, control message and payloads alive until its
//!   completion arrives. When every slot is in flight, the worker stops
//!   taking transmits from the hub until completions free one: nothing is
//!   dropped and memory stays bounded.
//! - Wait: one `io_uring_enter` per loop turn submits everything queued and
//!   waits for a completion with the hub's next deadline as timeout
//!   (`submit_with_args` with a timespec).
//! - Wake-ups from other threads write an eventfd that the ring reads.
//! - Ring setup asks for the strongest flags the kernel takes:
//!   `SINGLE_ISSUER | DEFER_TASKRUN`, then `SINGLE_ISSUER | COOP_TASKRUN`,
//!   then `COOP_TASKRUN`, then none (each step on `EINVAL`). The ring is
//!   created, used and dropped on the worker's thread.
//!
//! Setup probes what the backend needs (opcodes, the timeout argument, the
//! buffer ring, and a multishot receive armed once) so that an unsuitable
//! kernel is detected before the engine starts, not while it runs.
//!
//! This is the only module of the crate with `unsafe`; every block says
//! why it holds.
#![allow(unsafe_code)]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::UnsafeCell;
use std::fs::File;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{BufRingEntry, Fd, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode};

use super::batch::{
    GsoBatch, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, cmsg_space, gro_segments, read_cmsg_int,
    read_sockaddr, write_cmsg_u16,
};
use super::worker::Core;
use super::{Io, RECV_BUFFER, Wake};
use crate::hub::Hub;
use crate::proto::Transmit;

/// `user_data` of the multishot receive.
const RECV: u64 = u64::MAX;
/// `user_data` of the eventfd read.
const WAKE: u64 = u64::MAX - 1;
/// `user_data` of cancellations at shutdown.
const CANCEL: u64 = u64::MAX - 2;
// Send slots use their index as `user_data`.

/// Submission queue size: room for every send slot plus the receive, the
/// eventfd read and their cancellations, so a push never finds it full.
const RING_ENTRIES: u32 = 256;
/// Completion queue size (a burst of receives plus every send).
const CQ_ENTRIES: u32 = 1024;
/// Sends in flight at most.
const SEND_SLOTS: usize = 128;
/// Provided receive buffers (a power of two, as the ring requires). A burst
/// larger than this between two turns ends the multishot with `ENOBUFS`;
/// the rest waits in the socket buffer until it is re-armed.
const RECV_BUFS: u16 = 64;
/// The buffer group id of the ring.
const BGID: u16 = 0;
/// `struct io_uring_recvmsg_out`: four `u32`s the kernel puts first.
const RECVMSG_OUT: usize = 16;
/// Room for the source address (`sockaddr_in6` is 28 bytes).
const NAME_LEN: usize = 32;
/// Room for received control messages (`UDP_GRO` needs `cmsg_space(4)`).
const CONTROL_LEN: usize = 64;
/// One provided buffer: header, address, control messages, payload.
const BUF_LEN: usize = RECVMSG_OUT + NAME_LEN + CONTROL_LEN + RECV_BUFFER;
/// Room for the `UDP_SEGMENT` control message of a send.
const SEND_CONTROL: usize = cmsg_space(2);
/// How long dropping the backend waits for the kernel to finish with its
/// buffers before it leaks them instead of freeing memory still in use.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// A registered ring of provided receive buffers: `RECV_BUFS` entries in a
/// page-aligned array the kernel reads, and the buffers they point at.
struct BufRing {
    entries: NonNull<BufRingEntry>,
    entries_layout: Layout,
    memory: NonNull<u8>,
    memory_layout: Layout,
    /// The tail as this side knows it (published with `publish`).
    tail: u16,
    /// Set when the kernel might still use the memory at drop: leak it.
    leak: bool,
}

impl BufRing {
    fn new() -> io::Result<Self> {
        let count = usize::from(RECV_BUFS);
        let entries_layout = Layout::from_size_align(count * size_of::<BufRingEntry>(), 4096)
            .map_err(io::Error::other)?;
        let memory_layout =
            Layout::from_size_align(count * BUF_LEN, 64).map_err(io::Error::other)?;
        // SAFETY: both layouts have a non-zero size (count > 0).
        let entries = NonNull::new(unsafe { alloc_zeroed(entries_layout) }.cast::<BufRingEntry>());
        // SAFETY: as above. Zeroed so that every byte is initialised before
        // anything reads it.
        let memory = NonNull::new(unsafe { alloc_zeroed(memory_layout) });
        let (Some(entries), Some(memory)) = (entries, memory) else {
            // SAFETY: each pointer is freed only if it was allocated, with
            // the layout it was allocated with.
            unsafe {
                if let Some(e) = entries {
                    dealloc(e.as_ptr().cast(), entries_layout);
                }
                if let Some(m) = memory {
                    dealloc(m.as_ptr(), memory_layout);
                }
            }
            return Err(io::ErrorKind::OutOfMemory.into());
        };
        let mut ring = Self {
            entries,
            entries_layout,
            memory,
            memory_layout,
            tail: 0,
            leak: false,
        };
        for bid in 0..RECV_BUFS {
            ring.push(bid);
        }
        ring.publish();
        Ok(ring)
    }

    /// Registers the ring with `ring` as buffer group `BGID`.
    fn register(&self, ring: &IoUring) -> io::Result<()> {
        // SAFETY: the entry array is `RECV_BUFS` entries, page-aligned, and
        // lives until this `BufRing` is dropped; `UringIo`'s drop unregisters
        // the group first, or leaks the memory if the kernel might still use
        // it.
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                self.entries.as_ptr() as u64,
                RECV_BUFS,
                BGID,
                0,
            )
        }
    }

    /// Gives buffer `bid` (back) to the kernel; visible after `publish`.
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (RECV_BUFS - 1));
        let bid = bid % RECV_BUFS;
        // SAFETY: `index < RECV_BUFS`, inside the entry array. The kernel
        // only reads entries between its head and the published tail; the
        // entry at our (unpublished) tail is ours to write. Entry 0's `resv`
        // field doubles as the shared tail: the setters below write `addr`,
        // `len` and `bid` only, never that field.
        let entry = unsafe { &mut *self.entries.as_ptr().add(index) };
        // SAFETY: `bid < RECV_BUFS`, so the offset stays inside `memory`.
        let addr = unsafe { self.memory.as_ptr().add(usize::from(bid) * BUF_LEN) };
        entry.set_addr(addr as u64);
        entry.set_len(BUF_LEN as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the pushed buffers visible to the kernel.
    fn publish(&self) {
        // SAFETY: `entries` points at the first, initialised entry of the
        // ring, as `BufRingEntry::tail` requires.
        let tail = unsafe { BufRingEntry::tail(self.entries.as_ptr()) }.cast_mut();
        // SAFETY: the tail is a naturally aligned `u16` inside the entry
        // array, which outlives this call; the kernel only reads it, and
        // all of our accesses to it go through this atomic.
        let tail = unsafe { AtomicU16::from_ptr(tail) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, which a completion just gave
    /// back to us.
    fn buffer(&self, bid: u16, len: usize) -> Option<&[u8]> {
        if bid >= RECV_BUFS {
            return None;
        }
        let len = len.min(BUF_LEN);
        // SAFETY: the range is inside `memory` (bid < RECV_BUFS, len <=
        // BUF_LEN) and initialised (zeroed at allocation, then written by
        // the kernel). The kernel handed this buffer over with the
        // completion and does not touch it again until `push` returns it;
        // the slice's borrow of `self` ends before that `&mut self` call.
        Some(unsafe {
            std::slice::from_raw_parts(self.memory.as_ptr().add(usize::from(bid) * BUF_LEN), len)
        })
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: allocated in `new` with these layouts; the kernel no
        // longer uses them (`UringIo::drop` saw every request end and
        // unregistered the group, or set `leak`).
        unsafe {
            dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            dealloc(self.memory.as_ptr(), self.memory_layout);
        }
    }
}

/// Room for the `UDP_SEGMENT` control message, aligned like a `cmsghdr`.
#[repr(C, align(8))]
struct SendControl([u8; SEND_CONTROL]);

/// One `sendmsg` in flight: everything the kernel reads stays here, at a
/// fixed address (slots live in a boxed slice that never grows), until the
/// completion arrives.
struct SendSlot {
    hdr: libc::msghdr,
    iov: [libc::iovec; MAX_GSO_SEGMENTS],
    addr: socket2::SockAddr,
    control: SendControl,
    payloads: Vec<Bytes>,
}

impl SendSlot {
    fn new() -> Self {
        Self {
            // SAFETY: `msghdr` is plain data (pointers and lengths, plus
            // padding on some libcs); all zeros is a valid empty header.
            hdr: unsafe { std::mem::zeroed() },
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; MAX_GSO_SEGMENTS],
            addr: socket2::SockAddr::from(SocketAddr::from(([0, 0, 0, 0], 0))),
            control: SendControl([0; SEND_CONTROL]),
            payloads: Vec::with_capacity(MAX_GSO_SEGMENTS),
        }
    }

    /// Fills the header for `payloads` to `destination`, with GSO if
    /// `segment` is set. `None` if the segment size cannot be expressed
    /// (cannot happen for batches `GsoBatch` builds).
    fn prepare(
        &mut self,
        destination: SocketAddr,
        segment: Option<usize>,
    ) -> Option<*const libc::msghdr> {
        self.addr = socket2::SockAddr::from(destination);
        for (iov, payload) in self.iov.iter_mut().zip(&self.payloads) {
            iov.iov_base = payload.as_ptr().cast_mut().cast();
            iov.iov_len = payload.len();
        }
        self.hdr.msg_name = self.addr.as_ptr().cast_mut().cast();
        self.hdr.msg_namelen = self.addr.len();
        self.hdr.msg_iov = self.iov.as_mut_ptr();
        self.hdr.msg_iovlen = self.payloads.len().min(MAX_GSO_SEGMENTS) as _;
        match segment {
            Some(size) => {
                let size = u16::try_from(size).ok()?;
                let len =
                    write_cmsg_u16(&mut self.control.0, libc::SOL_UDP, libc::UDP_SEGMENT, size)?;
                self.hdr.msg_control = self.control.0.as_mut_ptr().cast();
                self.hdr.msg_controllen = len as _;
            }
            None => {
                self.hdr.msg_control = std::ptr::null_mut();
                self.hdr.msg_controllen = 0;
            }
        }
        Some(&self.hdr)
    }
}

/// The io_uring backend of one worker.
pub(super) struct UringIo {
    ring: IoUring,
    socket: UdpSocket,
    wake_fd: Arc<File>,
    /// The eventfd read's 8-byte target (written by the kernel).
    wake_buf: Box<UnsafeCell<u64>>,
    wake_armed: bool,
    /// The multishot receive's header (sizes of the name and control areas).
    recv_hdr: Box<libc::msghdr>,
    recv_armed: bool,
    /// The last error the receive completed with (read by the self-test).
    recv_ended_with: Option<io::Error>,
    bufs: BufRing,
    slots: Box<[SendSlot]>,
    /// Indexes of slots not in flight.
    free: Vec<usize>,
    /// A transmit taken from the hub that did not fit the last batch.
    next: Option<Transmit>,
    /// GSO is used (cleared if the kernel or NIC refuses it).
    gso: bool,
    /// Completions of one turn, copied out of the queue.
    completions: Vec<(u64, i32, u32)>,
}

impl UringIo {
    /// Sets up the ring for `socket`. On failure the socket comes back with
    /// the reason, so the caller can fall back to another backend.
    pub(super) fn new(socket: UdpSocket) -> Result<Self, (io::Error, UdpSocket)> {
        let setup = socket.try_clone().and_then(Self::setup);
        match setup {
            Ok(io) => Ok(io),
            Err(e) => Err((e, socket)),
        }
    }

    fn setup(socket: UdpSocket) -> io::Result<Self> {
        let (ring, flags) = build_ring()?;
        if !ring.params().is_feature_ext_arg() {
            return Err(unsupported(
                "no timeout argument for io_uring_enter (Linux < 5.11)",
            ));
        }
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::RecvMsg::CODE, "recvmsg"),
            (opcode::SendMsg::CODE, "sendmsg"),
            (opcode::Read::CODE, "read"),
            (opcode::AsyncCancel::CODE, "async cancel"),
        ] {
            if !probe.is_supported(code) {
                return Err(unsupported(&format!("io_uring lacks the {name} opcode")));
            }
        }
        // Blocking mode: the ring arms a poll when the socket has nothing,
        // instead of completing with EAGAIN.
        socket.set_nonblocking(false)?;
        let fd = socket.as_raw_fd();
        let gro = set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        // SAFETY: `eventfd` takes no pointers; the result is checked below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if efd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `efd` is a freshly created descriptor that nothing else
        // owns; the `OwnedFd` closes it exactly once.
        let wake_fd = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(efd) }));
        let bufs = BufRing::new()?;
        bufs.register(&ring)
            .map_err(|e| io::Error::new(e.kind(), format!("provided-buffer ring: {e}")))?;
        // SAFETY: as for `SendSlot::hdr`: an all-zero `msghdr` is valid.
        let mut recv_hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        recv_hdr.msg_namelen = NAME_LEN as _;
        recv_hdr.msg_controllen = CONTROL_LEN as _;
        let mut io = Self {
            ring,
            socket,
            wake_fd,
            wake_buf: Box::new(UnsafeCell::new(0)),
            wake_armed: false,
            recv_hdr,
            recv_armed: false,
            recv_ended_with: None,
            bufs,
            slots: (0..SEND_SLOTS).map(|_| SendSlot::new()).collect(),
            free: (0..SEND_SLOTS).rev().collect(),
            next: None,
            gso: true,
            completions: Vec::with_capacity(CQ_ENTRIES as usize),
        };
        io.self_test()?;
        tracing::debug!(flags, gro, "io_uring ready");
        Ok(io)
    }

    /// Arms the receive and the eventfd read once and wakes the ring: a
    /// kernel without multishot `recvmsg` (Linux < 6.0) fails the receive
    /// at once, which shows here rather than in the running engine.
    fn self_test(&mut self) -> io::Result<()> {
        self.arm();
        (&*self.wake_fd).write_all(&1u64.to_ne_bytes())?;
        self.ring.submitter().submit_and_wait(1)?;
        self.complete(None);
        match self.recv_ended_with.take() {
            Some(e) if !self.recv_armed => {
                Err(io::Error::new(e.kind(), format!("multishot recvmsg: {e}")))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn waker(&self) -> Wake {
        let fd = self.wake_fd.clone();
        Arc::new(move || (&*fd).write_all(&1u64.to_ne_bytes()))
    }

    /// Queues the multishot receive and the eventfd read if they are not
    /// running.
    fn arm(&mut self) {
        if !self.recv_armed {
            let sqe = opcode::RecvMsgMulti::new(Fd(self.socket.as_raw_fd()), &*self.recv_hdr, BGID)
                .build()
                .user_data(RECV);
            // SAFETY: the header is boxed and lives until the request has
            // ended (drop waits for that); the buffers come from the
            // registered ring, which lives as long.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.recv_armed = true;
            }
        }
        if !self.wake_armed {
            let sqe =
                opcode::Read::new(Fd(self.wake_fd.as_raw_fd()), self.wake_buf.get().cast(), 8)
                    .build()
                    .user_data(WAKE);
            // SAFETY: the 8-byte target is boxed, only written by the kernel
            // (`UnsafeCell`, never read here), and lives until the request
            // has ended (drop waits for that).
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                self.wake_armed = true;
            }
        }
    }

    /// Handles the completions in the queue: datagrams to `core` (dropped
    /// when there is none: setup and shutdown), buffers back to the ring,
    /// send slots freed.
    fn complete(&mut self, mut core: Option<&mut Core>) {
        self.completions.clear();
        self.completions.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let now = Instant::now();
        let mut returned = false;
        for i in 0..self.completions.len() {
            let (user_data, result, flags) = self.completions[i];
            match user_data {
                RECV => {
                    if !cqueue::more(flags) {
                        self.recv_armed = false;
                    }
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        if let (Some(core), Ok(len)) =
                            (core.as_deref_mut(), usize::try_from(result))
                        {
                            self.deliver(core, now, bid, len);
                        }
                        self.bufs.push(bid);
                        returned = true;
                    }
                    // ENOBUFS: the burst outran the buffers (re-armed next
                    // turn); ECANCELED: shutdown.
                    if result < 0 && result != -libc::ENOBUFS && result != -libc::ECANCELED {
                        // ICMP errors for earlier sends and the like: the
                        // associations' timers deal with unreachable peers.
                        let e = io::Error::from_raw_os_error(-result);
                        tracing::debug!(error = %e, "recvmsg");
                        self.recv_ended_with = Some(e);
                    }
                }
                WAKE => {
                    self.wake_armed = false;
                    if result < 0 && result != -libc::ECANCELED {
                        let e = io::Error::from_raw_os_error(-result);
                        tracing::debug!(error = %e, "eventfd read");
                    }
                }
                CANCEL => {}
                slot => self.sent(slot, result),
            }
        }
        if returned {
            self.bufs.publish();
        }
    }

    /// Gives the datagram (or GRO train) in buffer `bid` to the core.
    fn deliver(&self, core: &mut Core, now: Instant, bid: u16, len: usize) {
        let Some(buf) = self.bufs.buffer(bid, len) else {
            return;
        };
        let Ok(msg) = RecvMsgOut::parse(buf, &self.recv_hdr) else {
            tracing::debug!(len, "malformed recvmsg completion");
            return;
        };
        if msg.is_payload_truncated() {
            tracing::debug!("a datagram larger than the receive buffer was dropped");
            return;
        }
        let Some(from) =
            read_sockaddr(msg.name_data(), libc::AF_INET as u16, libc::AF_INET6 as u16)
        else {
            return;
        };
        let stride = read_cmsg_int(msg.control_data(), libc::SOL_UDP, libc::UDP_GRO)
            .and_then(|s| usize::try_from(s).ok())
            .unwrap_or(0);
        // The copy described in the module comment: the buffer goes back to
        // the ring right after this.
        let data = Bytes::copy_from_slice(msg.payload_data());
        for range in gro_segments(data.len(), stride) {
            core.datagram(now, from, data.slice(range));
        }
    }

    /// A send completed: free its slot.
    fn sent(&mut self, user_data: u64, result: i32) {
        let Some(index) = usize::try_from(user_data)
            .ok()
            .filter(|&i| i < self.slots.len())
        else {
            tracing::warn!(user_data, "completion for an unknown request");
            return;
        };
        let slot = &mut self.slots[index];
        let batched = slot.hdr.msg_controllen != 0;
        slot.payloads.clear();
        if result < 0 {
            let destination = slot.addr.as_socket();
            let e = io::Error::from_raw_os_error(-result);
            if batched && self.gso && matches!(-result, libc::EIO | libc::EINVAL) {
                // Some NICs and drivers refuse segmentation offload; Linux
                // has no better way to tell than failing the send.
                self.gso = false;
                tracing::info!(error = %e, "UDP GSO refused; sending datagrams one by one");
            }
            // Unreachable destinations and the like: the datagrams are lost,
            // which SCTP recovers from or reports.
            tracing::debug!(error = %e, to = ?destination, "sendmsg");
        }
        self.free.push(index);
    }

    /// Requests still in the kernel's hands.
    fn busy(&self) -> bool {
        self.recv_armed || self.wake_armed || self.free.len() < self.slots.len()
    }
}

impl Io for UringIo {
    fn flush(&mut self, hub: &mut Hub) -> bool {
        let fd = Fd(self.socket.as_raw_fd());
        loop {
            let Some(&index) = self.free.last() else {
                return false;
            };
            if self.ring.submission().is_full() {
                return false;
            }
            let Some(first) = self.next.take().or_else(|| hub.poll_transmit()) else {
                return true;
            };
            self.free.pop();
            let max_segments = if self.gso { MAX_GSO_SEGMENTS } else { 1 };
            let mut batch = GsoBatch::new(
                first.destination,
                first.payload.len(),
                max_segments,
                MAX_GSO_BYTES,
            );
            let slot = &mut self.slots[index];
            slot.payloads.push(first.payload);
            while !batch.is_full() {
                let Some(t) = hub.poll_transmit() else { break };
                if !batch.try_add(t.destination, t.payload.len()) {
                    self.next = Some(t);
                    break;
                }
                slot.payloads.push(t.payload);
            }
            let Some(hdr) = slot.prepare(first.destination, batch.segment_size()) else {
                tracing::warn!(
                    count = batch.count(),
                    "a GSO batch could not be expressed; dropped"
                );
                slot.payloads.clear();
                self.free.push(index);
                continue;
            };
            let sqe = opcode::SendMsg::new(fd, hdr)
                .build()
                .user_data(index as u64);
            // SAFETY: the header, iovecs, address, control message and
            // payloads all live in slot `index`, which is not reused or
            // freed until this request's completion arrives (`sent`), and
            // drop waits for every completion before freeing slots.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                // Checked above that the queue has room; only this thread
                // pushes.
                tracing::error!("submission queue full; datagrams dropped");
                self.slots[index].payloads.clear();
                self.free.push(index);
                return false;
            }
        }
    }

    fn wait(&mut self, core: &mut Core, deadline: Option<Instant>) -> io::Result<()> {
        self.arm();
        let submitted = match deadline {
            Some(deadline) => {
                let timeout = Timespec::from(deadline.saturating_duration_since(Instant::now()));
                let args = SubmitArgs::new().timespec(&timeout);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match submitted {
            Ok(_) => {}
            Err(e) if waited_enough(&e) => {}
            Err(e) => return Err(e),
        }
        self.complete(Some(core));
        Ok(())
    }

    fn sent_all(&self) -> bool {
        self.next.is_none() && self.free.len() == self.slots.len()
    }
}

impl Drop for UringIo {
    /// Cancels the receive and the eventfd read and waits until the kernel
    /// has finished with every buffer (sends still queued go out first).
    /// Should that take longer than `DRAIN_LIMIT`, the memory the kernel
    /// might still write is leaked rather than freed.
    fn drop(&mut self) {
        for (armed, target) in [(self.recv_armed, RECV), (self.wake_armed, WAKE)] {
            if armed {
                let sqe = opcode::AsyncCancel::new(target).build().user_data(CANCEL);
                // SAFETY: a cancellation refers to no memory of ours.
                let _ = unsafe { self.ring.submission().push(&sqe) };
            }
        }
        let until = Instant::now() + DRAIN_LIMIT;
        while self.busy() && Instant::now() < until {
            let timeout = Timespec::from(Duration::from_millis(50));
            let args = SubmitArgs::new().timespec(&timeout);
            if let Err(e) = self.ring.submitter().submit_with_args(1, &args)
                && !waited_enough(&e)
            {
                break;
            }
            self.complete(None);
        }
        if self.busy() {
            tracing::warn!("io_uring requests still running at shutdown; leaking their buffers");
            self.bufs.leak = true;
            std::mem::forget(std::mem::take(&mut self.slots));
            std::mem::forget(std::mem::replace(
                &mut self.wake_buf,
                Box::new(UnsafeCell::new(0)),
            ));
            // SAFETY: as for `SendSlot::hdr`: an all-zero `msghdr` is valid.
            let empty: libc::msghdr = unsafe { std::mem::zeroed() };
            std::mem::forget(std::mem::replace(&mut self.recv_hdr, Box::new(empty)));
        } else {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        }
    }
}

/// A wait that ended without error in the sense that matters here: the
/// deadline passed, a signal interrupted it, or the completion queue is
/// full (the caller handles completions right after, and what was not
/// submitted goes with the next call).
fn waited_enough(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
    )
}

/// Creates the ring with the strongest setup flags the kernel accepts.
fn build_ring() -> io::Result<(IoUring, &'static str)> {
    const FLAGS: [&str; 4] = [
        "SINGLE_ISSUER|DEFER_TASKRUN",
        "SINGLE_ISSUER|COOP_TASKRUN",
        "COOP_TASKRUN",
        "none",
    ];
    let mut last = None;
    for (step, flags) in FLAGS.into_iter().enumerate() {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(CQ_ENTRIES);
        match step {
            0 => {
                builder.setup_single_issuer().setup_defer_taskrun();
            }
            1 => {
                builder
                    .setup_single_issuer()
                    .setup_coop_taskrun()
                    .setup_taskrun_flag();
            }
            2 => {
                builder.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {}
        }
        match builder.build(RING_ENTRIES) {
            Ok(ring) => return Ok((ring, flags)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| unsupported("io_uring setup refused")))
}

fn unsupported(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::Unsupported, what.to_owned())
}

/// `setsockopt` with an `int` value.
fn set_int_option(fd: i32, level: i32, name: i32, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the pointer and length describe a live `c_int` that the
    // kernel only reads during the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
