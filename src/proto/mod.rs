//! The sans-IO node: SCTP associations (dcsctp, one socket each, behind
//! stateless handshakes with sealed cookies), carrying [`crate::wire`]
//! messages.
//!
//! Nothing here opens a socket, reads a clock, spawns a thread or uses
//! `unsafe`: datagrams and time come in through [`Node`]'s `handle_*`
//! methods, datagrams and events go out through its `poll_*` methods. The
//! runtime (or the [`crate::sim`] network in tests) moves them.
#![forbid(unsafe_code)]

mod config;
mod cookie;
mod node;

pub use config::{CongestionControl, MAX_PACKET_MESSAGE, NodeConfig};
pub use node::{
    AssocId, CloseReason, ConnectError, Delivery, DropReason, Event, Node, Placement, Transmit,
};
// The cause inside `CloseReason::ProtocolViolation`, named in the internal API.
#[cfg(feature = "_internal")]
pub use node::Violation;
// Named only in the internal API (the node's counters and send errors).
#[cfg(feature = "_internal")]
pub use node::{NodeStats, SendError};

/// SCTP stream carrying control frames and Durable data: ordered, reliable.
///
/// The engine's streams are pre-agreed by both ends (like a WebRTC channel
/// created with `negotiated: true`), so no DCEP exchange is needed to use
/// them; channels opened in-band with DCEP (RFC 8832, PPID 50) will use
/// other stream ids.
pub const STREAM_RELIABLE: u16 = 0;

/// SCTP stream carrying Lossy data and keep-alives: unordered, partially
/// reliable (abandoned after [`NodeConfig::lossy_lifetime`]).
pub const STREAM_LOSSY: u16 = 1;

#[cfg(test)]
mod tests;
