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
        join_accepted,
        durable_both_ways,
        lossy_both_ways,
        #[ignore = "observed: a Data with a payload of JoinAccepted max_message_size (262144 B) is 262160 B on the wire, over the answer's a=max-message-size:262144; webrtc-rs refuses it: DataChannel::send fails with \"outbound packet larger than maximum message size\"; nothing reaches the engine (no receiver in 60 s). The engine advertises the payload limit as the SCTP message limit (src/hub/signal.rs Hub::accept_offer, src/runtime/mod.rs EngineBuilder::start max_message_size)"]
        max_message_delivered,
        #[ignore = "observed: the host sends a Data with a payload of max_message_size (262144 B); the SCTP message is over 262144 B, the a=max-message-size of webrtc-rs's offer, which the engine does not honour (src/hub/signal.rs answer_offer keeps no max-message-size of the offer); webrtc-rs gets the SenderOpened, never the Data (60 s, the connection stays up, the engine KeepAlives keep arriving on channel 1; HubStats senders_paused 1)"]
        max_message_to_peer,
        sdp_max_message_delivered,
        peer_closes,
        peer_closes_without_leave,
        engine_shutdown,
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
        #[ignore = "observed: a Data with a payload of JoinAccepted max_message_size (262144 B) is 262160 B on the wire, over the answer's a=max-message-size:262144; str0m refuses it: Channel::write fails with \"outbound packet larger than maximum message size\"; nothing reaches the engine (no receiver in 60 s). The engine advertises the payload limit as the SCTP message limit (src/hub/signal.rs Hub::accept_offer, src/runtime/mod.rs EngineBuilder::start max_message_size)"]
        max_message_delivered,
        #[ignore = "observed: the host sends a Data with a payload of max_message_size (262144 B); the SCTP message is over 262144 B, the a=max-message-size of str0m's offer, which the engine does not honour (src/hub/signal.rs answer_offer keeps no max-message-size of the offer); str0m gets the SenderOpened, then closes both channels and its Rtc ends (no Data)"]
        max_message_to_peer,
        sdp_max_message_delivered,
        peer_closes,
        peer_closes_without_leave,
        engine_shutdown,
        wrong_certificate_refused,
        wrong_ice_password_no_dtls,
    ]
);
