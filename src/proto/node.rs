//! [`Node`]: the sans-IO core over one sctp-proto endpoint.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use sctp_proto::{
    Association, AssociationError, AssociationHandle, ClientConfig, DatagramEvent, Endpoint,
    EndpointConfig, EndpointEvent, Event as SctpEvent, Payload, PayloadProtocolIdentifier,
    ReliabilityType, ServerConfig, StreamEvent,
};

use super::{NodeConfig, STREAM_LOSSY, STREAM_RELIABLE};
use crate::wire::{Codec, DecodeError, Frame, KeepAlive, Message};

/// Names one association of a [`Node`] for its whole life. Never reused by
/// the same node (unlike sctp-proto's handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssocId(pub(crate) u64);

impl std::fmt::Display for AssocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "assoc-{}", self.0)
    }
}

/// Which of the engine's two SCTP streams a message travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Ordered and reliable ([`super::STREAM_RELIABLE`]): control frames
    /// and Durable data.
    Reliable,
    /// Unordered, abandoned after [`NodeConfig::lossy_lifetime`]
    /// ([`super::STREAM_LOSSY`]): Lossy data and keep-alives.
    Lossy,
}

impl Delivery {
    fn stream(self) -> u16 {
        match self {
            Self::Reliable => STREAM_RELIABLE,
            Self::Lossy => STREAM_LOSSY,
        }
    }
}

/// A datagram to send: its payload is one SCTP packet (RFC 6951).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub payload: Bytes,
}

/// What [`Node::handle_datagram`] did with a datagram.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// An association of this node took it, or it started a new one.
    Placed,
    /// An INIT the node turned down because it holds
    /// [`NodeConfig::max_associations`] or [`NodeConfig::max_handshaking`],
    /// or is closing everything ([`Node::close_all`]; the peer is sent an
    /// ABORT). Counted in [`NodeStats::associations_refused`].
    Refused,
    /// Nobody took it. Counted in [`NodeStats::datagrams_dropped`].
    Dropped(DropReason),
}

/// Why [`Node::handle_datagram`] dropped a datagram.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// An INIT (a peer starting an association) reached a node that does
    /// not accept associations ([`NodeConfig::accept_incoming`]).
    NotAccepting,
    /// An INIT the SCTP endpoint turned down: malformed (a bad checksum,
    /// no initiate tag) or over sctp-proto's own association limit.
    InitRejected,
    /// Not an INIT, and not for any association of this node (an unknown
    /// verification tag) or not a valid SCTP packet (too short, a bad
    /// checksum).
    UnknownAssociation,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAccepting => "an INIT, and this node accepts no associations",
            Self::InitRejected => "an INIT the SCTP endpoint turned down",
            Self::UnknownAssociation => "not for any association of this node, or not SCTP",
        })
    }
}

/// Why an association ended.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// This node closed it ([`Node::close`]).
    #[error("closed locally")]
    Local,
    /// The peer closed it gracefully.
    #[error("closed by the peer")]
    PeerClosed,
    /// The peer aborted it or restarted.
    #[error("aborted by the peer")]
    Aborted,
    /// Nothing was received for [`NodeConfig::idle_timeout`] (the peer
    /// vanished or the path is down), or the handshake did not finish in it.
    #[error("timed out: nothing received within the idle timeout")]
    TimedOut,
    /// The SCTP handshake failed; sctp-proto says why.
    #[error("handshake failed: {0}")]
    HandshakeFailed(#[source] sctp_proto::Error),
    /// The peer broke the SCTP or engine protocol.
    #[error("protocol violation: {0}")]
    ProtocolViolation(Violation),
    /// The peer filled the receive buffer with data that cannot be read.
    #[error("receive buffer exhausted")]
    ReceiveBufferExhausted,
}

/// How a peer broke the protocol ([`CloseReason::ProtocolViolation`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// sctp-proto found the peer in breach of the SCTP specification (its
    /// [`AssociationError::TransportError`]).
    #[error("SCTP transport error")]
    SctpTransport,
    /// The peer sent on a stream beyond those negotiated
    /// ([`NodeConfig::streams`]).
    #[error("data on stream {stream}, beyond the {negotiated} negotiated")]
    StreamBeyondNegotiated {
        /// The stream it sent on.
        stream: u16,
        /// The streams negotiated.
        negotiated: u16,
    },
}

impl CloseReason {
    fn from_sctp(e: AssociationError) -> Self {
        match e {
            AssociationError::HandshakeFailed(e) => Self::HandshakeFailed(e),
            AssociationError::TransportError => Self::ProtocolViolation(Violation::SctpTransport),
            AssociationError::ReceiveBufferExhausted => Self::ReceiveBufferExhausted,
            AssociationError::ApplicationClosed => Self::PeerClosed,
            AssociationError::TimedOut => Self::TimedOut,
            AssociationError::LocallyClosed => Self::Local,
            _ => Self::Aborted,
        }
    }
}

/// What a [`Node`] reports, from [`Node::poll_event`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The association's handshake completed; it can carry messages.
    Connected {
        /// Which association.
        assoc: AssocId,
        /// The peer's address.
        remote: SocketAddr,
    },
    /// A frame arrived (frames of a batch arrive as one event each, in order).
    Frame {
        /// From which association.
        assoc: AssocId,
        /// On which stream.
        delivery: Delivery,
        /// The frame.
        frame: Frame,
    },
    /// An SCTP message arrived that is not a valid engine message. It was
    /// dropped; nothing else was affected.
    Malformed {
        /// From which association.
        assoc: AssocId,
        /// Why it could not be decoded.
        error: DecodeError,
    },
    /// The association ended; its id is no longer valid.
    Closed {
        /// Which association.
        assoc: AssocId,
        /// Why.
        reason: CloseReason,
    },
}

