//! A token bucket with exact integer arithmetic.

use std::time::{Duration, Instant};

const NANOS: u128 = 1_000_000_000;

/// A token bucket: `rate` tokens a second, at most `depth` tokens, full when
/// created. Tokens are bytes or packets, whatever the caller counts.
///
/// Sans-IO: every method takes `now`. Arithmetic is exact (tokens are kept
/// in billionths), so a rule admits exactly `depth + rate × t` tokens over
/// any span `t` and not one more. Time going backwards is treated as no
/// time passing.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use dcengine::sched::TokenBucket;
/// let t0 = Instant::now();
/// // 64 kbps (8,000 bytes a second), room for one 32 KiB message.
/// let mut b = TokenBucket::new(8_000, 32 * 1024, t0);
/// assert!(b.try_take(32 * 1024, t0));
/// assert!(!b.try_take(1, t0));
/// assert_eq!(b.time_until(8_000, t0), Some(Duration::from_secs(1)));
/// assert!(b.try_take(8_000, t0 + Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    depth: u64,
    /// Tokens × 10⁹.
    nanotokens: u128,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` tokens a second up to `depth`.
    pub fn new(rate: u64, depth: u64, now: Instant) -> Self {
        Self {
            rate,
            depth,
            nanotokens: u128::from(depth) * NANOS,
            last: now,
        }
    }

    /// Tokens added a second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The most tokens the bucket holds.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    fn refill(&mut self, now: Instant) {
        let Some(elapsed) = now.checked_duration_since(self.last) else {
            return;
        };
        self.last = now;
        let full = u128::from(self.depth) * NANOS;
        self.nanotokens = self
            .nanotokens
            .saturating_add(u128::from(self.rate).saturating_mul(elapsed.as_nanos()))
            .min(full);
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.nanotokens / NANOS).unwrap_or(u64::MAX)
    }

    /// Takes `n` tokens if there are that many; `false` (nothing taken)
    /// otherwise.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        let need = u128::from(n) * NANOS;
        if self.nanotokens >= need {
            self.nanotokens -= need;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens or, if there are fewer, all of them: for a caller
    /// that sends anyway (a message larger than the bucket would otherwise
    /// wait forever).
    pub fn take_up_to(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.nanotokens = self.nanotokens.saturating_sub(u128::from(n) * NANOS);
    }

    /// How long until `n` tokens are available: zero if they are now,
    /// `None` if never (more than `depth`, or a zero rate).
    pub fn time_until(&mut self, n: u64, now: Instant) -> Option<Duration> {
        self.refill(now);
        let need = u128::from(n) * NANOS;
        if self.nanotokens >= need {
            return Some(Duration::ZERO);
        }
        if n > self.depth || self.rate == 0 {
            return None;
        }
        let missing = need - self.nanotokens;
        // Round up: at the returned instant the tokens are there.
        let nanos = missing.div_ceil(u128::from(self.rate));
        Some(Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }

    /// Whether the bucket's invariants hold (tests and debug builds).
    fn invariants(&self) -> bool {
        self.nanotokens <= u128::from(self.depth) * NANOS
    }
}

impl Drop for TokenBucket {
    fn drop(&mut self) {
        debug_assert!(self.invariants());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        crate::sim::start_instant()
    }

    #[test]
    fn admits_exactly_depth_plus_rate_times_time() {
        let t0 = t0();
        let mut b = TokenBucket::new(8_000, 32_768, t0);
        assert!(b.try_take(32_768, t0));
        assert!(!b.try_take(1, t0));
        // 1 ms later: exactly 8 tokens.
        let t = t0 + Duration::from_millis(1);
        assert!(!b.try_take(9, t));
        assert!(b.try_take(8, t));
        assert_eq!(b.available(t), 0);
        // Over an hour idle it holds no more than its depth.
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.available(later), 32_768);
    }

    #[test]
    fn fractional_rates_are_exact() {
        // 3 kbps = 375 bytes a second: 1 byte every 2.666… ms.
        let t0 = t0();
        let mut b = TokenBucket::new(375, 1, t0);
        assert!(b.try_take(1, t0));
        let wait = b.time_until(1, t0).expect("a finite wait");
        assert_eq!(wait, Duration::from_nanos(2_666_667));
        assert!(!b.try_take(1, t0 + wait - Duration::from_nanos(1)));
        assert!(b.try_take(1, t0 + wait));
    }

    #[test]
    fn never_and_backwards_time() {
        let t0 = t0() + Duration::from_secs(10);
        let mut b = TokenBucket::new(100, 10, t0);
        assert_eq!(b.time_until(11, t0), None);
        assert!(b.try_take(10, t0));
        // Time going backwards adds nothing and breaks nothing.
        assert_eq!(b.available(t0 - Duration::from_secs(5)), 0);
        assert_eq!(b.available(t0 + Duration::from_millis(100)), 10);
        let mut zero = TokenBucket::new(0, 10, t0);
        zero.take_up_to(50, t0);
        assert_eq!(zero.time_until(1, t0), None);
    }
}
