//! The DTLS layer of a node: one [`DtlsSession`] per peer address, between
//! the UDP socket and SCTP.
//!
//! ```text
//!   UDP datagram ──► first byte (RFC 7983) ──► 20..=63: DTLS record
//!                          │                      │ session of the address,
//!                          │                      │ or a new server session if
//!                          │                      │ the address was allowed
//!                          ▼                      ▼
//!                 anything else: dropped     plaintext SCTP packet ──► Node
//!                 and counted
//!   Node's SCTP packet for an address ──► its session ──► DTLS record(s)
//! ```
//!
//! Unauthenticated traffic creates no state: a server session is created
//! only for an address [`DtlsLayer::allow`] named, with the fingerprint its
//! certificate must have (ICE names it once the address passed a
//! connectivity check signed with the credentials signalling handed out,
//! which also proves the address is not spoofed, so no HelloVerifyRequest
//! round trip is needed). A ClientHello from any other address is dropped
//! and counted, as is everything that is not DTLS.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Certificate, DtlsError, DtlsRole, DtlsSession, Fingerprint, SessionEvent};

/// What the DTLS layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEvent {
    /// The session with `remote` completed its handshake: SCTP flows.
    Connected {
        /// The peer.
        remote: SocketAddr,
    },
    /// The session with `remote` ended: the peer closed it, or it failed.
    /// Every association with that peer is over.
    Closed {
        /// The peer.
        remote: SocketAddr,
        /// `None`: the peer closed it (`close_notify`).
        error: Option<DtlsError>,
    },
}

/// Counters of a [`DtlsLayer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtlsStats {
    /// Datagrams dropped because they are not DTLS (RFC 7983's first byte).
    pub not_dtls: u64,
    /// DTLS datagrams from addresses with no session and no permission.
    pub not_allowed: u64,
    /// Sessions that completed their handshake.
    pub handshakes: u64,
    /// Sessions that failed (handshake error, wrong certificate, timeout).
    pub failures: u64,
    /// SCTP packets for a peer with no session (dropped).
    pub no_session: u64,
    /// Sessions refused because the layer held its maximum.
    pub refused_full: u64,
}

/// How long a permission from [`DtlsLayer::allow`] waits for the peer's
/// ClientHello.
pub const ALLOW_LIFETIME: Duration = Duration::from_secs(30);

/// A session and the deadline the layer's heap holds for it.
struct Peer {
    session: DtlsSession,
    /// The earliest entry of this peer in the heap: re-armed only when the
    /// session's deadline moves earlier, so the heap stays about one entry
    /// per session however many records flow.
    armed: Option<Instant>,
}

/// One DTLS session per peer address (sans-IO).
///
/// # Contract
/// - Inputs: [`DtlsLayer::handle_datagram`] (a UDP datagram),
///   [`DtlsLayer::send`] (an SCTP packet for a peer),
///   [`DtlsLayer::handle_timeout`]; commands [`DtlsLayer::allow`] (server:
///   let this address handshake, with this certificate),
///   [`DtlsLayer::connect`] (client: handshake with this address now),
///   [`DtlsLayer::close`].
/// - Outputs: [`DtlsLayer::poll_inbound`] (plaintext SCTP packets, with the
///   address they came from), [`DtlsLayer::poll_transmit`] (UDP datagrams),
///   [`DtlsLayer::poll_event`], [`DtlsLayer::poll_timeout`].
///
/// Drain the outputs after every input. Time must not go backwards. No
/// input panics or harms another peer's session.
pub struct DtlsLayer {
    config: Arc<dimpl::Config>,
    certificate: Certificate,
    mtu: usize,
    max_sessions: usize,
    rng: ChaCha8Rng,
    sessions: HashMap<SocketAddr, Peer>,
    /// Server: addresses allowed to start a handshake, the certificate
    /// they must present, until when.
    allowed: HashMap<SocketAddr, (Fingerprint, Instant)>,
    timers: BinaryHeap<Reverse<(Instant, SocketAddr)>>,
    inbound: VecDeque<(SocketAddr, Bytes)>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    events: VecDeque<LayerEvent>,
    stats: DtlsStats,
}

