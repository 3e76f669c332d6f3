//! Node configuration and the SCTP transport tuning derived from it.

use std::time::Duration;

use dcsctp::api::Options;

/// Largest SCTP packet a node sends, the UDP payload of one datagram:
/// 1,232 bytes (no path MTU discovery), what IPv6 and UDP headers leave of
/// a 1,280-byte path (the smallest IPv6 allows).
pub(crate) const SCTP_PACKET_BYTES: usize = 1232;

/// The Lossy stream's weight in SCTP's stream scheduler (weighted fair
/// queueing; the Durable stream has dcsctp's default, 256): 64 times the
/// Durable stream's share when both have data. Lossy traffic is capped by
/// the traffic rules, so in practice it goes first.
pub(crate) const LOSSY_STREAM_PRIORITY: u16 = 256 * 64;

/// Largest SCTP user message that leaves in one packet: the packet less the
/// SCTP common header (12 bytes) and one I-DATA chunk header (20 bytes; a
/// DATA chunk's is 16), so a message up to this size is one chunk, never
/// fragmented, whichever the association negotiated: 1,200 bytes.
pub const MAX_PACKET_MESSAGE: usize = SCTP_PACKET_BYTES - 12 - 20;

/// Which congestion control a node's associations run
/// ([`NodeConfig::congestion_control()`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CongestionControl {
    /// RFC 9260 § 7.2: Reno's slow start and additive increase, the window
    /// halved on every loss. Random loss `p` caps an association at about
    /// `1.22 × MTU ÷ (RTT × √p)`: 0.93 MB/s at 50 ms and 0.1 %.
    Standard,
    /// The default: CUBIC's growth (RFC 9438), HyStart++ (RFC 9406), and
    /// congestion judged once per round trip, as BBRv2 judges loss: a round
    /// that lost more than 2 % of a window, or whose smallest round trip
    /// shows a standing queue of half the path's minimum round trip (5 ms at
    /// least), shrinks the
    /// window by 0.7; random losses below that are repaired without it
    /// (vendored dcsctp, change 11 in `vendor/README.md`).
    LossTolerant,
}

/// How the SCTP node under a [`Hub`](crate::Hub) behaves
/// ([`HubConfig::node`](crate::HubConfig::node)). `Default` gives the
/// values below.
///
/// Built with chainable setters named after the fields, each of which says
/// its default; the fields are public for reading:
///
/// ```
/// # use std::time::Duration;
/// # use dcengine::NodeConfig;
/// let config = NodeConfig::default()
///     .max_associations(1_000)
///     .idle_timeout(Duration::from_secs(30));
/// assert_eq!(config.max_associations, 1_000);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Whether peers may start associations (server role); see
    /// [`NodeConfig::accept_incoming()`].
    pub accept_incoming: bool,
    /// Most associations held at once; see
    /// [`NodeConfig::max_associations()`].
    pub max_associations: usize,
    /// Largest SCTP user message sent or accepted; see
    /// [`NodeConfig::max_sctp_message_size()`].
    pub max_sctp_message_size: u32,
    /// Receive buffer per association, in bytes; see
    /// [`NodeConfig::receive_buffer()`].
    pub receive_buffer: u32,
    /// Initial retransmission timeout; see [`NodeConfig::rto_initial()`].
    pub rto_initial: Duration,
    /// Smallest retransmission timeout; see [`NodeConfig::rto_min()`].
    pub rto_min: Duration,
    /// Largest retransmission timeout; see [`NodeConfig::rto_max()`].
    pub rto_max: Duration,
    /// How long a Lossy message may wait before it is abandoned; see
    /// [`NodeConfig::lossy_lifetime()`].
    pub lossy_lifetime: Duration,
    /// Silence after which an association is closed as timed out; see
    /// [`NodeConfig::idle_timeout()`].
    pub idle_timeout: Duration,
    /// Time a handshake may take; see [`NodeConfig::handshake_timeout()`].
    pub handshake_timeout: Duration,
    /// Silence after which a keep-alive is sent; see
    /// [`NodeConfig::keepalive_interval()`].
    pub keepalive_interval: Duration,
    /// Time a graceful close may go without progress; see
    /// [`NodeConfig::close_timeout()`].
    pub close_timeout: Duration,
    /// Time a graceful close may take in all; see
    /// [`NodeConfig::close_limit()`].
    pub close_limit: Duration,
    /// SHUTDOWN retransmissions into silence before the peer is given up;
    /// see [`NodeConfig::max_shutdown_retransmits()`].
    pub max_shutdown_retransmits: u32,
    /// SCTP streams per direction; see [`NodeConfig::streams()`].
    pub streams: u16,
    /// SCTP port on both ends of associations this node starts; see
    /// [`NodeConfig::sctp_port()`].
    pub sctp_port: u16,
    /// Seeds the node's random numbers; see [`NodeConfig::seed()`].
    pub seed: u64,
    /// The key that seals handshake cookies; see
    /// [`NodeConfig::cookie_key()`].
    pub cookie_key: [u8; 32],
    /// The congestion control of the node's associations; see
    /// [`NodeConfig::congestion_control()`].
    pub congestion_control: CongestionControl,
    /// Offer RFC 9653's zero checksum, DTLS being the alternate error
    /// detection: set by the hub when it runs DTLS (DTLS's AEAD already
    /// detects any change), never over plain UDP.
    pub(crate) zero_checksum: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            accept_incoming: false,
            max_associations: 10_000,
            max_sctp_message_size: 256 * 1024 + 1024,
            receive_buffer: 4 * 1024 * 1024,
            rto_initial: Duration::from_millis(500),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(5),
            lossy_lifetime: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            close_timeout: Duration::from_secs(3),
            close_limit: Duration::from_secs(60),
            max_shutdown_retransmits: 4,
            streams: 16,
            sctp_port: 5000,
            seed: rand::random(),
            cookie_key: rand::random(),
            congestion_control: CongestionControl::LossTolerant,
            zero_checksum: false,
        }
    }
}

