//! What a hub is configured with and what it reports: [`HubConfig`],
//! [`HubEvent`], [`HubStats`], [`JoinError`].
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{JoinRejection, JoinVerifier};
use crate::datachannel::{ChannelConfig, ParticipantId};
use crate::proto::{ConnectError, NodeConfig};
use crate::wire::MemberId;

#[allow(unused_imports)] // doc links
use super::{Hub, home_worker};

/// How a hub behaves: its role, limits and timers.
///
/// The role comes from the constructor: [`HubConfig::client`] (also
/// `Default`) or [`HubConfig::server`], the one way to make a server (the
/// runtime's [`crate::runtime::EngineBuilder::hub`] takes the same value).
/// Everything else has a chainable setter named after the field, each of
/// which says its default; the fields are public for reading:
///
/// ```
/// # use std::sync::Arc;
/// # use std::time::{Duration, Instant};
/// # use dcengine::{ChannelConfig, HmacVerifier, HubConfig, TrafficPolicy, WallClock};
/// # let verifier = Arc::new(HmacVerifier::new(b"secret", WallClock::new(Instant::now(), Duration::ZERO)).unwrap());
/// let config = HubConfig::server(verifier)
///     .join_timeout(Duration::from_secs(5))
///     .channel(
///         ChannelConfig::default()
///             .max_message_size(16 * 1024)
///             .traffic(TrafficPolicy::unlimited()),
///     );
/// assert!(config.verifier.is_some());
/// assert_eq!(config.join_timeout, Duration::from_secs(5));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// The node underneath; see [`HubConfig::node()`].
    pub node: NodeConfig,
    /// DTLS under SCTP with this end's certificate; see [`HubConfig::dtls()`].
    /// `None`: plain SCTP over UDP.
    pub dtls: Option<crate::dtls::Certificate>,
    /// Limits and timers of the DataChannel feature; see
    /// [`HubConfig::channel()`].
    pub channel: ChannelConfig,
    /// The server role: joins are checked with this. `None`: the hub
    /// accepts no joins from the network. Set by [`HubConfig::server`].
    pub verifier: Option<Arc<dyn JoinVerifier>>,
    /// How long an association may take to join; see
    /// [`HubConfig::join_timeout()`].
    pub join_timeout: Duration,
    /// Seeds the random channel-id picker; see [`HubConfig::seed()`].
    pub seed: u64,
    /// The most an association to a server may have queued in SCTP; see
    /// [`HubConfig::uplink_buffer()`].
    pub uplink_buffer: usize,
    /// Standing queue the egress budget allows on top of the round trip;
    /// see [`HubConfig::queue_target()`].
    pub queue_target: Duration,
    /// Server role: Lossy bytes that may wait for one member; see
    /// [`HubConfig::lossy_drop_buffer()`].
    pub lossy_drop_buffer: usize,
    /// Server role: Durable and control bytes that may wait for one member
    /// before it is a slow consumer, whatever its rate; see
    /// [`HubConfig::slow_consumer_buffer()`].
    pub slow_consumer_buffer: usize,
    /// Server role: a member that takes less than this many kbit/s of the
    /// Durable data waiting for it, for [`HubConfig::slow_consumer_grace`],
    /// is a slow consumer; see [`HubConfig::slow_consumer_rate()`].
    pub slow_consumer_min_kbps: u32,
    /// Server role: see [`HubConfig::slow_consumer_rate()`].
    pub slow_consumer_grace: Duration,
    /// Server role: Durable data bytes of one sender waiting for one member
    /// past which the sender is paused; see [`HubConfig::pause_backlog()`].
    pub pause_route_backlog: usize,
    /// Server role: Durable bytes waiting for one member past which every
    /// sender feeding it is paused; see [`HubConfig::pause_backlog()`].
    pub pause_member_backlog: usize,
    /// Server role: the most [`HubConfig::pause_route_backlog`] grows to
    /// on a long fast path; see [`HubConfig::pause_backlog_max()`].
    pub pause_route_backlog_max: usize,
    /// Server role: the most [`HubConfig::pause_member_backlog`] grows to
    /// on a long fast path; see [`HubConfig::pause_backlog_max()`].
    pub pause_member_backlog_max: usize,
    /// Server role: Durable bytes a paused sender may still send before
    /// the server closes it; see [`HubConfig::pause_overrun()`].
    pub pause_overrun: usize,
    /// Server role, several workers: bytes of one member's frames relayed
    /// to its call's worker and not yet taken there, past which the
    /// member's reads are held; see [`HubConfig::relay_backlog()`].
    pub relay_backlog: usize,
    /// Server role: most open senders one member may have; see
    /// [`HubConfig::max_senders_per_member()`].
    pub max_senders_per_member: usize,
    /// Server role: messages over the traffic rules a member may send
    /// before its association is closed, `(per second, burst)`; see
    /// [`HubConfig::policing_tolerance()`].
    pub policing_tolerance: (u64, u64),
    /// Most members one call may have; see
    /// [`HubConfig::max_members_per_call()`].
    pub max_members_per_call: usize,
    /// Most endpoints (joins) one participant id may have in a call; see
    /// [`HubConfig::max_endpoints_per_participant()`].
    pub max_endpoints_per_participant: usize,
    /// Senders (sessions) one member may open: `(per second, burst)`; see
    /// [`HubConfig::session_opens()`].
    pub session_opens: (u64, u64),
    /// What the application's handles read the time from; see
    /// [`HubConfig::clock()`].
    pub clock: crate::sched::Clock,
    /// How many workers (hubs) the engine runs, each with its own socket
    /// on the shared port. Set by the engine (and [`super::HubCluster`]);
    /// default 1. With several, a call is homed on
    /// [`home_worker`]`(call id, workers)` and members whose association
    /// lives on another worker are relayed (see [`Hub::poll_relay`]).
    pub(crate) workers: usize,
    /// Which of the engine's workers this hub is: `0..workers`. Set by the
    /// engine (and [`super::HubCluster`]); default 0.
    pub(crate) worker: usize,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("node", &self.node)
            .field("channel", &self.channel)
            .field("server", &self.verifier.is_some())
            .field("join_timeout", &self.join_timeout)
            .finish_non_exhaustive()
    }
}