impl std::fmt::Debug for DtlsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsLayer")
            .field("sessions", &self.sessions.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DtlsLayer {
    /// A layer whose end presents `certificate`, with datagrams of up to
    /// `mtu` bytes, at most `max_sessions` sessions, timer jitter seeded by
    /// `seed`.
    pub fn new(certificate: Certificate, mtu: usize, max_sessions: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let config = super::config(mtu, false, rng.next_u64())
            .unwrap_or_else(|e| unreachable!("the engine's DTLS configuration is valid: {e}"));
        Self {
            config,
            certificate,
            mtu,
            max_sessions,
            rng,
            sessions: HashMap::new(),
            allowed: HashMap::new(),
            timers: BinaryHeap::new(),
            inbound: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: DtlsStats::default(),
        }
    }

    /// This end's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.certificate.fingerprint()
    }

    /// Counters since creation.
    pub fn stats(&self) -> DtlsStats {
        self.stats
    }

    /// Sessions held.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there is a session with `remote` (in its handshake or
    /// connected).
    pub fn has_session(&self, remote: SocketAddr) -> bool {
        self.sessions.contains_key(&remote)
    }

    /// Whether the session with `remote` completed its handshake.
    pub fn is_connected(&self, remote: SocketAddr) -> bool {
        self.sessions
            .get(&remote)
            .is_some_and(|p| p.session.is_connected())
    }

    /// Server: lets `remote` start a handshake (within [`ALLOW_LIFETIME`]),
    /// whose certificate must have `expected` as fingerprint.
    pub fn allow(&mut self, now: Instant, remote: SocketAddr, expected: Fingerprint) {
        self.allowed.insert(remote, (expected, now + ALLOW_LIFETIME));
        self.timers.push(Reverse((now + ALLOW_LIFETIME, remote)));
    }

    /// Client: starts a handshake with `remote`, whose certificate must
    /// have `expected` as fingerprint. A session already there stays.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        expected: Fingerprint,
    ) -> Result<(), DtlsError> {
        if self.sessions.contains_key(&remote) {
            return Ok(());
        }
        if self.sessions.len() >= self.max_sessions {
            self.stats.refused_full += 1;
            return Err(DtlsError::Protocol(format!(
                "at most {} DTLS sessions",
                self.max_sessions
            )));
        }
        let session = self.new_session(DtlsRole::Client, expected, now);
        self.sessions.insert(remote, Peer { session, armed: None });
        self.drive(remote);
        Ok(())
    }

    /// A UDP datagram from `remote` arrived. Returns whether a session
    /// took it.
    pub fn handle_datagram(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) -> bool {
        if !datagram.first().is_some_and(|b| (20..=63).contains(b)) {
            self.stats.not_dtls += 1;
            return false;
        }
        if !self.sessions.contains_key(&remote) {
            let Some((expected, until)) = self.allowed.get(&remote).copied() else {
                self.stats.not_allowed += 1;
                return false;
            };
            // Only a ClientHello starts a session: any other record from an
            // allowed address belongs to a session that lives elsewhere (a
            // peer whose address changed, its session on another worker).
            if !starts_with_client_hello(datagram) {
                self.stats.not_allowed += 1;
                return false;
            }
            if now > until {
                self.allowed.remove(&remote);
                self.stats.not_allowed += 1;
                return false;
            }
            if self.sessions.len() >= self.max_sessions {
                self.stats.refused_full += 1;
                return false;
            }
            self.allowed.remove(&remote);
            let session = self.new_session(DtlsRole::Server, expected, now);
            self.sessions.insert(remote, Peer { session, armed: None });
        }
        if let Some(p) = self.sessions.get_mut(&remote) {
            p.session.handle_datagram(now, datagram);
        }
        self.drive(remote);
        true
    }

    /// Protects an SCTP packet for `remote`. Without a session it is
    /// dropped and counted (SCTP retransmits, or the association ends with
    /// the session).
    pub fn send(&mut self, remote: SocketAddr, packet: Bytes) {
        let Some(p) = self.sessions.get_mut(&remote) else {
            self.stats.no_session += 1;
            return;
        };
        // A failure is reported by the drive below.
        let _ = p.session.send(packet);
        self.drive(remote);
    }

    /// Moves the session with `old` to `new` (the peer's address changed:
    /// an ICE check proved it). Returns whether it moved: there is a
    /// session at `old` and none at `new`. Its records go to `new` from now
    /// on, and those from `new` are its.
    pub fn rebind(&mut self, old: SocketAddr, new: SocketAddr) -> bool {
        if old == new || self.sessions.contains_key(&new) {
            return false;
        }
        let Some(peer) = self.sessions.remove(&old) else {
            return false;
        };
        self.allowed.remove(&new);
        self.sessions.insert(new, Peer { armed: None, ..peer });
        // Its timer is armed again at the new address (the old entry finds
        // no session and is skipped).
        self.drive(new);
        true
    }

    /// Closes the session with `remote` (a `close_notify` goes).
    pub fn close(&mut self, remote: SocketAddr) {
        if let Some(p) = self.sessions.get_mut(&remote) {
            p.session.close();
            self.drive(remote);
            self.sessions.remove(&remote);
        }
    }

    /// The instant from [`DtlsLayer::poll_timeout`] came.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, remote))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some((_, until)) = self.allowed.get(&remote)
                && *until <= now
            {
                self.allowed.remove(&remote);
            }
            if let Some(p) = self.sessions.get_mut(&remote)
                && p.armed == Some(at)
            {
                p.armed = None;
                if p.session.poll_timeout().is_some_and(|t| t <= now) {
                    p.session.handle_timeout(now);
                }
                self.drive(remote);
            }
        }
    }

    /// When to call [`DtlsLayer::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// The next plaintext SCTP packet and the peer it came from.
    pub fn poll_inbound(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.inbound.pop_front()
    }

    /// The next UDP datagram to send and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<LayerEvent> {
        self.events.pop_front()
    }

    fn new_session(&mut self, role: DtlsRole, expected: Fingerprint, now: Instant) -> DtlsSession {
        // Each session's timer jitter follows the layer's seed.
        let config = super::config(self.mtu, false, self.rng.next_u64())
            .unwrap_or_else(|_| self.config.clone());
        DtlsSession::new(&config, &self.certificate, role, expected, now)
    }

    /// Collects what `remote`'s session produced; removes it once it ended.
    fn drive(&mut self, remote: SocketAddr) {
        let Some(Peer { session: s, armed }) = self.sessions.get_mut(&remote) else {
            return;
        };
        while let Some(d) = s.poll_transmit() {
            self.transmits.push_back((remote, d));
        }
        while let Some(p) = s.poll_plaintext() {
            self.inbound.push_back((remote, p));
        }
        let mut ended = false;
        while let Some(e) = s.poll_event() {
            match e {
                SessionEvent::Connected => {
                    self.stats.handshakes += 1;
                    self.events.push_back(LayerEvent::Connected { remote });
                }
                SessionEvent::PeerClosed => {
                    ended = true;
                    self.events.push_back(LayerEvent::Closed { remote, error: None });
                }
                SessionEvent::Failed(error) => {
                    ended = true;
                    self.stats.failures += 1;
                    tracing::debug!("dtls: {remote}: {error}");
                    self.events.push_back(LayerEvent::Closed {
                        remote,
                        error: Some(error),
                    });
                }
            }
        }
        if ended || s.is_dead() {
            // Whatever it still had to send (a close_notify) went above.
            self.sessions.remove(&remote);
            return;
        }
        if let Some(at) = s.poll_timeout()
            && armed.is_none_or(|armed| at < armed)
        {
            *armed = Some(at);
            self.timers.push(Reverse((at, remote)));
        }
    }
}

/// Whether `datagram` begins with a DTLS handshake record holding a
/// ClientHello (RFC 6347 §4.1 and RFC 9147 §4: content type 22, a 13-byte
/// record header, then the handshake message type 1).
fn starts_with_client_hello(datagram: &[u8]) -> bool {
    const HANDSHAKE: u8 = 22;
    const CLIENT_HELLO: u8 = 1;
    datagram.first() == Some(&HANDSHAKE) && datagram.get(13) == Some(&CLIENT_HELLO)
}