/// An association could not be started ([`JoinError::Connect`](crate::JoinError::Connect)).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The node already holds [`NodeConfig::max_associations`].
    #[error("too many associations")]
    TooManyAssociations,
    /// sctp-proto refused (e.g. port 0); it says why.
    #[error("cannot start an association: {0}")]
    Sctp(#[from] sctp_proto::ConnectError),
}

/// [`Node::send`] failed; nothing was queued.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No such association (never existed, or already closed).
    #[error("unknown association")]
    UnknownAssociation,
    /// The handshake has not completed yet.
    #[error("association not connected yet")]
    NotConnected,
    /// The association is closing.
    #[error("association is closing")]
    Closing,
    /// The encoded message is larger than [`NodeConfig::max_sctp_message_size`].
    #[error("message of {size} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// sctp-proto refused the write; it says why.
    #[error("SCTP refused the message: {0}")]
    Sctp(#[from] sctp_proto::Error),
}

/// Counters since the node was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Datagrams given to [`Node::handle_datagram`].
    pub datagrams_received: u64,
    /// Datagrams that belonged to no association and started none, or were
    /// not valid SCTP.
    pub datagrams_dropped: u64,
    /// Datagrams returned by [`Node::poll_transmit`].
    pub datagrams_sent: u64,
    /// Engine messages (SCTP user messages) sent.
    pub messages_sent: u64,
    /// Engine messages received and decoded.
    pub messages_received: u64,
    /// Messages received that did not decode (reported as [`Event::Malformed`]).
    pub messages_malformed: u64,
    /// Messages on streams or with PPIDs the engine does not use (dropped).
    pub messages_ignored: u64,
    /// Incoming associations refused because the node was full, or was
    /// closing everything ([`Node::close_all`]).
    pub associations_refused: u64,
}

struct Assoc {
    handle: AssociationHandle,
    sctp: Association,
    remote: SocketAddr,
    connected: bool,
    /// Set by [`Node::close`]: a graceful close is under way since then.
    closing_since: Option<Instant>,
    /// This node started the SCTP shutdown (it waits for queued data first).
    shutdown_started: bool,
    /// The peer started the SCTP shutdown: its SHUTDOWN arrived before this
    /// node sent one, and sctp-proto answers it by itself.
    peer_shutdown: bool,
    /// The last SHUTDOWN or SHUTDOWN-ACK chunk type sent, and how many
    /// retransmissions of them went out since the peer was last heard
    /// (to give up on a peer that is gone).
    shutdown_sends: (u8, u32),
    /// Set by [`Node::close`]: send one keep-alive after the queued data, so
    /// the peer acknowledges at once (see `Node::drive`).
    nudge: bool,
    /// The reason to report, decided by the node before SCTP reports loss.
    close_reason: Option<CloseReason>,
    /// For an association the peer started: the peer's INIT, to abort the
    /// handshake with (sctp-proto's `close` tells the peer nothing).
    peer_init: Option<InitTag>,
    created: Instant,
    last_rx: Instant,
    last_keepalive: Instant,
    /// The deadline this association has in the timer heap, if any.
    scheduled: Option<Instant>,
    /// Waiting in `Node::dirty` to have its output gathered.
    dirty: bool,
    /// Waiting in `Node::progressed` to be reported by `poll_progress`.
    progressed: bool,
    /// Every DATA packet asks for an immediate SACK (see
    /// `Node::set_immediate_acks`).
    immediate_acks: bool,
}

