//! [`Hub`]: the sans-IO engine core behind the DataChannel API.
//!
//! One hub owns one [`Node`] and plays any of three parts at once:
//! - **server**: accepts associations, authenticates `Join`s with a
//!   [`crate::auth::JoinVerifier`], keeps each call's members, and fans
//!   every message out to its targets (encoded once, the same `Bytes` to
//!   every association);
//! - **client**: joins calls on other hubs ([`Hub::join_remote`]);
//! - **host**: runs participants inside the hub itself
//!   ([`Hub::join_local`]). A peer-to-peer call is a hub hosting one
//!   participant and another hub joining it remotely: no third party, same
//!   API.
//!
//! The code is split by role around a pure room:
//! - `room`: a call's members and open senders, as a pure function of
//!   their state — frames in, deliveries, welcomes, violations and removals
//!   out (admission, routes, sessions, fan-out targets, policing);
//! - `server`: associations that join, the room's decisions carried out,
//!   the egress to each member (`egress`), slow consumers;
//! - `client`: this hub's own calls, joined over an uplink or hosted, each
//!   with its `participant` core;
//! - `pump`: the one loop that hands SCTP what a scheduler picks within an
//!   egress budget, and the one batcher, for uplinks and member egresses;
//! - `relay`: what workers of one engine tell each other;
//! - `config`: what a hub is configured with and reports.
//!
//! # A second join with the same participant id
//! It is a second endpoint of the same participant, as in ACS (where two
//! endpoints with one identifier count twice): both stay in the call, each
//! with its own member number. Messages addressed to that identifier reach
//! both; a broadcast from one of them reaches the other.
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap, VecDeque};
use crate::idhash::IdMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::datachannel::{HubShared, ParticipantId};
use crate::dtls::Fingerprint;
use secure::Secure;
use crate::proto::{AssocId, CloseReason, Delivery, Event, Node, Transmit};
use crate::wire::{ErrorCode, Frame, JoinRejected, MemberId, Message, ShortStr};

use client::Participant;
use relay::Outbox;
use room::{Outputs, Room};
use server::{Egresses, Link, SHUTTING_DOWN};

