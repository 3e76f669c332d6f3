//! What the fuzz targets, benches and integration tests reach beyond the
//! product, with the `_internal` feature. **Not a stable API.**
//!
//! The engine's internal modules (`hub`, `proto`, `sched`, `wire`) are
//! public with the same feature. The traits here add the methods of
//! product types that stay crate-private otherwise; with a trait in scope,
//! `hub.node()` resolves to it.
#![forbid(unsafe_code)]

use std::time::Instant;

use crate::proto::Node;
use crate::sched::TrafficLimiter;
use crate::wire::{Priority, Reliability, TrafficRules};
use crate::{Hub, TrafficPolicy};

/// A [`Hub`]'s internals.
pub trait HubInternals {
    /// The node underneath (its counters and associations).
    fn node(&self) -> &Node;
}

impl HubInternals for Hub {
    fn node(&self) -> &Node {
        Hub::node(self)
    }
}

/// What the engine makes of a [`TrafficPolicy`].
pub trait TrafficPolicyInternals {
    /// The rules as a server announces them (in `JoinAccepted`).
    fn to_rules(&self) -> TrafficRules;

    /// A limiter for one sender, full at `now` (see the crate-private
    /// method of the same name).
    fn limiter(
        &self,
        reliability: Reliability,
        priority: Priority,
        max_message_size: u32,
        slack: u32,
        now: Instant,
    ) -> TrafficLimiter;
}

impl TrafficPolicyInternals for TrafficPolicy {
    fn to_rules(&self) -> TrafficRules {
        TrafficPolicy::to_rules(self)
    }

    fn limiter(
        &self,
        reliability: Reliability,
        priority: Priority,
        max_message_size: u32,
        slack: u32,
        now: Instant,
    ) -> TrafficLimiter {
        TrafficPolicy::limiter(self, reliability, priority, max_message_size, slack, now)
    }
}
