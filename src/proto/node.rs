//! [`Node`]: the sans-IO core over dcsctp sockets, one per association.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use crate::idhash::IdMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use dcsctp::api::{
    DcSctpSocket, ErrorKind, Message as SctpMessage, Options, PpId, SendError as SctpSendError,
    SendOptions, Socket, SocketEvent, SocketState, SocketTime, StreamId,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cookie::{CHUNK_COOKIE_ECHO, CRC32C, CookieJar};
use super::{MAX_PACKET_MESSAGE, NodeConfig, STREAM_LOSSY, STREAM_RELIABLE};
use crate::wire::dcep::{self, ChannelType, Dcep, PPID_DCEP};
use crate::wire::{Codec, DecodeError, Frame, KeepAlive, Message};

/// Names one association of a [`Node`] for its whole life. Never reused by
/// the same node.
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
    /// An INIT or COOKIE-ECHO the node turned down because it holds
    /// [`NodeConfig::max_associations`], or is closing everything
    /// ([`Node::close_all`]; an INIT's peer is sent an ABORT). Counted in
    /// [`NodeStats::associations_refused`].
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
    /// An INIT the SCTP stack turned down: malformed (a bad checksum, no
    /// initiate tag, a parameter that does not parse).
    InitRejected,
    /// A COOKIE-ECHO whose cookie this node did not issue to this peer
    /// (forged, altered, from another address) or issued too long ago.
    InvalidCookie,
    /// Not an INIT, and not for any association of this node (an unknown
    /// verification tag) or not a valid SCTP packet (too short, a bad
    /// checksum).
    UnknownAssociation,
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotAccepting => "an INIT, and this node accepts no associations",
            Self::InitRejected => "an INIT the SCTP stack turned down",
            Self::InvalidCookie => "a COOKIE-ECHO with a cookie this node did not issue to this peer, or a stale one",
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
    /// The peer aborted it, with the reason its ABORT gave, if any.
    #[error("aborted by the peer{}", .0.as_deref().map(|c| format!(": {c}")).unwrap_or_default())]
    Aborted(Option<String>),
    /// The peer reset the engine's control stream ([`super::STREAM_RELIABLE`]),
    /// what closing its data channel does: the association is closed
    /// gracefully, since nothing more can be exchanged in order on it.
    #[error("the peer closed the engine's channel (a stream reset)")]
    StreamReset,
    /// Nothing was received for [`NodeConfig::idle_timeout`] (the peer
    /// vanished or the path is down), or the handshake did not finish in it.
    #[error("timed out: nothing received within the idle timeout")]
    TimedOut,
    /// The SCTP handshake failed; the stack says why.
    #[error("handshake failed: {0}")]
    HandshakeFailed(String),
    /// The peer broke the SCTP or engine protocol.
    #[error("protocol violation: {0}")]
    ProtocolViolation(Violation),
    /// The DTLS session under the association ended: the peer closed it,
    /// or it failed (the reason says how).
    #[error("the DTLS session ended: {0}")]
    TransportClosed(String),
    /// A graceful close this node started was forced before the peer
    /// acknowledged everything queued: it acknowledged nothing more for
    /// [`NodeConfig::close_timeout`], or the close took
    /// [`NodeConfig::close_limit`]. This many bytes of messages were not
    /// delivered (the peer got an ABORT).
    #[error("closed before the peer acknowledged everything: {0} bytes of messages not delivered")]
    Undelivered(usize),
    /// The peer filled the receive buffer with data that cannot be read.
    #[error("receive buffer exhausted")]
    ReceiveBufferExhausted,
}

/// How a peer broke the protocol ([`CloseReason::ProtocolViolation`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The SCTP stack found the peer in breach of the SCTP specification.
    #[error("SCTP transport error")]
    SctpTransport,
    /// The peer sent a message larger than
    /// [`NodeConfig::max_sctp_message_size`]; the peer is sent an ABORT
    /// saying so.
    #[error("a message of {size} bytes, over the limit of {limit}")]
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
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
        /// Its peer.
        remote: SocketAddr,
    },
}

/// An association could not be started ([`JoinError::Connect`](crate::JoinError::Connect)).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The node already holds [`NodeConfig::max_associations`].
    #[error("too many associations")]
    TooManyAssociations,
    /// The remote address has port 0 or an unspecified IP address.
    #[error("cannot start an association: invalid remote address: {0}")]
    InvalidRemoteAddress(SocketAddr),
    /// [`NodeConfig::sctp_port`] is 0.
    #[error("cannot start an association: SCTP port 0")]
    InvalidSctpPort,
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
    /// The association's SCTP send buffer is full.
    #[error("the SCTP send buffer is full")]
    BufferFull,
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
    /// INITs answered (each with a sealed cookie, holding no state).
    pub inits_answered: u64,
    /// COOKIE-ECHOs refused: forged, altered, stale or from another peer.
    pub cookies_refused: u64,
    /// Associations closed because the peer sent a message over
    /// [`NodeConfig::max_sctp_message_size`].
    pub oversize_messages: u64,
    /// Channels the peer opened with DCEP (RFC 8832): the engine's two.
    pub dcep_opened: u64,
    /// DCEP opens refused (an unknown label or protocol, a type that does
    /// not fit, a channel opened twice): the stream is reset.
    pub dcep_refused: u64,
    /// Associations that negotiated RFC 9653's zero checksum (both ends
    /// run DTLS under SCTP).
    pub zero_checksum_associations: u64,
}

struct Assoc {
    sock: Box<Socket>,
    remote: SocketAddr,
    /// This end's verification tag: every packet of the peer carries it
    /// (the key in `Node::by_tag`).
    tag: u32,
    connected: bool,
    /// Started by [`Node::connect`] and not connected yet (counted in
    /// `Node::handshaking`).
    handshaking: bool,
    /// Set by [`Node::close`]: a graceful close is under way since then.
    closing_since: Option<Instant>,
    /// While closing: when the peer last acknowledged more of what was
    /// queued (or the close started), and how many bytes were still
    /// unacknowledged then. A close is forced only after
    /// [`NodeConfig::close_timeout`] without such progress.
    close_progress: (Instant, usize),
    /// This node asked SCTP for its shutdown (which waits for queued data).
    shutdown_started: bool,
    /// The peer started the SCTP shutdown: its SHUTDOWN arrived before this
    /// node sent one.
    peer_shutdown: bool,
    /// The last SHUTDOWN or SHUTDOWN-ACK chunk type sent, and how many
    /// retransmissions of them went out since the peer was last heard
    /// (to give up on a peer that is gone).
    shutdown_sends: (u8, u32),
    /// Set by [`Node::close`]: send one keep-alive after the queued data, so
    /// the peer acknowledges at once (see `Node::drive`).
    nudge: bool,
    /// The reason to report, decided by the node before SCTP reports one.
    close_reason: Option<CloseReason>,
    /// The reason to report when a graceful close the node started for the
    /// peer completes (a stream reset of the control stream), instead of
    /// [`CloseReason::Local`].
    graceful_reason: Option<CloseReason>,
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
    /// Messages SCTP reassembled stay in its receive buffer (see
    /// `Node::hold_reads`).
    reads_held: bool,
    /// Set while a timer of this association is handled: what SCTP sends
    /// then are retransmissions, not answers to the peer.
    timer_fired: bool,
    /// Both ends negotiated I-DATA (RFC 8260): messages of different
    /// streams interleave.
    interleaving: bool,
    /// The SCTP streams the engine's two channels use.
    streams: Streams,
    /// The rate new DATA is released at, if the driver paces it (see
    /// [`Node::set_pacing_rate`]).
    pacing: Option<Pacing>,
}

/// An association's pacer: new DATA goes into the path at `rate`, the
/// socket's send credit (payload bytes) refilled as time passes.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    /// Bytes a second.
    rate: f64,
    /// When the credit was last refilled.
    refilled: Instant,
    /// Credit earned below a whole byte.
    fraction: f64,
}

/// Most pacing credit an association saves up: a quarter of a packet. A
/// packet that starts with credit left goes whole, so after a pause at most
/// a packet and a quarter leave back to back (what queues at the
/// bottleneck), while a timer that fires a little late (by up to a quarter
/// of a packet's time) costs no rate.
const PACING_BURST: isize = MAX_PACKET_MESSAGE as isize / 4;

