//! ICE for the server role (ICE-lite, RFC 8445 §2.5) and a minimal
//! controlling check sender for the native client, over STUN (RFC 8489).
//!
//! - [`demux`]: which layer a datagram on the shared port goes to, by its
//!   first byte (RFC 7983).
//! - [`IceLite`]: the server. Sessions keyed by the local ufrag given in
//!   signalling; answers authenticated Binding requests, learns and follows
//!   the client's address, and expires a session whose client stops
//!   checking (consent freshness, RFC 7675).
//! - [`IceClient`]: the native client's side: Binding requests with
//!   USE-CANDIDATE to one remote candidate, retransmitted, then consent
//!   checks every ~5 s.
//!
//! Both are sans-IO like the rest of the engine: no sockets, no clock (time
//! is an `Instant` argument), no threads, and randomness only from a seed in
//! the configuration. Inputs are `handle_*`, outputs `poll_transmit`,
//! `poll_event` and `poll_timeout`; drain them after every input.
//!
//! # The STUN codec: `stun-types` + `rice-stun-types`, not our own
//! We looked at the STUN crates on crates.io (December 2026):
//!
//! | crate | version, released | verdict |
//! |---|---|---|
//! | **stun-types** (Matthew Waters, librice) | 2.0.4, 2026-10-20 | **chosen**: sans-IO, `no_std` + alloc core, zero-copy [`Message::from_bytes`](stun_types::message::Message::from_bytes) over `&[u8]`, writes into a `Vec` or a caller's slice, FINGERPRINT checked on parse, MESSAGE-INTEGRITY (HMAC-SHA1 short-term, and SHA-256) with cached keys, USERNAME, XOR-MAPPED-ADDRESS, ERROR-CODE, UNKNOWN-ATTRIBUTES; transaction ids can be given (ours come from the seeded RNG); deps are RustCrypto, `crc`, `smallvec`, `tracing`; no async runtime |
//! | **rice-stun-types** (same author) | 0.4.3, 2026-05-11 | **chosen with it**: PRIORITY, USE-CANDIDATE, ICE-CONTROLLED, ICE-CONTROLLING as stun-types attributes |
//! | rtc-stun (webrtc-rs, sans-IO line) | 0.21.1, 2026-10-11 | works sans-IO, but pulls `rtc-crypto` with `ring` (a C build) and `rtc-shared`, `url`, `lazy_static` for what we need |
//! | stun (webrtc-rs) | 0.17.2, 2026-07-20 | depends on tokio (`rt-multi-thread`, `net`) and `webrtc-util`: not sans-IO |
//! | stun_codec (sile) | 0.4.0, 2025-05-06 | sans-IO, has the ICE attributes, but a `bytecodec`/`trackable` streaming API and 19 months without a release; used here as the *independent* implementation in the tests |
//! | stun-rs | 0.1.11, 2025-03-31 | no release for 20 months, many deps (precis, hostname validation) |
//!
//! So no codec of our own in `src/wire/`: the fuzz target
//! `fuzz/fuzz_targets/ice_ingress.rs` feeds arbitrary datagrams through
//! stun-types into [`IceLite`]. What we check on top of the crate: a STUN
//! datagram must be exactly one message (no trailing bytes), FINGERPRINT
//! must be present (RFC 8445 §7.1.1), MESSAGE-INTEGRITY must be the SHA-1
//! one (MESSAGE-INTEGRITY-SHA256 is not used by ICE) and USERNAME must be
//! `local-ufrag:remote-ufrag` of a session.
//!
//! # What the server answers (RFC 8489 §9.1.3, RFC 8445 §7.3)
//! Checked in this order; nothing before step 6 creates or touches state,
//! and every outcome is counted in [`IceStats`]:
//!
//! 1. Not a STUN message, bad FINGERPRINT, trailing bytes: dropped.
//! 2. Not a request (indications, e.g. RFC 8445 keep-alives; responses: a
//!    lite agent sends no requests), or a request of another method than
//!    Binding: dropped.
//! 3. No FINGERPRINT: dropped (ICE requires it; without it the datagram may
//!    not be STUN at all).
//! 4. No USERNAME or no MESSAGE-INTEGRITY: **400 Bad Request**.
//! 5. USERNAME not `ufrag:remote-ufrag` of a session, or MESSAGE-INTEGRITY
//!    wrong under that session's password: **401 Unauthorized**, without
//!    MESSAGE-INTEGRITY (RFC 8489 §9.1.3 says a request MUST be rejected so;
//!    the response is at most 48 bytes and goes only to the datagram's
//!    source).
//! 6. Unknown comprehension-required attributes: **420** with
//!    UNKNOWN-ATTRIBUTES. No PRIORITY, or neither or both of
//!    ICE-CONTROLLING / ICE-CONTROLLED: **400**. ICE-CONTROLLED: **487 Role
//!    Conflict** (a lite agent is always controlled, RFC 8445 §6.1.1, and
//!    never switches: it behaves as if its tie-breaker were the largest, so
//!    the peer takes the controlling role). These are authenticated, so they
//!    carry MESSAGE-INTEGRITY.
//! 7. Otherwise a Binding success response: XOR-MAPPED-ADDRESS,
//!    MESSAGE-INTEGRITY, FINGERPRINT; and the session learns the address.
#![forbid(unsafe_code)]
// Nothing in the library uses ICE until the DTLS layer wires it into the hub;
// until then only the `_internal` builds (tests, fuzz targets) reach it.
#![cfg_attr(not(feature = "_internal"), allow(dead_code, unused_imports))]

pub mod demux;

mod client;
mod lite;
#[cfg(test)]
mod tests;

pub use client::{IceClient, IceClientConfig, IceClientEvent, IceClientStats};
pub use lite::{
    AddSessionError, IceEvent, IceLite, IceLiteConfig, IceStats, SessionId, request_ufrag,
};

use stun_types::attribute::{AttributeStaticType, Fingerprint, MessageIntegrity};
use stun_types::message::Message;

/// The default `consent_timeout` (RFC 7675 §5.1: 30 s).
pub const CONSENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Parses a datagram as exactly one STUN message with a valid FINGERPRINT
/// (when present) and no trailing bytes.
fn parse(datagram: &[u8]) -> Option<Message<'_>> {
    let msg = Message::from_bytes(datagram).ok()?;
    let len = u16::from_be_bytes([*datagram.get(2)?, *datagram.get(3)?]);
    (datagram.len() == 20 + usize::from(len)).then_some(msg)
}

/// Whether `msg` carries FINGERPRINT (its value was checked by [`parse`]).
fn has_fingerprint(msg: &Message<'_>) -> bool {
    msg.has_attribute(Fingerprint::TYPE)
}

/// Whether `msg` carries the SHA-1 MESSAGE-INTEGRITY.
fn has_integrity(msg: &Message<'_>) -> bool {
    msg.has_attribute(MessageIntegrity::TYPE)
}

/// The priority a host candidate's peer-reflexive twin gets in our checks
/// (RFC 8445 §5.1.2.1 and §7.1.1: type preference 110 for peer-reflexive,
/// local preference 65535, component 1).
pub const PRFLX_PRIORITY: u32 = (110 << 24) | (65535 << 8) | (256 - 1);
