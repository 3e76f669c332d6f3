//! The ICE-lite agent of the server role (RFC 8445 §2.5).
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rice_stun_types::attribute::{IceControlled, IceControlling, Priority, UseCandidate};
use stun_types::attribute::{
    Attribute, AttributeStaticType, AttributeType, ErrorCode, Fingerprint, MessageIntegrity,
    MessageIntegritySha256, Username, XorMappedAddress,
};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, IntegrityKey, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials,
};

use super::{CONSENT_TIMEOUT, has_fingerprint, has_integrity, parse};
use crate::proto::Transmit;

/// Longest ufrag or password [`IceLite::add_session`] takes (RFC 8839
/// §5.4 allows 256 characters).
const MAX_CREDENTIAL_LEN: usize = 256;

/// Most responses queued for [`IceLite::poll_transmit`]; beyond, responses
/// are dropped and counted ([`IceStats::transmits_dropped`]).
const MAX_QUEUED_TRANSMITS: usize = 4096;

/// Most events queued for [`IceLite::poll_event`]; beyond, the oldest go.
const MAX_QUEUED_EVENTS: usize = 4096;

/// The attributes a Binding request may carry that we understand (anything
/// else comprehension-required gets a 420).
const KNOWN_ATTRIBUTES: [AttributeType; 8] = [
    Username::TYPE,
    MessageIntegrity::TYPE,
    MessageIntegritySha256::TYPE,
    Fingerprint::TYPE,
    Priority::TYPE,
    UseCandidate::TYPE,
    IceControlled::TYPE,
    IceControlling::TYPE,
];

/// Configuration of an [`IceLite`] agent.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceLiteConfig {
    /// Most sessions held at once; [`IceLite::add_session`] refuses more.
    pub max_sessions: usize,
    /// Most client addresses remembered per session (the selected one
    /// included); a new one replaces the least recently checked.
    pub max_addresses_per_session: usize,
    /// A session whose selected address sends no valid check for this long
    /// (or that is never nominated for this long after it was added) expires
    /// (RFC 7675 §5.1: 30 s).
    pub consent_timeout: Duration,
}

impl Default for IceLiteConfig {
    fn default() -> Self {
        Self {
            max_sessions: 4096,
            max_addresses_per_session: 4,
            consent_timeout: CONSENT_TIMEOUT,
        }
    }
}

/// A session of an [`IceLite`] agent. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u64);

impl SessionId {
    /// The id's number (distinct for every session an agent ever held).
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Transaction ids of valid checks remembered per session: a check that
/// repeats one (a retransmission, or a replay) changes nothing. The native
/// client sends one every 5 s and browsers about as often, so 32 span
/// minutes.
const RECENT_TRANSACTIONS: usize = 32;

/// What an [`IceLite`] agent tells its owner.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceEvent {
    /// The first valid check from `from` for `session` (`nominated: false`),
    /// or the session's first nomination (`nominated: true`: a valid check
    /// with USE-CANDIDATE; `from` is the selected address from now on).
    Checked {
        /// The session.
        session: SessionId,
        /// The client's address the check came from.
        from: SocketAddr,
        /// Whether `from` is now the session's selected address.
        nominated: bool,
    },
    /// The selected address moved to `from`: a valid check with
    /// USE-CANDIDATE came from an address other than the selected one (the
    /// client's NAT rebound, or it moved network). Send to `from` from now on.
    AddressChanged {
        /// The session.
        session: SessionId,
        /// The new selected address.
        from: SocketAddr,
        /// The selected address until now.
        old: SocketAddr,
    },
    /// No valid check came from the selected address for `consent_timeout`
    /// (or the session was never nominated within `consent_timeout` of being
    /// added): the session is removed.
    ConsentExpired {
        /// The session, now gone.
        session: SessionId,
        /// Its selected address then, if it was nominated.
        selected: Option<SocketAddr>,
    },
}

/// Why [`IceLite::add_session`] refused.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddSessionError {
    /// The agent holds `max_sessions` sessions already.
    #[error("the ICE agent holds its maximum of {0} sessions")]
    Full(usize),
    /// Another session has the same local ufrag.
    #[error("a session with this local ufrag exists")]
    DuplicateUfrag,
    /// A ufrag or password is empty, too long, or a ufrag holds a colon.
    #[error("invalid ICE credentials")]
    InvalidCredentials,
}

