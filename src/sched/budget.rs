//! How much an association may hold in its transport queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a minimum round trip stays valid before it is measured again.
const RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long the budget stays at its minimum to measure the round trip.
const PROBE_TIME: Duration = Duration::from_millis(200);
/// How long delivery-rate samples count.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// Shortest span a delivery-rate sample covers.
const MIN_SAMPLE: Duration = Duration::from_millis(50);
/// Most send marks kept for round-trip samples.
const MAX_MARKS: usize = 1024;

/// The egress budget of one association (sans-IO): how many bytes the
/// engine lets sit in the transport's own queue (in flight plus unsent).
///
/// SCTP keeps one FIFO per association and fills whatever bottleneck queue
/// the path has; anything the engine hands it is out of the scheduler's
/// hands. So the engine hands it only about a bandwidth-delay product: the
/// budget is `delivery rate × (minimum round trip + target)`, within
/// `[min, max]`. The delivery rate is the windowed maximum of the rate at
/// which the transport's queue drains; the round trip is the windowed
/// minimum of the time from handing bytes over to their leaving the queue
/// (acknowledged). The `target` term both bounds the standing queue and
/// lets the rate estimate grow when the path has more room. Every
/// [`RTT_WINDOW`] without a new minimum the budget drops to `min` for
/// [`PROBE_TIME`], so the queue drains and the round trip is measured
/// afresh (as BBR's ProbeRTT does) rather than creeping up.
#[derive(Debug, Clone)]
pub struct EgressBudget {
    min: usize,
    max: usize,
    target: Duration,
    /// Bytes handed over so far.
    handed: u64,
    /// Bytes that left the queue so far.
    delivered: u64,
    /// `(handed after, when)` of recent hand-overs.
    marks: VecDeque<(u64, Instant)>,
    rtt_min: Option<(Duration, Instant)>,
    probe: Option<(Instant, Option<Duration>)>,
    last_sample: Option<(Instant, u64)>,
    rates: VecDeque<(Instant, u64)>,
}

impl EgressBudget {
    /// A budget between `min` and `max` bytes allowing `target` of standing
    /// queue; it starts at `min(max, 8 KiB)` until it has measured.
    pub fn new(min: usize, max: usize, target: Duration) -> Self {
        Self {
            min: min.min(max),
            max,
            target,
            handed: 0,
            delivered: 0,
            marks: VecDeque::new(),
            rtt_min: None,
            probe: None,
            last_sample: None,
            rates: VecDeque::new(),
        }
    }

    /// `bytes` were handed to the transport at `now`.
    pub fn on_sent(&mut self, bytes: usize, now: Instant) {
        if bytes == 0 {
            return;
        }
        // The mark is the first byte: its round trip is how long it waited
        // behind what was queued before, not behind its own batch.
        if self.marks.len() < MAX_MARKS {
            self.marks.push_back((self.handed + 1, now));
        }
        self.handed += bytes as u64;
    }