impl NodeConfig {
    /// A server's configuration: accepts incoming associations.
    pub fn server() -> Self {
        Self {
            accept_incoming: true,
            ..Self::default()
        }
    }

    /// A client's configuration: only starts associations.
    pub fn client() -> Self {
        Self::default()
    }

    /// Whether to accept associations that peers start (server role).
    /// Default `false`. A [`crate::hub::Hub`] with the server role
    /// ([`crate::hub::HubConfig::server`]) accepts them whatever this says.
    pub fn accept_incoming(mut self, accept: bool) -> Self {
        self.accept_incoming = accept;
        self
    }

    /// Most associations the node keeps at once; new ones beyond it are
    /// refused. Default 10,000.
    pub fn max_associations(mut self, max: usize) -> Self {
        self.max_associations = max;
        self
    }

    /// Largest SCTP user message (one encoded engine message or batch) sent
    /// or accepted, in bytes. Default 256 KiB + 1 KiB: the largest
    /// configurable application message plus framing.
    pub fn max_sctp_message_size(mut self, bytes: u32) -> Self {
        self.max_sctp_message_size = bytes;
        self
    }

    /// Receive buffer per association, in bytes: the SCTP receive window's
    /// ceiling. Nothing is set aside for it: an association holds what
    /// arrived and is not yet delivered (out of order behind a lost packet,
    /// or a message not yet whole), so an idle one costs nothing and the
    /// window a peer uses follows what its path carries; a hostile peer can
    /// make the node hold this much (out of order data it never completes):
    /// the worst case is this times the associations, 40 GiB for 10,000 at
    /// the default, so a server that takes many untrusted peers sizes it to
    /// its memory (`dcengine serve --sctp-receive-buffer`). On a long path it
    /// must hold about two in-flight windows (one behind a loss while the
    /// next arrives). Default 4 MiB.
    pub fn receive_buffer(mut self, bytes: u32) -> Self {
        self.receive_buffer = bytes;
        self
    }

    /// The congestion control of the node's associations (what each sends;
    /// the peer needs no support, and the wire is unchanged). Default
    /// [`CongestionControl::LossTolerant`].
    pub fn congestion_control(mut self, congestion_control: CongestionControl) -> Self {
        self.congestion_control = congestion_control;
        self
    }

