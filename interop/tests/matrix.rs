//! The matrix: one `#[test]` per (peer, scenario). Each starts its own
//! 2-worker server, tap and peer, so they run in parallel.

use dcengine_interop::scenarios::{self, Kind};
use dcengine_interop::usrsctp::Bind;

/// How many times the engine-started SHUTDOWN is repeated per peer.
const SHUTDOWN_ROUNDS: usize = 20;

macro_rules! row {
    ($row:ident, $kind:expr, [$($(#[$attr:meta])* $name:ident $(($($arg:expr),*))?),* $(,)?]) => {
        mod $row {
            use super::*;
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    scenarios::$name($kind $(, $($arg),*)?);
                }
            )*
        }
    };
}

row!(
    usrsctp,
    Kind::Usrsctp(Bind::Loopback),
    [
        handshake_join,
        join_rejected_then_closed,
        durable_to_engine,
        durable_from_engine,
        lossy_to_engine,
        lossy_from_engine,
        lossy_from_engine_on_stream_1,
        lossy_right_after_open,
        max_size_delivered,
        over_max_size_aborted,
        peer_shutdown,
        peer_shutdown_sack_lost,
        engine_shutdown(SHUTDOWN_ROUNDS),
        peer_abort,
        reset_stream_0,
        reset_stream_0_while_receiving,
        reset_stream_1,
    ]
);

row!(
    usrsctp_any_v4,
    Kind::Usrsctp(Bind::AnyV4),
    [
        handshake_join,
        join_rejected_then_closed,
        durable_to_engine,
        durable_from_engine,
        lossy_to_engine,
        lossy_from_engine,
        lossy_from_engine_on_stream_1,
        lossy_right_after_open,
        max_size_delivered,
        over_max_size_aborted,
        peer_shutdown,
        peer_shutdown_sack_lost,
        engine_shutdown(SHUTDOWN_ROUNDS),
        peer_abort,
        reset_stream_0,
        reset_stream_0_while_receiving,
        reset_stream_1,
    ]
);

row!(
    usrsctp_any_v6,
    Kind::Usrsctp(Bind::AnyV6),
    [
        handshake_join,
        join_rejected_then_closed,
        durable_to_engine,
        durable_from_engine,
        lossy_to_engine,
        lossy_from_engine,
        lossy_from_engine_on_stream_1,
        lossy_right_after_open,
        max_size_delivered,
        over_max_size_aborted,
        peer_shutdown,
        peer_shutdown_sack_lost,
        engine_shutdown(SHUTDOWN_ROUNDS),
        peer_abort,
        reset_stream_0,
        reset_stream_0_while_receiving,
        reset_stream_1,
    ]
);

// webrtc-sctp has no API to send an ABORT: no `peer_abort` cell.
row!(
    webrtc_sctp,
    Kind::Webrtc,
    [
        handshake_join,
        join_rejected_then_closed,
        durable_to_engine,
        durable_from_engine,
        lossy_to_engine,
        lossy_from_engine,
        lossy_from_engine_on_stream_1,
        lossy_right_after_open,
        max_size_delivered,
        over_max_size_aborted,
        peer_shutdown,
        peer_shutdown_sack_lost,
        engine_shutdown(SHUTDOWN_ROUNDS),
        reset_stream_0,
        reset_stream_0_while_receiving,
        reset_stream_1,
    ]
);

row!(
    dcsctp,
    Kind::Dcsctp,
    [
        handshake_join,
        join_rejected_then_closed,
        durable_to_engine,
        durable_from_engine,
        lossy_to_engine,
        lossy_from_engine,
        lossy_from_engine_on_stream_1,
        lossy_right_after_open,
        max_size_delivered,
        over_max_size_aborted,
        peer_shutdown,
        peer_shutdown_sack_lost,
        engine_shutdown(SHUTDOWN_ROUNDS),
        peer_abort,
        reset_stream_0,
        reset_stream_0_while_receiving,
        reset_stream_1,
    ]
);