/// The sans-IO core: one SCTP endpoint (over UDP, RFC 6951) and its
/// associations, carrying engine [`Message`]s on two streams.
///
/// The node performs no I/O and reads no clock: every input carries the
/// current time, every output is polled.
///
/// # Methods
/// - Getters: [`Node::stats`], [`Node::association_count`],
///   [`Node::is_connected`], [`Node::remote`], [`Node::knows_remote`],
///   [`Node::buffered_amount`].
/// - Inputs: [`Node::handle_datagram`] (a UDP datagram arrived; returns
///   whether an association took it, a [`Placement`]) and
///   [`Node::handle_timeout`] (the time from [`Node::poll_timeout`] came).
/// - Commands: [`Node::connect`], [`Node::send`], [`Node::send_encoded`],
///   [`Node::close`].
/// - Outputs: [`Node::poll_transmit`], [`Node::poll_event`],
///   [`Node::poll_timeout`].
///
/// # Contract
/// After any input or command, drain the outputs in this order:
/// 1. [`Node::poll_transmit`] until `None`, sending each datagram;
/// 2. [`Node::poll_event`] until `None`, handling each event (handling may
///    issue commands: then start again at 1);
/// 3. [`Node::poll_timeout`], and call [`Node::handle_timeout`] when that
///    instant arrives (calling early or late is harmless; spurious wake-ups
///    are no-ops).
///
/// Time must not go backwards: an `Instant` earlier than one already given
/// is treated as the latest one seen. Sends are gathered lazily, so many
/// [`Node::send`]s followed by one drain of `poll_transmit` share packets.
///
/// No input can make the node panic or fail as a whole: a datagram that is
/// not SCTP, or not for a known association, is counted and dropped; an SCTP
/// message that is not a valid engine message becomes [`Event::Malformed`]
/// and affects nothing else.
pub struct Node {
    config: NodeConfig,
    endpoint: Endpoint,
    client_config: ClientConfig,
    /// Whether the endpoint has a server config (accepts INITs).
    accepting: bool,
    /// Set by [`Node::close_all`]: INITs are answered with an ABORT.
    refusing: bool,
    assocs: HashMap<AssocId, Assoc>,
    by_handle: HashMap<AssociationHandle, AssocId>,
    /// Associations not yet connected.
    handshaking: usize,
    next_id: u64,
    timers: BinaryHeap<Reverse<(Instant, AssocId)>>,
    dirty: Vec<AssocId>,
    /// Associations a datagram or timer was handled for, not yet polled.
    progressed: VecDeque<AssocId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    now: Option<Instant>,
    stats: NodeStats,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("associations", &self.assocs.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node with `config`.
    pub fn new(config: NodeConfig) -> Self {
        let transport = config.transport();
        let server_config = config.accept_incoming.then(|| {
            let mut s = ServerConfig::new();
            s.transport = transport.clone();
            Arc::new(s)
        });
        let mut client_config = ClientConfig::new();
        client_config.transport = transport;
        let mut endpoint_config = EndpointConfig::new();
        endpoint_config.max_payload_size(super::config::MAX_PACKET_MESSAGE as u32);
        let endpoint = Endpoint::new(Arc::new(endpoint_config), server_config.clone());
        Self {
            accepting: server_config.is_some(),
            refusing: false,
            config,
            endpoint,
            client_config,
            assocs: HashMap::new(),
            by_handle: HashMap::new(),
            handshaking: 0,
            next_id: 0,
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            progressed: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            now: None,
            stats: NodeStats::default(),
        }
    }

    // ---- Getters --------------------------------------------------------

    /// The configuration.
    #[cfg(feature = "_internal")]
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Counters since creation.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Associations currently held (connecting, open or closing).
    pub fn association_count(&self) -> usize {
        self.assocs.len()
    }

    /// Whether `assoc` exists and has completed its handshake.
    #[cfg(feature = "_internal")]
    pub fn is_connected(&self, assoc: AssocId) -> bool {
        self.assocs.get(&assoc).is_some_and(|a| a.connected)
    }

    /// The peer address of `assoc`.
    pub fn remote(&self, assoc: AssocId) -> Option<SocketAddr> {
        self.assocs.get(&assoc).map(|a| a.remote)
    }

    /// Whether some association of this node has `remote` as its peer.
    /// O(associations): for occasional bookkeeping (the runtime's directory
    /// of associations a multi-worker engine started), not per datagram.
    pub fn knows_remote(&self, remote: SocketAddr) -> bool {
        self.assocs.values().any(|a| a.remote == remote)
    }

    /// Bytes queued in SCTP on `delivery`'s stream of `assoc` and not yet
    /// acknowledged (0 for an unknown association).
    pub fn buffered_amount(&mut self, assoc: AssocId, delivery: Delivery) -> usize {
        self.assocs
            .get_mut(&assoc)
            .and_then(|a| {
                a.sctp
                    .stream(delivery.stream())
                    .ok()?
                    .buffered_amount()
                    .ok()
            })
            .unwrap_or(0)
    }

    // ---- Inputs ---------------------------------------------------------

    /// A UDP datagram from `remote` arrived at `now`. Returns what became
    /// of it: taken by an association (or starting one), refused (an INIT
    /// while full or closing), or dropped, and why. A runtime with several
    /// sockets forwards what no association knows to the others.
    #[must_use = "a datagram no association took may be another socket's"]
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: Bytes,
    ) -> Placement {
        let now = self.advance(now);
        self.stats.datagrams_received += 1;
        let is_init = starts_with_init(&datagram);
        // sctp-proto panics on an INIT that reaches an endpoint without a
        // server config; a node that does not accept never needs one.
        if !self.accepting && is_init {
            return self.dropped(DropReason::NotAccepting);
        }
        if self.refusing && is_init {
            // Closing everything: the peer learns at once rather than
            // retransmitting its INIT until its handshake times out.
            self.stats.associations_refused += 1;
            if let Some(init) = InitTag::parse(&datagram) {
                self.transmits.push_back(init.abort(remote));
            }
            return Placement::Refused;
        }
        let init = InitTag::parse(&datagram);
        let placement = match self.endpoint.handle(now, remote, None, None, datagram) {
            None if is_init => self.dropped(DropReason::InitRejected),
            None => self.dropped(DropReason::UnknownAssociation),
            Some((handle, DatagramEvent::NewAssociation(sctp))) => {
                if self.assocs.len() >= self.config.max_associations
                    || self.handshaking >= self.config.max_handshaking
                {
                    // Full: forget it before it answers, so it holds nothing.
                    self.stats.associations_refused += 1;
                    self.endpoint.handle_event(handle, EndpointEvent::drained());
                    Placement::Refused
                } else {
                    let id = self.insert(handle, sctp, remote, now);
                    if let Some(a) = self.assocs.get_mut(&id) {
                        a.peer_init = init;
                    }
                    self.drive(id, now);
                    Placement::Placed
                }
            }
            Some((handle, DatagramEvent::AssociationEvent(event))) => {
                match self.by_handle.get(&handle).copied() {
                    Some(id) => {
                        if let Some(a) = self.assocs.get_mut(&id) {
                            a.last_rx = now;
                            // The peer is there: only retransmissions into
                            // silence count towards giving up the shutdown.
                            a.shutdown_sends.1 = 0;
                            a.sctp.handle_event(event);
                        }
                        self.mark_progressed(id);
                        self.drive(id, now);
                        Placement::Placed
                    }
                    None => self.dropped(DropReason::UnknownAssociation),
                }
            }
        };
        self.drain_endpoint_transmits();
        placement
    }

