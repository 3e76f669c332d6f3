//! The secure transport under a hub's node: ICE (STUN checks) and DTLS on
//! the shared port, demultiplexed by first byte (RFC 7983), as WebRTC runs
//! them.
//!
//! ```text
//!  datagram ─► 0..=3 STUN ─► server: IceLite (a valid check allows its
//!     │                       address to start DTLS, with the fingerprint
//!     │                       from that peer's offer)
//!     │                      client: the IceClient of that server
//!     ├─────► 20..=63 DTLS ─► DtlsLayer ─► plaintext SCTP ─► Node
//!     └─────► anything else: dropped, counted
//! ```
//!
//! A joining client with an ICE path holds its SCTP packets (bounded) until
//! its checks succeed, then starts DTLS: its handshake starts as soon as
//! the server will answer it, not one retransmission later.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::dtls::{Certificate, DtlsLayer, Fingerprint, LayerEvent};
use crate::ice::demux::{Demux, classify_datagram};
use crate::ice::{
    AddSessionError, IceClient, IceClientConfig, IceClientEvent, IceEvent, IceLite, IceLiteConfig,
    SessionId,
};
use crate::proto::Transmit;

use super::JoinError;

/// SCTP packets a client holds for a server while its ICE checks run.
const HELD_LIMIT: usize = 64 * 1024;

/// Where an ICE session's peer lives, for a runtime whose workers share a
/// port (see [`Hub::poll_ice_home`](super::Hub::poll_ice_home)). Sessions
/// are named by their local ICE username fragment, which every worker told
/// about the peer shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IceHome {
    /// This hub's DTLS session carries the peer of this ICE session.
    Hosted(String),
    /// It no longer does (the session ended or expired).
    Released(String),
}

/// A client's path to one server, over ICE.
struct ClientPath {
    ice: IceClient,
    fingerprint: Fingerprint,
    connected: bool,
    held: VecDeque<Bytes>,
    held_bytes: usize,
}

/// ICE and DTLS for one hub (sans-IO; see the module documentation).
pub(super) struct Secure {
    pub(super) dtls: DtlsLayer,
    /// Server role: the peers signalling announced.
    ice: IceLite,
    /// The certificate fingerprint each ICE session's peer must present.
    expected: HashMap<SessionId, Fingerprint>,
    /// Client role: servers given by fingerprint alone (no ICE).
    trusted: HashMap<SocketAddr, Fingerprint>,
    /// Client role: servers reached over ICE.
    clients: HashMap<SocketAddr, ClientPath>,
    transmits: VecDeque<Transmit>,
    /// Peers whose transport ended, and why: their associations are over.
    closed: VecDeque<(SocketAddr, String)>,
    /// Peers whose address changed, `(old, new)`: their DTLS session moved,
    /// their associations must follow.
    moved: VecDeque<(SocketAddr, SocketAddr)>,
    /// ICE sessions this hub started or stopped hosting (with several
    /// workers only: nobody reads them otherwise).
    homes: VecDeque<IceHome>,
    /// Whether to note `homes` and foreign checks: one of several workers.
    track_homes: bool,
    /// ICE sessions whose peer this hub's DTLS carries.
    hosted: HashMap<SessionId, String>,
    /// With several workers: each nominated ICE session by its selected
    /// address (at most one per session), to find the session a new DTLS
    /// session belongs to without a scan.
    nominated: HashMap<SocketAddr, SessionId>,
    /// The last valid check was for a session this hub does not host: its
    /// ICE username fragment (the peer may live on another worker).
    foreign_check: Option<String>,
    /// Datagrams that were neither STUN nor DTLS, or STUN nobody took.
    pub(super) dropped: u64,
    /// Peers whose DTLS session this hub closed because their ICE consent
    /// expired (only the hub that carries the peer counts it).
    pub(super) consent_closed: u64,
}

