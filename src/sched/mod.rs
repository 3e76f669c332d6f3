//! Scheduling and shaping, sans-IO: token buckets, the traffic-limit rules,
//! and the egress scheduler that decides which channel of an association
//! sends next (strict High-over-Normal priority, deficit round robin within
//! a class, per-channel shaping). Everything takes `now`; nothing here reads
//! a clock except [`Clock`], which is how the application's handles (on
//! their own threads) learn the time their driver runs on.
#![forbid(unsafe_code)]

mod bucket;
mod budget;
mod egress;
mod pacer;
mod policy;

pub use bucket::{AtomicTokenBucket, TokenBucket};
pub use budget::EgressBudget;
pub use egress::{FlowSpec, Head, Pick, Scheduler};
pub use pacer::Pacer;
pub use policy::{TrafficLimiter, TrafficPolicy};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where the application's handles read the time (for the traffic-limit
/// rules checked on `send`, send timestamps): the system's monotonic clock
/// ([`Clock::system`], the default), or a manual one ([`Clock::manual`])
/// that the driver of a hub in virtual time moves with [`Clock::set`], as
/// the `sim` network does, so tests stay deterministic
/// ([`HubConfig::clock`](crate::HubConfig::clock)).
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<VirtualTime>>);

/// A virtual clock's state: a start and the nanoseconds since it.
#[derive(Debug)]
struct VirtualTime {
    start: Instant,
    nanos: AtomicU64,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(_) => f.write_str("Clock::virtual"),
        }
    }
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock that reads `start` until [`Clock::set`] moves it.
    pub fn manual(start: Instant) -> Self {
        Self(Some(Arc::new(VirtualTime {
            start,
            nanos: AtomicU64::new(0),
        })))
    }

    /// Whether this is the system clock.
    pub fn is_system(&self) -> bool {
        self.0.is_none()
    }

    /// The time now.
    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(v) => v.start + Duration::from_nanos(v.nanos.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock to `now` (never backwards; ignored by the
    /// system clock).
    pub fn set(&self, now: Instant) {
        if let Some(v) = &self.0 {
            let nanos = u64::try_from(now.saturating_duration_since(v.start).as_nanos())
                .unwrap_or(u64::MAX);
            v.nanos.fetch_max(nanos, Ordering::AcqRel);
        }
    }
}