    /// Counts a datagram dropped for `reason`.
    fn dropped(&mut self, reason: DropReason) -> Placement {
        self.stats.datagrams_dropped += 1;
        Placement::Dropped(reason)
    }

    /// The time returned by [`Node::poll_timeout`] arrived (or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(a) = self.assocs.get_mut(&id) else {
                continue;
            };
            if a.scheduled != Some(at) {
                continue; // Superseded by an earlier deadline already handled.
            }
            a.scheduled = None;
            a.sctp.handle_timeout(now);
            let cfg = &self.config;
            if a.closing_since
                .is_some_and(|since| now >= since + cfg.close_timeout)
            {
                force_close(a, CloseReason::Local);
            } else if now >= a.last_rx + cfg.idle_timeout
                || (!a.connected && now >= a.created + cfg.handshake_timeout)
            {
                force_close(a, CloseReason::TimedOut);
            } else if a.connected
                && a.closing_since.is_none()
                && now >= a.last_rx + cfg.keepalive_interval
                && now >= a.last_keepalive + cfg.keepalive_interval
            {
                a.last_keepalive = now;
                // Best effort: if it cannot be queued, the idle timeout decides.
                let _ = write(a, Delivery::Lossy, &KeepAlive::ASSOCIATION.to_bytes());
            }
            self.mark_progressed(id);
            self.drive(id, now);
        }
    }

    // ---- Commands -------------------------------------------------------

    /// Starts an association to `remote` (client role). Its
    /// [`Event::Connected`] follows when the handshake completes, or
    /// [`Event::Closed`] if it fails.
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<AssocId, ConnectError> {
        let now = self.advance(now);
        if self.assocs.len() >= self.config.max_associations {
            return Err(ConnectError::TooManyAssociations);
        }
        // `connect_at`, not `connect`: sctp-proto's `connect` starts the
        // T1-init timer at `Instant::now()`, the wall clock, which a driver
        // in virtual time (the simulator) does not run on.
        let (handle, sctp) = self
            .endpoint
            .connect_at(self.client_config.clone(), remote, now)?;
        let id = self.insert(handle, sctp, remote, now);
        self.drive(id, now);
        Ok(id)
    }

    /// Encodes `message` and queues it on `assoc`.
    pub fn send(
        &mut self,
        now: Instant,
        assoc: AssocId,
        delivery: Delivery,
        message: &Message,
    ) -> Result<(), SendError> {
        self.send_encoded(now, assoc, delivery, message.to_bytes())
    }

    /// Queues an already encoded message (one encoded [`Message`]) on
    /// `assoc`; a server fanning one message out encodes it once and sends
    /// the same `Bytes` to every target.
    pub fn send_encoded(
        &mut self,
        now: Instant,
        assoc: AssocId,
        delivery: Delivery,
        encoded: Bytes,
    ) -> Result<(), SendError> {
        self.advance(now);
        let limit = self.config.max_sctp_message_size as usize;
        let a = self
            .assocs
            .get_mut(&assoc)
            .ok_or(SendError::UnknownAssociation)?;
        if !a.connected {
            return Err(SendError::NotConnected);
        }
        if a.closing_since.is_some() || a.close_reason.is_some() {
            return Err(SendError::Closing);
        }
        if encoded.len() > limit {
            return Err(SendError::TooLarge {
                size: encoded.len(),
                limit,
            });
        }
        write(a, delivery, &encoded)?;
        self.stats.messages_sent += 1;
        if !a.dirty {
            a.dirty = true;
            self.dirty.push(assoc);
        }
        Ok(())
    }

    /// Closes `assoc` gracefully: queued data is delivered first, then the
    /// SCTP shutdown runs; after [`NodeConfig::close_timeout`] the close is
    /// forced. [`Event::Closed`] with [`CloseReason::Local`] follows.
    ///
    /// If the peer's SHUTDOWN came first, the peer's shutdown ends the
    /// association (SCTP then sends nothing new: what is still queued here
    /// and not yet sent is dropped, since the peer is leaving). A SHUTDOWN
    /// the peer never answers ends it after
    /// [`NodeConfig::max_shutdown_retransmits`] retransmissions.
    pub fn close(&mut self, now: Instant, assoc: AssocId) {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if a.closing_since.is_some() {
            return;
        }
        a.closing_since = Some(now);
        if a.connected {
            a.nudge = true;
        } else {
            abort_handshake(a, &mut self.transmits);
            force_close(a, CloseReason::Local);
        }
        self.drive(assoc, now);
    }

    /// Stops accepting associations and closes every one this node holds:
    /// an established one gracefully ([`Node::close`]), one still in its
    /// handshake at once, with an ABORT to the peer if the peer started it.
    /// From then on an INIT is answered with an ABORT (and counted in
    /// [`NodeStats::associations_refused`]). For an engine that shuts down:
    /// nothing new can start while it waits for its closes to complete.
    pub fn close_all(&mut self, now: Instant) {
        self.refusing = true;
        let mut ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.close(now, id);
        }
    }

    /// Ends `assoc` at once, dropping whatever it still had queued (for a
    /// peer that cannot keep up, or breaks the rules). [`Event::Closed`]
    /// with `reason` follows.
    /// Returns `false` if there was no such association.
    #[cfg(feature = "_internal")]
    pub fn abort(&mut self, now: Instant, assoc: AssocId, reason: CloseReason) -> bool {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return false;
        };
        if !a.connected && a.close_reason.is_none() {
            abort_handshake(a, &mut self.transmits);
        }
        force_close(a, reason);
        self.drive(assoc, now);
        true
    }

    // ---- Outputs --------------------------------------------------------

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() && !self.dirty.is_empty() {
            let now = self.now?;
            for id in std::mem::take(&mut self.dirty) {
                if let Some(a) = self.assocs.get_mut(&id) {
                    a.dirty = false;
                }
                self.drive(id, now);
            }
        }
        let t = self.transmits.pop_front()?;
        self.stats.datagrams_sent += 1;
        Some(t)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether every DATA packet `assoc` sends asks the peer for an
    /// immediate SACK (RFC 7053's I bit) instead of its delayed ack. A driver
    /// that paces an association by its round trips (the hub's egress
    /// budget, while it holds a sender back) turns it on: the peer's delayed
    /// ack would add up to a packet's serialization, or 200 ms, to them. It
    /// costs a SACK per packet, so it is off by default.
    pub fn set_immediate_acks(&mut self, assoc: AssocId, on: bool) {
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.immediate_acks = on;
        }
    }

    /// The next association whose transport state may have moved — a
    /// datagram or a timer was handled for it (acknowledgements freed its
    /// queue, data arrived, a retransmission went) — since it was last
    /// returned; each at most once until then. A driver that schedules
    /// work per association (egress pumps) looks at these instead of at
    /// every association on every input. Closed associations are reported
    /// by [`Event::Closed`] instead and skipped here.
    pub fn poll_progress(&mut self) -> Option<AssocId> {
        while let Some(id) = self.progressed.pop_front() {
            if let Some(a) = self.assocs.get_mut(&id) {
                a.progressed = false;
                return Some(id);
            }
        }
        None
    }

    /// When [`Node::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    // ---- Internals ------------------------------------------------------

    /// Queues `id` for [`Node::poll_progress`] (once until polled).
    fn mark_progressed(&mut self, id: AssocId) {
        let Some(a) = self.assocs.get_mut(&id) else {
            return;
        };
        if a.progressed {
            return;
        }
        a.progressed = true;
        self.progressed.push_back(id);
        // Entries of removed associations wait for the next poll; a driver
        // that never polls must not make them pile up.
        if self.progressed.len() > 2 * self.assocs.len() + 64 {
            let assocs = &self.assocs;
            self.progressed
                .retain(|id| assocs.get(id).is_some_and(|a| a.progressed));
        }
    }

    /// Clamps `now` so time never goes backwards, and remembers it.
    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |last| last.max(now));
        self.now = Some(now);
        now
    }

    fn insert(
        &mut self,
        handle: AssociationHandle,
        sctp: Association,
        remote: SocketAddr,
        now: Instant,
    ) -> AssocId {
        let id = AssocId(self.next_id);
        self.next_id += 1;
        self.assocs.insert(
            id,
            Assoc {
                handle,
                sctp,
                remote,
                connected: false,
                closing_since: None,
                shutdown_started: false,
                peer_shutdown: false,
                shutdown_sends: (0, 0),
                nudge: false,
                close_reason: None,
                peer_init: None,
                created: now,
                last_rx: now,
                last_keepalive: now,
                scheduled: None,
                dirty: false,
                progressed: false,
                immediate_acks: false,
            },
        );
        self.by_handle.insert(handle, id);
        self.handshaking += 1;
        id
    }

    fn drain_endpoint_transmits(&mut self) {
        while let Some(t) = self.endpoint.poll_transmit() {
            push_datagrams(&mut self.transmits, t);
        }
    }

    /// Runs `id`'s association after an input: collects its events and
    /// datagrams, removes it if it ended, and re-arms its timer.
    fn drive(&mut self, id: AssocId, now: Instant) {
        let Self {
            assocs,
            events,
            transmits,
            stats,
            config,
            handshaking,
            ..
        } = self;
        let Some(a) = assocs.get_mut(&id) else {
            return;
        };
        let mut lost = None;
        while let Some(event) = a.sctp.poll() {
            match event {
                SctpEvent::Connected => {
                    if !a.connected {
                        *handshaking -= 1;
                    }
                    a.connected = true;
                    a.last_keepalive = now;
                    open_streams(a, config);
                    events.push_back(Event::Connected {
                        assoc: id,
                        remote: a.remote,
                    });
                }
                SctpEvent::HandshakeFailed { reason } | SctpEvent::AssociationLost { reason } => {
                    lost.get_or_insert(CloseReason::from_sctp(reason));
                }
                SctpEvent::Stream(StreamEvent::Readable { id: sid }) => {
                    read_stream(a, id, sid, events, stats);
                }
                SctpEvent::Stream(StreamEvent::Opened { id: sid }) => {
                    while a.sctp.accept_stream().is_some() {}
                    if sid >= config.streams {
                        force_close(
                            a,
                            CloseReason::ProtocolViolation(Violation::StreamBeyondNegotiated {
                                stream: sid,
                                negotiated: config.streams,
                            }),
                        );
                    }
                }
                _ => {}
            }
        }
        // A SHUTDOWN from the peer moves sctp-proto out of ESTABLISHED by
        // itself (SHUTDOWN-RECEIVED, then SHUTDOWN-ACK-SENT once what it has
        // in flight is acknowledged); it then answers with SHUTDOWN-ACK and
        // closes on the peer's SHUTDOWN-COMPLETE.
        if !a.shutdown_started && a.sctp.is_closing() {
            a.peer_shutdown = true;
        }
        // sctp-proto's shutdown only waits for data in flight, not for data
        // still queued, so the node starts it once every queue is empty. Not
        // when the peer's SHUTDOWN came first: `shutdown()` would fail, and
        // closing the association then would drop it before its SHUTDOWN-ACK
        // goes out, so the peer would retransmit SHUTDOWN to nobody until
        // its close timeout (what made a server whose clients had just left,
        // or clients whose server had just shut down, wait out their
        // deadline). The peer's shutdown ends the association anyway.
        if a.closing_since.is_some()
            && !a.shutdown_started
            && !a.peer_shutdown
            && a.close_reason.is_none()
            && queued(a) == 0
        {
            a.shutdown_started = true;
            if a.sctp.shutdown().is_err() {
                force_close(a, CloseReason::Local);
            }
        }
        // The node tells the endpoint an association is drained itself, once,
        // when it removes it: sctp-proto's own "drained" from `shutdown()`
        // comes too early (the peer's SHUTDOWN-ACK could no longer be routed).
        while a.sctp.poll_endpoint_event().is_some() {}
        let ended_gracefully = if a.closing_since.is_some() {
            CloseReason::Local
        } else {
            CloseReason::PeerClosed
        };
        let mut gave_up = false;
        let sent_before = transmits.len();
        while let Some(t) = a.sctp.poll_transmit(now) {
            if let Payload::RawEncode(datagrams) = &t.payload {
                for d in datagrams {
                    match d.get(COMMON_HEADER_LEN).copied() {
                        // sctp-proto sends the SHUTDOWN-COMPLETE that ends a
                        // shutdown (after the peer's SHUTDOWN-ACK), but then
                        // never closes the association itself.
                        Some(CHUNK_SHUTDOWN_COMPLETE) => {
                            a.close_reason.get_or_insert(ended_gracefully.clone());
                        }
                        // sctp-proto retransmits these without limit, and
                        // a peer that has already dropped the association
                        // never answers (sctp-proto, for one, ignores
                        // packets of associations it does not know). The
                        // same chunk again is a retransmission (T2-shutdown
                        // expired); SHUTDOWN then SHUTDOWN-ACK is the
                        // peer's SHUTDOWN crossing ours. Counted across
                        // both, as sctp-proto's backoff of T2 is.
                        Some(chunk @ (CHUNK_SHUTDOWN | CHUNK_SHUTDOWN_ACK)) => {
                            let (last, retransmits) = a.shutdown_sends;
                            let retransmits = retransmits + u32::from(last == chunk);
                            a.shutdown_sends = (chunk, retransmits);
                            gave_up |= retransmits > config.max_shutdown_retransmits;
                        }
                        _ => {}
                    }
                }
            }
            if gave_up {
                // The retransmission that would go past the limit is not sent.
                force_close(a, ended_gracefully);
                break;
            }
            push_datagrams(transmits, t);
        }
        // A close waits until the peer has acknowledged everything queued,
        // and a receiver delays the SACK for a lone packet (sctp-proto by
        // 200 ms): that wait was most of a close to a live peer. So while
        // closing, the last packet with DATA that each run sends carries
        // the I bit (below; RFC 7053: "acknowledge at once"; sctp-proto
        // honours it but cannot send it, so the node sets it and re-signs
        // the packet). And once, when the close starts with data sent but
        // unacknowledged, a keep-alive goes after it to carry that bit.
        // (Sending the keep-alive in a packet of its own and counting on the
        // peer acknowledging every second packet at once is not enough: a
        // peer that already owes a SACK acknowledges the packet before it,
        // and holds the keep-alive.)
        if std::mem::take(&mut a.nudge)
            && a.close_reason.is_none()
            && !a.shutdown_started
            && !a.sctp.is_closing()
            && queued(a) > 0
        {
            // Best effort: without it the peer's delayed SACK still comes.
            let _ = write(a, Delivery::Lossy, &KeepAlive::ASSOCIATION.to_bytes());
            while let Some(t) = a.sctp.poll_transmit(now) {
                push_datagrams(transmits, t);
            }
        }
        // Immediate SACKs (the I bit): on every DATA packet while the
        // driver asks for them (`Node::set_immediate_acks`: its egress budget
        // reads round trips off acknowledgements, and a peer's delayed ack —
        // sctp-proto: the second packet, or 200 ms — would add a packet's
        // serialization or 200 ms to them); on the last of each run while
        // closing (the close waits for the acknowledgement).
        if a.immediate_acks {
            for t in transmits.range_mut(sent_before..) {
                if let Some(at) = last_data_chunk(&t.payload) {
                    t.payload = with_immediate_sack(std::mem::take(&mut t.payload), at);
                }
            }
        } else if a.closing_since.is_some()
            && let Some((t, at)) = transmits
                .range_mut(sent_before..)
                .rev()
                .find_map(|t| last_data_chunk(&t.payload).map(|at| (t, at)))
        {
            t.payload = with_immediate_sack(std::mem::take(&mut t.payload), at);
        }
        // A reason set by the node (idle timeout, forced close) wins over what
        // SCTP reports; sctp-proto reports nothing when it closes an
        // association that never got past the handshake, so that alone ends it.
        if let Some(reason) = a.close_reason.take().or(lost) {
            let reason = match (reason, a.closing_since) {
                // A graceful close we started ends with the peer's SHUTDOWN-COMPLETE.
                (CloseReason::Aborted | CloseReason::PeerClosed, Some(_)) => CloseReason::Local,
                // sctp-proto reports the SHUTDOWN-COMPLETE that ends the
                // peer's graceful close like an abort.
                (CloseReason::Aborted, None) if a.peer_shutdown => CloseReason::PeerClosed,
                (r, _) => r,
            };
            let handle = a.handle;
            if !a.connected {
                *handshaking -= 1;
            }
            assocs.remove(&id);
            self.by_handle.remove(&handle);
            self.endpoint.handle_event(handle, EndpointEvent::drained());
            self.events.push_back(Event::Closed { assoc: id, reason });
            return;
        }
        let deadline = [
            a.sctp.poll_timeout(),
            Some(a.last_rx + config.idle_timeout),
            (!a.connected).then(|| a.created + config.handshake_timeout),
            // No keep-alives while closing (see `handle_timeout`): a past
            // keep-alive deadline would make every call spin on it.
            (a.connected && a.closing_since.is_none())
                .then(|| a.last_rx.max(a.last_keepalive) + config.keepalive_interval),
            a.closing_since.map(|since| since + config.close_timeout),
        ]
        .into_iter()
        .flatten()
        .min();
        // Only an earlier deadline needs a new heap entry: a later one is
        // found when the current entry fires (a harmless early wake-up).
        if let Some(at) = deadline
            && a.scheduled.is_none_or(|s| at < s)
        {
            a.scheduled = Some(at);
            self.timers.push(Reverse((at, id)));
        }
    }
}

