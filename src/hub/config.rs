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

/// How a hub behaves.
#[derive(Clone)]
#[non_exhaustive]
pub struct HubConfig {
    /// The node underneath. [`HubConfig::server`] sets it to accept
    /// associations.
    pub node: NodeConfig,
    /// Limits and timers of the DataChannel feature.
    pub channel: ChannelConfig,
    /// The server role: joins are checked with this. `None`: the hub
    /// accepts no joins from the network.
    pub verifier: Option<Arc<dyn JoinVerifier>>,
    /// An association that has not joined within this long is closed.
    /// Default 10 s.
    pub join_timeout: Duration,
    /// Seeds the random channel-id picker (each call mixes in its own key).
    pub seed: u64,
    /// The most an association to a server may have queued in SCTP (in
    /// flight and unsent) before this hub stops taking messages from its
    /// senders' queues. Below it the egress budget adapts to the path
    /// (about delivery rate × (round trip + [`HubConfig::queue_target`])):
    /// the scheduler decides what goes next only if
    /// SCTP's own FIFO and the path's bottleneck queue stay shallow. Full
    /// sender queues then push back (Durable sends fail with
    /// `MessageFailureForBandwidth`). The server's egress to each member
    /// uses the same bound. Default 256 KiB.
    pub uplink_buffer: usize,
    /// How much standing queue the egress budget (uplinks, and the server's
    /// per-member egress) allows on top of the path's round trip.
    /// Default 5 ms.
    pub queue_target: Duration,
    /// Server role: Lossy bytes that may wait in one member's egress queue
    /// (the server's per-member scheduler, ahead of its SCTP queue); more
    /// are dropped on arrival. Lossy messages are also dropped when they
    /// waited longer than `channel.lossy_latency_budget`. Default 256 KiB.
    pub lossy_drop_buffer: usize,
    /// Server role: Durable and control bytes that may wait in one member's
    /// egress queue; one more and the member is a slow consumer: it is
    /// sent `Leave` (`SLOW_CONSUMER`) and its association closed (Durable
    /// messages cannot be dropped, and the server will not hold them
    /// without bound). Must exceed a sender's burst. Default 4 MiB.
    pub slow_consumer_buffer: usize,
    /// Server role: most open senders one member may have. Default 1,024.
    pub max_senders_per_member: usize,
    /// Server role: messages over the traffic rules a member may send
    /// (each is dropped and counted) before its association is closed:
    /// `(per second, burst)`. Default 10 a second, bursts of 100.
    pub policing_tolerance: (u64, u64),
    /// What the application's handles read the time from (the traffic
    /// rules on `send`, send timestamps). Default: the system clock; a
    /// `sim::Network` gives its hosts its virtual clock.
    pub clock: crate::sched::Clock,
    /// How many workers (hubs) the engine runs, each with its own socket
    /// on the shared port. Default 1. With several, a call is homed on
    /// [`home_worker`]`(call id, workers)` and members whose association
    /// lives on another worker are relayed (see [`Hub::poll_relay`]).
    pub(crate) workers: usize,
    /// Which of the engine's workers this hub is: `0..workers`. Default 0.
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

impl HubConfig {
    /// A client: joins calls on servers, accepts nothing.
    pub fn client() -> Self {
        Self {
            node: NodeConfig::client(),
            channel: ChannelConfig::default(),
            verifier: None,
            join_timeout: Duration::from_secs(10),
            seed: rand::random(),
            uplink_buffer: 256 * 1024,
            queue_target: Duration::from_millis(5),
            lossy_drop_buffer: 256 * 1024,
            slow_consumer_buffer: 4 * 1024 * 1024,
            max_senders_per_member: 1024,
            policing_tolerance: (10, 100),
            clock: crate::sched::Clock::system(),
            workers: 1,
            worker: 0,
        }
    }

    /// A server admitting the joins `verifier` accepts.
    pub fn server(verifier: Arc<dyn JoinVerifier>) -> Self {
        Self {
            node: NodeConfig::server(),
            verifier: Some(verifier),
            ..Self::client()
        }
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

/// [`Hub::join_remote`] or [`Hub::join_local`] failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// A call or participant id was empty or longer than 255 bytes.
    #[error("call and participant ids must be 1 to 255 bytes")]
    InvalidId,
    /// The association could not be started.
    #[error(transparent)]
    Connect(#[from] ConnectError),
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
    /// Members disconnected because they could not keep up (their Durable
    /// backlog passed [`HubConfig::slow_consumer_buffer`]).
    pub slow_consumers: u64,
    /// Messages dropped by server policing (over the traffic rules).
    pub policed: u64,
    /// Members disconnected for staying over the traffic rules.
    pub traffic_abusers: u64,
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
            policed,
            traffic_abusers,
        } = other;
        self.joins_accepted += joins_accepted;
        self.joins_rejected += joins_rejected;
        self.messages_forwarded += messages_forwarded;
        self.messages_stale += messages_stale;
        self.protocol_errors += protocol_errors;
        self.lossy_dropped_slow += lossy_dropped_slow;
        self.slow_consumers += slow_consumers;
        self.policed += policed;
        self.traffic_abusers += traffic_abusers;
    }
}