impl Default for HubConfig {
    /// A client ([`HubConfig::client`]).
    fn default() -> Self {
        Self::client()
    }
}

impl HubConfig {
    /// A client: joins calls on servers, accepts no joins. Also
    /// `HubConfig::default()`.
    pub fn client() -> Self {
        Self {
            node: NodeConfig::client(),
            dtls: None,
            channel: ChannelConfig::default(),
            verifier: None,
            join_timeout: Duration::from_secs(10),
            seed: rand::random(),
            uplink_buffer: 4 * 1024 * 1024,
            queue_target: Duration::from_millis(5),
            lossy_drop_buffer: 256 * 1024,
            slow_consumer_buffer: 24 * 1024 * 1024,
            slow_consumer_min_kbps: 64,
            slow_consumer_grace: Duration::from_secs(10),
            pause_route_backlog: 128 * 1024,
            pause_member_backlog: 1024 * 1024,
            pause_route_backlog_max: 4 * 1024 * 1024,
            pause_member_backlog_max: 8 * 1024 * 1024,
            pause_overrun: 12 * 1024 * 1024,
            relay_backlog: 512 * 1024,
            max_senders_per_member: 1024,
            policing_tolerance: (10, 100),
            session_opens: (20, 1024),
            max_members_per_call: 1000,
            max_endpoints_per_participant: 8,
            clock: crate::sched::Clock::system(),
            workers: 1,
            worker: 0,
        }
    }

    /// A server admitting the joins `verifier` accepts: the one way to give
    /// a hub, or an engine ([`crate::runtime::EngineBuilder::hub`]), the
    /// server role. Its node accepts associations ([`Hub::new`] makes sure
    /// of it, whatever [`HubConfig::node()`] is given later); the rest is
    /// [`HubConfig::client`]'s defaults.
    pub fn server(verifier: Arc<dyn JoinVerifier>) -> Self {
        Self {
            node: NodeConfig::server(),
            verifier: Some(verifier),
            ..Self::client()
        }
    }

    /// The node underneath (SCTP limits and timers). Default
    /// [`NodeConfig::client`], or [`NodeConfig::server`] from
    /// [`HubConfig::server`]; a hub with the server role accepts
    /// associations whatever the given value's
    /// [`NodeConfig::accept_incoming`] says.
    pub fn node(mut self, node: NodeConfig) -> Self {
        self.node = node;
        self
    }

    /// Runs every association over DTLS (RFC 8261) with `certificate`, as
    /// WebRTC does: each peer's certificate is checked against the
    /// fingerprint given for it ([`Hub::allow_dtls_peer`] on a server,
    /// [`Hub::trust_dtls_server`] on a client), and a server creates no
    /// state for an address it was not told to expect. Default: none
    /// (plain SCTP over UDP).
    ///
    /// [`Hub::allow_dtls_peer`]: crate::Hub::allow_dtls_peer
    /// [`Hub::trust_dtls_server`]: crate::Hub::trust_dtls_server
    pub fn dtls(mut self, certificate: crate::dtls::Certificate) -> Self {
        self.dtls = Some(certificate);
        self
    }

