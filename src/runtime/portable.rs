//! The portable backend: readiness on epoll/kqueue (`mio`) with batched UDP.
//!
//! Batched UDP comes from `quinn-udp` (maintained by the quinn project,
//! made for exactly this): `recvmmsg` on Linux, GSO (`UDP_SEGMENT`) and GRO
//! (`UDP_GRO`) where the kernel has them, plain `sendmsg`/`recvmsg` on other
//! systems, and it stops using GSO by itself when a NIC refuses it. It keeps
//! its `unsafe` to itself, so this module forbids it. It also sets the
//! don't-fragment bit (`IP_PMTUDISC_PROBE`): SCTP packets are sized to the
//! path MTU by the association, so nothing here relies on fragmentation.
//!
//! Costs: GSO needs the segments contiguous, so a batch of several
//! datagrams is copied into one send buffer (a single datagram is sent from
//! its own bytes); every received datagram train is copied once into a
//! `Bytes` the hub can keep.
#![forbid(unsafe_code)]

use std::io::{self, IoSliceMut};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

use super::batch::{GsoBatch, MAX_GSO_BYTES, MAX_GSO_SEGMENTS, gro_segments};
use super::worker::Core;
use super::{Io, RECV_BUFFER, Wake};
use crate::hub::Hub;
use crate::proto;

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);

/// Datagrams (or GRO trains) read per `recvmmsg`.
const RECV_BATCH: usize = 32;

/// Consecutive receive errors (other than "nothing left") after which a
/// turn stops reading; the next wait then does not block.
const MAX_RECV_ERRORS: usize = 16;

/// A batch built from the hub's transmits that the socket has not taken yet.
struct Outgoing {
    destination: std::net::SocketAddr,
    segment_size: Option<usize>,
    /// The datagram itself when the batch holds one; else the batch is in
    /// `PortableIo::send_buf`.
    single: Option<Bytes>,
}

/// A non-blocking socket on `mio` with `quinn-udp` doing the system calls.
pub(super) struct PortableIo {
    socket: UdpSocket,
    state: UdpSocketState,
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    /// `RECV_BATCH` receive buffers of `RECV_BUFFER` bytes each.
    recv_buf: Box<[u8]>,
    meta: Box<[RecvMeta]>,
    /// The contents of a multi-datagram batch (reused).
    send_buf: Vec<u8>,
    /// The batch the socket refused last (it goes first next time).
    unsent: Option<Outgoing>,
    /// A transmit taken from the hub that did not fit the last batch.
    next: Option<proto::Transmit>,
    /// Writable interest is registered (a send would block).
    want_writable: bool,
    /// The last receive stopped before the socket was empty.
    more_to_read: bool,
}

impl PortableIo {
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let mut socket = UdpSocket::from_std(socket);
        let state = UdpSocketState::new((&socket).into())?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        poll.registry()
            .register(&mut socket, SOCKET, Interest::READABLE)?;
        Ok(Self {
            socket,
            state,
            poll,
            events: Events::with_capacity(64),
            waker,
            recv_buf: vec![0u8; RECV_BATCH * RECV_BUFFER].into_boxed_slice(),
            meta: vec![RecvMeta::default(); RECV_BATCH].into_boxed_slice(),
            send_buf: Vec::new(),
            unsent: None,
            next: None,
            want_writable: false,
            more_to_read: false,
        })
    }

    pub(super) fn waker(&self) -> Wake {
        let waker = self.waker.clone();
        Arc::new(move || waker.wake())
    }

    /// Takes the next batch from the hub: consecutive transmits to one
    /// destination with equal sizes, as many as GSO allows.
    fn next_batch(&mut self, hub: &mut Hub) -> Option<Outgoing> {
        let first = self.next.take().or_else(|| hub.poll_transmit())?;
        let max_segments = self.state.max_gso_segments().min(MAX_GSO_SEGMENTS);
        let mut batch = GsoBatch::new(
            first.destination,
            first.payload.len(),
            max_segments,
            MAX_GSO_BYTES,
        );
        while !batch.is_full() {
            let Some(t) = hub.poll_transmit() else { break };
            if !batch.try_add(t.destination, t.payload.len()) {
                self.next = Some(t);
                break;
            }
            if batch.count() == 2 {
                self.send_buf.clear();
                self.send_buf.extend_from_slice(&first.payload);
            }
            self.send_buf.extend_from_slice(&t.payload);
        }
        Some(Outgoing {
            destination: first.destination,
            segment_size: batch.segment_size(),
            single: (batch.count() == 1).then_some(first.payload),
        })
    }

    /// Reads every waiting datagram into the worker's core.
    fn receive(&mut self, core: &mut Core) {
        self.more_to_read = false;
        let mut errors = 0;
        loop {
            let mut chunks = self.recv_buf.chunks_mut(RECV_BUFFER);
            let mut bufs: [IoSliceMut<'_>; RECV_BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            match self
                .state
                .recv((&self.socket).into(), &mut bufs, &mut self.meta)
            {
                Ok(n) => {
                    errors = 0;
                    let now = Instant::now();
                    for (meta, buf) in self.meta.iter().zip(bufs.iter()).take(n) {
                        let Some(data) = buf.get(..meta.len) else {
                            continue;
                        };
                        // One copy per train: the hub keeps slices of it.
                        let data = Bytes::copy_from_slice(data);
                        for range in gro_segments(data.len(), meta.stride) {
                            core.datagram(now, meta.addr, data.slice(range));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors for earlier sends surface here on Linux: the
                // association's own timers deal with unreachable peers.
                Err(e) => {
                    tracing::debug!(error = %e, "recvmmsg");
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        self.more_to_read = true;
                        return;
                    }
                }
            }
        }
    }
}

impl Io for PortableIo {
    fn flush(&mut self, hub: &mut Hub) -> bool {
        loop {
            let Some(out) = self.unsent.take().or_else(|| self.next_batch(hub)) else {
                return true;
            };
            let contents = match &out.single {
                Some(one) => &one[..],
                None => &self.send_buf[..],
            };
            let transmit = Transmit {
                destination: out.destination,
                ecn: None,
                contents,
                segment_size: out.segment_size,
                src_ip: None,
            };
            match self.state.try_send((&self.socket).into(), &transmit) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent = Some(out);
                    return false;
                }
                // Unreachable destinations, a NIC refusing GSO (quinn-udp
                // stops using it then) and the like: the datagrams are lost,
                // which SCTP recovers from or reports.
                Err(e) => {
                    tracing::debug!(error = %e, to = %out.destination, "sendmsg");
                }
            }
        }
    }

    fn wait(&mut self, core: &mut Core, deadline: Option<Instant>) -> io::Result<()> {
        let want_writable = self.unsent.is_some();
        if want_writable != self.want_writable {
            let interest = if want_writable {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(&mut self.socket, SOCKET, interest)?;
            self.want_writable = want_writable;
        }
        let timeout = if self.more_to_read {
            Some(std::time::Duration::ZERO)
        } else {
            deadline.map(|t| t.saturating_duration_since(Instant::now()))
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        // Edge-triggered readiness: read until the socket is empty whatever
        // woke us (a wake-up costs one empty recvmmsg).
        self.receive(core);
        Ok(())
    }

    fn sent_all(&self) -> bool {
        self.unsent.is_none()
    }
}