impl Pacing {
    /// Adds the credit earned since the last refill to `a`'s socket (up to
    /// [`PACING_BURST`]); the socket sends what waited for it.
    fn refill(a: &mut Assoc, now: Instant) {
        let Some(p) = &mut a.pacing else {
            return;
        };
        let earned = now.saturating_duration_since(p.refilled).as_secs_f64() * p.rate;
        p.refilled = now;
        let credit = a.sock.send_credit().unwrap_or(0) as f64 + p.fraction + earned;
        let whole = credit.floor().min(PACING_BURST as f64);
        // The fraction of a byte earned is kept for the next refill (refills
        // may come microseconds apart); credit over the burst is not.
        p.fraction = (credit - whole).clamp(0.0, 1.0);
        a.sock.set_send_credit(Some(whole as isize));
    }

    /// When `a` has earned enough credit to send the new data that waits
    /// for it, if any does.
    fn deadline(a: &Assoc) -> Option<Instant> {
        let p = a.pacing.as_ref()?;
        if !a.sock.paced_out() {
            return None;
        }
        let missing = (1 - a.sock.send_credit().unwrap_or(0)) as f64 - p.fraction;
        // A microsecond more, so the refill then has the whole byte.
        let wait = Duration::try_from_secs_f64(missing.max(0.0) / p.rate.max(1.0))
            .map_or(Duration::from_secs(1), |w| w + Duration::from_micros(1))
            .min(Duration::from_secs(1));
        Some(p.refilled + wait)
    }
}

/// Which SCTP streams carry the engine's reliable and Lossy channels: 0 and
/// 1, pre-agreed (`negotiated: true` in WebRTC's terms), unless the peer
/// opened them with DCEP (RFC 8832) on streams of its choosing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Streams {
    reliable: u16,
    lossy: u16,
    /// The peer opened the reliable channel with DCEP.
    dcep_reliable: bool,
    /// The peer opened the Lossy channel with DCEP.
    dcep_lossy: bool,
    /// This end opened the Lossy channel on this stream and waits for the
    /// peer's acknowledgement before using it.
    opening_lossy: Option<u16>,
}

impl Streams {
    const PREAGREED: Self = Self {
        reliable: STREAM_RELIABLE,
        lossy: STREAM_LOSSY,
        dcep_reliable: false,
        dcep_lossy: false,
        opening_lossy: None,
    };

    fn of(self, delivery: Delivery) -> u16 {
        match delivery {
            Delivery::Reliable => self.reliable,
            Delivery::Lossy => self.lossy,
        }
    }
}