    /// Limits and timers of the DataChannel feature. Default
    /// [`ChannelConfig::default`].
    pub fn channel(mut self, channel: ChannelConfig) -> Self {
        self.channel = channel;
        self
    }

    /// An association that has not joined within this long is closed.
    /// Default 10 s.
    pub fn join_timeout(mut self, timeout: Duration) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Seeds the random channel-id picker (each call mixes in its own key;
    /// an engine's workers each add their own). Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The most an association to a server may have queued in SCTP (in
    /// flight and unsent) before this hub stops taking messages from its
    /// senders' queues. Below it the egress budget adapts to the path
    /// (about delivery rate × (round trip + [`HubConfig::queue_target()`]),
    /// see `docs/architecture.md`): the scheduler decides what goes next only if
    /// SCTP's own FIFO and the path's bottleneck queue stay shallow. Full
    /// sender queues then push back (Durable sends fail with
    /// `MessageFailureForBandwidth`). The server's egress to each member
    /// uses the same bound. It is a ceiling on what the budget may grow to,
    /// not memory set aside: the budget starts at a few packets and follows
    /// the path's measured bandwidth-delay product, so an idle association
    /// costs nothing more for it, and a short path never gets near it.
    /// Default 4 MiB (the `wan` path, 1 Gbit/s × 50 ms, carries 30 MB/s with
    /// about 1.7 MB in flight; 256 KiB held it to 4.8 MB/s). A client's
    /// bound is also what it may still hand over after the server paused
    /// one of its senders: keep it under the server's
    /// [`HubConfig::pause_overrun()`] ([`HubConfig::check()`] says so), or a
    /// fast sender on a long path can be closed for it (measured on the
    /// 50 ms `wan` path with 8 MiB against a 2 MiB overrun, perf/README.md).
    pub fn uplink_buffer(mut self, bytes: usize) -> Self {
        self.uplink_buffer = bytes;
        self
    }

    /// How much standing queue the egress budget (uplinks, and the server's
    /// per-member egress) allows on top of the path's round trip, on a
    /// path fast enough that this is more than a packet (a slower one
    /// keeps about a packet): at least a quarter of the measured base
    /// round trip, and a queue must show in two rounds in a row before the
    /// budget shrinks for it (a loaded host's jitter of a few
    /// milliseconds held a 50 ms path to a fraction of what it carries).
    /// Default 5 ms.
    pub fn queue_target(mut self, target: Duration) -> Self {
        self.queue_target = target;
        self
    }

    /// Server role: Lossy bytes that may wait in one member's egress queue
    /// (the server's per-member scheduler, ahead of its SCTP queue); more
    /// are dropped on arrival. Lossy messages are also dropped when they
    /// waited longer than the channel's
    /// [`ChannelConfig::lossy_latency_budget()`]. Default 256 KiB.
    pub fn lossy_drop_buffer(mut self, bytes: usize) -> Self {
        self.lossy_drop_buffer = bytes;
        self
    }

    /// Server role: Durable and control bytes that may wait in one member's
    /// egress queue; one more and the member is a slow consumer: it is
    /// sent `Leave` (`SLOW_CONSUMER`) and its association closed (Durable
    /// messages cannot be dropped, and the server will not hold them
    /// without bound). A bound on memory, not the policy: honest senders
    /// are paused long before it ([`HubConfig::pause_backlog()`]), and
    /// slowness is judged by rate ([`HubConfig::slow_consumer_rate()`]).
    /// Must exceed the member's pause bound at its largest
    /// ([`HubConfig::pause_backlog_max()`]) plus what senders have on the
    /// way (a paused sender's [`HubConfig::pause_overrun()`];
    /// [`HubConfig::check()`]). Default 24 MiB (8 MiB + 12 MiB, and some
    /// room).
    pub fn slow_consumer_buffer(mut self, bytes: usize) -> Self {
        self.slow_consumer_buffer = bytes;
        self
    }

    /// Server role: the slow-consumer rule. Durable senders are slowed to
    /// what their receivers take (see [`HubConfig::pause_backlog()`]); a
    /// member that, with Durable data waiting for it the whole time, takes
    /// less than `min_kbps` of it for `grace` is too slow to be waited
    /// for: it is sent `Leave` (`SLOW_CONSUMER`) and its association
    /// closed, so the senders it held back go on. 0 kbps turns the rule
    /// off (senders wait for any receiver as long as it takes, bounded by
    /// [`HubConfig::slow_consumer_buffer()`]). Default 64 kbit/s (one Durable
    /// sender's default rule) for 10 s.
    pub fn slow_consumer_rate(mut self, min_kbps: u32, grace: Duration) -> Self {
        self.slow_consumer_min_kbps = min_kbps;
        self.slow_consumer_grace = grace;
        self
    }

    /// Server role: end-to-end backpressure for Durable senders. When
    /// more than `route` bytes of one Durable sender's data wait for one
    /// member, or more than `member` bytes of Durable data and control wait
    /// for it in all, the server pauses the senders concerned
    /// (`FlowControl`): the sending client stops sending their data, their
    /// `buffered_amount` grows, `writable()` waits, and past the sender's
    /// queue `send` fails with `MessageFailureForBandwidth`. Once the
    /// sender's backlog at every member is down to a quarter of `route`
    /// (and the member's to half of `member`) it goes on. Defaults
    /// 128 KiB and 1 MiB.
    ///
    /// These are floors: on a long fast path both grow with what the path
    /// holds, up to [`HubConfig::pause_backlog_max()`].
    pub fn pause_backlog(mut self, route: usize, member: usize) -> Self {
        self.pause_route_backlog = route;
        self.pause_member_backlog = member;
        self
    }

    /// Server role: how far the pause backlogs of
    /// [`HubConfig::pause_backlog()`] grow with the path. A sender paused
    /// for a member is resumed when its backlog there is down to a
    /// quarter, and its data arrives a round trip of its own path later;
    /// with a fixed 128 KiB, what a sender on a 50 ms path gets through
    /// per round trip is 96 KiB and what it had in flight, whatever the
    /// path carries. So each member's egress sizes the bounds from its
    /// egress budget's estimates: a route's bound is at least the sender's
    /// bandwidth-delay product (the member's measured delivery rate, at which the paused
    /// sender goes, times the sender's round trip as the server's SCTP
    /// measured it, or the member's own where the sender's association
    /// lives on another worker) plus the member's egress budget (its own
    /// product); the member's bound twice that. Neither goes below
    /// [`HubConfig::pause_backlog()`] nor above `route` and `member`
    /// bytes. Memory: what an honest member may have waiting is its
    /// member bound; it reaches the cap only on a path that carries it
    /// (about 37 MB/s with 50 ms round trips), so what a
    /// server holds grows with the bandwidth it serves times the round
    /// trip, not with its members; a member that acknowledges slowly gets a
    /// lower rate, not a larger bound; past the caps only
    /// [`HubConfig::pause_overrun()`] and
    /// [`HubConfig::slow_consumer_buffer()`] (which must exceed `member`
    /// plus the overrun: [`HubConfig::check()`]) bound it. A cap at or
    /// under its floor turns the sizing off. Defaults 4 MiB and 8 MiB.
    pub fn pause_backlog_max(mut self, route: usize, member: usize) -> Self {
        self.pause_route_backlog_max = route;
        self.pause_member_backlog_max = member;
        self
    }

    /// Server role: Durable bytes a paused sender may still send (what was
    /// on its way when the pause reached its association, and a leave's
    /// flush of its queue) before the server closes it (`TRAFFIC_LIMIT`, a
    /// strike): a member that ignores pauses cannot grow other members'
    /// queues. Counted from when the pause went into the member's
    /// association (with several workers, when the worker owning it
    /// handed it over). Must exceed a client's `sender_queue_bytes` plus
    /// its `uplink_buffer` plus a message, plus this server's SCTP receive
    /// buffer ([`NodeConfig::receive_buffer()`], what it holds unread: past
    /// a lost packet, or held while the call's worker is behind, see
    /// [`HubConfig::relay_backlog()`]): [`HubConfig::check()`] compares
    /// them, assuming clients run this hub's defaults. Default 12 MiB
    /// (1 MiB + 4 MiB + 257 KiB + 4 MiB is 9.3 MiB).
    pub fn pause_overrun(mut self, bytes: usize) -> Self {
        self.pause_overrun = bytes;
        self
    }

    /// Server role, several workers: when the worker that owns a member's
    /// association has relayed this many bytes of its frames to the worker
    /// its call lives on, and that worker has not taken them yet (it is
    /// busy, or was descheduled), the owner holds the member's reads
    /// (the transport leaves its messages unread): what the
    /// member sends waits in this server's SCTP receive buffer, whose
    /// window closes, so the member's transport and then its sender slow
    /// down instead of the backlog reaching the call's receivers in one
    /// burst (which could cut an honest receiver as a slow consumer). Reads
    /// resume when the call's worker has caught up to half of it. Nothing
    /// is dropped. Default 512 KiB.
    pub fn relay_backlog(mut self, bytes: usize) -> Self {
        self.relay_backlog = bytes;
        self
    }

    /// Whether the bounds that depend on each other do: a server's
    /// [`HubConfig::pause_overrun()`] must exceed what an honest client
    /// (with this configuration's sender queue and uplink buffer) may still
    /// send after a pause, plus what this server's SCTP receive buffer
    /// holds past a lost packet; its
    /// [`HubConfig::slow_consumer_buffer()`] must exceed the member backlog
    /// at which senders are paused (at its largest,
    /// [`HubConfig::pause_backlog_max()`]) plus one sender's overrun; and a
    /// route's cap must not exceed the member's. Otherwise an
    /// honest fast sender on a long path is closed for overrunning a pause
    /// (`TRAFFIC_LIMIT`), or a member for the data a pause could not stop
    /// (`SLOW_CONSUMER`). [`Hub::new`] takes any configuration; the `dcengine`
    /// binaries refuse one that fails this.
    pub fn check(&self) -> Result<(), ConfigError> {
        let needed = self.channel.sender_queue_bytes
            + self.uplink_buffer
            + self.node.max_sctp_message_size as usize
            + self.node.receive_buffer as usize;
        if self.pause_overrun <= needed {
            return Err(ConfigError::PauseOverrunTooSmall {
                pause_overrun: self.pause_overrun,
                needed,
            });
        }
        let (route_max, member_max) = self.pause_backlog_bounds();
        if route_max > member_max {
            return Err(ConfigError::PauseBacklogCaps {
                route: route_max,
                member: member_max,
            });
        }
        let needed = member_max + self.pause_overrun;
        if self.slow_consumer_buffer <= needed {
            return Err(ConfigError::SlowConsumerBufferTooSmall {
                slow_consumer_buffer: self.slow_consumer_buffer,
                needed,
            });
        }
        Ok(())
    }

    /// The largest pause backlogs, per route and per member: the caps of
    /// [`HubConfig::pause_backlog_max()`], or the floors of
    /// [`HubConfig::pause_backlog()`] where those are larger.
    pub fn pause_backlog_bounds(&self) -> (usize, usize) {
        (
            self.pause_route_backlog_max.max(self.pause_route_backlog),
            self.pause_member_backlog_max.max(self.pause_member_backlog),
        )
    }

    /// Server role: most open senders one member may have. Default 1,024.
    /// Announced in `JoinAccepted`: a client's `create_sender` past it
    /// fails (`TooManySenders`). The server itself refuses a sender only
    /// past twice that (a close and an open of two senders may cross on
    /// the way), with `SenderClosed` (`TOO_MANY_SENDERS`) and a strike.
    pub fn max_senders_per_member(mut self, max: usize) -> Self {
        self.max_senders_per_member = max;
        self
    }

    /// Server role: most members one call may have (remote and hosted);
    /// one more join is refused with `CALL_FULL`. Default 1,000.
    pub fn max_members_per_call(mut self, max: usize) -> Self {
        self.max_members_per_call = max;
        self
    }

    /// Server role: most endpoints (joins with the same participant id) one
    /// participant may have in a call; one more is refused with
    /// `CALL_FULL`. Default 8.
    pub fn max_endpoints_per_participant(mut self, max: usize) -> Self {
        self.max_endpoints_per_participant = max;
        self
    }

    /// Server role: how many senders (sessions) one member may open:
    /// `per_second` on average, `burst` at once. Each new session replaces
    /// notices fanned out to the call, so opening them is policed like
    /// messages: an open past it is refused (the sender is closed with
    /// `TRAFFIC_LIMIT`, as one over the traffic rules) and counts as a
    /// strike. The traffic rules' state is kept per member and channel
    /// across sessions, so a new session never brings a fresh allowance.
    /// Default 20 a second, bursts of 1,024 (every sender a member may have
    /// at once).
    pub fn session_opens(mut self, per_second: u64, burst: u64) -> Self {
        self.session_opens = (per_second, burst);
        self
    }

    /// Server role: how many messages over the traffic rules a member may
    /// send (each is dropped and counted) before its association is
    /// closed: `per_second` on average, `burst` at once. Default 10 a
    /// second, bursts of 100.
    pub fn policing_tolerance(mut self, per_second: u64, burst: u64) -> Self {
        self.policing_tolerance = (per_second, burst);
        self
    }

    /// What the application's handles read the time from (the traffic
    /// rules on `send`, send timestamps). Default: the system clock; a
    /// [`crate::sim::Network`] gives its hosts its virtual clock by itself.
    pub fn clock(mut self, clock: crate::sched::Clock) -> Self {
        self.clock = clock;
        self
    }
}

/// What a hub reports to its embedder.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// Someone joined a call this hub serves.
    ParticipantJoined {
        /// The call.
        call_id: String,
        /// Who.
        participant_id: ParticipantId,
        /// Their member number in the call.
        member: MemberId,
    },
    /// Someone left a call this hub serves (or their connection was lost).
    ParticipantLeft {
        /// The call.
        call_id: String,
        /// Who.
        participant_id: ParticipantId,
        /// Their member number in the call.
        member: MemberId,
        /// Why: "left" (a `Leave`), or what ended the member's association
        /// (the peer closed it, it timed out, its DTLS session or ICE
        /// consent ended, it broke the protocol, the server expelled it).
        reason: String,
    },
    /// A join was refused.
    JoinRejected {
        /// From where.
        remote: SocketAddr,
        /// The call asked for.
        call_id: String,
        /// Who asked.
        participant_id: String,
        /// Why.
        rejection: JoinRejection,
    },
}