    /// The transport holds `buffered` bytes at `now`.
    pub fn on_progress(&mut self, buffered: usize, now: Instant) {
        let delivered = self
            .handed
            .saturating_sub(buffered as u64)
            .max(self.delivered);
        self.delivered = delivered;
        while let Some(&(upto, at)) = self.marks.front() {
            if upto > delivered {
                break;
            }
            self.marks.pop_front();
            self.rtt_sample(now.saturating_duration_since(at), now);
        }
        match self.last_sample {
            None => self.last_sample = Some((now, delivered)),
            Some((at, before)) => {
                let span = now.saturating_duration_since(at);
                // Over at least two round trips: acknowledgements come in
                // bursts, and a short span would see a rate the path lacks.
                let floor = self
                    .rtt_min
                    .map_or(MIN_SAMPLE, |(r, _)| (4 * r).max(MIN_SAMPLE));
                if span >= floor {
                    let rate = (delivered - before) as f64 / span.as_secs_f64();
                    self.rates.push_back((now, rate as u64));
                    self.last_sample = Some((now, delivered));
                }
            }
        }
        while self
            .rates
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > RATE_WINDOW)
        {
            self.rates.pop_front();
        }
        // Time to measure the round trip again?
        match self.probe {
            Some((until, best)) if now >= until => {
                self.probe = None;
                if let Some(rtt) = best {
                    self.rtt_min = Some((rtt, now));
                } else if let Some((rtt, _)) = self.rtt_min {
                    self.rtt_min = Some((rtt, now));
                }
            }
            None if self
                .rtt_min
                .is_some_and(|(_, at)| now.saturating_duration_since(at) > RTT_WINDOW) =>
            {
                self.probe = Some((now + PROBE_TIME, None));
            }
            _ => {}
        }
    }

    fn rtt_sample(&mut self, rtt: Duration, now: Instant) {
        if let Some((_, best)) = &mut self.probe {
            *best = Some(best.map_or(rtt, |b| b.min(rtt)));
        }
        if self.rtt_min.is_none_or(|(min, _)| rtt <= min) {
            self.rtt_min = Some((rtt, now));
        }
    }

    /// The bytes the transport may hold now.
    pub fn budget(&self) -> usize {
        if self.probe.is_some() {
            return self.min;
        }
        let rate = self.rates.iter().map(|(_, r)| *r).max();
        match (rate, self.rtt_min) {
            (Some(rate), Some((rtt, _))) if rate > 0 => {
                let bytes = rate as f64 * (rtt + self.target).as_secs_f64();
                (bytes as usize).clamp(self.min, self.max)
            }
            _ => (8 * 1024).clamp(self.min, self.max),
        }
    }

    /// How many more bytes may be handed over while the transport holds
    /// `buffered`.
    pub fn room(&self, buffered: usize) -> usize {
        self.budget().saturating_sub(buffered)
    }

    /// The measured minimum round trip, if any.
    pub fn rtt_min(&self) -> Option<Duration> {
        self.rtt_min.map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bottleneck of `rate` bytes a second and `rtt` base round trip,
    /// fed by a sender that always has data: the budget settles near the
    /// bandwidth-delay product plus the target.
    #[test]
    fn settles_near_the_bandwidth_delay_product() {
        let t0 = crate::sim::start_instant();
        let (rate, rtt) = (125_000.0, Duration::from_millis(20));
        let mut b = EgressBudget::new(4096, 1 << 20, Duration::from_millis(10));
        // The path: bytes leave the queue in order at `rate`, each
        // acknowledged `rtt` after it is serialized.
        let mut in_queue: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut link_free = t0;
        let mut buffered = 0usize;
        let step = Duration::from_millis(1);
        let mut now = t0;
        let mut budgets = Vec::new();
        for _ in 0..30_000 {
            now += step;
            while let Some(&(acked_at, n)) = in_queue.front() {
                if acked_at > now {
                    break;
                }
                in_queue.pop_front();
                buffered -= n;
            }
            b.on_progress(buffered, now);
            let mut room = b.room(buffered);
            while room >= 1000 {
                let start = link_free.max(now);
                link_free = start + Duration::from_secs_f64(1000.0 / rate);
                in_queue.push_back((link_free + rtt, 1000));
                buffered += 1000;
                b.on_sent(1000, now);
                room -= 1000;
            }
            if now > t0 + Duration::from_secs(5) {
                budgets.push(b.budget());
            }
        }
        let rtt_min = b.rtt_min().expect("measured");
        // 20 ms plus 8 ms to serialize a 1,000-byte packet, in 1 ms steps.
        assert!(rtt_min < Duration::from_millis(35), "{rtt_min:?}");
        budgets.sort();
        let median = budgets[budgets.len() / 2];
        // 125 kB/s × (≈32 ms measured round trip + 10 ms target) ≈ 5.2 kB.
        assert!((3_000..=6_000).contains(&median), "median budget {median}");
        // The standing queue stays small: the link is never idle long, and
        // the queue behind it is at most a few packets.
        let queued = link_free.saturating_duration_since(now);
        assert!(queued < Duration::from_millis(40), "{queued:?}");
    }
}