/// The sans-IO core: SCTP over UDP (RFC 6951) with one dcsctp socket per
/// association, carrying engine [`Message`]s on two streams.
///
/// The node performs no I/O and reads no clock: every input carries the
/// current time, every output is polled. Its random numbers (verification
/// tags, initial TSNs) come from [`NodeConfig::seed`].
///
/// Handshakes are stateless until the peer proves it can receive: every
/// INIT is answered from one closed socket with an INIT-ACK whose cookie the
/// node seals (an HMAC over it, the peer's address and the time, keyed by
/// [`NodeConfig::cookie_key`]), and an association is created only for a
/// COOKIE-ECHO with a valid seal. A flood of INITs costs the node CPU, never
/// memory.
///
/// # Methods
/// - Getters: [`Node::stats`], [`Node::association_count`],
///   [`Node::is_connected`], [`Node::remote`], [`Node::knows_remote`],
///   [`Node::queued_bytes`].
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
/// and affects nothing else; a message over
/// [`NodeConfig::max_sctp_message_size`] ends its association with an ABORT
/// that says why.
pub struct Node {
    config: NodeConfig,
    /// The options every socket starts from (ports and seed set per socket).
    options: Options,
    /// A socket that is never connected: it answers INITs (statelessly,
    /// from its closed state) for a node that accepts associations.
    listener: Option<Box<Socket>>,
    cookies: CookieJar,
    /// Seeds each socket's random numbers.
    rng: ChaCha8Rng,
    /// Set by [`Node::close_all`]: INITs are answered with an ABORT.
    refusing: bool,
    assocs: IdMap<AssocId, Assoc>,
    /// Associations by peer address and this end's verification tag.
    by_tag: HashMap<(SocketAddr, u32), AssocId>,
    /// Associations by peer address (several associations may share one:
    /// a client in several calls on one server).
    by_remote: HashMap<SocketAddr, Vec<AssocId>>,
    /// Associations this node started, not yet connected.
    handshaking: usize,
    next_id: u64,
    timers: BinaryHeap<Reverse<(Instant, AssocId)>>,
    dirty: Vec<AssocId>,
    /// Associations a datagram or timer was handled for, not yet polled.
    progressed: VecDeque<AssocId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The node's clock starts at the first `now` it is given: sockets count
    /// time from there ([`SocketTime`]), cookies in seconds since.
    epoch: Option<Instant>,
    now: Option<Instant>,
    stats: NodeStats,
    log: LogBudget,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("associations", &self.assocs.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// WebRTC's PPID for a binary message (RFC 8831), what the engine sends.
const PPID_BINARY: PpId = PpId(53);

impl Node {
    /// A node with `config`.
    pub fn new(config: NodeConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let options = config.sctp_options();
        let listener = config.accept_incoming.then(|| {
            Box::new(Socket::new(
                "listener",
                &Options {
                    random_seed: Some(rng.next_u64()),
                    ..options.clone()
                },
            ))
        });
        Self {
            cookies: CookieJar::new(&config.cookie_key),
            refusing: false,
            options,
            listener,
            rng,
            config,
            assocs: IdMap::default(),
            by_tag: HashMap::new(),
            by_remote: HashMap::new(),
            handshaking: 0,
            next_id: 0,
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            progressed: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            epoch: None,
            now: None,
            stats: NodeStats::default(),
            log: LogBudget::default(),
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
    pub fn knows_remote(&self, remote: SocketAddr) -> bool {
        self.by_remote.contains_key(&remote)
    }

    /// The associations of this node with `remote` as their peer.
    pub fn associations_of(&self, remote: SocketAddr) -> &[AssocId] {
        self.by_remote.get(&remote).map_or(&[], Vec::as_slice)
    }

    /// Moves every association with the peer at `old` to `new`: the peer's
    /// address changed (its NAT rebound, or it moved network) and the layer
    /// under SCTP proved the new one (an ICE check, then its DTLS session
    /// moved). Packets go to `new` from now on and are taken from it;
    /// anything lost on the way is retransmitted. Returns how many moved
    /// (none if some association already has `new` as its peer).
    pub fn rebind(&mut self, old: SocketAddr, new: SocketAddr) -> usize {
        if old == new || self.by_remote.contains_key(&new) {
            return 0;
        }
        let Some(ids) = self.by_remote.remove(&old) else {
            return 0;
        };
        for id in &ids {
            if let Some(a) = self.assocs.get_mut(id) {
                self.by_tag.remove(&(old, a.tag));
                self.by_tag.insert((new, a.tag), *id);
                a.remote = new;
            }
        }
        let moved = ids.len();
        self.by_remote.insert(new, ids);
        moved
    }

    /// Ends `assoc` at once, with no packet to the peer (its transport is
    /// gone: the DTLS session under it ended). [`Event::Closed`] with
    /// `reason` follows.
    pub(crate) fn drop_association(&mut self, now: Instant, assoc: AssocId, reason: CloseReason) {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        force_close(a, reason);
        let before = self.transmits.len();
        self.drive(assoc, now);
        // The ABORT could not reach the peer anyway.
        self.transmits.truncate(before);
    }

    /// Bytes of messages handed to `assoc` and not yet acknowledged by the
    /// peer, on both streams: queued in SCTP or in flight (0 for an unknown
    /// association).
    pub fn queued_bytes(&self, assoc: AssocId) -> usize {
        self.assocs
            .get(&assoc)
            .map_or(0, |a| a.sock.unacknowledged_bytes())
    }

    /// Whether `assoc` interleaves messages of its two streams (both ends
    /// negotiated I-DATA, RFC 8260): a Lossy message handed over then goes
    /// ahead of what the Durable stream still has queued, even inside one
    /// large Durable message, instead of after it.
    pub fn interleaves(&self, assoc: AssocId) -> bool {
        self.assocs.get(&assoc).is_some_and(|a| a.interleaving)
    }

    /// Caps what `assoc` has in flight (at least one packet; `None`: SCTP's
    /// congestion window alone). A driver that paces the association by its
    /// own estimate of the path (the hub's egress budget) sets it, so that a
    /// large message handed over whole does not fill the path's queues:
    /// what waits in SCTP's send queue can still be passed by the Lossy
    /// stream (see [`Node::interleaves`]).
    pub fn set_max_in_flight(&mut self, assoc: AssocId, bytes: Option<usize>) {
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.sock.set_max_outstanding_bytes(bytes);
        }
    }

    /// Paces the new DATA `assoc` sends at `rate` bytes a second of
    /// payload (`None`: SCTP's congestion window alone, the default). A
    /// driver that knows the path's bottleneck rate (the hub's egress
    /// budget measures it) releases data at about that rate, so the
    /// bottleneck's queue stays near empty while the link stays busy: a
    /// message handed over later then waits for the packet on the wire, not
    /// for a standing queue. What waits for the pacer waits in SCTP's send
    /// queue, where the Lossy stream passes the Durable one; retransmissions
    /// are not paced. [`Node::poll_timeout`] includes when the pacer
    /// releases the next packet.
    pub fn set_pacing_rate(&mut self, now: Instant, assoc: AssocId, rate: Option<f64>) {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        let rate = rate.filter(|r| r.is_finite() && *r > 0.0);
        match (rate, &mut a.pacing) {
            (Some(rate), Some(_)) => {
                // Credit earned so far counts at the old rate.
                let waited = a.sock.paced_out();
                Pacing::refill(a, now);
                if let Some(p) = &mut a.pacing {
                    p.rate = rate;
                }
                if !waited {
                    return;
                }
                // What waited may have gone: gather it.
            }
            (Some(rate), None) => {
                a.pacing = Some(Pacing {
                    rate,
                    refilled: now,
                    fraction: 0.0,
                });
                a.sock.set_send_credit(Some(PACING_BURST));
            }
            (None, Some(_)) => {
                a.pacing = None;
                a.sock.set_send_credit(None);
            }
            (None, None) => return,
        }
        if !a.dirty {
            a.dirty = true;
            self.dirty.push(assoc);
        }
    }

    /// Bytes `assoc` has sent and not yet had acknowledged (payload).
    pub fn in_flight(&self, assoc: AssocId) -> usize {
        self.assocs
            .get(&assoc)
            .map_or(0, |a| a.sock.in_flight_bytes())
    }

    /// The smoothed round trip SCTP measured on `assoc` (RFC 9260 § 6.3.1:
    /// from DATA this end sent and the peer acknowledged; before the first
    /// such measurement, the initial retransmission timeout). `None` for
    /// an association not established.
    pub fn round_trip(&self, assoc: AssocId) -> Option<Duration> {
        let a = self.assocs.get(&assoc)?;
        a.sock.get_metrics().map(|m| m.srtt)
    }

    /// Bytes of Lossy messages handed to `assoc` and not yet sent.
    pub fn lossy_unsent(&self, assoc: AssocId) -> usize {
        self.assocs
            .get(&assoc)
            .map_or(0, |a| a.sock.buffered_amount(StreamId(a.streams.lossy)))
    }

    // ---- Inputs ---------------------------------------------------------

    /// A UDP datagram from `remote` arrived at `now`. Returns what became
    /// of it: taken by an association (or answered, an INIT), refused (an
    /// INIT or COOKIE-ECHO while full or closing), or dropped, and why. A
    /// runtime with several sockets forwards what no association knows to
    /// the others.
    #[must_use = "a datagram no association took may be another socket's"]
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: Bytes,
    ) -> Placement {
        let now = self.advance(now);
        self.stats.datagrams_received += 1;
        let Some(header) = datagram.get(..COMMON_HEADER_LEN + 4) else {
            self.log.debug(now, || {
                format!("{remote}: dropped a datagram of {} bytes: too short for SCTP", datagram.len())
            });
            return self.dropped(DropReason::UnknownAssociation);
        };
        let tag = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let first_chunk = header[COMMON_HEADER_LEN];
        if let Some(&id) = self.by_tag.get(&(remote, tag)) {
            if first_chunk == CHUNK_COOKIE_ECHO {
                // A retransmitted COOKIE-ECHO (its COOKIE-ACK was lost): the
                // socket answers it again, given the cookie as it wrote it.
                match self.cookies.open(&datagram, remote, self.cookie_time(now)) {
                    Ok(opened) => self.input(id, now, &opened, true),
                    Err(e) => {
                        self.stats.cookies_refused += 1;
                        self.log.debug(now, || format!("{remote}: dropped a COOKIE-ECHO: {e}"));
                        return self.dropped(DropReason::InvalidCookie);
                    }
                }
            } else {
                self.input(id, now, &datagram, true);
            }
            return Placement::Placed;
        }
        match first_chunk {
            CHUNK_INIT => self.handle_init(now, remote, &datagram),
            CHUNK_COOKIE_ECHO => self.handle_cookie_echo(now, remote, &datagram),
            // An ABORT or SHUTDOWN-COMPLETE with the T bit carries the
            // peer's own tag, not this end's: each association with that
            // peer checks it.
            CHUNK_ABORT | CHUNK_SHUTDOWN_COMPLETE
                if header[COMMON_HEADER_LEN + 1] & FLAG_T != 0
                    && self.by_remote.contains_key(&remote) =>
            {
                let ids = self.by_remote.get(&remote).cloned().unwrap_or_default();
                for id in ids {
                    self.input(id, now, &datagram, false);
                }
                Placement::Placed
            }
            _ => {
                self.log.debug(now, || {
                    format!(
                        "{remote}: dropped an SCTP packet (first chunk type {first_chunk}) for no association of this node (verification tag {tag:#010x})"
                    )
                });
                self.dropped(DropReason::UnknownAssociation)
            }
        }
    }

    /// Hands `datagram` to `id`'s socket. `authentic`: it carried the
    /// association's own verification tag, so the peer was heard.
    fn input(&mut self, id: AssocId, now: Instant, datagram: &[u8], authentic: bool) {
        let at = self.socket_time(now);
        let Some(a) = self.assocs.get_mut(&id) else {
            return;
        };
        if authentic {
            a.last_rx = now;
            // The peer is there: only retransmissions into silence count
            // towards giving up the shutdown.
            a.shutdown_sends.1 = 0;
        }
        a.sock.advance_time(at);
        Pacing::refill(a, now);
        a.sock.handle_input(datagram);
        self.mark_progressed(id);
        self.drive(id, now);
    }

    /// An INIT from a peer no association has: answered from the listener
    /// with a sealed cookie, and forgotten.
    fn handle_init(&mut self, now: Instant, remote: SocketAddr, datagram: &[u8]) -> Placement {
        if self.listener.is_none() {
            self.log.debug(now, || {
                format!("{remote}: dropped an INIT: this node accepts no associations")
            });
            return self.dropped(DropReason::NotAccepting);
        }
        let Some(init) = InitTag::parse(datagram) else {
            self.log.debug(now, || format!("{remote}: dropped an INIT without an initiate tag"));
            return self.dropped(DropReason::InitRejected);
        };
        if self.refusing {
            // Closing everything: the peer learns at once rather than
            // retransmitting its INIT until its handshake times out.
            self.stats.associations_refused += 1;
            self.log.debug(now, || format!("{remote}: refused an INIT: closing"));
            self.transmits.push_back(init.abort(remote));
            return Placement::Refused;
        }
        if self.assocs.len() >= self.config.max_associations {
            self.stats.associations_refused += 1;
            self.log.debug(now, || {
                format!(
                    "{remote}: refused an INIT: this node holds {} associations, its limit",
                    self.assocs.len()
                )
            });
            return Placement::Refused;
        }
        let at = self.socket_time(now);
        let secs = self.cookie_time(now);
        let Some(listener) = self.listener.as_mut() else {
            return self.dropped(DropReason::NotAccepting);
        };
        listener.advance_time(at);
        listener.handle_input(datagram);
        let mut answered = false;
        let mut why = None;
        while let Some(event) = listener.poll_event() {
            match event {
                SocketEvent::SendPacket(p) => {
                    match self
                        .cookies
                        .seal(&p, remote, init.peer_port, init.our_port, secs)
                    {
                        Some(payload) => {
                            answered = true;
                            self.transmits.push_back(Transmit {
                                destination: remote,
                                payload,
                            });
                        }
                        None => why = Some("the stack answered with something other than an INIT-ACK".to_owned()),
                    }
                }
                SocketEvent::OnError(kind, e) | SocketEvent::OnAborted(kind, e) => {
                    why = Some(format!("{kind:?}: {e}"));
                }
                _ => {}
            }
        }
        if answered {
            self.stats.inits_answered += 1;
            Placement::Placed
        } else {
            let why = why.unwrap_or_else(|| "no answer".to_owned());
            self.log.debug(now, || format!("{remote}: dropped an INIT: {why}"));
            self.dropped(DropReason::InitRejected)
        }
    }

    /// A COOKIE-ECHO from a peer no association has: a new association if
    /// its cookie is one this node sealed for this peer, recently.
    fn handle_cookie_echo(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        datagram: &[u8],
    ) -> Placement {
        if self.listener.is_none() {
            self.log.debug(now, || {
                format!("{remote}: dropped a COOKIE-ECHO: this node accepts no associations")
            });
            return self.dropped(DropReason::NotAccepting);
        }
        let opened = match self
            .cookies
            .open(datagram, remote, self.cookie_time(now))
        {
            Ok(opened) => opened,
            Err(e) => {
                self.stats.cookies_refused += 1;
                self.log.debug(now, || format!("{remote}: dropped a COOKIE-ECHO: {e}"));
                return self.dropped(DropReason::InvalidCookie);
            }
        };
        // The association's SCTP ports are the packet's, mirrored.
        let peer_port = u16::from_be_bytes([datagram[0], datagram[1]]);
        let our_port = u16::from_be_bytes([datagram[2], datagram[3]]);
        if self.refusing || self.assocs.len() >= self.config.max_associations {
            self.stats.associations_refused += 1;
            self.log.debug(now, || {
                format!("{remote}: refused a COOKIE-ECHO: closing, or at the association limit")
            });
            // The cookie (authentic: it was sealed here) holds the peer's
            // tag: the peer learns at once, rather than when its handshake
            // times out.
            if let Some(tag) = cookie_peer_tag(&opened) {
                let refusal = InitTag {
                    peer_port,
                    our_port,
                    tag,
                };
                self.transmits.push_back(refusal.abort(remote));
            }
            return Placement::Refused;
        }
        let mut sock = self.new_socket(our_port, peer_port);
        sock.advance_time(self.socket_time(now));
        sock.handle_input(&opened);
        let tag = sock.verification_tag();
        if tag == 0 {
            // dcsctp did not establish from it (it says why in its events).
            let mut why = String::from("no association established");
            while let Some(event) = sock.poll_event() {
                if let SocketEvent::OnError(kind, e) | SocketEvent::OnAborted(kind, e) = event {
                    why = format!("{kind:?}: {e}");
                }
            }
            self.stats.cookies_refused += 1;
            self.log.debug(now, || format!("{remote}: dropped a COOKIE-ECHO: {why}"));
            return self.dropped(DropReason::InvalidCookie);
        }
        let id = self.insert(sock, remote, tag, false, now);
        self.mark_progressed(id);
        self.drive(id, now);
        Placement::Placed
    }

    /// Counts a datagram dropped for `reason`.
    fn dropped(&mut self, reason: DropReason) -> Placement {
        self.stats.datagrams_dropped += 1;
        Placement::Dropped(reason)
    }

    /// The time returned by [`Node::poll_timeout`] arrived (or later).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        let at = self.socket_time(now);
        while let Some(&Reverse((deadline, id))) = self.timers.peek() {
            if deadline > now {
                break;
            }
            self.timers.pop();
            let Some(a) = self.assocs.get_mut(&id) else {
                continue;
            };
            if a.scheduled != Some(deadline) {
                continue; // Superseded by an earlier deadline already handled.
            }
            a.scheduled = None;
            a.sock.advance_time(at);
            Pacing::refill(a, now);
            let cfg = &self.config;
            if let Some(since) = a.closing_since
                && close_due(a, since, now, cfg)
            {
                // What SCTP still holds will not be delivered: say so (the
                // peer gets an ABORT, the application this reason).
                let reason = match a.sock.unacknowledged_bytes() {
                    0 => a.graceful_reason.clone().unwrap_or(CloseReason::Local),
                    bytes => CloseReason::Undelivered(bytes),
                };
                force_close(a, reason);
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
                let _ = write(
                    a,
                    Delivery::Lossy,
                    KeepAlive::ASSOCIATION.to_bytes(),
                    cfg.lossy_lifetime,
                );
            }
            a.timer_fired = true;
            self.mark_progressed(id);
            self.drive(id, now);
            if let Some(a) = self.assocs.get_mut(&id) {
                a.timer_fired = false;
            }
        }
    }

    // ---- Commands -------------------------------------------------------

    /// Starts an association to `remote` (client role). Its
    /// [`Event::Connected`] follows when the handshake completes, or
    /// [`Event::Closed`] if it fails.
    pub fn connect(&mut self, now: Instant, remote: SocketAddr) -> Result<AssocId, ConnectError> {
        let now = self.advance(now);
        if remote.port() == 0 || remote.ip().is_unspecified() {
            return Err(ConnectError::InvalidRemoteAddress(remote));
        }
        if self.config.sctp_port == 0 {
            return Err(ConnectError::InvalidSctpPort);
        }
        if self.assocs.len() >= self.config.max_associations {
            return Err(ConnectError::TooManyAssociations);
        }
        let port = self.config.sctp_port;
        let mut sock = self.new_socket(port, port);
        sock.advance_time(self.socket_time(now));
        sock.connect();
        let tag = sock.verification_tag();
        let id = self.insert(sock, remote, tag, true, now);
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
        let now = self.advance(now);
        let at = self.socket_time(now);
        let limit = self.config.max_sctp_message_size as usize;
        let lifetime = self.config.lossy_lifetime;
        let a = sendable(&mut self.assocs, assoc)?;
        if encoded.len() > limit {
            return Err(SendError::TooLarge {
                size: encoded.len(),
                limit,
            });
        }
        a.sock.advance_time(at);
        Pacing::refill(a, now);
        write(a, delivery, encoded, lifetime)?;
        self.stats.messages_sent += 1;
        if !a.dirty {
            a.dirty = true;
            self.dirty.push(assoc);
        }
        Ok(())
    }

    /// Queues already encoded messages on `assoc` in order, as
    /// [`Node::send_encoded`] one by one would, except that each run of
    /// messages larger than one packet holds ([`MAX_PACKET_MESSAGE`]) on one
    /// stream goes to SCTP at once, so that its packets fill across those
    /// messages: a message a little larger than a packet (a 1,200-byte
    /// application message with its framing) leaves as a full packet and a
    /// share of the next, not as a full packet and a nearly empty one.
    /// Messages that fit a packet still leave in packets of their own: a
    /// packet filled across them would split each in two, and on a slow
    /// link it is a longer wait for what comes after it. The first error is
    /// returned after the rest were queued; a message over the size limit
    /// is not queued.
    pub fn send_encoded_many(
        &mut self,
        now: Instant,
        assoc: AssocId,
        messages: impl IntoIterator<Item = (Delivery, Bytes)>,
    ) -> Result<(), SendError> {
        let now = self.advance(now);
        let at = self.socket_time(now);
        let limit = self.config.max_sctp_message_size as usize;
        let lifetime = self.config.lossy_lifetime;
        let a = sendable(&mut self.assocs, assoc)?;
        a.sock.advance_time(at);
        Pacing::refill(a, now);
        let mut result = Ok(());
        let mut sent = 0;
        let mut run = Vec::new();
        let mut run_delivery = Delivery::Reliable;
        let mut run_packs = false;
        let packs = |encoded: &Bytes| encoded.len() > MAX_PACKET_MESSAGE;
        let mut messages = messages.into_iter().peekable();
        while let Some((delivery, encoded)) = messages.next() {
            if encoded.len() > limit {
                if result.is_ok() {
                    result = Err(SendError::TooLarge {
                        size: encoded.len(),
                        limit,
                    });
                }
            } else {
                run_delivery = delivery;
                run_packs = packs(&encoded);
                run.push(sctp_message(a, delivery, encoded));
            }
            let run_ends = !run_packs
                || messages
                    .peek()
                    .is_none_or(|(d, m)| *d != run_delivery || !packs(m));
            if run_ends && !run.is_empty() {
                let count = run.len();
                let options = send_options(run_delivery, lifetime);
                match a.sock.send_many(std::mem::take(&mut run), &options) {
                    Ok(()) => sent += count,
                    Err(e) => {
                        sent += count - e.0.len();
                        if let (Ok(()), Some((_, e))) = (&result, e.0.into_iter().next()) {
                            result = Err(send_error(e));
                        }
                    }
                }
            }
        }
        self.stats.messages_sent += sent as u64;
        if sent > 0 && !a.dirty {
            a.dirty = true;
            self.dirty.push(assoc);
        }
        result
    }

    /// Closes `assoc` gracefully: queued data is delivered first, then the
    /// SCTP shutdown runs; after [`NodeConfig::close_timeout`] the close is
    /// forced. [`Event::Closed`] with [`CloseReason::Local`] follows.
    ///
    /// If the peer's SHUTDOWN came first, the peer's shutdown ends the
    /// association. A SHUTDOWN the peer never answers ends it after
    /// [`NodeConfig::max_shutdown_retransmits`] retransmissions.
    pub fn close(&mut self, now: Instant, assoc: AssocId) {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if a.closing_since.is_some() {
            return;
        }
        start_closing(a, now);
        if a.connected {
            a.nudge = true;
        } else {
            force_close(a, CloseReason::Local);
        }
        self.drive(assoc, now);
    }

    /// Stops accepting associations and closes every one this node holds:
    /// an established one gracefully ([`Node::close`]), one still in its
    /// handshake at once. From then on an INIT is answered with an ABORT
    /// (and counted in [`NodeStats::associations_refused`]). For an engine
    /// that shuts down: nothing new can start while it waits for its closes
    /// to complete.
    pub fn close_all(&mut self, now: Instant) {
        self.refusing = true;
        let mut ids: Vec<AssocId> = self.assocs.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.close(now, id);
        }
    }