/// Bounds of a [`HubConfig`] that contradict each other
/// ([`HubConfig::check`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A paused honest sender may send more than the server allows.
    #[error(
        "pause_overrun ({pause_overrun} bytes) must exceed what an honest client may send after \
         a pause: sender queue + uplink buffer + a message + SCTP receive buffer = {needed} bytes"
    )]
    PauseOverrunTooSmall {
        /// The configured overrun.
        pause_overrun: usize,
        /// What it must exceed.
        needed: usize,
    },
    /// A member's queue may outgrow the slow-consumer bound with data a
    /// pause could not stop.
    #[error(
        "slow_consumer_buffer ({slow_consumer_buffer} bytes) must exceed the largest member pause \
         backlog plus one sender's pause_overrun = {needed} bytes"
    )]
    SlowConsumerBufferTooSmall {
        /// The configured bound.
        slow_consumer_buffer: usize,
        /// What it must exceed.
        needed: usize,
    },
    /// A route's pause backlog may grow past its member's.
    #[error(
        "the largest route pause backlog ({route} bytes) must not exceed the largest member \
         pause backlog ({member} bytes)"
    )]
    PauseBacklogCaps {
        /// The largest route backlog.
        route: usize,
        /// The largest member backlog.
        member: usize,
    },
}

/// [`Hub::join_remote`] or [`Hub::join_local`] failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A call or participant id was empty or longer than 255 bytes.
    #[error("call and participant ids must be 1 to 255 bytes")]
    InvalidId,
    /// The join token is longer than a `Join` frame carries (4,096 bytes).
    #[error("a join token must be at most {max} bytes, this one has {len}")]
    TokenTooLong {
        /// The token's length.
        len: usize,
        /// The longest token a `Join` frame carries.
        max: usize,
    },
    /// The association could not be started.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The call refused the join: it is full, or the participant has as
    /// many endpoints in it as it admits.
    #[error("the call refused the join: {}", .0.reason)]
    Refused(JoinRejection),
    /// The hub runs DTLS ([`HubConfig::dtls`]) and was given no
    /// certificate fingerprint for this server
    /// ([`Hub::trust_dtls_server`](crate::Hub::trust_dtls_server)).
    #[error("no DTLS certificate fingerprint is known for server {0}")]
    UnknownServerCertificate(SocketAddr),
    /// The server's answer could not be used.
    #[error(transparent)]
    Signal(#[from] super::SignalError),
    /// The DTLS session to the server could not be started (the hub holds
    /// as many as it may).
    #[error("DTLS: {0}")]
    Dtls(String),
    /// A hosted participant must join on its call's home worker; this hub
    /// is another.
    #[error("call is homed on worker {home}, not this one")]
    WrongWorker {
        /// The worker that homes the call.
        home: usize,
    },
}

