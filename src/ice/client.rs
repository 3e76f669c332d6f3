//! The native client's side of ICE against an ICE-lite server: a
//! controlling agent with one candidate pair (RFC 8445, the minimum of a
//! full agent that a lite peer needs) and consent freshness (RFC 7675).
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rice_stun_types::attribute::{IceControlling, Priority, UseCandidate};
use stun_types::attribute::{ErrorCode, Username, XorMappedAddress};
use stun_types::message::{
    BINDING, IntegrityAlgorithm, IntegrityKey, Message, MessageClass, MessageType,
    MessageWrite, MessageWriteExt, MessageWriteVec, ShortTermCredentials, TransactionId,
};

use super::{CONSENT_TIMEOUT, PRFLX_PRIORITY, has_fingerprint, has_integrity, parse};
use crate::proto::Transmit;

/// Most transactions in flight at once (the newest consent checks; a
/// response to any of them counts).
const MAX_IN_FLIGHT: usize = 4;

/// Configuration of an [`IceClient`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceClientConfig {
    /// Our ufrag (the offer's `a=ice-ufrag`).
    pub local_ufrag: String,
    /// Our password (the offer's `a=ice-pwd`). A lite server sends no
    /// checks, so it is only kept for the record.
    pub local_pwd: String,
    /// The server's ufrag (the answer's `a=ice-ufrag`).
    pub remote_ufrag: String,
    /// The server's password (the answer's `a=ice-pwd`): signs our requests
    /// and checks its responses.
    pub remote_pwd: String,
    /// The server's candidate to check.
    pub remote: SocketAddr,
    /// Seeds the transaction ids, the tie-breaker and the consent jitter.
    pub seed: u64,
    /// Pacing of new transactions (RFC 8445 §14.2: Ta, 50 ms).
    pub ta: Duration,
    /// The first retransmission timeout of a check, doubled at each
    /// retransmission (RFC 8445 §14.3: 500 ms for one pair).
    pub rto: Duration,
    /// Transmissions of one request before it is given up (RFC 8489
    /// §6.2.1: Rc, 7).
    pub max_transmissions: u32,
    /// The mean interval between consent checks (RFC 7675 §5.1: 5 s, each
    /// interval drawn uniformly from 0.8 to 1.2 times it).
    pub consent_interval: Duration,
    /// No success response for this long: consent expired, or (before the
    /// first one) the connection failed (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// The PRIORITY our requests carry (by default a peer-reflexive host
    /// candidate's, [`PRFLX_PRIORITY`]).
    pub priority: u32,
}

impl IceClientConfig {
    /// A configuration with the credentials from signalling, the server's
    /// candidate, and the RFC defaults for everything else.
    pub fn new(
        local_ufrag: impl Into<String>,
        local_pwd: impl Into<String>,
        remote_ufrag: impl Into<String>,
        remote_pwd: impl Into<String>,
        remote: SocketAddr,
    ) -> Self {
        Self {
            local_ufrag: local_ufrag.into(),
            local_pwd: local_pwd.into(),
            remote_ufrag: remote_ufrag.into(),
            remote_pwd: remote_pwd.into(),
            remote,
            seed: 0,
            ta: Duration::from_millis(50),
            rto: Duration::from_millis(500),
            max_transmissions: 7,
            consent_interval: Duration::from_secs(5),
            consent_timeout: CONSENT_TIMEOUT,
            priority: PRFLX_PRIORITY,
        }
    }
}

/// What an [`IceClient`] tells its owner.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IceClientEvent {
    /// The first success response with valid integrity arrived: the pair is
    /// nominated (every request carries USE-CANDIDATE); DTLS can start.
    Connected {
        /// The server's address.
        remote: SocketAddr,
        /// Our address as the server saw it (XOR-MAPPED-ADDRESS), if given.
        mapped: Option<SocketAddr>,
    },
    /// Connected, then no success response for `consent_timeout` (RFC 7675):
    /// stop sending to the server. The client sends nothing more.
    ConsentExpired,
    /// Never connected within `consent_timeout`. The client sends nothing
    /// more.
    Failed,
}

/// What an [`IceClient`] sent and received.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceClientStats {
    /// New requests (transactions) sent.
    pub requests: u64,
    /// Retransmissions of requests.
    pub retransmissions: u64,
    /// Success responses accepted.
    pub successes: u64,
    /// Authenticated error responses (their transaction ends).
    pub error_responses: u64,
    /// Datagrams dropped: not STUN, not a response to a request in flight,
    /// from another address, without FINGERPRINT, or without valid
    /// MESSAGE-INTEGRITY.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No success yet; fails at the deadline.
    Connecting { deadline: Instant },
    /// Connected; consent expires `consent_timeout` after `last_success`.
    Connected { last_success: Instant },
    /// Expired or failed: nothing more is sent.
    Done,
}