    /// Ends `assoc` at once, dropping whatever it still had queued (for a
    /// peer that cannot keep up, or breaks the rules); the peer is sent an
    /// ABORT. [`Event::Closed`] with `reason` follows.
    /// Returns `false` if there was no such association.
    #[cfg(feature = "_internal")]
    pub fn abort(&mut self, now: Instant, assoc: AssocId, reason: CloseReason) -> bool {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return false;
        };
        force_close(a, reason);
        self.drive(assoc, now);
        true
    }

    /// Ends `assoc` at once like [`Node::abort`], the ABORT saying `cause`
    /// (its User-Initiated Abort cause), so the peer learns why even when
    /// nothing else it was sent can reach it in time (a member too slow for
    /// what it was sent). [`Event::Closed`] with `reason` follows.
    pub(crate) fn abort_with_cause(
        &mut self,
        now: Instant,
        assoc: AssocId,
        reason: CloseReason,
        cause: &str,
    ) {
        let now = self.advance(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        a.close_reason.get_or_insert(reason);
        a.sock.abort(cause);
        self.drive(assoc, now);
    }

    /// Opens the engine's two channels on `assoc` with DCEP (RFC 8832), on
    /// streams `reliable` and `lossy` instead of the pre-agreed 0 and 1, as
    /// a WebRTC stack that opens its data channels in band does: the
    /// reliable channel is used at once (its open goes first, in order),
    /// the Lossy one once the peer acknowledges it (unordered data could
    /// overtake its open).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open_channels(&mut self, now: Instant, assoc: AssocId, reliable: u16, lossy: u16) -> bool {
        let now = self.advance(now);
        let at = self.socket_time(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return false;
        };
        a.sock.advance_time(at);
        for (stream, label, channel_type) in [
            (reliable, dcep::LABEL_RELIABLE, ChannelType::RELIABLE),
            (lossy, dcep::LABEL_LOSSY, ChannelType::PARTIAL_RELIABLE_REXMIT_UNORDERED),
        ] {
            let open = Dcep::Open(dcep::DataChannelOpen {
                channel_type,
                priority: 256,
                reliability: 0,
                label: label.into(),
                protocol: dcep::PROTOCOL.into(),
            });
            let m = SctpMessage::new(StreamId(stream), PpId(PPID_DCEP), open.to_bytes().to_vec());
            if a.sock.send(m, &SendOptions::default()).is_err() {
                return false;
            }
        }
        a.streams.reliable = reliable;
        a.streams.dcep_reliable = true;
        a.streams.opening_lossy = Some(lossy);
        self.drive(assoc, now);
        true
    }

    /// Sends `payload` as one ordered SCTP message on `stream` with `ppid`
    /// (tests: what another stack might send).
    #[cfg(test)]
    pub(crate) fn send_raw(&mut self, now: Instant, assoc: AssocId, stream: u16, ppid: u32, payload: &[u8]) {
        let now = self.advance(now);
        let at = self.socket_time(now);
        if let Some(a) = self.assocs.get_mut(&assoc) {
            a.sock.advance_time(at);
            let m = SctpMessage::new(StreamId(stream), PpId(ppid), payload.to_vec());
            let _ = a.sock.send(m, &SendOptions::default());
            self.drive(assoc, now);
        }
    }

    /// Resets this end's outgoing stream of `delivery` on `assoc` (RFC 6525),
    /// what a WebRTC stack does when a data channel closes. For tests and
    /// channels opened the standard way.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn reset_stream(&mut self, now: Instant, assoc: AssocId, delivery: Delivery) -> bool {
        let now = self.advance(now);
        let at = self.socket_time(now);
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return false;
        };
        a.sock.advance_time(at);
        let ok = a.sock.reset_streams(&[StreamId(delivery.stream())]).is_ok();
        self.drive(assoc, now);
        ok
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

    /// Holds back (`held`) or lets go of the messages `assoc` receives, for
    /// a driver that has fallen behind with what this association already
    /// gave it (a worker the call lives on is late taking it). While held,
    /// messages SCTP has reassembled stay in its receive buffer: its window
    /// closes as they fill it, so the peer's transport stops sending (and
    /// its sender's queue fills: backpressure, nothing lost; the peer's
    /// probes are refused without an abort, and SCTP's acknowledgements,
    /// keep-alives and timers go on). Let go, what waited is read at once
    /// ([`Event::Frame`]s follow, in order) and a window update tells the
    /// peer to go on. A close (the peer's or this node's) reads whatever
    /// waits, held or not: nothing is lost with the association.
    pub fn hold_reads(&mut self, now: Instant, assoc: AssocId, held: bool) {
        let Some(a) = self.assocs.get_mut(&assoc) else {
            return;
        };
        if std::mem::replace(&mut a.reads_held, held) && !held {
            let now = self.advance(now);
            self.drive(assoc, now);
            // Reading may have reopened a closed window: SCTP's window update
            // goes out with the next transmit (the drive gathers output before
            // it reads).
            if let Some(a) = self.assocs.get_mut(&assoc)
                && !a.dirty
            {
                a.dirty = true;
                self.dirty.push(assoc);
            }
        }
    }

    /// Whether [`Node::hold_reads`] holds `assoc`'s messages back.
    pub fn reads_held(&self, assoc: AssocId) -> bool {
        self.assocs.get(&assoc).is_some_and(|a| a.reads_held)
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

    /// A socket with the node's options, these SCTP ports and a seed of its
    /// own.
    fn new_socket(&mut self, local_port: u16, remote_port: u16) -> Box<Socket> {
        let mut sock = Box::new(Socket::new(
            "",
            &Options {
                local_port,
                remote_port,
                random_seed: Some(self.rng.next_u64()),
                ..self.options.clone()
            },
        ));
        sock.set_stream_priority(StreamId(STREAM_LOSSY), super::config::LOSSY_STREAM_PRIORITY);
        sock
    }

    /// `now` on the sockets' clock.
    fn socket_time(&self, now: Instant) -> SocketTime {
        let epoch = self.epoch.unwrap_or(now);
        SocketTime::zero() + now.saturating_duration_since(epoch)
    }

    /// `now` on the cookies' clock: whole seconds since the epoch.
    fn cookie_time(&self, now: Instant) -> u32 {
        let epoch = self.epoch.unwrap_or(now);
        u32::try_from(now.saturating_duration_since(epoch).as_secs()).unwrap_or(u32::MAX)
    }

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
        self.epoch.get_or_insert(now);
        now
    }

    fn insert(
        &mut self,
        sock: Box<Socket>,
        remote: SocketAddr,
        tag: u32,
        handshaking: bool,
        now: Instant,
    ) -> AssocId {
        let id = AssocId(self.next_id);
        self.next_id += 1;
        self.assocs.insert(
            id,
            Assoc {
                sock,
                remote,
                tag,
                connected: false,
                handshaking,
                closing_since: None,
                close_progress: (now, 0),
                shutdown_started: false,
                peer_shutdown: false,
                shutdown_sends: (0, 0),
                nudge: false,
                close_reason: None,
                graceful_reason: None,
                created: now,
                last_rx: now,
                last_keepalive: now,
                scheduled: None,
                dirty: false,
                progressed: false,
                immediate_acks: false,
                reads_held: false,
                timer_fired: false,
                interleaving: false,
                streams: Streams::PREAGREED,
                pacing: None,
            },
        );
        self.by_tag.insert((remote, tag), id);
        self.by_remote.entry(remote).or_default().push(id);
        self.handshaking += usize::from(handshaking);
        id
    }

    /// Forgets `id` (already taken out of `assocs`) in the indexes.
    fn unindex(&mut self, id: AssocId, a: &Assoc) {
        self.by_tag.remove(&(a.remote, a.tag));
        if let Some(ids) = self.by_remote.get_mut(&a.remote) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                self.by_remote.remove(&a.remote);
            }
        }
        if a.handshaking {
            self.handshaking -= 1;
        }
    }

    /// Runs `id`'s association after an input: collects its events, messages
    /// and datagrams, removes it if it ended, and re-arms its timer.
    fn drive(&mut self, id: AssocId, now: Instant) {
        let at = self.socket_time(now);
        let Self {
            assocs,
            events,
            transmits,
            stats,
            config,
            handshaking,
            log,
            ..
        } = self;
        let Some(a) = assocs.get_mut(&id) else {
            return;
        };
        a.sock.advance_time(at);
        // A close waits until the peer has acknowledged everything queued,
        // and a receiver delays the SACK for a lone packet (by up to 200 ms):
        // that wait was most of a close to a live peer. So while closing, the
        // last packet with DATA that each run sends carries the I bit (below;
        // RFC 7053: "acknowledge at once"). And once, when the close starts
        // with data sent but unacknowledged, a keep-alive goes after it to
        // carry that bit.
        if std::mem::take(&mut a.nudge)
            && a.close_reason.is_none()
            && a.sock.unacknowledged_bytes() > 0
        {
            // Best effort: without it the peer's delayed SACK still comes.
            let _ = write(
                a,
                Delivery::Lossy,
                KeepAlive::ASSOCIATION.to_bytes(),
                config.lossy_lifetime,
            );
        }
        // The node asks SCTP to shut down when it closes: dcsctp sends what
        // is queued first. Not when the peer's SHUTDOWN came first: the
        // peer's shutdown ends the association anyway.
        if a.closing_since.is_some()
            && !a.shutdown_started
            && !a.peer_shutdown
            && a.close_reason.is_none()
            && a.sock.state() == SocketState::Connected
        {
            a.shutdown_started = true;
            a.sock.shutdown();
        }
        let ended_gracefully = match (&a.graceful_reason, a.closing_since) {
            (Some(reason), _) => reason.clone(),
            (None, Some(_)) => CloseReason::Local,
            (None, None) => CloseReason::PeerClosed,
        };
        let mut lost = None;
        let mut gave_up = false;
        let sent_before = transmits.len();
        while let Some(event) = a.sock.poll_event() {
            match event {
                SocketEvent::SendPacket(p) => {
                    if gave_up {
                        continue;
                    }
                    // dcsctp retransmits these as long as it has no answer,
                    // and a peer that has already dropped the association
                    // may never answer. The same chunk again is a
                    // retransmission (T2-shutdown expired); SHUTDOWN then
                    // SHUTDOWN-ACK is the peer's SHUTDOWN crossing ours.
                    // Only the timer's resends count: dcsctp also answers each
                    // packet that arrives during a shutdown with a SHUTDOWN,
                    // and a peer that sends is not gone.
                    if let Some(&chunk @ (CHUNK_SHUTDOWN | CHUNK_SHUTDOWN_ACK)) =
                        p.get(COMMON_HEADER_LEN)
                    {
                        let (last, retransmits) = a.shutdown_sends;
                        let retransmits = retransmits + u32::from(last == chunk && a.timer_fired);
                        a.shutdown_sends = (chunk, retransmits);
                        if retransmits > config.max_shutdown_retransmits {
                            // The one that would go past the limit is not sent.
                            gave_up = true;
                            continue;
                        }
                    }
                    if p.get(COMMON_HEADER_LEN) == Some(&CHUNK_ABORT) {
                        log.debug(now, || format!("{}: sent an ABORT", a.remote));
                    }
                    transmits.push_back(Transmit {
                        destination: a.remote,
                        payload: Bytes::from(p),
                    });
                }
                SocketEvent::OnConnected() if !a.connected => {
                    a.connected = true;
                    let metrics = a.sock.get_metrics();
                    a.interleaving = metrics.as_ref().is_some_and(|m| m.uses_message_interleaving);
                    if metrics.is_some_and(|m| m.uses_zero_checksum) {
                        stats.zero_checksum_associations += 1;
                    }
                    if std::mem::take(&mut a.handshaking) {
                        *handshaking -= 1;
                    }
                    a.last_keepalive = now;
                    events.push_back(Event::Connected {
                        assoc: id,
                        remote: a.remote,
                    });
                }
                SocketEvent::OnClosed() => {
                    lost.get_or_insert(ended_gracefully.clone());
                }
                SocketEvent::OnAborted(kind, why) => {
                    log.debug(now, || format!("{}: association aborted: {kind:?}: {why}", a.remote));
                    lost.get_or_insert(match kind {
                        ErrorKind::PeerReported => CloseReason::Aborted(abort_cause(&why)),
                        _ if !a.connected => CloseReason::HandshakeFailed(format!("{kind:?}: {why}")),
                        ErrorKind::TooManyRetries => CloseReason::TimedOut,
                        ErrorKind::ProtocolViolation
                        | ErrorKind::ParseFailed
                        | ErrorKind::WrongSequence => {
                            CloseReason::ProtocolViolation(Violation::SctpTransport)
                        }
                        ErrorKind::ResourceExhaustion => CloseReason::ReceiveBufferExhausted,
                        _ => CloseReason::Aborted(None),
                    });
                }
                SocketEvent::OnError(kind, why) => {
                    log.debug(now, || format!("{}: SCTP error: {kind:?}: {why}", a.remote));
                }
                SocketEvent::OnIncomingStreamReset(streams) => {
                    log.debug(now, || format!("{}: the peer reset streams {streams:?}", a.remote));
                    // An empty list resets every stream.
                    if (streams.is_empty() || streams.contains(&StreamId(a.streams.reliable)))
                        && a.closing_since.is_none()
                    {
                        // The engine's channel is closed: nothing more can
                        // go in order on it. What arrived is delivered; the
                        // association is shut down gracefully (on the next
                        // drive: see the top of this function).
                        start_closing(a, now);
                        a.graceful_reason = Some(CloseReason::StreamReset);
                        a.dirty = true;
                    }
                }
                _ => {}
            }
        }
        if gave_up {
            force_close(a, ended_gracefully.clone());
            // The ABORT that closing sends is not wanted either: the peer
            // is gone.
            while a.sock.poll_event().is_some() {}
        }
        // The peer started the SCTP shutdown: dcsctp answers it by itself.
        if !a.shutdown_started && a.sock.state() == SocketState::ShuttingDown {
            a.peer_shutdown = true;
        }
        // Messages that arrived (unless the driver holds them back: they
        // wait in SCTP's receive buffer, whose window closes as it fills).
        // Not once the association is closing: the peer's SHUTDOWN means it
        // sends nothing more, and its SHUTDOWN-COMPLETE would take what waits
        // unread with the association.
        while (!a.reads_held || a.peer_shutdown || a.closing_since.is_some())
            && let Some(m) = a.sock.get_next_message()
        {
            if !read_message(a, id, m, events, stats, config, log, now) {
                break;
            }
        }
        // Immediate SACKs (the I bit): on every DATA packet while the driver
        // asks for them (`Node::set_immediate_acks`: its egress budget reads
        // round trips off acknowledgements, and a peer's delayed ack would
        // add a packet's serialization or 200 ms to them); on the last of
        // each run while closing (the close waits for the acknowledgement).
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
        // SCTP reports.
        if let Some(reason) = a.close_reason.take().or(lost) {
            let reason = match (reason, a.closing_since) {
                // A graceful close we started ends with the peer's
                // SHUTDOWN-COMPLETE (or its SHUTDOWN crossing ours).
                (CloseReason::PeerClosed, Some(_)) => CloseReason::Local,
                (r, _) => r,
            };
            if !matches!(reason, CloseReason::Local | CloseReason::PeerClosed)
                && a.sock.state() != SocketState::Closed
            {
                a.sock.close();
            }
            // What closing sent (an ABORT, when a message read above ended
            // the association) goes out; the rest no longer matters.
            if !gave_up {
                while let Some(event) = a.sock.poll_event() {
                    if let SocketEvent::SendPacket(p) = event {
                        transmits.push_back(Transmit {
                            destination: a.remote,
                            payload: Bytes::from(p),
                        });
                    }
                }
            }
            let remote = a.remote;
            if let Some(a) = assocs.remove(&id) {
                self.unindex(id, &a);
            }
            self.events.push_back(Event::Closed {
                assoc: id,
                reason,
                remote,
            });
            return;
        }
        if a.closing_since.is_some() {
            note_close_progress(a, now);
        }
        let socket_deadline = a.sock.poll_timeout();
        let socket_deadline = if socket_deadline == SocketTime::infinite_future() {
            None
        } else {
            self.epoch
                .and_then(|e| e.checked_add(socket_deadline - SocketTime::zero()))
        };
        let deadline = [
            socket_deadline,
            Some(a.last_rx + config.idle_timeout),
            (!a.connected).then(|| a.created + config.handshake_timeout),
            // No keep-alives while closing (see `handle_timeout`): a past
            // keep-alive deadline would make every call spin on it.
            (a.connected && a.closing_since.is_none())
                .then(|| a.last_rx.max(a.last_keepalive) + config.keepalive_interval),
            a.closing_since.map(|since| close_deadline(a, since, config)),
            Pacing::deadline(a),
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
        if a.dirty && !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }
}