impl Secure {
    pub(super) fn new(
        certificate: Certificate,
        mtu: usize,
        max_sessions: usize,
        seed: u64,
        track_homes: bool,
    ) -> Self {
        Self {
            dtls: DtlsLayer::new(certificate, mtu, max_sessions, seed),
            ice: IceLite::new(IceLiteConfig {
                max_sessions,
                ..IceLiteConfig::default()
            }),
            expected: HashMap::new(),
            trusted: HashMap::new(),
            clients: HashMap::new(),
            transmits: VecDeque::new(),
            closed: VecDeque::new(),
            moved: VecDeque::new(),
            homes: VecDeque::new(),
            hosted: HashMap::new(),
            nominated: HashMap::new(),
            track_homes,
            foreign_check: None,
            dropped: 0,
            consent_closed: 0,
        }
    }

    /// Server role: a peer signalling announced. Its checks must be signed
    /// with `local_pwd` and name `local_ufrag:remote_ufrag`; the address
    /// they come from may then start DTLS with a certificate whose
    /// fingerprint is `fingerprint`.
    pub(super) fn expect(
        &mut self,
        now: Instant,
        local_ufrag: &str,
        local_pwd: &str,
        remote_ufrag: &str,
        fingerprint: Fingerprint,
    ) -> Result<SessionId, AddSessionError> {
        let session = self
            .ice
            .add_session(local_ufrag, local_pwd, remote_ufrag, now)?;
        self.expected.insert(session, fingerprint);
        Ok(session)
    }

    /// Client role: the server at `server` presents `fingerprint`; no ICE.
    pub(super) fn trust(&mut self, server: SocketAddr, fingerprint: Fingerprint) {
        self.trusted.insert(server, fingerprint);
    }

    /// Client role: starts the path to a server — over ICE when one was
    /// set up for it ([`Secure::connect_ice`]), else DTLS at once with the
    /// trusted fingerprint. `Err` if neither is known.
    pub(super) fn connect(&mut self, now: Instant, server: SocketAddr) -> Result<(), JoinError> {
        if self.clients.contains_key(&server) {
            return Ok(());
        }
        let fingerprint = *self
            .trusted
            .get(&server)
            .ok_or(JoinError::UnknownServerCertificate(server))?;
        self.dtls
            .connect(now, server, fingerprint)
            .map_err(|e| JoinError::Dtls(e.to_string()))
    }

    /// Client role: an ICE path to `config.remote`, whose certificate must
    /// have `fingerprint`; DTLS starts once a check succeeds.
    pub(super) fn connect_ice(
        &mut self,
        now: Instant,
        config: IceClientConfig,
        fingerprint: Fingerprint,
    ) {
        let server = config.remote;
        // Another call of this hub to the same server shares its path (one
        // DTLS session per address carries every association to it).
        if self.clients.contains_key(&server) {
            return;
        }
        let mut ice = IceClient::new(config, now);
        while let Some(t) = ice.poll_transmit() {
            self.transmits.push_back(t);
        }
        self.clients.insert(
            server,
            ClientPath {
                ice,
                fingerprint,
                connected: false,
                held: VecDeque::new(),
                held_bytes: 0,
            },
        );
    }