/// The engine's sans-IO core: one SCTP endpoint and the DataChannel
/// feature over it, in any of three roles at once:
/// - **server**: accepts associations, authenticates joins with a
///   [`JoinVerifier`](crate::JoinVerifier) ([`HubConfig::server`]), keeps
///   each call's members, and fans every message out to its targets
///   (encoded once, the same bytes to every association);
/// - **client**: joins calls on other hubs ([`Hub::join_remote`]);
/// - **host**: runs participants inside the hub itself
///   ([`Hub::join_local`]). A peer-to-peer call is a hub hosting one
///   participant and another hub joining it remotely: no third party, same
///   API.
///
/// [`Engine`](crate::Engine) drives hubs over UDP; drive one yourself to
/// bring your own I/O. A hub does no I/O and reads no clock: every input
/// carries the current time, every output is polled.
///
/// # Methods
/// - Getters: [`Hub::stats`], [`Hub::members`].
/// - Inputs: [`Hub::handle_datagram`] (a UDP datagram arrived) and
///   [`Hub::handle_timeout`] (the time from [`Hub::poll_timeout`] came, or
///   the application queued work).
/// - Commands: [`Hub::join_remote`], [`Hub::join_local`],
///   [`Hub::close_all`]; and everything the application does through the
///   handles those return ([`crate::Call`], senders, receivers), which
///   queue their work for the hub from any thread.
/// - Outputs: [`Hub::poll_transmit`], [`Hub::poll_event`],
///   [`Hub::poll_timeout`].
///
/// # Contract
/// After any input or command, drain the outputs in this order:
/// 1. [`Hub::poll_transmit`] until `None`, sending each datagram;
/// 2. [`Hub::poll_event`] until `None` (events wait until polled; none is
///    lost if the embedder polls late);
/// 3. [`Hub::poll_timeout`], and call [`Hub::handle_timeout`] when that
///    instant arrives. Calling early or late is harmless.
///
/// (An engine of several workers also drains each hub's relays to the
/// other workers' hubs, in order, never dropping one; a hub you drive
/// yourself is one worker and has none.)
///
/// Time must not go backwards: an `Instant` earlier than one already given
/// is treated as the latest one seen.
///
/// # Threads
/// The hub itself is driven from one thread (it is `Send`, not shared).
/// The application's handles are `Send + Sync` and used from any thread:
/// they push onto lock-free queues and call the hook given to
/// [`Hub::set_wake_hook`] at most once per batch of work; from then until
/// the driver calls [`Hub::handle_timeout`], [`Hub::poll_timeout`] returns
/// an instant already passed.
///
/// # Failure
/// No input can make the hub panic or fail as a whole: a datagram that is
/// not SCTP, or for no association, is counted
/// ([`HubStats::datagrams_dropped`]) and dropped; a frame that breaks the protocol is answered with an
/// error frame (counted in [`HubStats::protocol_errors`]) and harms nothing
/// else; a member over the traffic rules or too slow for its calls is
/// disconnected with a reason.
///
/// # Threads
/// A hub is not `Send`: its SCTP sockets (dcsctp's) keep their state behind
/// `Rc`, so a hub stays on the thread that made it. A driver makes it there
/// (the engine makes each worker's hub on the worker's thread); the handles
/// it gives out (`Call`, senders, receivers) are `Send + Sync`.
pub struct Hub {
    config: HubConfig,
    node: Node,
    /// ICE and DTLS under the node, when [`HubConfig::dtls`] is set.
    secure: Option<Secure>,
    /// ICE credentials and SDP session ids (seeded: simulations repeat).
    signal_rng: rand_chacha::ChaCha8Rng,
    shared: Arc<HubShared>,
    /// This hub's associations and what each is for.
    links: IdMap<AssocId, Link>,
    /// The calls this hub serves (and hosts participants of).
    rooms: HashMap<String, Room>,
    /// This hub's own calls, joined remotely or hosted, by call key.
    participants: IdMap<u64, Participant>,
    next_call_key: u64,
    /// Calls (by key) whose senders have queued work: waiting for room in
    /// their association or for shaping tokens.
    backlog: BTreeSet<u64>,
    events: VecDeque<HubEvent>,
    now: Option<Instant>,
    next_tick: Option<Instant>,
    /// `writable()` waiters for traffic-rule tokens, by when they are in.
    token_waits: std::collections::BTreeMap<Instant, Vec<Arc<crate::datachannel::shared::SenderShared>>>,
    /// Calls whose `JoinAccepted` arrived in the events being processed.
    joining: Vec<u64>,
    stats: HubStats,
    /// The egress of each member association this hub owns.
    egress: Egresses,
    /// What this hub has for other workers.
    relay: Outbox,
    /// Home side, several workers: members whose association lives on
    /// another worker, by (worker, association).
    relayed: IdMap<(usize, AssocId), (String, MemberId)>,
    /// Owner side, several workers: bytes of each member's frames relayed
    /// to its call's worker and not yet taken there
    /// ([`HubConfig::relay_backlog`]).
    relay_pending: IdMap<AssocId, usize>,
    /// Home side, several workers: bytes of relayed frames taken in this
    /// input, to acknowledge to their owners when it ends.
    relay_taken: std::collections::BTreeMap<(usize, AssocId), usize>,
    /// What the rooms decided and the hub has yet to carry out (buffers
    /// kept between inputs). Boxed: carrying out swaps it with a spare
    /// (moving the struct in and out cost 1.5 % of a p2p 100 B profile:
    /// it is carried out once per frame).
    outputs: Box<Outputs>,
    /// Empty `Outputs` to swap in while one is carried out (one per
    /// level of nesting: carrying out can make a room decide again).
    /// Boxed so that a swap moves a pointer, not the struct.
    #[allow(clippy::vec_box)]
    spare_outputs: Vec<Box<Outputs>>,
    /// Peers that moved to a new address, for the runtime
    /// ([`Hub::poll_moved_peer`]); at most [`MAX_MOVED_NOTES`].
    moved_peers: VecDeque<SocketAddr>,
}

/// Most moved-peer notes kept for a runtime that does not read them.
const MAX_MOVED_NOTES: usize = 1024;