/// What an [`IceLite`] agent did with what it received: every datagram
/// given to [`IceLite::handle_stun`] is counted exactly once in one of the
/// first ten counters.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceStats {
    /// Valid checks answered with a success response.
    pub checks_answered: u64,
    /// Valid checks whose transaction was seen before (retransmitted or
    /// replayed): answered again, nothing changed.
    pub checks_repeated: u64,
    /// Not one well-formed STUN message (bad header, lengths, attribute,
    /// FINGERPRINT value, trailing bytes): dropped.
    pub malformed: u64,
    /// Well-formed STUN but not a request (indications, responses): dropped.
    pub not_request: u64,
    /// Requests of another method than Binding: dropped.
    pub unknown_method: u64,
    /// Binding requests without FINGERPRINT: dropped.
    pub no_fingerprint: u64,
    /// Answered 400 Bad Request: USERNAME or MESSAGE-INTEGRITY missing
    /// (unauthenticated), or PRIORITY or the role missing (authenticated).
    pub bad_request: u64,
    /// Answered 401: USERNAME names no session.
    pub unknown_ufrag: u64,
    /// Answered 401: MESSAGE-INTEGRITY wrong under the session's password.
    pub bad_integrity: u64,
    /// Answered 487 Role Conflict (the request carried ICE-CONTROLLED).
    pub role_conflict: u64,
    /// Answered 420 Unknown Attribute.
    pub unknown_attribute: u64,
    /// Responses dropped because the transmit queue was full.
    pub transmits_dropped: u64,
    /// Client addresses forgotten to make room for a newer one.
    pub addresses_evicted: u64,
    /// Sessions expired ([`IceEvent::ConsentExpired`]).
    pub consent_expired: u64,
}

/// A client address of a session that sent a valid check.
#[derive(Debug)]
struct Candidate {
    addr: SocketAddr,
    last_check: Instant,
}

#[derive(Debug)]
struct Session {
    id: SessionId,
    remote_ufrag: String,
    key: IntegrityKey,
    candidates: Vec<Candidate>,
    selected: Option<SocketAddr>,
    /// The transaction ids of its latest valid checks (at most
    /// [`RECENT_TRANSACTIONS`]): a repeated one changes nothing.
    recent: VecDeque<u128>,
    /// When the session expires unless a valid check from the selected
    /// address comes first. Only ever moves later.
    expires: Instant,
}

/// The ICE-lite agent of the server role: answers Binding requests checked
/// against each session's short-term credentials, learns and follows each
/// client's address, and expires sessions whose client went silent.
///
/// Sans-IO: feed STUN datagrams to [`IceLite::handle_stun`] (what
/// [`demux::classify`](super::demux::classify) calls [`Stun`](super::demux::Demux::Stun)),
/// call [`IceLite::handle_timeout`] at [`IceLite::poll_timeout`], and after
/// either drain [`IceLite::poll_transmit`] and [`IceLite::poll_event`].
/// Unauthenticated traffic creates no state: only a request whose USERNAME
/// and MESSAGE-INTEGRITY match a session added by the owner changes
/// anything. Time must not go backwards (an earlier instant is treated as the
/// latest one seen).
#[derive(Debug)]
pub struct IceLite {
    config: IceLiteConfig,
    /// Sessions by local ufrag.
    sessions: HashMap<String, Session>,
    /// Local ufrag by id.
    ufrags: HashMap<SessionId, String>,
    /// (expiry, session): at most one entry per session, possibly earlier
    /// than the session's real expiry (re-pushed when popped early).
    timers: BinaryHeap<Reverse<(Instant, SessionId)>>,
    next_id: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IceEvent>,
    stats: IceStats,
    latest: Option<Instant>,
}

impl IceLite {
    /// An agent with no sessions.
    pub fn new(config: IceLiteConfig) -> Self {
        Self {
            config,
            sessions: HashMap::new(),
            ufrags: HashMap::new(),
            timers: BinaryHeap::new(),
            next_id: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: IceStats::default(),
            latest: None,
        }
    }