/// Bytes of the SCTP common header; the first chunk's type follows.
const COMMON_HEADER_LEN: usize = 12;
/// SCTP chunk type INIT (RFC 9260).
const CHUNK_INIT: u8 = 1;
/// SCTP chunk type ABORT (RFC 9260).
const CHUNK_ABORT: u8 = 6;
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
/// The T bit of an ABORT or SHUTDOWN COMPLETE chunk's flags: the packet
/// carries the sender's own verification tag (RFC 9260 8.5.1).
const FLAG_T: u8 = 0x01;
/// The I bit of a DATA or I-DATA chunk's flags: the receiver should
/// acknowledge it at once (RFC 7053).
pub(super) const FLAG_IMMEDIATE_SACK: u8 = 0x08;
/// Where the checksum sits in the SCTP common header.
const CHECKSUM: std::ops::Range<usize> = 8..12;
/// Error cause "User-Initiated Abort" (RFC 9260 3.3.10.12).
const CAUSE_USER_INITIATED_ABORT: u16 = 12;

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

/// `packet` with the I bit set on the chunk at `chunk`, checksum recomputed
/// (a zero checksum, RFC 9653, stays zero).
fn with_immediate_sack(packet: Bytes, chunk: usize) -> Bytes {
    // Each packet comes in a buffer of its own: no copy.
    let mut p = packet
        .try_into_mut()
        .unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    if p[chunk + 1] & FLAG_IMMEDIATE_SACK != 0 {
        return p.freeze();
    }
    p[chunk + 1] |= FLAG_IMMEDIATE_SACK;
    if p[CHECKSUM] != [0; 4] {
        p[CHECKSUM].fill(0);
        let sum = CRC32C.checksum(&p);
        // Stored least significant byte first, as RFC 9260's reference code
        // does.
        p[CHECKSUM].copy_from_slice(&sum.to_le_bytes());
    }
    p.freeze()
}

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
        if packet.get(COMMON_HEADER_LEN) != Some(&CHUNK_INIT) {
            return None;
        }
        let port = |at: usize| Some(u16::from_be_bytes(packet.get(at..at + 2)?.try_into().ok()?));
        let tag_at = COMMON_HEADER_LEN + 4;
        let tag = u32::from_be_bytes(packet.get(tag_at..tag_at + 4)?.try_into().ok()?);
        Some(Self {
            peer_port: port(0)?,
            our_port: port(2)?,
            // An INIT's initiate tag is never 0 (RFC 9260 3.3.2).
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

/// The reason in a peer's ABORT, from dcsctp's text of its causes
/// ("User-Initiated Abort, reason=…", "Protocol Violation,
/// additional_information=…"): the reason if it gave one, else the
/// causes (`None` if there were none).
fn abort_cause(causes: &str) -> Option<String> {
    let reason = ["reason=", "additional_information="]
        .iter()
        .find_map(|key| causes.split_once(key).map(|(_, reason)| reason))
        .unwrap_or(causes);
    let reason = reason.trim();
    (!reason.is_empty()).then(|| reason.chars().take(200).collect())
}

/// The peer's verification tag in the cookie of an (opened) COOKIE-ECHO
/// packet, as dcsctp writes its cookie: two magic words, then the peer's
/// tag.
fn cookie_peer_tag(packet: &[u8]) -> Option<u32> {
    let at = COMMON_HEADER_LEN + 4 + 8;
    let tag = u32::from_be_bytes(packet.get(at..at + 4)?.try_into().ok()?);
    (tag != 0).then_some(tag)
}

/// Writes one encoded message on `delivery`'s stream.
fn write(
    a: &mut Assoc,
    delivery: Delivery,
    encoded: Bytes,
    lossy_lifetime: Duration,
) -> Result<(), SendError> {
    let message = sctp_message(a, delivery, encoded);
    a.sock
        .send(message, &send_options(delivery, lossy_lifetime))
        .map_err(send_error)
}

/// How SCTP sends a message on `delivery`'s stream.
fn send_options(delivery: Delivery, lossy_lifetime: Duration) -> SendOptions {
    match delivery {
        Delivery::Reliable => SendOptions::default(),
        Delivery::Lossy => SendOptions {
            unordered: true,
            lifetime: Some(lossy_lifetime),
            ..SendOptions::default()
        },
    }
}

/// `encoded` as an SCTP message on `delivery`'s stream of `a`.
fn sctp_message(a: &Assoc, delivery: Delivery, encoded: Bytes) -> SctpMessage {
    SctpMessage::new(
        StreamId(a.streams.of(delivery)),
        PPID_BINARY,
        // No copy when the buffer is this message's alone.
        Vec::from(encoded),
    )
}

/// SCTP's refusal of a message, as the node reports it.
fn send_error(e: SctpSendError) -> SendError {
    match e {
        SctpSendError::MessageTooLarge { len, limit } => SendError::TooLarge { size: len, limit },
        SctpSendError::ShuttingDown => SendError::Closing,
        SctpSendError::ResourceExhaustion | SctpSendError::EmptyPayload => SendError::BufferFull,
    }
}

/// Ends `a` now with `reason`: the peer is sent an ABORT.
/// A graceful close starts at `now`.
fn start_closing(a: &mut Assoc, now: Instant) {
    a.closing_since = Some(now);
    a.close_progress = (now, a.sock.unacknowledged_bytes());
}

/// `assoc`, if it takes messages: connected, and not closing.
fn sendable(assocs: &mut IdMap<AssocId, Assoc>, assoc: AssocId) -> Result<&mut Assoc, SendError> {
    let a = assocs
        .get_mut(&assoc)
        .ok_or(SendError::UnknownAssociation)?;
    if !a.connected {
        return Err(SendError::NotConnected);
    }
    if a.closing_since.is_some() || a.close_reason.is_some() {
        return Err(SendError::Closing);
    }
    Ok(a)
}

/// When a close that started at `since` is forced: after
/// [`NodeConfig::close_timeout`] without progress (the peer acknowledging
/// more of what was queued), and after [`NodeConfig::close_limit`] in any
/// case.
fn close_deadline(a: &Assoc, since: Instant, config: &NodeConfig) -> Instant {
    (a.close_progress.0 + config.close_timeout).min(since + config.close_limit)
}

/// Whether a close that started at `since` is to be forced at `now`
/// (noting the progress made since the last look first).
fn close_due(a: &mut Assoc, since: Instant, now: Instant, config: &NodeConfig) -> bool {
    note_close_progress(a, now);
    now >= close_deadline(a, since, config)
}

/// While closing: the peer acknowledged more of what was queued.
fn note_close_progress(a: &mut Assoc, now: Instant) {
    let unacked = a.sock.unacknowledged_bytes();
    if unacked < a.close_progress.1 {
        a.close_progress = (now, unacked);
    }
}

fn force_close(a: &mut Assoc, reason: CloseReason) {
    a.close_reason.get_or_insert(reason);
    a.sock.close();
}

/// Turns one SCTP message of `a` into events. Returns `false` if it ended
/// the association (a message over the limit).
#[allow(clippy::too_many_arguments)]
fn read_message(
    a: &mut Assoc,
    id: AssocId,
    m: SctpMessage,
    events: &mut VecDeque<Event>,
    stats: &mut NodeStats,
    config: &NodeConfig,
    log: &mut LogBudget,
    now: Instant,
) -> bool {
    let limit = config.max_sctp_message_size as usize;
    if m.payload.len() > limit {
        // dcsctp bounds what it reassembles only by its receive window: the
        // node enforces the message limit, and says so to the peer.
        let size = m.payload.len();
        stats.oversize_messages += 1;
        log.debug(now, || {
            format!("{}: a message of {size} bytes, over the limit of {limit}: ABORT", a.remote)
        });
        a.close_reason
            .get_or_insert(CloseReason::ProtocolViolation(Violation::MessageTooLarge {
                size,
                limit,
            }));
        a.sock
            .abort(&format!("message of {size} bytes over the limit of {limit}"));
        return false;
    }
    let stream = m.stream_id.0;
    if stream >= config.streams {
        a.close_reason
            .get_or_insert(CloseReason::ProtocolViolation(Violation::StreamBeyondNegotiated {
                stream,
                negotiated: config.streams,
            }));
        a.sock.abort(&format!("data on stream {stream}, beyond the {} negotiated", config.streams));
        return false;
    }
    if m.ppid == PpId(PPID_DCEP) {
        on_dcep(a, stream, &m.payload, stats, log, now);
        return true;
    }
    let delivery = if stream == a.streams.reliable {
        Delivery::Reliable
    } else if stream == a.streams.lossy {
        Delivery::Lossy
    } else {
        stats.messages_ignored += 1;
        return true;
    };
    if m.ppid != PPID_BINARY {
        stats.messages_ignored += 1;
        log.debug(now, || {
            format!("{}: ignored a message with PPID {} on stream {stream}", a.remote, m.ppid)
        });
        return true;
    }
    match Message::decode_exact(Bytes::from(m.payload)) {
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
    true
}

/// A DCEP message (RFC 8832) on `stream` of `a`: an open of one of the
/// engine's two channels moves that channel to `stream` and is acknowledged;
/// an open of anything else is refused by resetting the stream (RFC 8832
/// §6: the way to refuse), and an ACK (of an open this end sent) changes
/// nothing.
fn on_dcep(
    a: &mut Assoc,
    stream: u16,
    payload: &[u8],
    stats: &mut NodeStats,
    log: &mut LogBudget,
    now: Instant,
) {
    let open = match Dcep::decode_exact(payload) {
        Ok(Dcep::Open(open)) => open,
        Ok(Dcep::Ack) => {
            if a.streams.opening_lossy == Some(stream) {
                a.streams.opening_lossy = None;
                a.streams.lossy = stream;
                a.streams.dcep_lossy = true;
            }
            return;
        }
        Err(e) => {
            stats.messages_malformed += 1;
            log.debug(now, || format!("{}: an undecodable DCEP message on stream {stream}: {e}", a.remote));
            return;
        }
    };
    let unordered = open.channel_type.is_unordered();
    let fits = open.protocol == dcep::PROTOCOL
        && match open.label.as_str() {
            dcep::LABEL_RELIABLE => open.channel_type == ChannelType::RELIABLE,
            dcep::LABEL_LOSSY => unordered,
            _ => false,
        };
    // A channel of ours already opened stays where it is.
    let taken = match open.label.as_str() {
        dcep::LABEL_RELIABLE => a.streams.dcep_reliable,
        _ => a.streams.dcep_lossy,
    };
    if !fits || taken {
        stats.dcep_refused += 1;
        log.debug(now, || {
            format!(
                "{}: refused a DCEP open of {:?} (protocol {:?}, type {:#04x}) on stream {stream}: a stream reset",
                a.remote, open.label, open.protocol, open.channel_type.0
            )
        });
        let _ = a.sock.reset_streams(&[StreamId(stream)]);
        return;
    }
    if open.label == dcep::LABEL_RELIABLE {
        a.streams.reliable = stream;
        a.streams.dcep_reliable = true;
        // Until the peer opens the Lossy channel too, Lossy data goes
        // (unordered) on the reliable one: the pre-agreed stream 1 is not
        // open for a peer that opens its channels itself.
        if !a.streams.dcep_lossy {
            a.streams.lossy = stream;
        }
    } else {
        a.streams.lossy = stream;
        a.streams.dcep_lossy = true;
        a.sock
            .set_stream_priority(StreamId(stream), super::config::LOSSY_STREAM_PRIORITY);
    }
    stats.dcep_opened += 1;
    let ack = SctpMessage::new(StreamId(stream), PpId(PPID_DCEP), Dcep::Ack.to_bytes().to_vec());
    let _ = a.sock.send(ack, &SendOptions::default());
}

/// Debug lines a node writes per second at most; the rest are counted and
/// reported in the next second's first line, so a flood of bad packets
/// cannot fill a disk.
const LOG_LINES_PER_SECOND: u32 = 20;

/// Rate-limits the node's debug log.
#[derive(Debug, Default)]
struct LogBudget {
    second: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogBudget {
    /// Logs `line()` at debug level if the budget allows (the line is only
    /// formatted then).
    fn debug(&mut self, now: Instant, line: impl FnOnce() -> String) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        if self
            .second
            .is_none_or(|s| now >= s + Duration::from_secs(1))
        {
            if self.suppressed > 0 {
                tracing::debug!(
                    "sctp: {} more lines suppressed in the last second",
                    self.suppressed
                );
            }
            self.second = Some(now);
            self.written = 0;
            self.suppressed = 0;
        }
        if self.written < LOG_LINES_PER_SECOND {
            self.written += 1;
            tracing::debug!("sctp: {}", line());
        } else {
            self.suppressed += 1;
        }
    }
}