/// The largest UDP payload of a DTLS record carrying one SCTP packet
/// (1,232 bytes, [`crate::proto`]): its 13-byte header, an 8-byte explicit
/// nonce and a 16-byte tag (DTLS 1.2 with AES-GCM), and room for a small
/// record packed beside it.
const DTLS_MTU: usize = 1232 + 37 + 64;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.node)
            .field("rooms", &self.rooms.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with `config`.
    pub fn new(mut config: HubConfig) -> Self {
        config.node.accept_incoming |= config.verifier.is_some();
        config.channel.max_message_size = config
            .channel
            .max_message_size
            .min(crate::datachannel::MAX_MESSAGE_SIZE_LIMIT);
        if config.dtls.is_some() {
            // WebRTC peers take messages of 256 KiB: the largest forwarded
            // `Data` stays within it.
            config.channel.max_message_size = config
                .channel
                .max_message_size
                .min(signal::payload_within(signal::WEBRTC_MAX_MESSAGE));
        }
        config.workers = config.workers.max(1);
        config.worker = config.worker.min(config.workers - 1);
        // The node's verification tags and TSNs follow the hub's seed, so a
        // seeded (simulated) run is reproducible from it alone.
        config.node.seed = config.seed ^ 0x6e6f_6465_5eed_0001;
        // Under DTLS the SCTP checksum only repeats what DTLS's AEAD
        // checks: both ends offer RFC 9653's zero checksum.
        config.node.zero_checksum = config.dtls.is_some();
        let shared = Arc::new(HubShared::default());
        if !config.clock.is_system() {
            shared.set_clock(config.clock.clone());
        }
        let secure = config.dtls.clone().map(|cert| {
            Secure::new(
                cert,
                DTLS_MTU,
                config.node.max_associations,
                config.seed ^ 0x6474_6c73_5eed_0002,
                config.workers > 1,
            )
        });
        Self {
            node: Node::new(config.node.clone()),
            secure,
            signal_rng: rand::SeedableRng::seed_from_u64(config.seed ^ 0x5167_4e41_5eed_0003),
            shared,
            links: IdMap::default(),
            rooms: HashMap::new(),
            participants: IdMap::default(),
            next_call_key: 0,
            backlog: BTreeSet::new(),
            events: VecDeque::new(),
            now: None,
            next_tick: None,
            token_waits: std::collections::BTreeMap::new(),
            joining: Vec::new(),
            stats: HubStats::default(),
            egress: Egresses::new(&config),
            relay: Outbox::new(config.workers),
            relayed: IdMap::default(),
            relay_pending: IdMap::default(),
            relay_taken: std::collections::BTreeMap::new(),
            outputs: Box::default(),
            spare_outputs: Vec::new(),
            moved_peers: VecDeque::new(),
            config,
        }
    }

    /// Sets how application handles wake the driver when they queue work
    /// (called from any thread, at most once per batch of work). Returns
    /// `false` if a hook was already set.
    pub fn set_wake_hook(&self, hook: impl Fn() + Send + Sync + 'static) -> bool {
        self.shared.set_wake_hook(Box::new(hook))
    }

    /// Counters since creation, the transport's (the node's) included.
    pub fn stats(&self) -> HubStats {
        let node = self.node.stats();
        let dtls = self
            .secure
            .as_ref()
            .map(|s| s.dtls.stats())
            .unwrap_or_default();
        let ice_dropped = self.secure.as_ref().map_or(0, |s| s.dropped);
        let (ice_checks_refused, ice_consent_expired) = self
            .secure
            .as_ref()
            .map_or((0, 0), |s| (s.checks_refused(), s.consent_closed));
        HubStats {
            ice_checks_refused,
            ice_consent_expired,
            dtls_handshakes: dtls.handshakes,
            zero_checksum_associations: node.zero_checksum_associations,
            dtls_failures: dtls.failures,
            dtls_dropped: ice_dropped + dtls.not_allowed,
            datagrams_received: node.datagrams_received,
            datagrams_dropped: node.datagrams_dropped,
            datagrams_sent: node.datagrams_sent,
            messages_malformed: node.messages_malformed,
            messages_ignored: node.messages_ignored,
            associations_refused: node.associations_refused,
            inits_answered: node.inits_answered,
            cookies_refused: node.cookies_refused,
            oversize_messages: node.oversize_messages,
            ..self.stats
        }
    }

    /// The node underneath (for its counters and associations).
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Members of `call_id` served by this hub (remote and hosted).
    pub fn members(&self, call_id: &str) -> Vec<(MemberId, ParticipantId)> {
        self.rooms.get(call_id).map_or_else(Vec::new, |r| {
            r.members().map(|(m, p)| (m, p.clone())).collect()
        })
    }

    /// Closes every association gracefully: members of calls served here
    /// are told the server is shutting down, this hub's own remote calls
    /// leave, associations that have not joined yet are told their join is
    /// refused. Queued data is delivered first.
    /// Associations still in their handshake end at once, and from now on
    /// new ones are refused: nothing new starts
    /// while the closes complete.
    pub fn close_all(&mut self, now: Instant) {
        let now = self.advance(now);
        // What the application queued, and sends it made until now, go
        // before the leaves.
        self.process_work(now);
        let mut assocs: Vec<AssocId> = self.links.keys().copied().collect();
        assocs.sort_unstable();
        for assoc in assocs {
            match self.links.get(&assoc) {
                // What the member's egress holds goes first.
                Some(Link::Member(_)) => self.close_member(now, assoc),
                Some(Link::Uplink(key)) => {
                    let key = *key;
                    self.close_uplink(now, assoc, key);
                }
                Some(Link::Pending { .. }) => {
                    // Its join, if one is on the way, finds it closing.
                    self.links.insert(assoc, Link::Closing);
                    let refused = JoinRejected {
                        code: ErrorCode::SHUTTING_DOWN,
                        reason: ShortStr::truncated(SHUTTING_DOWN),
                    };
                    self.send(now, assoc, Delivery::Reliable, refused.into());
                }
                Some(Link::Closing) | None => {}
            }
        }
        // Closes every association: those above after their last frame,
        // and those no link knows yet (still in their handshake).
        self.node.close_all(now);
    }

    // ---- sans-IO inputs and outputs --------------------------------------

    /// A UDP datagram arrived. Returns what the transport did with it
    /// (taken by an association, refused, or dropped and why).
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: Bytes,
    ) -> crate::proto::Placement {
        let now = self.advance(now);
        let placement = match &mut self.secure {
            None => self.node.handle_datagram(now, from, datagram),
            Some(secure) => {
                if secure.handle_datagram(now, from, &datagram) {
                    self.dtls_inbound(now);
                    crate::proto::Placement::Placed
                } else {
                    // Perhaps another worker's peer (its session lives
                    // there), or not DTLS at all: counted by the layer.
                    crate::proto::Placement::Dropped(crate::proto::DropReason::UnknownAssociation)
                }
            }
        };
        self.process_node_events(now);
        self.pump_backlog(now);
        self.finish_input(now);
        placement
    }

    /// The time from [`Hub::poll_timeout`] arrived, or work was queued.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if let Some(secure) = &mut self.secure {
            secure.handle_timeout(now);
            self.dtls_inbound(now);
        }
        self.node.handle_timeout(now);
        self.process_node_events(now);
        self.process_work(now);
        self.wake_token_waiters(now);
        self.pump_backlog(now);
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = None;
            self.tick(now);
        }
        self.process_node_events(now);
        self.finish_input(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let Some(secure) = &mut self.secure else {
            return self.node.poll_transmit();
        };
        loop {
            if let Some(t) = secure.poll_transmit() {
                return Some(t);
            }
            let t = self.node.poll_transmit()?;
            secure.send(t.destination, t.payload);
        }
    }

    /// Server role over DTLS ([`HubConfig::dtls`]): lets `remote` start a
    /// DTLS handshake within 30 s,
    /// with a certificate whose fingerprint is `fingerprint` (what its
    /// signalling announced). Call it once the address is proven (an ICE
    /// check signed with the credentials signalling handed out): DTLS from
    /// any other address is dropped and creates no state. Returns `false`
    /// if the hub runs without DTLS.
    pub fn allow_dtls_peer(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        fingerprint: Fingerprint,
    ) -> bool {
        let now = self.advance(now);
        let Some(secure) = &mut self.secure else {
            return false;
        };
        secure.dtls.allow(now, remote, fingerprint);
        true
    }

    /// Client role over DTLS ([`HubConfig::dtls`]): the server at `server`
    /// must present a certificate with this fingerprint (what its
    /// signalling announced). [`Hub::join_remote`] to that server needs it.
    pub fn trust_dtls_server(&mut self, server: SocketAddr, fingerprint: Fingerprint) {
        if let Some(secure) = &mut self.secure {
            secure.trust(server, fingerprint);
        }
    }

    /// DTLS sessions held (handshaking or connected).
    #[cfg(feature = "_internal")]
    pub fn dtls_session_count(&self) -> usize {
        self.secure.as_ref().map_or(0, |s| s.dtls.session_count())
    }

    /// This end's DTLS certificate fingerprint, when it runs DTLS.
    pub fn dtls_fingerprint(&self) -> Option<Fingerprint> {
        self.secure.as_ref().map(|s| s.dtls.fingerprint())
    }

    /// Work for another worker of the same engine: its index and a batch
    /// (everything this hub has for it since the last call). The driver
    /// hands the batch to that worker's hub with [`Hub::handle_relay`], in
    /// order, never dropping one. Only hubs with
    /// [`HubConfig::workers`] > 1 produce any.
    pub(crate) fn poll_relay(&mut self) -> Option<(usize, Vec<Relay>)> {
        self.relay.poll()
    }

    /// A batch another worker's hub produced for this one (see
    /// [`Hub::poll_relay`]).
    pub(crate) fn handle_relay(&mut self, now: Instant, batch: Vec<Relay>) {
        let now = self.advance(now);
        for relay in batch {
            self.on_relay(now, relay);
        }
        self.acknowledge_relayed();
        self.process_node_events(now);
        // A hosted sender the relay resumed (its receivers' pressure is
        // relayed from their workers) sends now, not at the next tick.
        self.pump_backlog(now);
        self.finish_input(now);
    }

    /// The next event for the embedder.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// When to call [`Hub::handle_timeout`] next: an instant already past
    /// when application work is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let work = self.shared.has_work().then_some(self.now).flatten();
        let shaping = self
            .backlog
            .iter()
            .filter_map(|key| self.core(*key)?.poll_timeout())
            .min();
        let tokens = self.token_waits.keys().next().copied();
        let dtls = self.secure.as_ref().and_then(Secure::poll_timeout);
        [self.node.poll_timeout(), self.next_tick, work, shaping, tokens, dtls]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- internals -------------------------------------------------------

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |t| t.max(now));
        self.now = Some(now);
        now
    }

    fn tick_interval(&self) -> Duration {
        let c = &self.config.channel;
        (c.receiver_idle_timeout / 8)
            .min(c.keepalive_interval / 2)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10))
    }

    fn arm_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.tick_interval());
        }
    }

    /// Hands what the DTLS layer decrypted to the node, and ends the
    /// associations whose DTLS session ended.
    fn dtls_inbound(&mut self, now: Instant) {
        let Some(secure) = &mut self.secure else {
            return;
        };
        while let Some((remote, packet)) = secure.poll_inbound() {
            // What the node does with it is in its counters and log.
            let _ = self.node.handle_datagram(now, remote, packet);
        }
        while let Some((old, new)) = secure.poll_moved() {
            // Both layers move, or neither: another peer's associations at
            // `new` (an address reused) keep theirs.
            if self.node.rebind(old, new) == 0 && !self.node.associations_of(old).is_empty() {
                secure.dtls.rebind(new, old);
                tracing::warn!(%old, %new, "a peer's new address has associations of another: not moved");
                continue;
            }
            self.stats.peer_moves += 1;
            if self.moved_peers.len() < MAX_MOVED_NOTES {
                self.moved_peers.push_back(new);
            }
            tracing::info!(%old, %new, "a peer moved to a new address");
        }
        while let Some((remote, why)) = secure.poll_closed() {
            tracing::debug!(%remote, %why, "a peer's secure transport ended");
            for assoc in self.node.associations_of(remote).to_vec() {
                self.node
                    .drop_association(now, assoc, CloseReason::TransportClosed(why.clone()));
            }
        }
    }

    /// Runtime: the next peer that moved to a new address (its associations
    /// followed): a runtime whose workers share the port forwards what
    /// arrives from it elsewhere to this hub.
    pub(crate) fn poll_moved_peer(&mut self) -> Option<SocketAddr> {
        self.moved_peers.pop_front()
    }

    /// Runtime: the next change of the ICE sessions this hub hosts.
    pub(crate) fn poll_ice_home(&mut self) -> Option<secure::IceHome> {
        self.secure.as_mut()?.poll_home()
    }

    /// Runtime: whether the datagram just handled was a valid ICE check for
    /// a session this hub does not host (its username fragment, then): its
    /// peer may live on another worker, which needs the check.
    pub(crate) fn take_foreign_check(&mut self) -> Option<String> {
        self.secure.as_mut()?.take_foreign_check()
    }

    /// Closes the DTLS session with `remote` once no association uses it.
    fn release_dtls(&mut self, remote: Option<SocketAddr>) {
        if let (Some(secure), Some(remote)) = (&mut self.secure, remote)
            && self.node.associations_of(remote).is_empty()
        {
            secure.release(remote);
        }
    }

    fn process_node_events(&mut self, now: Instant) {
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::Connected { assoc, .. } => match self.links.get(&assoc) {
                    Some(Link::Uplink(key)) => {
                        let key = *key;
                        self.on_uplink_connected(now, key);
                    }
                    Some(_) => {}
                    None => {
                        self.links.insert(assoc, Link::Pending { since: now });
                        self.arm_tick(now);
                    }
                },
                Event::Frame { assoc, frame, .. } => match self.links.get(&assoc) {
                    Some(Link::Uplink(key)) => {
                        let key = *key;
                        self.on_uplink_frame(now, assoc, key, frame);
                    }
                    _ => self.on_server_frame(now, assoc, frame),
                },
                Event::Malformed { assoc, error } => {
                    self.malformed(now, assoc, &format!("undecodable message: {error}"));
                }
                Event::Closed { assoc, reason, remote } => {
                    self.release_dtls(Some(remote));
                    match self.links.remove(&assoc) {
                    Some(Link::Member(home)) => {
                        tracing::info!(?assoc, %reason, "a member's association closed");
                        self.on_member_closed(now, assoc, home, &reason);
                    }
                    Some(Link::Uplink(key)) => self.on_uplink_closed(key, &reason),
                    Some(Link::Pending { .. } | Link::Closing) | None => {
                        self.egress.remove(assoc);
                    }
                    }
                }
            }
        }
        self.complete_joins();
    }

    /// Timers: join deadlines, idle receivers, sender keep-alives.
    fn tick(&mut self, now: Instant) {
        let join_timeout = self.config.join_timeout;
        let mut late: Vec<AssocId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l, Link::Pending { since } if now >= *since + join_timeout))
            .map(|(a, _)| *a)
            .collect();
        late.sort_unstable();
        for assoc in late {
            self.links.insert(assoc, Link::Closing);
            self.node.close(now, assoc);
        }
        self.tick_participants(now);
        self.check_consumer_rates(now);
        if !self.links.is_empty() || !self.participants.is_empty() {
            self.next_tick = Some(now + self.tick_interval());
        }
    }

    /// Sends one frame straight into SCTP (past any egress scheduling).
    fn send(&mut self, now: Instant, assoc: AssocId, delivery: Delivery, frame: Frame) {
        // Failures mean the association is going away; its Closed event
        // does the cleanup.
        let _ = self.node.send(now, assoc, delivery, &Message::Frame(frame));
    }
}

