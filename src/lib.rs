//! # dcengine
//!
//! A data-channel engine that media servers embed: one-way, ACS-style
//! DataChannel senders and receivers carried over SCTP over UDP (RFC 6951).
//!
//! - [`Engine`] (built with [`EngineBuilder`]) runs the engine over UDP:
//!   worker threads, each with its own socket on the shared port and an
//!   io_uring or a portable [`Backend`]. A server admits joins with a
//!   [`JoinVerifier`], by default [`HmacVerifier`] over tokens made by
//!   [`mint_token`].
//! - A [`Call`] is one participant's membership of a call. Its
//!   [`DataChannelFeature`] creates [`DataChannelSender`]s (configured by
//!   [`DataChannelSenderOptions`]) and announces a [`DataChannelReceiver`]
//!   per remote sender; messages arrive as [`DataChannelMessage`]s, failures
//!   are [`DataChannelError`]s. The handles are `Send + Sync`.
//! - [`Hub`] is the sans-IO core under the engine, for embedders that drive
//!   it themselves: give it datagrams and the time, take [`Transmit`]s,
//!   [`HubEvent`]s and its next deadline. It reads no clock and does no I/O.
//! - `sim` (feature `sim`): a deterministic in-memory network that drives
//!   hubs in virtual time, with seeded loss, reordering, duplication,
//!   latency and rate limits.
//!
//! Configuration: [`HubConfig`] (roles, buffers, timers), with the
//! DataChannel limits in [`ChannelConfig`], the traffic-limit rules in
//! [`TrafficPolicy`] and the SCTP transport in [`NodeConfig`].
//!
//! See `docs/architecture.md` for the layers underneath.
//!
//! # Features
//! - `cli` (default): the `dcengine` command (demo, server, chat); it
//!   enables `sim` for `demo --simulated`. Library users can turn it off
//!   with `default-features = false`.
//! - `sim`: the `sim` module.
//! - `_internal`: **not a stable API.** Makes the engine's internals
//!   public for its own fuzz targets, benches and tests (which always build
//!   with it and `sim`, through the crate's dev-dependency on itself); they
//!   change without notice.

// The product: re-exported at the root, the modules stay private.
mod auth;
mod datachannel;
mod runtime;

// The engine's internals: public with the `_internal` feature (hidden from
// the docs, not a stable API), private otherwise. Their `pub` items are
// what that feature exposes, so `unreachable_pub` only applies with it on.
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod hub;
#[cfg(not(feature = "_internal"))]
#[allow(unreachable_pub)]
mod hub;
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod proto;
#[cfg(not(feature = "_internal"))]
#[allow(unreachable_pub)]
mod proto;
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod sched;
#[cfg(not(feature = "_internal"))]
#[allow(unreachable_pub)]
mod sched;
#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod wire;
#[cfg(not(feature = "_internal"))]
#[allow(unreachable_pub)]
mod wire;

#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod internal;

#[cfg(feature = "sim")]
pub mod sim;

pub use auth::{HmacVerifier, JoinRejection, JoinRequest, JoinVerifier, WallClock, mint_token};
pub use bytes::Bytes;
pub use datachannel::{
    Call, CallState, ChannelConfig, DataChannelError, DataChannelFeature, DataChannelMessage,
    DataChannelPriority, DataChannelReceiver, DataChannelReliability, DataChannelSender,
    DataChannelSenderOptions, ParticipantId,
};
pub use hub::{Hub, HubConfig, HubEvent, HubStats, JoinError};
pub use proto::{ConnectError, NodeConfig, Transmit};
pub use runtime::{Backend, Engine, EngineBuilder, EngineError};
pub use sched::{Clock, TrafficPolicy};
pub use wire::{ErrorCode, MemberId};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