#[derive(Debug)]
struct Transaction {
    id: TransactionId,
    payload: Bytes,
    transmissions: u32,
    rto: Duration,
    /// The next retransmission, or (after the last one) when the
    /// transaction is given up.
    next: Instant,
}

/// The native client's ICE: sends Binding requests (USERNAME,
/// PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY,
/// FINGERPRINT) to one server candidate until a success response with
/// valid integrity comes back ([`IceClientEvent::Connected`]), then a
/// consent check every ~5 s, and reports [`IceClientEvent::ConsentExpired`]
/// after `consent_timeout` without a success.
///
/// Sans-IO, driven like [`IceLite`](super::IceLite): [`IceClient::new`]
/// queues the first request; then feed the server's STUN datagrams to
/// [`IceClient::handle_stun`], call [`IceClient::handle_timeout`] at
/// [`IceClient::poll_timeout`], and drain [`IceClient::poll_transmit`] and
/// [`IceClient::poll_event`] after each. Requests the server might send are
/// dropped (a lite server sends none).
#[derive(Debug)]
pub struct IceClient {
    config: IceClientConfig,
    key: IntegrityKey,
    username: String,
    tie_breaker: u64,
    rng: ChaCha8Rng,
    state: State,
    in_flight: VecDeque<Transaction>,
    /// When the next new transaction starts (connecting: after the current
    /// one is given up; connected: the next consent check).
    next_check: Option<Instant>,
    /// When the last new transaction started (Ta pacing).
    last_new: Option<Instant>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<IceClientEvent>,
    stats: IceClientStats,
    latest: Instant,
}