/// Whether `datagram` is an SCTP packet that starts with an INIT chunk: the
/// one packet (verification tag 0) that no association owns yet.
fn starts_with_init(datagram: &[u8]) -> bool {
    datagram.get(COMMON_HEADER_LEN) == Some(&CHUNK_INIT)
}

/// Bytes of the SCTP common header; the first chunk's type follows.
const COMMON_HEADER_LEN: usize = 12;
/// SCTP chunk type INIT (RFC 9260).
const CHUNK_INIT: u8 = 1;
/// SCTP chunk type SHUTDOWN (RFC 9260).
const CHUNK_SHUTDOWN: u8 = 7;
/// SCTP chunk type SHUTDOWN ACK (RFC 9260).
const CHUNK_SHUTDOWN_ACK: u8 = 8;
/// SCTP chunk type SHUTDOWN COMPLETE (RFC 9260).
const CHUNK_SHUTDOWN_COMPLETE: u8 = 14;
/// SCTP chunk type DATA (RFC 9260).
const CHUNK_DATA: u8 = 0;
/// SCTP chunk type I-DATA (RFC 8260).
const CHUNK_I_DATA: u8 = 64;
/// The I bit of a DATA or I-DATA chunk's flags: the receiver should
/// acknowledge it at once (RFC 7053).
pub(super) const FLAG_IMMEDIATE_SACK: u8 = 0x08;
/// Where the checksum sits in the SCTP common header.
const CHECKSUM: std::ops::Range<usize> = 8..12;
/// CRC32c, the SCTP checksum (RFC 9260, appendix A).
/// Slice-by-16 tables: every DATA packet is re-signed (see `Node::drive`),
/// so this runs once per packet.
const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The offset of the last DATA (or I-DATA) chunk of an SCTP packet, if it
/// has one.
pub(super) fn last_data_chunk(packet: &[u8]) -> Option<usize> {
    let mut at = COMMON_HEADER_LEN;
    let mut last = None;
    while let Some(header) = packet.get(at..at + 4) {
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        if matches!(header[0], CHUNK_DATA | CHUNK_I_DATA) {
            last = Some(at);
        }
        if len < 4 {
            break;
        }
        at += len.next_multiple_of(4);
    }
    last
}