/// Counters since the hub was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Joins admitted.
    pub joins_accepted: u64,
    /// Joins refused.
    pub joins_rejected: u64,
    /// Messages forwarded, counted once per target.
    pub messages_forwarded: u64,
    /// Data for a session or participant list that is not current:
    /// discarded.
    pub messages_stale: u64,
    /// Frames that broke the protocol (answered with an error frame).
    pub protocol_errors: u64,
    /// Lossy messages the server dropped for a member that was behind:
    /// they waited past the latency budget, or its Lossy backlog was full.
    pub lossy_dropped_slow: u64,
    /// Members disconnected because they could not keep up (see
    /// [`HubConfig::slow_consumer_rate`] and
    /// [`HubConfig::slow_consumer_buffer`]).
    pub slow_consumers: u64,
    /// Times a Durable sender was paused because a receiver's backlog of
    /// it passed [`HubConfig::pause_backlog`] (backpressure; each pause
    /// ends when the backlog drains).
    pub senders_paused: u64,
    /// Messages dropped by server policing (over the traffic rules).
    pub policed: u64,
    /// Members disconnected for staying over the traffic rules.
    pub traffic_abusers: u64,
    /// Transport: UDP datagrams received.
    pub datagrams_received: u64,
    /// Transport: datagrams dropped unread: not SCTP, or for no association
    /// (and starting none).
    pub datagrams_dropped: u64,
    /// Transport: UDP datagrams sent.
    pub datagrams_sent: u64,
    /// Transport: SCTP messages received that were no valid engine message
    /// (each answered as a protocol error).
    pub messages_malformed: u64,
    /// Transport: SCTP messages on streams or with payload types the engine
    /// does not use (dropped).
    pub messages_ignored: u64,
    /// Transport: incoming associations refused (the hub was full, or
    /// shutting down).
    pub associations_refused: u64,
    /// Transport: INITs answered. Each holds nothing until its COOKIE-ECHO;
    /// far more of these than joins is an INIT flood.
    pub inits_answered: u64,
    /// Transport: COOKIE-ECHOs refused (forged, altered, stale, or from
    /// another address than their INIT).
    pub cookies_refused: u64,
    /// Transport: associations ended because the peer sent a message over
    /// the node's limit.
    pub oversize_messages: u64,
    /// DTLS ([`HubConfig::dtls`]): handshakes completed.
    pub dtls_handshakes: u64,
    /// DTLS: associations over it that negotiated RFC 9653's zero checksum
    /// (no CRC32c: DTLS's AEAD detects errors).
    pub zero_checksum_associations: u64,
    /// DTLS: sessions that failed (a handshake error, a certificate that
    /// is not the announced one, a handshake timeout).
    pub dtls_failures: u64,
    /// DTLS: datagrams dropped unread, not DTLS (RFC 7983's first byte), or
    /// DTLS from an address that was not allowed and has no session.
    pub dtls_dropped: u64,
    /// ICE + DTLS: peers whose address changed (a NAT rebinding, a move to
    /// another network) and whose DTLS session and associations followed.
    pub peer_moves: u64,
    /// ICE (server role): Binding requests refused (answered 400, 401, 420
    /// or 487): no USERNAME or MESSAGE-INTEGRITY, a username fragment no
    /// signalling announced, a wrong password, the wrong role, an unknown
    /// mandatory attribute. A peer given the wrong credentials shows here.
    pub ice_checks_refused: u64,
    /// ICE (server role): peers whose consent expired (RFC 7675: no valid
    /// check from their address for the consent timeout, 30 s): their
    /// DTLS session and associations were closed.
    pub ice_consent_expired: u64,
    /// Several workers: times a member's reads were held because the
    /// worker its call lives on was [`HubConfig::relay_backlog()`] behind.
    pub relay_holds: u64,
}

