//! A token bucket with exact integer arithmetic.

use std::sync::atomic::{AtomicU64, Ordering};
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
    #[cfg(test)]
    fn available(&mut self, now: Instant) -> u64 {
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

/// A token bucket any number of threads take from without a lock: the
/// generic cell rate algorithm (GCRA). Instead of a token count it keeps the
/// *theoretical arrival time* — the instant at which the bucket would be
/// full again — in one atomic, moved forward by each take with a
/// compare-and-swap. `n` tokens cost `n / rate` seconds of it, and a take
/// is admitted when the new theoretical arrival time is at most
/// `depth / rate` ahead of `now`: exactly a bucket of `depth` tokens
/// refilling at `rate`, full when created.
///
/// Time is kept in nanoseconds since creation and a take's cost is rounded
/// up to a whole nanosecond, so for a rate that does not divide 10⁹ a take
/// may cost up to 1 ns of refill more than [`TokenBucket`] charges (exact
/// for the traffic rules' rates: 8,000, 25,000 and 64,000 bytes, 80 packets
/// a second). A zero rate never refills: the bucket admits `depth` tokens
/// in all. Concurrent takers need no ordering between their `now`s: a take
/// with an earlier `now` than the last one just finds the bucket that much
/// emptier.
///
/// ```
/// # use std::time::{Duration, Instant};
/// # use dcengine::sched::AtomicTokenBucket;
/// let t0 = Instant::now();
/// // 64 kbps (8,000 bytes a second), room for one 32 KiB message.
/// let b = AtomicTokenBucket::new(8_000, 32 * 1024, t0);
/// assert!(b.try_take(32 * 1024, t0));
/// assert!(!b.try_take(1, t0));
/// assert!(b.try_take(8_000, t0 + Duration::from_secs(1)));
/// ```
#[derive(Debug)]
pub struct AtomicTokenBucket {
    rate: u64,
    depth: u64,
    epoch: Instant,
    /// Theoretical arrival time, in the bucket's time units (nanoseconds
    /// since `epoch`; for a zero rate, tokens with time standing still).
    tat: AtomicU64,
}

impl AtomicTokenBucket {
    /// A full bucket refilling at `rate` tokens a second up to `depth`.
    pub fn new(rate: u64, depth: u64, now: Instant) -> Self {
        Self {
            rate,
            depth,
            epoch: now,
            tat: AtomicU64::new(0),
        }
    }

    /// What `n` tokens cost, in time units.
    fn cost(&self, n: u64) -> u64 {
        if self.rate == 0 {
            return n;
        }
        let nanos = (u128::from(n) * NANOS).div_ceil(u128::from(self.rate));
        u64::try_from(nanos).unwrap_or(u64::MAX)
    }

    /// `now` in time units (a zero rate's time stands still).
    fn units(&self, now: Instant) -> u64 {
        if self.rate == 0 {
            return 0;
        }
        u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Takes `n` tokens if there are that many at `now`; `false` (nothing
    /// taken) otherwise.
    pub fn try_take(&self, n: u64, now: Instant) -> bool {
        if n > self.depth {
            return false;
        }
        let t = self.units(now);
        let cost = self.cost(n);
        let tolerance = self.cost(self.depth);
        self.tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                let next = tat.max(t).saturating_add(cost);
                (next - t <= tolerance).then_some(next)
            })
            .is_ok()
    }

    /// How long from `now` until `n` tokens may be taken (zero: now);
    /// `None` if never (more than the bucket holds).
    pub fn time_until(&self, n: u64, now: Instant) -> Option<std::time::Duration> {
        if n > self.depth {
            return None;
        }
        let t = self.units(now);
        let tat = self.tat.load(Ordering::Acquire).max(t);
        let late = tat
            .saturating_add(self.cost(n))
            .saturating_sub(t)
            .saturating_sub(self.cost(self.depth));
        if self.rate == 0 && late > 0 {
            return None; // Time stands still: it never refills.
        }
        Some(std::time::Duration::from_nanos(late))
    }

    /// Whether the bucket is full at `now`: as good as a new one.
    pub fn is_full(&self, now: Instant) -> bool {
        self.tat.load(Ordering::Acquire) <= self.units(now)
    }

    /// Gives back `n` tokens taken by [`AtomicTokenBucket::try_take`] (a
    /// caller whose other rule refused the message). The bucket never holds
    /// more than `depth`.
    pub fn refund(&self, n: u64) {
        let cost = self.cost(n);
        // The closure always returns Some: the update cannot fail.
        let _ = self
            .tat
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |tat| {
                Some(tat.saturating_sub(cost))
            });
    }

    /// Whole tokens available at `now` (a snapshot: other threads may take
    /// them first).
    #[cfg(test)]
    fn available(&self, now: Instant) -> u64 {
        let t = self.units(now);
        let tat = self.tat.load(Ordering::Acquire).max(t);
        let room = self.cost(self.depth).saturating_sub(tat - t);
        if self.rate == 0 {
            return room;
        }
        let tokens = u128::from(room) * u128::from(self.rate) / NANOS;
        u64::try_from(tokens).unwrap_or(u64::MAX).min(self.depth)
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

    #[test]
    fn the_atomic_bucket_admits_exactly_what_the_plain_one_does() {
        // Rates that divide 10⁹ (the traffic rules'): identical decisions
        // on the same sequence of takes.
        for (rate, depth) in [
            (8_000, 32_768),
            (64_000, 64_000),
            (25_000, 32_768),
            (80, 80),
        ] {
            let t0 = t0();
            let mut plain = TokenBucket::new(rate, depth, t0);
            let shared = AtomicTokenBucket::new(rate, depth, t0);
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let mut now = t0;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                now += Duration::from_micros(x % 3_000);
                // Often exactly at the edge: all that is there, or one more.
                let n = match x % 4 {
                    0 => plain.available(now) + 1,
                    1 => plain.available(now).max(1),
                    _ => 1 + (x >> 20) % (depth / 4),
                };
                assert_eq!(
                    plain.try_take(n, now),
                    shared.try_take(n, now),
                    "rate {rate} depth {depth}"
                );
                assert_eq!(plain.available(now), shared.available(now));
            }
        }
    }

    #[test]
    fn the_atomic_bucket_refunds_zero_rates_and_early_times() {
        let t0 = t0() + Duration::from_secs(10);
        let b = AtomicTokenBucket::new(8_000, 10_000, t0);
        assert!(!b.try_take(10_001, t0));
        assert!(b.try_take(6_000, t0));
        assert!(!b.try_take(5_000, t0));
        b.refund(6_000);
        assert_eq!(b.available(t0), 10_000);
        // A refund never fills it past its depth.
        b.refund(6_000);
        assert!(b.try_take(10_000, t0));
        assert!(!b.try_take(1, t0));
        // A `now` before the last take finds it emptier, never fuller.
        assert_eq!(b.available(t0 - Duration::from_secs(5)), 0);
        assert_eq!(b.available(t0 + Duration::from_millis(125)), 1_000);
        let zero = AtomicTokenBucket::new(0, 10, t0);
        assert!(zero.try_take(4, t0));
        assert!(zero.try_take(6, t0 + Duration::from_secs(3600)));
        assert!(!zero.try_take(1, t0 + Duration::from_secs(7200)));
        zero.refund(1);
        assert_eq!(zero.available(t0), 1);
    }

    #[test]
    fn threads_taking_at_once_never_take_more_than_the_bucket_holds() {
        let t0 = t0();
        let b = std::sync::Arc::new(AtomicTokenBucket::new(0, 100_000, t0));
        let taken: u64 = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let b = b.clone();
                    s.spawn(move || (0..50_000).filter(|_| b.try_take(1, t0)).count() as u64)
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("no panic")).sum()
        });
        assert_eq!(taken, 100_000);
    }

    #[test]
    fn time_until_says_when_a_take_succeeds() {
        let t = t0();
        let b = AtomicTokenBucket::new(1000, 100, t);
        assert_eq!(b.time_until(100, t), Some(std::time::Duration::ZERO));
        assert!(b.try_take(100, t));
        assert_eq!(b.time_until(101, t), None, "more than it holds");
        let wait = b.time_until(50, t).expect("it refills");
        assert_eq!(wait, std::time::Duration::from_millis(50));
        assert!(!b.try_take(50, t + wait - std::time::Duration::from_nanos(1)));
        assert!(b.try_take(50, t + wait));
        assert!(b.is_full(t + std::time::Duration::from_millis(150)));
    }
}
