//! At what rate an association releases data into a slow path.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes of one full packet's worth of messages.
const PACKET: f64 = crate::proto::MAX_PACKET_MESSAGE as f64;
/// Paced only where a full packet takes at least this long to cross the
/// bottleneck: on a faster path a packet of standing queue costs less, and
/// the pacer stays out of the way.
const MIN_PACKET_TIME: Duration = Duration::from_millis(1);
/// The pacing gain of each phase of a cycle (each phase a base round
/// trip, or two packets' time if longer), as BBR's ProbeBW: a round an eighth over the estimate to find
/// more bandwidth, one an eighth under to drain what that queued, then six
/// at the estimate.
const GAINS: [f64; 8] = [1.125, 0.875, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// The pacing gain while a queue shows at the bottleneck.
const DRAIN_GAIN: f64 = 0.9;
/// How many cycles a delivery-rate sample counts in the estimate.
const WINDOW_CYCLES: u32 = 2;
/// Bytes a delivery-rate sample spans at least: two packets, so that on a
/// slow link the acknowledgements it spans are a packet's serialization
/// apart, and on a fast one nearly at once.
const SAMPLE_BYTES: u64 = 2 * crate::proto::MAX_PACKET_MESSAGE as u64;
/// Most delivery snapshots kept.
const MAX_SNAPSHOTS: usize = 256;
/// A phase of the cycle lasts a base round trip, but at least this many
/// packets' time at the estimate: a shorter phase (a host path of a 0.1 ms
/// round trip measured slow) sent no packet more in its probe, samples of
/// two packets averaged the gains to under 1, and the estimate never grew
/// back (see [`Pacer::phase`]).
const MIN_PHASE_PACKETS: f64 = 2.0;
/// The bottleneck filter keeps a sample of a fast path (one not paced) at
/// least this long: on a path of a 0.1 ms round trip its 16 round trips
/// are 1.6 ms, and one stall of a busy host for a few milliseconds left a
/// single low sample in it, which read as a slow path.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// The pacing rate of one association (sans-IO): about the bottleneck's
/// rate, so the bottleneck's queue stays near empty while the link stays
/// busy.
///
/// A budget on what is in flight (the [`super::EgressBudget`]) keeps a
/// standing queue at the bottleneck: a Vegas-like budget settles between a
/// quarter and one packet of it, and the packet a hand-over ends with comes
/// on top. On a slow link every packet queued there is a packet's
/// serialization (9.6 ms at 1 Mbit/s) that a High message handed over later
/// waits for. Released at the bottleneck's rate instead, data arrives there
/// as the link drains it: a High message waits for the packet on the wire.
///
/// - Delivery-rate samples: each acknowledgement (a call of
///   [`Pacer::on_progress`]) that finds the sender held back since the
///   snapshot one base round trip earlier takes the bytes delivered
///   between the two acknowledgements over the time between them (both
///   are departures from the bottleneck, so a busy link's rate comes out
///   exactly, whatever the packet sizes).
/// - The estimate is the largest sample of the last [`WINDOW_CYCLES`] × 8
///   base round trips (two cycles where a phase is a round trip), or of
///   the last two phases if longer (the probe's and the drain's: what a
///   probe found is the estimate when the phases at 1× begin), a fast
///   path's samples kept at least [`MIN_WINDOW`] (BBR's bottleneck
///   bandwidth filter): a sample is at most what the link carried, and
///   samples while the sender was not held back (application-limited) are
///   not taken. Held back means by the budget, or by the pacer itself: its
///   owner reports data the transport has not sent yet
///   ([`super::EgressBudget::on_backlogged`]).
/// - The rate cycles through [`GAINS`], a phase a base round trip or
///   [`MIN_PHASE_PACKETS`] packets' time at the estimate, if longer: the
///   phase at 1.125 finds bandwidth the path gained (its samples show it,
///   and the estimate takes the largest), the one at 0.875 drains the queue
///   the probe built, which is an eighth of a bandwidth-delay product (less
///   than a packet on a slow path).
/// - Only on slow paths, where a packet takes at least
///   [`MIN_PACKET_TIME`] at the estimate: elsewhere [`Pacer::rate`] is
///   `None` and the budget alone decides, as it does before the first
///   estimate.
#[derive(Debug, Clone, Default)]
pub struct Pacer {
    /// `(when, delivered)` at acknowledgements since the sender was last
    /// seen not held back, the oldest at most a base round trip before the
    /// newest.
    snapshots: VecDeque<(Instant, u64)>,
    /// Delivery-rate samples of the window, `(when, bytes a second)`, each
    /// smaller than the one before (the front is the window's largest).
    samples: VecDeque<(Instant, f64)>,
    /// When the current cycle began, and how long its phases last (fixed
    /// for the cycle: an estimate that moves within it must not move the
    /// phase boundaries, which could repeat the probe or skip the drain).
    cycle_start: Option<(Instant, Duration)>,
}

impl Pacer {
    /// An acknowledgement at `now` brought what left the queue to
    /// `delivered` bytes; `held`: the sender had more to send than it was
    /// let (since the last call); `base`: the path's base round trip.
    pub fn on_progress(&mut self, delivered: u64, now: Instant, held: bool, base: Duration) {
        if !held {
            self.snapshots.clear();
        }
        if self
            .snapshots
            .back()
            .is_some_and(|&(_, d)| d == delivered)
        {
            return;
        }
        self.snapshots.push_back((now, delivered));
        // The front: the newest snapshot at least `SAMPLE_BYTES` back.
        while self.snapshots.len() > MAX_SNAPSHOTS
            || self
                .snapshots
                .get(1)
                .is_some_and(|&(_, d)| delivered - d >= SAMPLE_BYTES)
        {
            self.snapshots.pop_front();
        }
        let &(at, from) = self.snapshots.front().expect("pushed");
        if delivered - from >= SAMPLE_BYTES {
            let span = now.saturating_duration_since(at).max(Duration::from_micros(1));
            let rate = (delivered - from) as f64 / span.as_secs_f64();
            while self.samples.back().is_some_and(|&(_, r)| r <= rate) {
                self.samples.pop_back();
            }
            self.samples.push_back((now, rate));
        }
        // At least the probe's phase and the drain after it, so that what a
        // probe found is still the estimate when the phases at 1× begin.
        let window = (base * GAINS.len() as u32 * WINDOW_CYCLES).max(self.phase(base) * 2);
        // A sample of a fast path (one the pacer leaves alone) stays at
        // least MIN_WINDOW; a longer window on a slow path kept what a
        // token bucket's burst let through as its rate (High p99 through
        // tbf at 1 Mbit/s, behind 32 KiB messages, 24 -> 41 ms).
        let fast = PACKET / MIN_PACKET_TIME.as_secs_f64();
        while self.samples.len() > 1
            && self.samples.front().is_some_and(|&(at, rate)| {
                let keep = if rate >= fast { window.max(MIN_WINDOW) } else { window };
                now.saturating_duration_since(at) > keep
            })
        {
            self.samples.pop_front();
        }
    }

    /// How long a phase of the cycle lasts: a base round trip, as BBR's, or
    /// [`MIN_PHASE_PACKETS`] packets' time at the estimate if that is
    /// longer, so that each phase's gain shows in the samples.
    fn phase(&self, base: Duration) -> Duration {
        let packets = self
            .bottleneck_rate()
            .filter(|&r| r > 0.0)
            .map_or(Duration::ZERO, |r| {
                Duration::try_from_secs_f64(MIN_PHASE_PACKETS * PACKET / r)
                    .map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)))
            });
        base.max(packets)
    }

    /// The estimated bottleneck rate, bytes a second.
    pub fn bottleneck_rate(&self) -> Option<f64> {
        self.samples.front().map(|&(_, r)| r)
    }

    /// The rate to release data at now (`None`: not paced), with `base` the
    /// path's base round trip and `in_flight()` bytes sent and not yet
    /// acknowledged (asked only when paced).
    pub fn rate(
        &mut self,
        now: Instant,
        base: Duration,
        in_flight: impl FnOnce() -> usize,
    ) -> Option<f64> {
        let estimate = self.bottleneck_rate()?;
        if estimate * MIN_PACKET_TIME.as_secs_f64() >= PACKET || base.is_zero() {
            self.cycle_start = None;
            return None;
        }
        let (start, phase) = match self.cycle_start {
            Some(c) => c,
            None => *self.cycle_start.insert((now, self.phase(base))),
        };
        let cycle = phase * GAINS.len() as u32;
        let into = now.saturating_duration_since(start);
        let (into, phase) = if into >= cycle {
            // A new cycle begins now (phases are not caught up on).
            let phase = self.phase(base);
            self.cycle_start = Some((now, phase));
            (Duration::ZERO, phase)
        } else {
            (into, phase)
        };
        let phase = (into.as_nanos() / phase.as_nanos().max(1)) as usize;
        let gain = GAINS[phase.min(GAINS.len() - 1)];
        // What is in flight beyond the path's bandwidth-delay product waits
        // in the bottleneck's queue (Vegas): over a packet of it, the
        // rate stays under the estimate until it drains (after the path
        // slowed down, or a probe that found nothing more).
        let queue = in_flight() as f64 - estimate * base.as_secs_f64();
        let gain = if queue > PACKET {
            gain.min(DRAIN_GAIN)
        } else {
            gain
        };
        Some(estimate * gain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sender that always has data, paced by a [`Pacer`] (a packet goes
    /// when the pacer's clock allows and at most twice the estimated
    /// bandwidth-delay product is in flight; unpaced, four packets), over a
    /// bottleneck whose rate (bytes a second) is `rate(t)` and 20 ms of
    /// propagation, every packet acknowledged at once. Returns, per 100 ms
    /// from the start, the bytes delivered and the largest queue (time the
    /// link was booked ahead when a packet was sent), and the pacing rates
    /// seen.
    fn run(rate: impl Fn(Duration) -> f64, total: Duration) -> Vec<(usize, Duration, f64)> {
        const SIZE: usize = 1200;
        let t0 = crate::sim::start_instant();
        let prop = Duration::from_millis(20);
        let step = Duration::from_micros(100);
        let mut pacer = Pacer::default();
        let mut delivered = 0u64;
        let mut acks: VecDeque<Instant> = VecDeque::new();
        let (mut link_free, mut next_send) = (t0, t0);
        let mut out = vec![(0, Duration::ZERO, 0.0); (total.as_millis() / 100) as usize + 1];
        let mut now = t0;
        while now < t0 + total {
            now += step;
            let slot = ((now - t0).as_millis() / 100) as usize;
            let base = prop + Duration::from_secs_f64(SIZE as f64 / rate(now - t0));
            while acks.front().is_some_and(|&at| at <= now) {
                let at = acks.pop_front().expect("front");
                delivered += SIZE as u64;
                out[slot].0 += SIZE;
                pacer.on_progress(delivered, at, true, base);
            }
            let paced = pacer.rate(now, base, || acks.len() * SIZE);
            let window = paced.map_or(4 * SIZE, |_| {
                2 * (pacer.bottleneck_rate().unwrap_or(0.0) * base.as_secs_f64()) as usize + SIZE
            });
            while (acks.len() + 1) * SIZE <= window && now >= next_send {
                let start = link_free.max(now);
                out[slot].1 = out[slot].1.max(start - now);
                link_free = start + Duration::from_secs_f64(SIZE as f64 / rate(now - t0));
                acks.push_back(link_free + prop);
                if let Some(r) = paced {
                    next_send = next_send.max(now) + Duration::from_secs_f64(SIZE as f64 / r);
                    out[slot].2 = r;
                }
            }
        }
        out
    }

    /// 1 Mbit/s: the link stays busy, and what waits at the bottleneck is
    /// about the packet on the wire (9.6 ms) at the 99th percentile.
    #[test]
    fn a_slow_link_stays_busy_with_no_standing_queue() {
        let out = run(|_| 125_000.0, Duration::from_secs(10));
        let steady = &out[20..100];
        let bytes: usize = steady.iter().map(|s| s.0).sum();
        assert!(bytes as f64 >= 0.97 * 125_000.0 * 8.0, "{bytes}");
        let mut queues: Vec<Duration> = steady.iter().map(|s| s.1).collect();
        queues.sort_unstable();
        let q99 = queues[queues.len() * 99 / 100];
        // The packet being serialized (9.6 ms) and what the probes and the
        // burst after an unpaced startup leave, a quarter packet at most.
        assert!(q99 <= Duration::from_millis(12), "{q99:?}");
    }

    /// The path doubles its rate: the pacer finds it within a few seconds
    /// (an eighth more each cycle), and follows it back down.
    #[test]
    fn the_rate_follows_the_path_up_and_down() {
        let rate = |t: Duration| match t.as_secs() {
            0..5 => 125_000.0,
            5..12 => 250_000.0,
            _ => 125_000.0,
        };
        let out = run(rate, Duration::from_secs(16));
        let delivered = |from: usize, to: usize| {
            out[from..to].iter().map(|s| s.0).sum::<usize>() as f64 / ((to - from) as f64 / 10.0)
        };
        assert!(delivered(20, 50) >= 0.97 * 125_000.0, "{}", delivered(20, 50));
        // Two seconds after the change the path is in use.
        assert!(delivered(70, 120) >= 0.95 * 250_000.0, "{}", delivered(70, 120));
        // Slower again: the estimate forgets the faster path within two
        // cycles, and the queue it built (up to the window, 95 ms) drains
        // at the drain gain: a second and a half later, under two packets.
        assert!(delivered(130, 160) >= 0.97 * 125_000.0);
        let late = out[135..160].iter().map(|s| s.1).max().expect("slots");
        assert!(late < Duration::from_millis(20), "{late:?}");
    }

    /// A fast path is not paced.
    #[test]
    fn a_fast_path_is_not_paced() {
        let out = run(|_| 12_500_000.0, Duration::from_secs(2));
        assert!(out.iter().all(|s| s.2 == 0.0));
    }

    /// A stall on a fast path: at 100 MB/s over a 0.1 ms round trip, the
    /// host stops for 5 ms, and two packets are acknowledged 5 ms apart (a
    /// sample of 480 kB/s). The estimate keeps the path's rate: the
    /// filter's window is [`MIN_WINDOW`], not 16 round trips (1.6 ms, when
    /// the stall's sample was the only one left and read as a slow path,
    /// which paced the association at 480 kB/s).
    #[test]
    fn a_stall_on_a_fast_path_does_not_read_as_a_slow_path() {
        let t0 = crate::sim::start_instant();
        let base = Duration::from_micros(100);
        let mut pacer = Pacer::default();
        let mut delivered = 0;
        let mut now = t0;
        // 10 ms at 100 MB/s: a 1,200-byte packet acknowledged each 12 µs.
        for _ in 0..833 {
            now += Duration::from_micros(12);
            delivered += 1200;
            pacer.on_progress(delivered, now, true, base);
        }
        for _ in 0..2 {
            now += Duration::from_micros(2500);
            delivered += 1200;
            pacer.on_progress(delivered, now, true, base);
        }
        let estimate = pacer.bottleneck_rate().expect("samples");
        assert!(estimate > 50e6, "{estimate}");
        assert_eq!(pacer.rate(now, base, || 0), None);
    }
}
