//! # dcengine
//!
//! A data-channel engine that media servers embed: one-way, ACS-style
//! DataChannel senders and receivers carried over SCTP over UDP (RFC 6951).
//!
//! The layers, bottom up (see `docs/architecture.md`):
//! - [`wire`]: the engine's own framing inside SCTP user messages.
//! - [`proto`]: the sans-IO node: one SCTP endpoint and its associations,
//!   driven by datagrams and time given by the caller.
//! - [`sched`]: sans-IO scheduling and shaping: token buckets, the
//!   traffic-limit rules, the High-over-Normal egress scheduler.
//! - [`sim`]: a deterministic in-memory network that drives nodes with
//!   seeded loss, reordering, duplication, latency and rate limits.

pub mod auth;
pub mod datachannel;
pub mod hub;
pub mod proto;
pub mod runtime;
pub mod sched;
pub mod sim;
pub mod wire;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