    // ---- Getters ---------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &IceLiteConfig {
        &self.config
    }

    /// What the agent did with what it received.
    pub fn stats(&self) -> &IceStats {
        &self.stats
    }

    /// How many sessions the agent holds.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a session has `local_ufrag` as its local username fragment.
    pub fn knows_ufrag(&self, local_ufrag: &str) -> bool {
        self.sessions.contains_key(local_ufrag)
    }

    /// The session's local ICE username fragment (what the answer carried):
    /// the same for every worker told about the peer.
    pub fn local_ufrag(&self, session: SessionId) -> Option<&str> {
        self.ufrags.get(&session).map(String::as_str)
    }

    /// The session's selected address (the client's address of its latest
    /// nomination), if it is nominated.
    pub fn selected(&self, session: SessionId) -> Option<SocketAddr> {
        self.session(session)?.selected
    }

    /// The client addresses a session remembers (at most
    /// `max_addresses_per_session`).
    pub fn addresses(&self, session: SessionId) -> Vec<SocketAddr> {
        self.session(session)
            .map(|s| s.candidates.iter().map(|c| c.addr).collect())
            .unwrap_or_default()
    }

    /// Whether the agent holds `session`.
    pub fn contains(&self, session: SessionId) -> bool {
        self.ufrags.contains_key(&session)
    }

    fn session(&self, id: SessionId) -> Option<&Session> {
        self.sessions.get(self.ufrags.get(&id)?)
    }

    // ---- Mutators --------------------------------------------------------

    /// Adds a session with the credentials exchanged in signalling: ours
    /// (`local_ufrag`, `local_pwd`: what the answer carried) and the
    /// client's ufrag. The session expires unless nominated within
    /// `consent_timeout` of `now`.
    pub fn add_session(
        &mut self,
        local_ufrag: &str,
        local_pwd: &str,
        remote_ufrag: &str,
        now: Instant,
    ) -> Result<SessionId, AddSessionError> {
        let now = self.advance(now);
        let valid = |s: &str| !s.is_empty() && s.len() <= MAX_CREDENTIAL_LEN;
        if !valid(local_ufrag)
            || !valid(local_pwd)
            || !valid(remote_ufrag)
            || local_ufrag.contains(':')
            || remote_ufrag.contains(':')
        {
            return Err(AddSessionError::InvalidCredentials);
        }
        if self.sessions.contains_key(local_ufrag) {
            return Err(AddSessionError::DuplicateUfrag);
        }
        if self.sessions.len() >= self.config.max_sessions {
            return Err(AddSessionError::Full(self.config.max_sessions));
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let expires = now + self.config.consent_timeout;
        self.sessions.insert(
            local_ufrag.to_owned(),
            Session {
                id,
                remote_ufrag: remote_ufrag.to_owned(),
                key: ShortTermCredentials::new(local_pwd.to_owned()).make_key(),
                candidates: Vec::new(),
                selected: None,
                recent: VecDeque::new(),
                expires,
            },
        );
        self.ufrags.insert(id, local_ufrag.to_owned());
        self.timers.push(Reverse((expires, id)));
        Ok(id)
    }

    /// Removes a session (its timer entry goes when it comes up). Returns
    /// whether the agent held it.
    pub fn remove_session(&mut self, session: SessionId) -> bool {
        match self.ufrags.remove(&session) {
            Some(ufrag) => {
                self.sessions.remove(&ufrag);
                true
            }
            None => false,
        }
    }

    // ---- Inputs ----------------------------------------------------------

    /// Handles a STUN datagram from `from` (module docs: what is answered
    /// how). Returns the session a valid check was for, `None` when the
    /// datagram was dropped or rejected (see [`IceLite::stats`]).
    pub fn handle_stun(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<SessionId> {
        let now = self.advance(now);
        let Some(msg) = parse(datagram) else {
            self.stats.malformed += 1;
            return None;
        };
        if !msg.has_class(MessageClass::Request) {
            self.stats.not_request += 1;
            return None;
        }
        if !msg.has_method(BINDING) {
            self.stats.unknown_method += 1;
            return None;
        }
        if !has_fingerprint(&msg) {
            self.stats.no_fingerprint += 1;
            return None;
        }
        let username = match msg.attribute::<Username>() {
            Ok(u) if has_integrity(&msg) => u,
            _ => {
                self.stats.bad_request += 1;
                let out = error(&msg, ErrorCode::BAD_REQUEST, None);
                self.queue(from, out);
                return None;
            }
        };
        let session = username
            .username()
            .split_once(':')
            .and_then(|(local, remote)| {
                self.sessions
                    .get_mut(local)
                    .filter(|s| s.remote_ufrag == remote)
            });
        let Some(session) = session else {
            self.stats.unknown_ufrag += 1;
            let out = error(&msg, ErrorCode::UNAUTHORIZED, None);
            self.queue(from, out);
            return None;
        };
        if msg.validate_integrity_with_key(&session.key).is_err() {
            self.stats.bad_integrity += 1;
            let out = error(&msg, ErrorCode::UNAUTHORIZED, None);
            self.queue(from, out);
            return None;
        }
        // Authenticated from here on: errors carry MESSAGE-INTEGRITY.
        let key = session.key.clone();
        let unknown: Vec<AttributeType> = msg
            .iter_attributes()
            .map(|(_, a)| a.get_type())
            .filter(|t| t.comprehension_required() && !KNOWN_ATTRIBUTES.contains(t))
            .collect();
        if !unknown.is_empty() {
            self.stats.unknown_attribute += 1;
            let out = unknown_attributes(&msg, &unknown, &key);
            self.queue(from, out);
            return None;
        }
        let controlling = msg.has_attribute(IceControlling::TYPE);
        let controlled = msg.has_attribute(IceControlled::TYPE);
        if msg.attribute::<Priority>().is_err()
            || controlling == controlled
            || (controlling && msg.attribute::<IceControlling>().is_err())
        {
            self.stats.bad_request += 1;
            let out = error(&msg, ErrorCode::BAD_REQUEST, Some(&key));
            self.queue(from, out);
            return None;
        }
        if controlled {
            self.stats.role_conflict += 1;
            let out = error(&msg, ErrorCode::ROLE_CONFLICT, Some(&key));
            self.queue(from, out);
            return None;
        }

        // A transaction seen before (a retransmission, or a copy replayed
        // by someone who saw it, perhaps from another address) gets its
        // answer again and changes nothing: a replayed check must not move
        // the session to an address of the replayer's choosing.
        let txid = u128::from(msg.transaction_id());
        if session.recent.contains(&txid) {
            self.stats.checks_repeated += 1;
            let id = session.id;
            let out = success(&msg, from, &key);
            self.queue(from, out);
            return Some(id);
        }
        if session.recent.len() >= RECENT_TRANSACTIONS {
            session.recent.pop_front();
        }
        session.recent.push_back(txid);

        // A valid check: learn the address, follow a nomination.
        let nominate = msg.has_attribute(UseCandidate::TYPE);
        let max_addresses = self.config.max_addresses_per_session.max(1);
        let id = session.id;
        let known = match session.candidates.iter_mut().find(|c| c.addr == from) {
            Some(c) => {
                c.last_check = now;
                true
            }
            None => {
                if session.candidates.len() >= max_addresses {
                    // Forget the least recently checked address, not the
                    // selected one unless it is the only one (the session
                    // keeps its selected address either way).
                    let selected = session.selected;
                    let lru = |not_selected: bool| {
                        session
                            .candidates
                            .iter()
                            .enumerate()
                            .filter(|(_, c)| !not_selected || Some(c.addr) != selected)
                            .min_by_key(|(_, c)| c.last_check)
                            .map(|(i, _)| i)
                    };
                    let victim = lru(true).or_else(|| lru(false));
                    if let Some(i) = victim {
                        session.candidates.swap_remove(i);
                        self.stats.addresses_evicted += 1;
                    }
                }
                session.candidates.push(Candidate {
                    addr: from,
                    last_check: now,
                });
                false
            }
        };
        let event = match (nominate, session.selected) {
            (true, None) => Some(IceEvent::Checked {
                session: id,
                from,
                nominated: true,
            }),
            (true, Some(old)) if old != from => Some(IceEvent::AddressChanged {
                session: id,
                from,
                old,
            }),
            (false, _) if !known => Some(IceEvent::Checked {
                session: id,
                from,
                nominated: false,
            }),
            _ => None,
        };
        if nominate {
            session.selected = Some(from);
        }
        if session.selected == Some(from) {
            // Consent: only checks from the selected address refresh it.
            session.expires = session.expires.max(now + self.config.consent_timeout);
        }
        if let Some(event) = event {
            self.push_event(event);
        }
        self.stats.checks_answered += 1;
        let out = success(&msg, from, &key);
        self.queue(from, out);
        Some(id)
    }

    /// Expires the sessions whose consent ran out by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(ufrag) = self.ufrags.get(&id) else {
                continue; // removed
            };
            let Some(session) = self.sessions.get(ufrag) else {
                continue;
            };
            if session.expires > now {
                let expires = session.expires;
                self.timers.push(Reverse((expires, id)));
                continue;
            }
            let selected = session.selected;
            self.remove_session(id);
            self.stats.consent_expired += 1;
            self.push_event(IceEvent::ConsentExpired { session: id, selected });
        }
    }

    // ---- Outputs ---------------------------------------------------------

    /// The next response to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    /// When to call [`IceLite::handle_timeout`] next (possibly earlier than
    /// needed: calling it early is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ---- Internals -------------------------------------------------------

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.latest.map_or(now, |l| l.max(now));
        self.latest = Some(now);
        now
    }

    fn queue(&mut self, destination: SocketAddr, payload: Option<Vec<u8>>) {
        let Some(payload) = payload else { return };
        if self.transmits.len() >= MAX_QUEUED_TRANSMITS {
            self.stats.transmits_dropped += 1;
            return;
        }
        self.transmits.push_back(Transmit {
            destination,
            payload: Bytes::from(payload),
        });
    }

    fn push_event(&mut self, event: IceEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }
}