impl IceClient {
    /// A client that starts checking at `now`: the first request is queued.
    pub fn new(config: IceClientConfig, now: Instant) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let tie_breaker = rng.random();
        let key = ShortTermCredentials::new(config.remote_pwd.clone()).make_key();
        let username = format!("{}:{}", config.remote_ufrag, config.local_ufrag);
        let deadline = now + config.consent_timeout;
        let mut client = Self {
            config,
            key,
            username,
            tie_breaker,
            rng,
            state: State::Connecting { deadline },
            in_flight: VecDeque::new(),
            next_check: None,
            last_new: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: IceClientStats::default(),
            latest: now,
        };
        client.start_transaction(now);
        client
    }

    // ---- Getters ---------------------------------------------------------

    /// The configuration.
    pub fn config(&self) -> &IceClientConfig {
        &self.config
    }

    /// What the client sent and received.
    pub fn stats(&self) -> &IceClientStats {
        &self.stats
    }

    /// Whether a success came back and consent has not expired.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// The ICE-CONTROLLING tie-breaker our requests carry.
    pub fn tie_breaker(&self) -> u64 {
        self.tie_breaker
    }

    // ---- Inputs ----------------------------------------------------------

    /// Handles a STUN datagram from `from`. Returns whether it was a valid
    /// success response to one of our requests.
    pub fn handle_stun(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        let now = self.advance(now);
        let accepted = self.accept(from, datagram);
        let Some((index, success, mapped)) = accepted else {
            self.stats.dropped += 1;
            return false;
        };
        self.in_flight.remove(index);
        if !success {
            self.stats.error_responses += 1;
            return false;
        }
        self.stats.successes += 1;
        match self.state {
            State::Connecting { .. } => {
                self.state = State::Connected { last_success: now };
                // Older retries of the connectivity check are moot.
                self.in_flight.clear();
                self.next_check = Some(now + self.consent_jitter());
                self.events.push_back(IceClientEvent::Connected {
                    remote: self.config.remote,
                    mapped,
                });
            }
            State::Connected { .. } => self.state = State::Connected { last_success: now },
            State::Done => {}
        }
        true
    }

    /// Retransmits, starts consent checks, and expires consent, as due at
    /// `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        match self.state {
            State::Done => return,
            State::Connecting { deadline } if now >= deadline => {
                return self.finish(IceClientEvent::Failed);
            }
            State::Connected { last_success }
                if now >= last_success + self.config.consent_timeout =>
            {
                return self.finish(IceClientEvent::ConsentExpired);
            }
            _ => {}
        }
        // Retransmissions, and transactions given up.
        let mut i = 0;
        while let Some(t) = self.in_flight.get_mut(i) {
            if t.next > now {
                i += 1;
                continue;
            }
            if t.transmissions >= self.config.max_transmissions {
                self.in_flight.remove(i);
                continue;
            }
            t.transmissions += 1;
            t.rto = t.rto.saturating_mul(2);
            t.next = now + if t.transmissions == self.config.max_transmissions {
                // The last wait: Rm (16) times the first RTO (RFC 8489 §6.2.1).
                self.config.rto.saturating_mul(16)
            } else {
                t.rto
            };
            let payload = t.payload.clone();
            self.stats.retransmissions += 1;
            self.transmits.push_back(Transmit {
                destination: self.config.remote,
                payload,
            });
            i += 1;
        }
        // A new transaction: connecting, when the previous check was given
        // up; connected, the next consent check.
        if let State::Connecting { .. } = self.state
            && self.in_flight.is_empty()
            && self.next_check.is_none()
        {
            self.next_check = Some(now);
        }
        if let Some(at) = self.next_check
            && now >= at
            && self.paced(now) <= now
        {
            self.next_check = match self.state {
                State::Connected { .. } => Some(now + self.consent_jitter()),
                _ => None,
            };
            self.start_transaction(now);
        }
    }

    // ---- Outputs ---------------------------------------------------------

    /// The next datagram to send (to the server's candidate).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<IceClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`IceClient::handle_timeout`] next; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let end = match self.state {
            State::Done => return None,
            State::Connecting { deadline } => deadline,
            State::Connected { last_success } => last_success + self.config.consent_timeout,
        };
        let retransmit = self.in_flight.iter().map(|t| t.next).min();
        let check = self.next_check.map(|at| at.max(self.paced(at)));
        [Some(end), retransmit, check].into_iter().flatten().min()
    }

    // ---- Internals -------------------------------------------------------

    fn advance(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// The earliest a new transaction may start (Ta after the last one).
    fn paced(&self, at: Instant) -> Instant {
        self.last_new.map_or(at, |last| at.max(last + self.config.ta))
    }

    fn consent_jitter(&mut self) -> Duration {
        self.config
            .consent_interval
            .mul_f64(self.rng.random_range(0.8..=1.2))
    }

    fn finish(&mut self, event: IceClientEvent) {
        self.state = State::Done;
        self.in_flight.clear();
        self.next_check = None;
        self.events.push_back(event);
    }

    fn start_transaction(&mut self, now: Instant) {
        let id = TransactionId::from(self.rng.random::<u128>());
        let Some(payload) = self.request(id) else {
            return;
        };
        let payload = Bytes::from(payload);
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.in_flight.pop_front();
        }
        self.in_flight.push_back(Transaction {
            id,
            payload: payload.clone(),
            transmissions: 1,
            rto: self.config.rto,
            next: now + self.config.rto,
        });
        self.last_new = Some(now);
        self.stats.requests += 1;
        self.transmits.push_back(Transmit {
            destination: self.config.remote,
            payload,
        });
    }

    /// A Binding request with transaction id `id`.
    fn request(&self, id: TransactionId) -> Option<Vec<u8>> {
        let mtype = MessageType::from_class_method(MessageClass::Request, BINDING);
        let mut out = Message::builder(mtype, id, MessageWriteVec::with_capacity(128));
        out.add_attribute(&Username::new(&self.username).ok()?).ok()?;
        out.add_attribute(&Priority::new(self.config.priority)).ok()?;
        out.add_attribute(&IceControlling::new(self.tie_breaker)).ok()?;
        out.add_attribute(&UseCandidate::new()).ok()?;
        out.add_message_integrity_with_key(&self.key, IntegrityAlgorithm::Sha1)
            .ok()?;
        out.add_fingerprint().ok()?;
        Some(out.finish())
    }

    /// Checks a response: the index of its transaction, whether it is a
    /// success, and the mapped address it carries.
    fn accept(
        &self,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<(usize, bool, Option<SocketAddr>)> {
        if self.state == State::Done || from != self.config.remote {
            return None;
        }
        let msg = parse(datagram)?;
        if !msg.is_response() || !msg.has_method(BINDING) || !has_fingerprint(&msg) {
            return None;
        }
        let id = msg.transaction_id();
        let index = self.in_flight.iter().position(|t| t.id == id)?;
        if !has_integrity(&msg) || msg.validate_integrity_with_key(&self.key).is_err() {
            return None;
        }
        let success = msg.has_class(MessageClass::Success);
        if !success && msg.attribute::<ErrorCode>().is_err() {
            return None;
        }
        let mapped = msg
            .attribute::<XorMappedAddress>()
            .ok()
            .map(|a| a.addr(id));
        Some((index, success, mapped))
    }
}
