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
    /// Most associations in their handshake at once; see
    /// [`NodeConfig::max_handshaking()`].
    pub max_handshaking: usize,
    /// Silence after which a keep-alive is sent; see
    /// [`NodeConfig::keepalive_interval()`].
    pub keepalive_interval: Duration,
    /// Time a graceful close may take; see [`NodeConfig::close_timeout()`].
    pub close_timeout: Duration,
    /// SHUTDOWN retransmissions into silence before the peer is given up;
    /// see [`NodeConfig::max_shutdown_retransmits()`].
    pub max_shutdown_retransmits: u32,
    /// SCTP streams per direction; see [`NodeConfig::streams()`].
    pub streams: u16,
    /// SCTP port on both ends of associations this node starts; see
    /// [`NodeConfig::sctp_port()`].
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

    /// Receive buffer per association, in bytes. Default 512 KiB.
    pub fn receive_buffer(mut self, bytes: u32) -> Self {
        self.receive_buffer = bytes;
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

    /// An association whose handshake has not completed after this long is
    /// closed. Default 5 s (sctp-proto keeps state from the first INIT, so
    /// half-open associations must not live long).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Most associations in their handshake at once; further INITs are
    /// refused, so a flood of spoofed INITs cannot take every slot.
    /// Default 1,000.
    pub fn max_handshaking(mut self, max: usize) -> Self {
        self.max_handshaking = max;
        self
    }

    /// When nothing has been received for this long, the node sends a
    /// keep-alive so a live peer's acknowledgement arrives. Default 5 s.
    pub fn keepalive_interval(mut self, interval: Duration) -> Self {
        self.keepalive_interval = interval;
        self
    }

    /// A graceful close that has not completed after this long is forced.
    /// Default 3 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// After this many retransmissions of SHUTDOWN (or SHUTDOWN-ACK) with
    /// nothing heard from the peer in between, the node ends the
    /// association: the peer is gone (it vanished, or already dropped the
    /// association and, like sctp-proto, stays silent about it). The last
    /// one waits one more retransmission timeout, so a silent peer is given
    /// up about `RTO × (2^(n+1) − 1)` after the first SHUTDOWN, the RTO
    /// doubling each time up to `rto_max`: 7 RTOs with the default 2, 1.4 s
    /// at the 200 ms floor. [`NodeConfig::close_timeout()`] caps a close
    /// this node started; this also ends one the peer started whose
    /// SHUTDOWN-COMPLETE was lost. A peer that is still sending (finishing
    /// its own data first) is waited for. Default 2.
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
            .max_handshaking(10)
            .keepalive_interval(ms(11))
            .close_timeout(ms(12))
            .max_shutdown_retransmits(13)
            .streams(14)
            .sctp_port(15);
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
        assert_eq!(c.max_handshaking, 10);
        assert_eq!((c.keepalive_interval, c.close_timeout), (ms(11), ms(12)));
        assert_eq!(
            (c.max_shutdown_retransmits, c.streams, c.sctp_port),
            (13, 14, 15)
        );
        // The defaults the setters' docs state.
        let d = NodeConfig::default();
        assert!(!d.accept_incoming && NodeConfig::server().accept_incoming);
        assert_eq!((d.max_associations, d.max_handshaking), (10_000, 1000));
        assert_eq!(
            (d.max_sctp_message_size, d.receive_buffer),
            (257 * 1024, 512 * 1024)
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
            (d.keepalive_interval, d.close_timeout),
            (ms(5000), ms(3000))
        );
        assert_eq!(
            (d.max_shutdown_retransmits, d.streams, d.sctp_port),
            (2, 16, 5000)
        );
    }
}
