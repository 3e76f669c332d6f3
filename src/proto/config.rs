//! Node configuration and the SCTP transport tuning derived from it.

use std::sync::Arc;
use std::time::Duration;

use sctp_proto::TransportConfig;

/// Largest SCTP packet a node sends, the UDP payload of one datagram:
/// sctp-proto's MTU (it does no path MTU discovery), 1,228 bytes, which
/// leaves room for IPv6, UDP and DTLS headers within a 1,280-byte path.
pub(crate) const SCTP_PACKET_BYTES: usize = 1228;

/// Largest SCTP user message that leaves in one packet: the packet less the
/// SCTP common header (12 bytes) and one DATA chunk header (16 bytes). The
/// node gives sctp-proto this as its maximum payload, so a message up to
/// this size is one DATA chunk, never fragmented.
pub const MAX_PACKET_MESSAGE: usize = SCTP_PACKET_BYTES - 12 - 16;

/// How the SCTP node under a [`Hub`](crate::Hub) behaves
/// ([`HubConfig::node`](crate::HubConfig::node)). `Default` gives the
/// values below.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Accept associations that peers start (server role). Default `false`.
    pub accept_incoming: bool,
    /// Most associations the node keeps at once; new ones beyond it are
    /// refused. Default 10,000.
    pub max_associations: usize,
    /// Largest SCTP user message (one encoded engine message or batch) sent
    /// or accepted. Default 256 KiB + 1 KiB: the largest configurable
    /// application message plus framing.
    pub max_sctp_message_size: u32,
    /// Receive buffer per association, in bytes. Default 512 KiB.
    pub receive_buffer: u32,
    /// Initial retransmission timeout. Default 500 ms.
    pub rto_initial: Duration,
    /// Smallest retransmission timeout. Default 200 ms.
    pub rto_min: Duration,
    /// Largest retransmission timeout. Default 5 s.
    pub rto_max: Duration,
    /// How long a Lossy message may wait for (re)transmission before it is
    /// abandoned (SCTP partial reliability, RFC 3758). Default 250 ms.
    pub lossy_lifetime: Duration,
    /// An association from which nothing has been received for this long is
    /// closed as timed out. Default 15 s.
    pub idle_timeout: Duration,
    /// An association whose handshake has not completed after this long is
    /// closed. Default 5 s (sctp-proto keeps state from the first INIT, so
    /// half-open associations must not live long).
    pub handshake_timeout: Duration,
    /// Most associations in their handshake at once; further INITs are
    /// refused, so a flood of spoofed INITs cannot take every slot.
    /// Default 1,000.
    pub max_handshaking: usize,
    /// When nothing has been received for this long, the node sends a
    /// keep-alive so a live peer's acknowledgement arrives. Default 5 s.
    pub keepalive_interval: Duration,
    /// A graceful close that has not completed after this long is forced.
    /// Default 3 s.
    pub close_timeout: Duration,
    /// After this many retransmissions of SHUTDOWN (or SHUTDOWN-ACK) with
    /// nothing heard from the peer in between, the node ends the
    /// association: the peer is gone (it vanished, or already dropped the
    /// association and, like sctp-proto, stays silent about it). The last
    /// one waits one more retransmission timeout, so a silent peer is given
    /// up about `RTO × (2^(n+1) − 1)` after the first SHUTDOWN, the RTO
    /// doubling each time up to `rto_max`: 7 RTOs with the default 2, 1.4 s
    /// at the 200 ms floor. [`NodeConfig::close_timeout`] caps a close this
    /// node started; this also ends one the peer started whose
    /// SHUTDOWN-COMPLETE was lost. A peer that is still sending (finishing
    /// its own data first) is waited for. Default 2.
    pub max_shutdown_retransmits: u32,
    /// SCTP streams per direction negotiated in INIT. The engine uses two;
    /// the rest are room for channels opened the standard way (DCEP).
    /// Default 16.
    pub streams: u16,
    /// SCTP port (in the SCTP common header, not the UDP port) used on both
    /// ends when this node starts an association. Default 5000.
    pub sctp_port: u16,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            accept_incoming: false,
            max_associations: 10_000,
            max_sctp_message_size: 256 * 1024 + 1024,
            receive_buffer: 512 * 1024,
            rto_initial: Duration::from_millis(500),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(5),
            lossy_lifetime: Duration::from_millis(250),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(5),
            max_handshaking: 1000,
            keepalive_interval: Duration::from_secs(5),
            close_timeout: Duration::from_secs(3),
            max_shutdown_retransmits: 2,
            streams: 16,
            sctp_port: sctp_proto::DEFAULT_SCTP_PORT,
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

    /// The sctp-proto transport settings for this configuration.
    ///
    /// Why these values, against sctp-proto's RFC 4960 defaults:
    /// - RTO initial/min/max 500 ms / 200 ms / 5 s instead of 3 s / 1 s /
    ///   60 s. Data-channel traffic is real-time (chat, cursors, control);
    ///   a message recovered after RFC 4960's 3 s initial RTO or 1 s floor is
    ///   usually useless, and WebRTC stacks (dcSCTP, usrsctp in browsers) run
    ///   with sub-second initial RTOs for the same reason. A 5 s ceiling
    ///   keeps a recovering path probed often; a dead peer is detected by
    ///   the node's idle timeout, not by RTO exhaustion.
    /// - Unlimited DATA retransmissions (sctp-proto's default, as in
    ///   WebRTC): Durable means lossless, so the association itself decides
    ///   failure through the idle timeout and reports it, never by silently
    ///   abandoning Durable data.
    /// - Receive buffer 512 KiB instead of 1 MiB: it must hold at least one
    ///   largest message (256 KiB) plus room to keep the window open, and
    ///   it bounds memory per association (10,000 associations × 512 KiB is
    ///   the worst case a server must budget for).
    /// - Max message size both ways sized for the largest configurable
    ///   application message plus framing; the per-channel limit (32 KiB by
    ///   default) is enforced above SCTP with a clear error.
    /// - A small number of streams: each stream the peer opens costs state,
    ///   and sctp-proto does not bound the streams a peer can create.
    pub(crate) fn transport(&self) -> Arc<TransportConfig> {
        Arc::new(
            TransportConfig::default()
                .with_max_receive_buffer_size(self.receive_buffer)
                .with_max_send_message_size(self.max_sctp_message_size)
                .with_max_receive_message_size(self.max_sctp_message_size)
                .with_max_num_inbound_streams(self.streams)
                .with_max_num_outbound_streams(self.streams)
                .with_rto_initial_ms(millis(self.rto_initial))
                .with_rto_min_ms(millis(self.rto_min))
                .with_rto_max_ms(millis(self.rto_max))
                .with_max_data_retransmits(None)
                .with_local_port(self.sctp_port)
                .with_remote_port(self.sctp_port),
        )
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