    /// Initial retransmission timeout. Default 500 ms.
    pub fn rto_initial(mut self, rto: Duration) -> Self {
        self.rto_initial = rto;
        self
    }

    /// Smallest retransmission timeout. Default 200 ms.
    pub fn rto_min(mut self, rto: Duration) -> Self {
        self.rto_min = rto;
        self
    }

    /// Largest retransmission timeout. Default 5 s.
    pub fn rto_max(mut self, rto: Duration) -> Self {
        self.rto_max = rto;
        self
    }

    /// How long a Lossy message may wait for (re)transmission before it is
    /// abandoned (SCTP partial reliability, RFC 3758). Default 250 ms.
    pub fn lossy_lifetime(mut self, lifetime: Duration) -> Self {
        self.lossy_lifetime = lifetime;
        self
    }

    /// An association from which nothing has been received for this long is
    /// closed as timed out. Default 15 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// An association this node started whose handshake has not completed
    /// after this long is closed. Default 5 s. (A peer's handshake holds no
    /// state here until its COOKIE-ECHO, which completes it.)
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// When nothing has been received for this long, the node sends a
    /// keep-alive so a live peer's acknowledgement arrives. Default 5 s.
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// A graceful close delivers what was queued first; it is forced when
    /// the peer acknowledges nothing more for this long (it is gone or
    /// stopped reading), or the SHUTDOWN exchange does not complete within
    /// it once everything is acknowledged. A close on a slow path that
    /// keeps making progress goes on (up to [`NodeConfig::close_limit()`]).
    /// A forced close with bytes still unacknowledged ends with
    /// `CloseReason::Undelivered` (the application sees it in `CallState::Ended`).
    /// Default 3 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// The longest a graceful close may take, progress or not (a peer that
    /// acknowledges a little at a time cannot hold a close open for ever).
    /// Default 60 s.
    pub fn close_limit(mut self, limit: Duration) -> Self {
        self.close_limit = limit;
        self
    }

    /// After this many retransmissions of SHUTDOWN (or SHUTDOWN-ACK) with
    /// nothing heard from the peer in between, the node ends the
    /// association: the peer is gone (it vanished, or already dropped the
    /// association and stays silent about it, as some stacks do). The last
    /// one waits one more retransmission timeout, so a silent peer is given
    /// up about `RTO × (2^(n+1) − 1)` after the first SHUTDOWN, the RTO
    /// doubling each time up to `rto_max`: 31 RTOs with the default 4, 6.2 s
    /// at the 200 ms floor. [`NodeConfig::close_timeout()`] caps a close
    /// this node started; this also ends one the peer started whose
    /// SHUTDOWN-COMPLETE was lost. Only the timer's retransmissions count
    /// (each packet from the peer resets the count), so a peer that is
    /// still sending (finishing its own data first) is waited for; but a
    /// live peer can be silent for a while, waiting out its own
    /// retransmission timeout (dcsctp's is about a second at least), which
    /// is why the default is not lower. Default 4.
    pub fn max_shutdown_retransmits(mut self, retransmits: u32) -> Self {
        self.max_shutdown_retransmits = retransmits;
        self
    }

    /// SCTP streams per direction negotiated in INIT. The engine uses two;
    /// the rest are room for channels opened the standard way (DCEP).
    /// Default 16.
    pub fn streams(mut self, streams: u16) -> Self {
        self.streams = streams;
        self
    }

    /// SCTP port (in the SCTP common header, not the UDP port) used on both
    /// ends when this node starts an association. Default 5000.
    pub fn sctp_port(mut self, port: u16) -> Self {
        self.sctp_port = port;
        self
    }

    /// Seeds the node's random numbers: each association's verification
    /// tags and initial TSNs. Default: from the operating system. A
    /// [`Hub`](crate::Hub) sets it from [`HubConfig::seed`](crate::HubConfig::seed),
    /// so a simulated run is reproducible; in production it must stay
    /// secret (verification tags protect associations from blind injection).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The key that seals the cookies of this node's handshakes (an
    /// HMAC-SHA256 over the cookie, the peer's address and the time), so
    /// only a peer that received the node's INIT-ACK can complete one.
    /// Default: random. Nodes that answer on the same UDP port must share
    /// it (an engine's workers do: they clone one configuration).
    pub fn cookie_key(mut self, key: [u8; 32]) -> Self {
        self.cookie_key = key;
        self
    }

