//! Full WebRTC peer connections from independent stacks (webrtc-rs and
//! str0m) join a call on a DTLS server engine: offer → `accept_offer` →
//! answer, ICE, DTLS, SCTP over loopback UDP, then the engine's protocol
//! on data channels 0 and 1. One `#[test]` per (stack, scenario); each
//! starts its own server and peer connection, so they run in parallel.
//! See `src/pc.rs` and `../docs/interop.md`, "WebRTC peer connections".

use dcengine_interop::pc::{self, Stack};

macro_rules! row {
    ($row:ident, $stack:expr, [$($(#[$attr:meta])* $name:ident),* $(,)?]) => {
        mod $row {
            use super::*;
            $(
                #[test]
                $(#[$attr])*
                fn $name() {
                    pc::$name($stack);
                }
            )*
        }
    };
}

row!(
    webrtc_rs,
    Stack::WebrtcRs,
    [
        peer_aborts,
        join_accepted,
        durable_both_ways,
        lossy_both_ways,
        max_message_delivered,
        max_message_to_peer,
        sdp_max_message_delivered,
        peer_closes,
        peer_closes_without_leave,
        engine_shutdown,
        holds_past_consent_timeout,
        wrong_certificate_refused,
        wrong_ice_password_no_dtls,
    ]
);

row!(
    str0m,
    Stack::Str0m,
    [
        join_accepted,
        durable_both_ways,
        lossy_both_ways,
        max_message_delivered,
        max_message_to_peer,
        sdp_max_message_delivered,
        peer_closes,
        peer_closes_without_leave,
        engine_shutdown,
        engine_aborts,
        holds_past_consent_timeout,
        wrong_certificate_refused,
        wrong_ice_password_no_dtls,
    ]
);