    /// A datagram arrived. Returns whether a layer took it.
    pub(super) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        match classify_datagram(datagram) {
            Demux::Stun => {
                if let Some(path) = self.clients.get_mut(&from) {
                    let taken = path.ice.handle_stun(now, from, datagram);
                    self.drive_client(now, from);
                    return taken;
                }
                if self.track_homes
                    && let Some(ufrag) = crate::ice::request_ufrag(datagram)
                    && !self.ice.knows_ufrag(&ufrag)
                {
                    // A check for a session this worker does not know (its
                    // copy expired unnominated): perhaps for a peer another
                    // worker hosts, which checks and answers it. No 401
                    // from here.
                    self.foreign_check = Some(ufrag);
                    self.dropped += 1;
                    return false;
                }
                let checked = self.ice.handle_stun(now, from, datagram);
                self.drive_ice(now);
                match checked {
                    Some(session) => {
                        if self.track_homes && !self.hosted.contains_key(&session) {
                            self.foreign_check = self.ice.local_ufrag(session).map(str::to_owned);
                        }
                        true
                    }
                    None => {
                        self.dropped += 1;
                        false
                    }
                }
            }
            Demux::Dtls => {
                let had = self.dtls.has_session(from);
                let taken = self.dtls.handle_datagram(now, from, datagram);
                if taken && !had && self.dtls.has_session(from) {
                    self.on_dtls_session(from);
                }
                taken
            }
            _ => {
                self.dropped += 1;
                false
            }
        }
    }

    /// An SCTP packet for `remote`.
    pub(super) fn send(&mut self, remote: SocketAddr, packet: Bytes) {
        if let Some(path) = self.clients.get_mut(&remote)
            && !path.connected
        {
            if path.held_bytes + packet.len() <= HELD_LIMIT {
                path.held_bytes += packet.len();
                path.held.push_back(packet);
            }
            return;
        }
        self.dtls.send(remote, packet);
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) {
        if self.ice.poll_timeout().is_some_and(|t| t <= now) {
            self.ice.handle_timeout(now);
            self.drive_ice(now);
        }
        let due: Vec<SocketAddr> = self
            .clients
            .iter()
            .filter(|(_, p)| p.ice.poll_timeout().is_some_and(|t| t <= now))
            .map(|(a, _)| *a)
            .collect();
        for server in due {
            if let Some(p) = self.clients.get_mut(&server) {
                p.ice.handle_timeout(now);
            }
            self.drive_client(now, server);
        }
        self.dtls.handle_timeout(now);
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [self.dtls.poll_timeout(), self.ice.poll_timeout()]
            .into_iter()
            .chain(self.clients.values().map(|p| p.ice.poll_timeout()))
            .flatten()
            .min()
    }

    pub(super) fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        self.dtls
            .poll_transmit()
            .map(|(destination, payload)| Transmit {
                destination,
                payload,
            })
    }

    /// The next plaintext SCTP packet and its peer.
    pub(super) fn poll_inbound(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.dtls.poll_inbound()
    }

    /// The next peer whose transport ended, and why.
    pub(super) fn poll_closed(&mut self) -> Option<(SocketAddr, String)> {
        self.take_dtls_events();
        self.closed.pop_front()
    }

    /// Sorts the DTLS layer's events into `closed` and `moved`.
    fn take_dtls_events(&mut self) {
        while let Some(event) = self.dtls.poll_event() {
            match event {
                LayerEvent::Closed { remote, error } => {
                    let why = error.map_or_else(|| "closed by the peer".to_owned(), |e| e.to_string());
                    self.closed.push_back((remote, why));
                }
                LayerEvent::Connected { .. } => {}
            }
        }
    }

    /// The last association with `remote` closed: its transport goes too.
    pub(super) fn release(&mut self, remote: SocketAddr) {
        self.dtls.close(remote);
        self.clients.remove(&remote);
    }

    /// The next peer whose address changed, `(old, new)`: its DTLS session
    /// moved; its associations must follow.
    pub(super) fn poll_moved(&mut self) -> Option<(SocketAddr, SocketAddr)> {
        self.take_dtls_events();
        self.moved.pop_front()
    }

    /// The next change of what this hub hosts (see [`IceHome`]).
    pub(super) fn poll_home(&mut self) -> Option<IceHome> {
        self.homes.pop_front()
    }

    /// Binding requests the server-role agent refused (400, 401, 420, 487).
    pub(super) fn checks_refused(&self) -> u64 {
        let s = self.ice.stats();
        s.bad_request + s.unknown_ufrag + s.bad_integrity + s.role_conflict + s.unknown_attribute
    }

    /// Takes the note that the last STUN datagram was a valid check for an
    /// ICE session this hub does not host, with that session's username
    /// fragment: a runtime forwards it to the worker that hosts it.
    pub(super) fn take_foreign_check(&mut self) -> Option<String> {
        self.foreign_check.take()
    }

    /// A DTLS session started with `from`: if it is an ICE session's
    /// selected address, this hub hosts that session from now on.
    fn on_dtls_session(&mut self, from: SocketAddr) {
        // Only several workers care who hosts what.
        if !self.track_homes {
            return;
        }
        let Some(&session) = self.nominated.get(&from) else {
            return;
        };
        if !self.hosted.contains_key(&session)
            && let Some(ufrag) = self.ice.local_ufrag(session).map(str::to_owned)
        {
            self.homes.push_back(IceHome::Hosted(ufrag.clone()));
            self.hosted.insert(session, ufrag);
        }
    }

    fn drive_ice(&mut self, now: Instant) {
        while let Some(t) = self.ice.poll_transmit() {
            self.transmits.push_back(t);
        }
        while let Some(event) = self.ice.poll_event() {
            match event {
                // A valid check proves the address: it may start DTLS
                // (browsers send the ClientHello once they nominate).
                IceEvent::Checked {
                    session,
                    from,
                    nominated,
                } => {
                    if let Some(f) = self.expected.get(&session) {
                        self.dtls.allow(now, from, *f);
                    }
                    if nominated && self.track_homes {
                        self.nominated.insert(from, session);
                    }
                    // Nominated after its DTLS session started (from an
                    // earlier, unnominated check): hosted from now on.
                    if nominated && self.dtls.has_session(from) {
                        self.on_dtls_session(from);
                    }
                }
                IceEvent::AddressChanged { session, from, old } => {
                    if self.track_homes {
                        self.nominated.remove(&old);
                        self.nominated.insert(from, session);
                    }
                    // The client's NAT rebound or it moved network, and a
                    // fresh check signed with its credentials (a replayed
                    // one changes nothing: `IceLite` remembers recent
                    // transaction ids) came from the new address: its DTLS
                    // session (and the associations on it) follow. Without
                    // a session here (it never handshook, or it lives on
                    // another worker) the new address may handshake afresh.
                    if self.dtls.rebind(old, from) {
                        tracing::info!(session = session.get(), %old, new = %from, "ice: a peer's address changed; its DTLS session and associations follow");
                        self.moved.push_back((old, from));
                    } else if let Some(f) = self.expected.get(&session) {
                        tracing::debug!(session = session.get(), %old, new = %from, "ice: the client's address changed");
                        self.dtls.allow(now, from, *f);
                    }
                }
                IceEvent::ConsentExpired { session, selected } => {
                    if let Some(addr) = selected
                        && self.nominated.get(&addr) == Some(&session)
                    {
                        self.nominated.remove(&addr);
                    }
                    self.expected.remove(&session);
                    if let Some(ufrag) = self.hosted.remove(&session)
                        && self.track_homes
                    {
                        self.homes.push_back(IceHome::Released(ufrag));
                    }
                    // Only the worker whose DTLS carries the peer ends it
                    // (another's copy of the session may have been
                    // nominated by a forwarded check).
                    if let Some(remote) = selected
                        && self.dtls.has_session(remote)
                    {
                        tracing::info!(session = session.get(), peer = %remote, "ice: consent expired (no valid check from the peer for the consent timeout); closing its DTLS session");
                        self.consent_closed += 1;
                        self.closed
                            .push_back((remote, "ICE consent expired".to_owned()));
                        self.dtls.close(remote);
                    }
                }
            }
        }
    }

    fn drive_client(&mut self, now: Instant, server: SocketAddr) {
        let Some(path) = self.clients.get_mut(&server) else {
            return;
        };
        while let Some(t) = path.ice.poll_transmit() {
            self.transmits.push_back(t);
        }
        let mut start = false;
        let mut ended = None;
        while let Some(event) = path.ice.poll_event() {
            match event {
                IceClientEvent::Connected { .. } if !path.connected => {
                    path.connected = true;
                    start = true;
                }
                IceClientEvent::ConsentExpired => ended = Some("ICE consent expired"),
                IceClientEvent::Failed => ended = Some("ICE checks failed"),
                _ => {}
            }
        }
        if start {
            let fingerprint = path.fingerprint;
            let held = std::mem::take(&mut path.held);
            path.held_bytes = 0;
            if let Err(e) = self.dtls.connect(now, server, fingerprint) {
                self.closed.push_back((server, e.to_string()));
            }
            for packet in held {
                self.dtls.send(server, packet);
            }
        }
        if let Some(why) = ended {
            self.clients.remove(&server);
            self.dtls.close(server);
            self.closed.push_back((server, why.to_owned()));
        }
    }
}

impl std::fmt::Debug for Secure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("dtls", &self.dtls)
            .field("ice_sessions", &self.ice.session_count())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}