impl Drop for Hub {
    /// Whatever the hub still drove is over: its calls end and everyone
    /// waiting on them ([`Call::left`](crate::Call::left)) wakes.
    fn drop(&mut self) {
        for p in self.participants.values_mut() {
            p.core.end("the engine stopped");
            p.core.shared.set_done();
        }
    }
}

#[cfg(feature = "sim")]
impl crate::sim::Host for Hub {
    fn use_clock(&mut self, clock: &crate::sched::Clock) {
        self.shared.set_clock(clock.clone());
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        Hub::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Hub::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Hub::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Hub::poll_timeout(self)
    }
}

mod client;
#[cfg(feature = "_internal")]
mod cluster;
mod config;
mod egress;
mod participant;
mod pump;
mod relay;
mod room;
pub(crate) mod secure;
mod server;
mod signal;

pub use signal::{PendingOffer, SignalError};
pub(crate) use signal::{
    ExpectedPeer, WEBRTC_MAX_MESSAGE, answer_offer, credentials as signal_credentials, largest_data,
    payload_within,
};

#[cfg(feature = "_internal")]
pub use cluster::HubCluster;
pub use config::{ConfigError, HubConfig, HubEvent, HubStats, JoinError};
pub(crate) use relay::Relay;
pub use relay::home_worker;

#[cfg(test)]
mod tests;