/// A Binding success response to `request` from `from`.
fn success(request: &Message<'_>, from: SocketAddr, key: &IntegrityKey) -> Option<Vec<u8>> {
    let mut out = Message::builder_success(request, MessageWriteVec::with_capacity(80));
    out.add_attribute(&XorMappedAddress::new(from, request.transaction_id()))
        .ok()?;
    out.add_message_integrity_with_key(key, IntegrityAlgorithm::Sha1)
        .ok()?;
    out.add_fingerprint().ok()?;
    Some(out.finish())
}

/// An error response to `request`, with MESSAGE-INTEGRITY when the request
/// was authenticated (`key`).
fn error(request: &Message<'_>, code: u16, key: Option<&IntegrityKey>) -> Option<Vec<u8>> {
    let mut out = Message::builder_error(request, MessageWriteVec::with_capacity(80));
    let reason = ErrorCode::default_reason_for_code(code);
    out.add_attribute(&ErrorCode::new(code, reason).ok()?).ok()?;
    finish(out, key)
}

/// A 420 response listing `unknown`.
fn unknown_attributes(
    request: &Message<'_>,
    unknown: &[AttributeType],
    key: &IntegrityKey,
) -> Option<Vec<u8>> {
    let mut out = Message::builder_error(request, MessageWriteVec::with_capacity(96));
    let reason = ErrorCode::default_reason_for_code(ErrorCode::UNKNOWN_ATTRIBUTE);
    out.add_attribute(&ErrorCode::new(ErrorCode::UNKNOWN_ATTRIBUTE, reason).ok()?)
        .ok()?;
    out.add_attribute(&stun_types::attribute::UnknownAttributes::new(unknown))
        .ok()?;
    finish(out, Some(key))
}

fn finish(mut out: MessageWriteVec, key: Option<&IntegrityKey>) -> Option<Vec<u8>> {
    if let Some(key) = key {
        out.add_message_integrity_with_key(key, IntegrityAlgorithm::Sha1)
            .ok()?;
    }
    out.add_fingerprint().ok()?;
    Some(out.finish())
}

/// The local ICE username fragment a Binding request names (the part of
/// its USERNAME before the colon), without checking anything else: where a
/// runtime with several workers sends a check it cannot answer itself.
pub fn request_ufrag(datagram: &[u8]) -> Option<String> {
    let msg = parse(datagram)?;
    if !msg.has_class(MessageClass::Request) || !msg.has_method(BINDING) {
        return None;
    }
    let username = msg.attribute::<Username>().ok()?;
    let (local, _) = username.username().split_once(':')?;
    Some(local.to_owned())
}
