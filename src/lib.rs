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
//!   it themselves (below).
//! - `sim` (feature `sim`): a deterministic in-memory network that drives
//!   hubs in virtual time, with seeded loss, reordering, duplication,
//!   latency and rate limits.
//!
//! Configuration: [`HubConfig`] (roles, buffers, timers), with the
//! DataChannel limits in [`ChannelConfig`], the traffic-limit rules in
//! [`TrafficPolicy`] and the SCTP transport in [`NodeConfig`].
//!
//! # The DataChannel API
//! - A [`DataChannelSender`] sends binary messages on a channel id to a
//!   list of participants (empty: everyone else in the call), Durable
//!   (lossless, ordered) or Lossy (unordered, may drop), at Normal or High
//!   priority.
//! - Each participant that a sender's messages reach gets one
//!   [`DataChannelReceiver`] per (sender, channel, session), announced once
//!   by [`DataChannelFeature::next_receiver`] (or its non-blocking and
//!   callback forms).
//! - Messages carry a `u32` sequence number per sender and channel, counting
//!   from 1; a receiver sees gaps where messages went to others.
//!
//! Names follow the ACS seeds in Rust style: `createDataChannelSender` is
//! [`DataChannelFeature::create_sender`], `sendMessage` is
//! [`DataChannelSender::send`], `setParticipants` is
//! [`DataChannelSender::set_participants`], `readMessage` is
//! [`DataChannelReceiver::read_message`], `MaxMessageSizeInBytes` is
//! [`DataChannelSender::max_message_size`], the `dataChannelReceiverCreated`
//! event is [`DataChannelFeature::next_receiver`] and friends.
//!
//! # Driving a hub yourself
//! A [`Hub`] does no I/O and reads no clock: every input carries the
//! current time, every output is polled.
//! - Inputs: [`Hub::handle_datagram`] (a UDP datagram arrived) and
//!   [`Hub::handle_timeout`] (the instant from [`Hub::poll_timeout`] came).
//! - Commands: [`Hub::join_remote`], [`Hub::join_local`],
//!   [`Hub::close_all`]. Application handles ([`Call`], senders,
//!   receivers) queue their work from any thread and call the hook given
//!   to [`Hub::set_wake_hook`] (once per batch); [`Hub::poll_timeout`]
//!   then returns an instant already past.
//! - Outputs: [`Hub::poll_transmit`] ([`Transmit`]s to send),
//!   [`Hub::poll_event`] ([`HubEvent`]s), [`Hub::poll_timeout`].
//!
//! After any input or command, send every datagram [`Hub::poll_transmit`]
//! gives, handle every event, then wait for a datagram, the instant
//! [`Hub::poll_timeout`] returns (calling [`Hub::handle_timeout`] early or
//! late is harmless), or the wake hook. Time must not go backwards: an
//! instant earlier than one already given counts as the latest one seen.
//! The handles read the time from [`HubConfig::clock`]: leave it the system
//! clock when the driver gives `Instant::now()`, or give them a
//! [`Clock::manual`] that the driver moves along with virtual time.
//!
//! A driver over a blocking socket that looks for queued work every 10 ms
//! instead of waking on the hook:
//!
//! ```no_run
//! use std::net::UdpSocket;
//! use std::time::{Duration, Instant};
//! use dcengine::{Bytes, Hub};
//!
//! fn drive(mut hub: Hub, socket: UdpSocket) -> std::io::Result<()> {
//!     const TICK: Duration = Duration::from_millis(10);
//!     let mut buf = vec![0; 64 * 1024];
//!     loop {
//!         while let Some(t) = hub.poll_transmit() {
//!             socket.send_to(&t.payload, t.destination)?;
//!         }
//!         while let Some(event) = hub.poll_event() {
//!             println!("{event:?}");
//!         }
//!         let now = Instant::now();
//!         let wait = match hub.poll_timeout() {
//!             Some(at) if at <= now => {
//!                 hub.handle_timeout(now);
//!                 continue;
//!             }
//!             Some(at) => (at - now).min(TICK),
//!             None => TICK,
//!         };
//!         socket.set_read_timeout(Some(wait))?;
//!         match socket.recv_from(&mut buf) {
//!             Ok((len, from)) => {
//!                 let datagram = Bytes::copy_from_slice(&buf[..len]);
//!                 hub.handle_datagram(Instant::now(), from, datagram);
//!             }
//!             Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock
//!                 | std::io::ErrorKind::TimedOut) => hub.handle_timeout(Instant::now()),
//!             Err(e) => return Err(e),
//!         }
//!     }
//! }
//! ```
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
mod idhash;
mod runtime;

// The engine's internals: public with the `_internal` feature (hidden from
// the docs, not a stable API), private otherwise. Their `pub` items are
// what that feature exposes, so `unreachable_pub` only applies with it on.
macro_rules! internal_modules {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "_internal")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "_internal"))]
        #[allow(unreachable_pub)]
        mod $name;
    )*};
}
internal_modules!(dtls, hub, ice, proto, sched, sdp, wire);

#[cfg(feature = "_internal")]
#[doc(hidden)]
pub mod internal;

#[cfg(feature = "sim")]
pub mod sim;

pub use auth::{
    HmacVerifier, JoinRejection, JoinRequest, JoinVerifier, TokenError, WallClock, mint_token,
};
pub use bytes::Bytes;
pub use datachannel::{
    Call, CallState, ChannelConfig, DataChannelError, DataChannelFeature, DataChannelMessage,
    DataChannelPriority, DataChannelReceiver, DataChannelReliability, DataChannelSender,
    DataChannelSenderOptions, ParticipantId, ReceiverCloseReason,
};
pub use dtls::{Certificate, DtlsError, Fingerprint, FingerprintParseError};
pub use hub::{
    ConfigError, Hub, HubConfig, HubEvent, HubStats, JoinError, PendingOffer, SignalError,
};
pub use proto::{CongestionControl, ConnectError, NodeConfig, Transmit};
pub use runtime::{Backend, Engine, EngineBuilder, EngineError};
pub use sched::{Clock, TrafficPolicy};
pub use wire::{ErrorCode, MemberId};

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