    /// The dcsctp options for this configuration (ports and seed are set
    /// per socket).
    ///
    /// Why these values, against dcsctp's defaults:
    /// - RTO initial/min/max 500 ms / 200 ms / 5 s (dcsctp: 500 ms / 400 ms
    ///   / 60 s), and the INIT, COOKIE-ECHO and SHUTDOWN timers starting at
    ///   the initial RTO. Data-channel traffic is real-time (chat, cursors,
    ///   control); a 5 s ceiling keeps a recovering path probed often; a
    ///   dead peer is detected by the node's idle timeout, not by RTO
    ///   exhaustion.
    /// - Unlimited DATA and INIT retransmissions (dcsctp: 10 and 8, then
    ///   ABORT): Durable means lossless, so the association itself decides
    ///   failure through the idle timeout (or the handshake timeout) and
    ///   reports it, never by silently abandoning Durable data.
    /// - Receive buffer 4 MiB (dcsctp: 5 MiB): it must hold at least one
    ///   largest message (256 KiB) plus room to keep the window open, two
    ///   in-flight windows on a long path (the `wan` path carries 30 MB/s
    ///   with about 1.7 MB in flight; 512 KiB held it to 10 MB/s), and it
    ///   bounds what a peer can make an association hold (memory is used
    ///   only for data held, none while idle).
    /// - No send buffer limit of dcsctp's own (1 GiB): the hub bounds what
    ///   it hands an association ([`HubConfig::uplink_buffer`](crate::HubConfig::uplink_buffer),
    ///   the slow-consumer limits), and a refusal here would drop a Durable
    ///   message the hub already accepted.
    /// - Max message size both ways sized for the largest configurable
    ///   application message plus framing; the per-channel limit (32 KiB by
    ///   default) is enforced above SCTP with a clear error.
    /// - No SCTP heartbeats: the node sends its own keep-alives
    ///   ([`NodeConfig::keepalive_interval()`]), which the peer's SACKs
    ///   answer.
    /// - The I bit (immediate SACK, RFC 7053) only where the node asks for
    ///   it ([`Node::set_immediate_acks`](crate::proto::Node::set_immediate_acks),
    ///   and the last packet before a close), not on every packet while the
    ///   congestion window is under 10 packets (dcsctp's default, which
    ///   under loss doubles the packets a receiver sends).
    /// - An initial congestion window of 4 packets (RFC 9260's, about
    ///   4,400 bytes; dcsctp: 10): the engine starts many associations to
    ///   members whose paths it does not know, and what a slow path holds
    ///   in flight delays its close and its `Leave`.
    /// - A small number of streams: the engine uses two.
    /// - User message interleaving (I-DATA, RFC 8260; dcsctp: off), used
    ///   when the peer offers it too: the Lossy stream is scheduled far
    ///   ahead of the Durable one ([`LOSSY_STREAM_PRIORITY`]), and its
    ///   messages interleave with the fragments of a large Durable message
    ///   already handed to SCTP instead of waiting for all of it.
    /// - 1,232-byte packets (dcsctp: 1,191, which leaves room for DTLS).
    /// - The loss-tolerant congestion control (dcsctp: RFC 9260's Reno;
    ///   [`NodeConfig::congestion_control()`]).
    pub(crate) fn sctp_options(&self) -> Options {
        const UNBOUNDED: usize = 1 << 30;
        Options {
            local_port: self.sctp_port,
            remote_port: self.sctp_port,
            announced_maximum_incoming_streams: self.streams,
            announced_maximum_outgoing_streams: self.streams,
            mtu: SCTP_PACKET_BYTES,
            max_message_size: self.max_sctp_message_size as usize,
            max_receiver_window_buffer_size: self.receive_buffer as usize,
            max_send_buffer_size: UNBOUNDED,
            per_stream_send_queue_limit: UNBOUNDED,
            total_buffered_amount_low_threshold: 0,
            rto_initial: self.rto_initial,
            rto_min: self.rto_min,
            rto_max: self.rto_max,
            t1_init_timeout: self.rto_initial,
            t1_cookie_timeout: self.rto_initial,
            t2_shutdown_timeout: self.rto_initial,
            max_timer_backoff_duration: Some(self.rto_max),
            heartbeat_interval: Duration::ZERO,
            max_retransmissions: None,
            max_init_retransmits: None,
            enable_partial_reliability: true,
            immediate_sack_under_cwnd_mtus: 0,
            cwnd_mtus_initial: 4,
            enable_message_interleaving: true,
            zero_checksum_alternate_error_detection_method: if self.zero_checksum {
                dcsctp::api::ZERO_CHECKSUM_ALTERNATE_ERROR_DETECTION_METHOD_LOWER_LAYER_DTLS
            } else {
                dcsctp::api::ZERO_CHECKSUM_ALTERNATE_ERROR_DETECTION_METHOD_NONE
            },
            congestion_control: match self.congestion_control {
                CongestionControl::Standard => dcsctp::api::CongestionControl::Rfc9260,
                CongestionControl::LossTolerant => dcsctp::api::CongestionControl::LossTolerant,
            },
            ..Options::default()
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_set_their_field() {
        let ms = Duration::from_millis;
        let c = NodeConfig::client()
            .accept_incoming(true)
            .max_associations(1)
            .max_sctp_message_size(2)
            .receive_buffer(3)
            .rto_initial(ms(4))
            .rto_min(ms(5))
            .rto_max(ms(6))
            .lossy_lifetime(ms(7))
            .idle_timeout(ms(8))
            .handshake_timeout(ms(9))
            .keepalive_interval(ms(11))
            .close_timeout(ms(12))
            .close_limit(ms(18))
            .max_shutdown_retransmits(13)
            .streams(14)
            .sctp_port(15)
            .seed(16)
            .cookie_key([17; 32])
            .congestion_control(CongestionControl::Standard);
        assert_eq!(c.congestion_control, CongestionControl::Standard);
        assert!(c.accept_incoming);
        assert_eq!(
            (
                c.max_associations,
                c.max_sctp_message_size,
                c.receive_buffer
            ),
            (1, 2, 3)
        );
        assert_eq!((c.rto_initial, c.rto_min, c.rto_max), (ms(4), ms(5), ms(6)));
        assert_eq!(
            (c.lossy_lifetime, c.idle_timeout, c.handshake_timeout),
            (ms(7), ms(8), ms(9))
        );
        assert_eq!((c.seed, c.cookie_key), (16, [17; 32]));
        assert_eq!(
            (c.keepalive_interval, c.close_timeout, c.close_limit),
            (ms(11), ms(12), ms(18))
        );
        assert_eq!(
            (c.max_shutdown_retransmits, c.streams, c.sctp_port),
            (13, 14, 15)
        );
        // The defaults the setters' docs state.
        let d = NodeConfig::default();
        assert!(!d.accept_incoming && NodeConfig::server().accept_incoming);
        assert_eq!(d.max_associations, 10_000);
        assert_eq!(d.congestion_control, CongestionControl::LossTolerant);
        assert_eq!(
            (d.max_sctp_message_size, d.receive_buffer),
            (257 * 1024, 4 * 1024 * 1024)
        );
        assert_eq!(
            (d.rto_initial, d.rto_min, d.rto_max),
            (ms(500), ms(200), ms(5000))
        );
        assert_eq!(
            (d.lossy_lifetime, d.idle_timeout, d.handshake_timeout),
            (ms(250), ms(15_000), ms(5000))
        );
        assert_eq!(
            (d.keepalive_interval, d.close_timeout, d.close_limit),
            (ms(5000), ms(3000), ms(60_000))
        );
        assert_eq!(
            (d.max_shutdown_retransmits, d.streams, d.sctp_port),
            (4, 16, 5000)
        );
    }
}