impl std::ops::AddAssign for HubStats {
    /// Adds `other`'s counters (an engine's workers, summed).
    fn add_assign(&mut self, other: Self) {
        let Self {
            joins_accepted,
            joins_rejected,
            messages_forwarded,
            messages_stale,
            protocol_errors,
            lossy_dropped_slow,
            slow_consumers,
            senders_paused,
            policed,
            traffic_abusers,
            datagrams_received,
            datagrams_dropped,
            datagrams_sent,
            messages_malformed,
            messages_ignored,
            associations_refused,
            inits_answered,
            cookies_refused,
            oversize_messages,
            dtls_handshakes,
            zero_checksum_associations,
            dtls_failures,
            dtls_dropped,
            peer_moves,
            ice_checks_refused,
            ice_consent_expired,
            relay_holds,
        } = other;
        self.relay_holds += relay_holds;
        self.peer_moves += peer_moves;
        self.ice_checks_refused += ice_checks_refused;
        self.ice_consent_expired += ice_consent_expired;
        self.dtls_handshakes += dtls_handshakes;
        self.zero_checksum_associations += zero_checksum_associations;
        self.dtls_failures += dtls_failures;
        self.dtls_dropped += dtls_dropped;
        self.joins_accepted += joins_accepted;
        self.joins_rejected += joins_rejected;
        self.messages_forwarded += messages_forwarded;
        self.messages_stale += messages_stale;
        self.protocol_errors += protocol_errors;
        self.lossy_dropped_slow += lossy_dropped_slow;
        self.slow_consumers += slow_consumers;
        self.senders_paused += senders_paused;
        self.policed += policed;
        self.traffic_abusers += traffic_abusers;
        self.datagrams_received += datagrams_received;
        self.datagrams_dropped += datagrams_dropped;
        self.datagrams_sent += datagrams_sent;
        self.messages_malformed += messages_malformed;
        self.messages_ignored += messages_ignored;
        self.associations_refused += associations_refused;
        self.inits_answered += inits_answered;
        self.cookies_refused += cookies_refused;
        self.oversize_messages += oversize_messages;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{HmacVerifier, WallClock};
    use crate::sched::TrafficPolicy;

    #[test]
    fn setters_set_their_field() {
        let ms = Duration::from_millis;
        let clock = crate::sched::Clock::manual(crate::sim::start_instant());
        let c = HubConfig::default()
            .node(NodeConfig::default().max_associations(1))
            .channel(ChannelConfig::default().traffic(TrafficPolicy::unlimited()))
            .join_timeout(ms(2))
            .seed(3)
            .uplink_buffer(4)
            .queue_target(ms(5))
            .lossy_drop_buffer(6)
            .slow_consumer_buffer(7)
            .max_senders_per_member(8)
            .policing_tolerance(9, 10)
            .slow_consumer_rate(11, ms(12))
            .pause_backlog(13, 14)
            .pause_overrun(15)
            .pause_backlog_max(16, 17)
            .clock(clock);
        assert_eq!(c.node.max_associations, 1);
        assert_eq!(c.channel.traffic, TrafficPolicy::unlimited());
        assert_eq!((c.join_timeout, c.seed, c.uplink_buffer), (ms(2), 3, 4));
        assert_eq!(c.queue_target, ms(5));
        assert_eq!((c.lossy_drop_buffer, c.slow_consumer_buffer), (6, 7));
        assert_eq!(
            (c.max_senders_per_member, c.policing_tolerance),
            (8, (9, 10))
        );
        assert_eq!((c.slow_consumer_min_kbps, c.slow_consumer_grace), (11, ms(12)));
        assert_eq!(
            (c.pause_route_backlog, c.pause_member_backlog, c.pause_overrun),
            (13, 14, 15)
        );
        assert_eq!(
            (c.pause_route_backlog_max, c.pause_member_backlog_max),
            (16, 17)
        );
        assert!(!c.clock.is_system());
        assert!(c.verifier.is_none() && !c.node.accept_incoming);
        assert_eq!((c.workers, c.worker), (1, 0));
    }

    #[test]
    fn the_defaults_pass_the_check_and_a_short_overrun_does_not() {
        let d = HubConfig::client();
        assert_eq!(d.check(), Ok(()));
        assert_eq!(
            (d.uplink_buffer, d.pause_overrun, d.slow_consumer_buffer),
            (4 << 20, 12 << 20, 24 << 20)
        );
        // The `wan` failure: an 8 MiB uplink buffer against a 2 MiB overrun.
        let needed = (1 << 20) + (8 << 20) + 257 * 1024 + (4 << 20);
        assert_eq!(
            d.clone().uplink_buffer(8 << 20).pause_overrun(2 << 20).check(),
            Err(ConfigError::PauseOverrunTooSmall {
                pause_overrun: 2 << 20,
                needed
            })
        );
        assert!(
            d.clone()
                .uplink_buffer(8 << 20)
                .pause_overrun(needed + 1)
                .slow_consumer_buffer(64 << 20)
                .check()
                .is_ok()
        );
        // The slow-consumer bound is judged against the largest member
        // backlog the path may size the pause to.
        assert_eq!(
            d.clone().slow_consumer_buffer(20 << 20).check(),
            Err(ConfigError::SlowConsumerBufferTooSmall {
                slow_consumer_buffer: 20 << 20,
                needed: (8 << 20) + (12 << 20)
            })
        );
        // With the sizing off (caps at the floors), the floors count.
        let fixed = d.clone().pause_backlog_max(0, 0);
        assert_eq!(fixed.pause_backlog_bounds(), (128 << 10, 1 << 20));
        assert_eq!(
            fixed.slow_consumer_buffer(12 << 20).check(),
            Err(ConfigError::SlowConsumerBufferTooSmall {
                slow_consumer_buffer: 12 << 20,
                needed: (1 << 20) + (12 << 20)
            })
        );
        assert_eq!(
            d.pause_backlog_max(32 << 20, 16 << 20).check(),
            Err(ConfigError::PauseBacklogCaps {
                route: 32 << 20,
                member: 16 << 20
            })
        );
    }

    #[test]
    fn the_server_role_comes_from_the_constructor_only() {
        let clock = WallClock::new(crate::sim::start_instant(), Duration::ZERO);
        let verifier = Arc::new(HmacVerifier::new(b"secret", clock).expect("a secret"));
        let c = HubConfig::server(verifier).join_timeout(Duration::from_secs(1));
        assert!(c.verifier.is_some() && c.node.accept_incoming);
        // A node given later does not take the role away from the hub.
        let hub = super::super::Hub::new(c.node(NodeConfig::client()));
        assert!(hub.node().config().accept_incoming);
        assert!(HubConfig::client().verifier.is_none());
    }
}