/// `packet` with the I bit set on the chunk at `chunk`, checksum recomputed.
fn with_immediate_sack(packet: Bytes, chunk: usize) -> Bytes {
    // sctp-proto hands over each packet in a buffer of its own: no copy.
    let mut p = packet
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    p[chunk + 1] |= FLAG_IMMEDIATE_SACK;
    p[CHECKSUM].fill(0);
    let sum = CRC32C.checksum(&p);
    // Stored least significant byte first, as sctp-proto and RFC 9260's
    // reference code do.
    p[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
    p.freeze()
}

/// SCTP chunk type ABORT (RFC 9260).
const CHUNK_ABORT: u8 = 6;
/// Error cause "User-Initiated Abort" (RFC 9260 3.3.10.12).
const CAUSE_USER_INITIATED_ABORT: u16 = 12;

/// What answering a peer's INIT takes: its initiate tag (the verification
/// tag the peer expects) and the SCTP ports, from the INIT's packet.
#[derive(Debug, Clone, Copy)]
struct InitTag {
    /// The INIT's source port: the destination port of the answer.
    peer_port: u16,
    /// The INIT's destination port: the source port of the answer.
    our_port: u16,
    tag: u32,
}

impl InitTag {
    /// The INIT at the start of `packet`, if it is one.
    fn parse(packet: &[u8]) -> Option<Self> {
        if !starts_with_init(packet) {
            return None;
        }
        let port = |at: usize| Some(u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?));
        let tag_at = COMMON_HEADER_LEN + 4;
        let tag = u32::from_be_bytes(packet.get(tag_at..tag_at + 4)?.try_into().ok()?);
        Some(Self {
            peer_port: port(0)?,
            our_port: port(2)?,
            // An INIT's initiate tag is never 0 (sctp-proto refuses one).
            tag: (tag != 0).then_some(tag)?,
        })
    }

    /// An ABORT (cause: user-initiated, no reason) ending the peer's
    /// handshake, to `remote`.
    fn abort(self, remote: SocketAddr) -> Transmit {
        let mut p = BytesMut::with_capacity(COMMON_HEADER_LEN + 8);
        p.put_u16(self.our_port);
        p.put_u16(self.peer_port);
        p.put_u32(self.tag);
        p.put_u32(0); // Checksum, below.
        p.put_slice(&[CHUNK_ABORT, 0]); // T bit clear: the peer's own tag.
        p.put_u16(8);
        p.put_u16(CAUSE_USER_INITIATED_ABORT);
        p.put_u16(4);
        let sum = CRC32C.checksum(&p);
        p[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
        Transmit {
            destination: remote,
            payload: p.freeze(),
        }
    }
}

/// Tells the peer of `a`, still in its handshake, that it is over (when the
/// peer started it: a handshake this node started is only forgotten).
fn abort_handshake(a: &Assoc, transmits: &mut VecDeque<Transmit>) {
    if let Some(init) = a.peer_init {
        transmits.push_back(init.abort(a.remote));
    }
}

/// Writes one encoded message on `delivery`'s stream.
fn write(a: &mut Assoc, delivery: Delivery, encoded: &Bytes) -> Result<(), SendError> {
    a.sctp
        .stream(delivery.stream())?
        .write_sctp(encoded, PayloadProtocolIdentifier::Binary)?;
    Ok(())
}

/// Bytes queued on the engine's streams and not yet acknowledged.
fn queued(a: &mut Assoc) -> usize {
    [STREAM_RELIABLE, STREAM_LOSSY]
        .into_iter()
        .filter_map(|sid| a.sctp.stream(sid).ok()?.buffered_amount().ok())
        .sum()
}

/// Ends `a` now with `reason` (SCTP reports the loss on the next poll).
fn force_close(a: &mut Assoc, reason: CloseReason) {
    a.close_reason.get_or_insert(reason);
    let _ = a.sctp.close();
}

/// Opens (or adopts, if the peer's data already created them) the engine's
/// two streams and sets their sending reliability.
fn open_streams(a: &mut Assoc, config: &NodeConfig) {
    let lifetime_ms = u32::try_from(config.lossy_lifetime.as_millis()).unwrap_or(u32::MAX);
    for (sid, unordered, rel, value) in [
        (STREAM_RELIABLE, false, ReliabilityType::Reliable, 0),
        (STREAM_LOSSY, true, ReliabilityType::Timed, lifetime_ms),
    ] {
        let stream = match a.sctp.stream(sid) {
            Ok(s) => Ok(s),
            Err(_) => a.sctp.open_stream(sid, PayloadProtocolIdentifier::Binary),
        };
        if let Ok(mut s) = stream {
            let _ = s.set_default_payload_type(PayloadProtocolIdentifier::Binary);
            let _ = s.set_reliability_params(unordered, rel, value);
        }
    }
}

/// Reads every complete message waiting on stream `sid` and turns it into
/// events.
fn read_stream(
    a: &mut Assoc,
    id: AssocId,
    sid: u16,
    events: &mut VecDeque<Event>,
    stats: &mut NodeStats,
) {
    let delivery = match sid {
        STREAM_RELIABLE => Some(Delivery::Reliable),
        STREAM_LOSSY => Some(Delivery::Lossy),
        _ => None,
    };
    let Ok(mut stream) = a.sctp.stream(sid) else {
        return;
    };
    while let Ok(Some(chunks)) = stream.read_sctp() {
        let Some(delivery) = delivery.filter(|_| chunks.ppi == PayloadProtocolIdentifier::Binary)
        else {
            stats.messages_ignored += 1;
            continue;
        };
        let mut buf = BytesMut::zeroed(chunks.len());
        if chunks.read(&mut buf).is_err() {
            stats.messages_malformed += 1;
            continue;
        }
        match Message::decode_exact(buf.freeze()) {
            Ok(message) => {
                stats.messages_received += 1;
                for frame in message.into_frames() {
                    if frame == Frame::KeepAlive(KeepAlive::ASSOCIATION) {
                        continue; // Liveness only: its arrival already counted.
                    }
                    events.push_back(Event::Frame {
                        assoc: id,
                        delivery,
                        frame,
                    });
                }
            }
            Err(error) => {
                stats.messages_malformed += 1;
                events.push_back(Event::Malformed { assoc: id, error });
            }
        }
    }
}

fn push_datagrams(out: &mut VecDeque<Transmit>, t: sctp_proto::Transmit) {
    if let Payload::RawEncode(datagrams) = t.payload {
        out.extend(datagrams.into_iter().map(|payload| Transmit {
            destination: t.remote,
            payload,
        }));
    }
}
