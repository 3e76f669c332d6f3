// Copyright 2026 The dcSCTP Authors
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
//     https://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! The congestion window of [`CongestionControl::LossTolerant`]: CUBIC's growth (RFC 9438),
//! HyStart++'s end of slow start (RFC 9406), and congestion judged once per round trip from the
//! round's loss rate and its smallest round trip, as BBRv2 judges loss.
//!
//! [`CongestionControl::LossTolerant`]: crate::api::CongestionControl::LossTolerant

use crate::api::LOSS_THRESHOLD_PERCENT;
use crate::api::SocketTime;
use crate::types::SerialNumber;
use crate::types::Tsn;
use std::cmp::max;
use std::cmp::min;
use std::time::Duration;

/// CUBIC's `C` (RFC 9438 § 5.1), in segments per second cubed.
const CUBIC_C: f64 = 0.4;
/// CUBIC's multiplicative decrease factor (RFC 9438 § 4.6).
const CUBIC_BETA: f64 = 0.7;
/// The Reno-friendly region's additive increase, segments per round trip (RFC 9438 § 4.3).
const CUBIC_ALPHA: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
/// How long a minimum round trip stays valid before a round's minimum replaces it (BBR's
/// `MinRTTFilterLen`), so the base follows a path that got longer.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// The smallest standing queue (above the minimum round trip, seen by every packet of a round)
/// taken for congestion; on a long path the minimum round trip itself.
const MIN_STANDING_QUEUE: Duration = Duration::from_millis(5);
/// HyStart++'s bounds on the round-trip growth that ends slow start (RFC 9406 § 4.2).
const HYSTART_MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const HYSTART_MAX_RTT_THRESH: Duration = Duration::from_millis(16);
/// Round-trip samples a round takes before HyStart++ judges it (RFC 9406's `N_RTT_SAMPLE`).
const HYSTART_SAMPLES: usize = 8;
/// Round ends in Conservative Slow Start (the round that began it, then one whole round) before
/// HyStart++ takes the round trip's growth for the path's (RFC 9406's `CSS_ROUNDS`, there 5).
const CSS_ROUNDS: u32 = 2;
/// A round's losses are congestion only if more than this many MTUs were lost, whatever the
/// share: on a small window one random loss is more than 2 %.
const MIN_LOST_MTUS: usize = 2;
/// Slow start grows the window by at most this many MTUs per SACK (RFC 9260's `L`): with a
/// SACK every second packet, by half a window per round trip, so that a round trip that shows the
/// queue late (it drains between the rounds of slow start) has overshot less.
const SLOW_START_L: usize = 1;

/// What one SACK told the congestion controller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SackSummary {
    /// Bytes (DATA headers and padding included) newly acknowledged, by the cumulative TSN ack
    /// or gap ack blocks.
    pub acked: usize,
    /// Bytes declared lost (to be retransmitted or abandoned).
    pub lost: usize,
    /// The shortest round trip of a newly acknowledged chunk sent once.
    pub rtt: Option<Duration>,
    /// The highest TSN newly acknowledged.
    pub highest_acked: Tsn,
    /// The TSN the next new chunk will get.
    pub next_tsn: Tsn,
    /// Whether the window was fully used before the SACK (RFC 9260 § 7.2.1): only then may it
    /// grow.
    pub fully_utilized: bool,
}

/// The state of the loss-tolerant controller; the window itself and the slow-start threshold
/// stay in the retransmission queue, which also applies RFC 9260's timeout rule to them.
#[derive(Debug)]
pub(crate) struct LossTolerant {
    mtu: usize,
    min_cwnd: usize,
    /// The smallest round trip seen, and when.
    min_rtt: Option<(Duration, SocketTime)>,
    /// The round under way ends when this TSN, or a later one, is acknowledged.
    round_end: Tsn,
    round_acked: usize,
    round_lost: usize,
    round_min_rtt: Option<Duration>,
    /// SACKs of the round under way that carried a round-trip sample.
    round_samples: usize,
    /// In HyStart++'s Conservative Slow Start: the judged rounds that ended in it.
    css: Option<u32>,
    /// The association's first slow start (no retransmission timeout yet): HyStart++ runs with
    /// Conservative Slow Start only there.
    initial_slow_start: bool,
    /// After a retransmission timeout, until a SACK acknowledges this TSN (sent after it): a
    /// later timeout is the same episode's back-off.
    timeout_recovery: Option<Tsn>,
    /// The round under way was sent before the last decrease: it is not judged.
    skip_round: bool,
    /// CUBIC's `W_max`, bytes.
    w_max: f64,
    /// CUBIC's epoch: when it began, and its `K` in seconds.
    epoch: Option<(SocketTime, f64)>,
    /// CUBIC's Reno-friendly estimate `W_est`, bytes.
    w_est: f64,
    /// Growth not yet applied to the window (less than a byte).
    carry: f64,
}

impl LossTolerant {
    pub fn new(mtu: usize, min_cwnd: usize, next_tsn: Tsn) -> Self {
        Self {
            mtu,
            min_cwnd,
            min_rtt: None,
            round_end: next_tsn,
            round_acked: 0,
            round_lost: 0,
            round_min_rtt: None,
            round_samples: 0,
            css: None,
            initial_slow_start: true,
            timeout_recovery: None,
            skip_round: false,
            w_max: 0.0,
            epoch: None,
            w_est: 0.0,
            carry: 0.0,
        }
    }

    /// The smallest round trip seen (within [`MIN_RTT_WINDOW`]).
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(rtt, _)| rtt)
    }

    /// Updates the window (`cwnd`) and slow-start threshold (`ssthresh`) after a SACK.
    pub fn on_sack(
        &mut self,
        now: SocketTime,
        sack: SackSummary,
        cwnd: &mut usize,
        ssthresh: &mut usize,
    ) {
        if let Some(rtt) = sack.rtt {
            self.round_samples += 1;
            self.round_min_rtt = Some(self.round_min_rtt.map_or(rtt, |r| r.min(rtt)));
            match self.min_rtt {
                Some((m, _)) if rtt > m => {
                    // Close to the minimum again (a decrease drained the queue): it still holds.
                    if rtt <= m + m / 8 {
                        self.min_rtt = Some((m, now));
                    }
                }
                _ => self.min_rtt = Some((rtt, now)),
            }
        }
        self.round_acked += sack.acked;
        if self.timeout_recovery.is_some_and(|end| sack.highest_acked.greater_than_or_equal(end)) {
            self.timeout_recovery = None;
        }
        // While a timeout is being recovered from, what is declared lost was sent before it,
        // and the timeout already took the window down: those losses are not the round's.
        if self.timeout_recovery.is_none() {
            self.round_lost += sack.lost;
        }

        // Loss is judged as it comes (BBRv2's `IsInflightTooHigh`): once the round has lost more
        // than the threshold's share of a window (of what it sent, if more), the bottleneck
        // overflows; waiting for the round to end would let it overflow for a round longer.
        let sent = max(self.round_acked + self.round_lost, *cwnd);
        if !self.skip_round
            && self.round_lost > MIN_LOST_MTUS * self.mtu
            && self.round_lost * 100 > LOSS_THRESHOLD_PERCENT * sent
        {
            log::debug!("congested round: lost {} of {}", self.round_lost, sent);

            self.decrease(cwnd, ssthresh);
            self.start_round(sack.next_tsn);
            return;
        }

        // HyStart++ (RFC 9406 § 4.2), in the association's first slow start (§ 4.3: a later one,
        // after a timeout, runs to the threshold the timeout left): after the round's first
        // samples, a round trip grown by an eighth of the base begins Conservative Slow Start,
        // without waiting for the round's end. That holds the window and checks, until the end
        // of the next whole round, that the growth is the path's: samples back under the
        // threshold resume slow start (one round trip that a busy host or a delayed SACK
        // stretched is no queue: on the `wan` path such rounds ended slow start at 12 packets),
        // else slow start ends there, at the window that showed the queue. A round counts
        // towards that end only with HyStart++'s 8 samples, all of them over the threshold (a
        // round of fewer says nothing). Where this departs from the RFC, measured in
        // `tests/congestion_sim.rs` (100 ms, a queue of twice the path's product): the RFC's
        // CSS grows the window a quarter as fast for 5 rounds, which on top of slow start's
        // overshoot overflowed that queue into retransmission timeouts (with 0.1 % loss, 93 %
        // of the bottleneck fell to 76–93 % over four seeds), so it holds the window for 2; and
        // the growth is measured from the path's minimum, as before CSS, not the last round's.
        if *cwnd < *ssthresh
            && self.initial_slow_start
            && !self.skip_round
            && self.round_samples >= HYSTART_SAMPLES
        {
            if let (Some(round), Some(base)) = (self.round_min_rtt, self.min_rtt()) {
                let thresh = (base / 8).clamp(HYSTART_MIN_RTT_THRESH, HYSTART_MAX_RTT_THRESH);
                let grown = round >= base + thresh;
                if grown && self.css.is_none() {
                    self.css = Some(0);
                    log::debug!("conservative slow start: round trip {round:?}, cwnd={}", *cwnd);
                } else if !grown && self.css.is_some() {
                    self.css = None;
                    log::debug!("slow start resumes: round trip {round:?}, cwnd={}", *cwnd);
                }
            }
        }

        // No growth in the round after a decrease: what it acknowledges was sent before it.
        if sack.fully_utilized && sack.acked > 0 && !self.skip_round {
            if *cwnd < *ssthresh {
                if self.css.is_none() {
                    *cwnd += min(sack.acked, SLOW_START_L * self.mtu);
                }
            } else {
                self.grow_cubic(now, sack.acked, cwnd);
            }
        }

        if sack.highest_acked.greater_than_or_equal(self.round_end) {
            self.end_round(now, cwnd, ssthresh);
            self.start_round(sack.next_tsn);
        }
    }

    /// After a retransmission timeout (which set the window to one MTU and `ssthresh` to half
    /// the window it found, `old_ssthresh` before): the next epoch's plateau is the window the
    /// timeout found, and a new round begins (the window grows again at once: the round after a
    /// decrease, which may have led to the timeout, is over). Until a SACK acknowledges what is
    /// sent from now on, the timeout is being recovered from: losses are not judged (what is
    /// declared lost was sent before it), and a further timeout is this one backing off (its
    /// retransmissions were lost too): it keeps the threshold and plateau the first one set
    /// instead of halving a window of one MTU down to the minimum (as Linux's TCP keeps its
    /// `ssthresh` through one loss episode's timeouts). In the simulator, a queue of a quarter
    /// of the path's product: 46 → 51 % of the bottleneck (`tests/congestion_sim.rs`).
    pub fn on_timeout(
        &mut self,
        old_cwnd: usize,
        old_ssthresh: usize,
        ssthresh: &mut usize,
        next_tsn: Tsn,
    ) {
        if self.timeout_recovery.is_some() {
            *ssthresh = old_ssthresh;
        } else {
            self.w_max = old_cwnd as f64;
        }
        self.timeout_recovery = Some(next_tsn);
        self.epoch = None;
        self.carry = 0.0;
        self.skip_round = false;
        self.css = None;
        self.initial_slow_start = false;
        self.start_round(next_tsn);
    }

    /// Shrinks the window by CUBIC's `β`; the round then beginning, whose acknowledgements are
    /// for what was sent before, is not judged.
    fn decrease(&mut self, cwnd: &mut usize, ssthresh: &mut usize) {
        let w = *cwnd as f64;
        // Fast convergence (RFC 9438 § 4.7): a flow whose plateau fell releases bandwidth.
        self.w_max = if w < self.w_max { w * (1.0 + CUBIC_BETA) / 2.0 } else { w };
        *cwnd = max((w * CUBIC_BETA) as usize, self.min_cwnd);
        *ssthresh = *cwnd;
        self.epoch = None;
        self.carry = 0.0;
        self.skip_round = true;
        self.css = None;
    }

    fn start_round(&mut self, next_tsn: Tsn) {
        self.round_end = next_tsn;
        self.round_acked = 0;
        self.round_lost = 0;
        self.round_min_rtt = None;
        self.round_samples = 0;
    }

    /// Judges the round's round trip: a standing queue is congestion, a growing one ends slow
    /// start.
    fn end_round(&mut self, now: SocketTime, cwnd: &mut usize, ssthresh: &mut usize) {
        let base = self.min_rtt();
        let queue = match (self.round_min_rtt, base) {
            (Some(round), Some(base)) => round.saturating_sub(base),
            _ => Duration::ZERO,
        };
        if self.skip_round {
            self.skip_round = false;
        } else if base.is_some_and(|base| queue >= max(base / 2, MIN_STANDING_QUEUE)) {
            log::debug!("congested round: queue {queue:?}");
            self.decrease(cwnd, ssthresh);
        } else if let Some(rounds) = self.css.filter(|_| self.round_samples >= HYSTART_SAMPLES) {
            // A round back under the threshold resumed slow start as its samples came.
            if rounds + 1 >= CSS_ROUNDS {
                // The round trip stayed up for CSS_ROUNDS rounds: the path's queue.
                *ssthresh = *cwnd;
                self.w_max = *cwnd as f64;
                self.epoch = None;
                self.css = None;
                log::debug!("slow start ends: cwnd={}", *cwnd);
            } else {
                self.css = Some(rounds + 1);
            }
        }
        if let (Some((_, at)), Some(round)) = (self.min_rtt, self.round_min_rtt) {
            if now - at > MIN_RTT_WINDOW {
                self.min_rtt = Some((round, now));
            }
        }
    }

    /// CUBIC's congestion avoidance (RFC 9438 § 4.2–4.4), in bytes.
    fn grow_cubic(&mut self, now: SocketTime, acked: usize, cwnd: &mut usize) {
        let segment = self.mtu as f64;
        let w = *cwnd as f64;
        let (start, k) = match self.epoch {
            Some(epoch) => epoch,
            None => {
                if self.w_max < w {
                    self.w_max = w;
                }
                self.w_est = w;
                let k = ((self.w_max - w) / segment / CUBIC_C).cbrt();
                self.epoch = Some((now, k));
                (now, k)
            }
        };
        let rtt = self.min_rtt().unwrap_or(Duration::ZERO).as_secs_f64();
        let t = (now - start).as_secs_f64() + rtt;
        let cubic = CUBIC_C * (t - k).powi(3) * segment + self.w_max;
        let target = cubic.clamp(w, 1.5 * w);
        self.w_est += CUBIC_ALPHA * segment * acked as f64 / w;
        let growth = if self.w_est > cubic {
            (self.w_est - w).max(0.0)
        } else {
            (target - w) * acked as f64 / w
        };
        self.carry += growth;
        let whole = self.carry as usize;
        *cwnd += whole;
        self.carry -= whole as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: usize = 1200;
    const BASE: Duration = Duration::from_millis(50);

    /// Drives a controller by an ack clock: each SACK acknowledges two packets and the sender
    /// sends as many new ones, so a window's worth stays in flight. `round` delivers one window
    /// with `lost` packets of it declared lost (spread over the window), every sample `rtt`.
    struct Path {
        cc: LossTolerant,
        cwnd: usize,
        ssthresh: usize,
        now: SocketTime,
        acked: Tsn,
    }

    impl Path {
        fn new(cwnd: usize, ssthresh: usize) -> Self {
            Self {
                cc: LossTolerant::new(MTU, 4 * MTU, Tsn(1)),
                cwnd,
                ssthresh,
                now: SocketTime::zero(),
                acked: Tsn(0),
            }
        }

        fn round(&mut self, lost: usize, rtt: Duration) {
            let packets = self.cwnd / MTU;
            let sacks = (packets / 2).max(1);
            let step = rtt / sacks as u32;
            for i in 0..sacks {
                // Loss `j` of `lost` in the SACK at `j × sacks ÷ lost`.
                let lost_here = (0..lost).filter(|j| j * sacks / lost == i).count();
                self.acked = self.acked.add_to(2);
                self.now = self.now + step;
                let sack = SackSummary {
                    acked: 2 * MTU,
                    lost: lost_here * MTU,
                    rtt: Some(rtt),
                    highest_acked: self.acked,
                    next_tsn: self.acked.add_to(1 + (self.cwnd / MTU) as u32),
                    fully_utilized: true,
                };
                self.cc.on_sack(self.now, sack, &mut self.cwnd, &mut self.ssthresh);
            }
        }

        /// One SACK of two packets, `rtt` after they were sent; `true` if it ended the
        /// controller's round.
        fn sack(&mut self, rtt: Duration, sample: bool) -> bool {
            let end = self.cc.round_end;
            self.acked = self.acked.add_to(2);
            self.now = self.now + rtt / ((self.cwnd / MTU / 2).max(1) as u32);
            let sack = SackSummary {
                acked: 2 * MTU,
                lost: 0,
                rtt: sample.then_some(rtt),
                highest_acked: self.acked,
                next_tsn: self.acked.add_to(1 + (self.cwnd / MTU) as u32),
                fully_utilized: true,
            };
            self.cc.on_sack(self.now, sack, &mut self.cwnd, &mut self.ssthresh);
            self.cc.round_end != end
        }
    }

    // The controller's rounds are one window long but begin a SACK after `Path::round`'s, so a
    // round's verdict shows after the next `round` call.

    #[test]
    fn random_loss_below_the_threshold_does_not_shrink_the_window() {
        // 0.1 % loss on a window of 2,000 packets: two a round.
        let mut path = Path::new(2000 * MTU, 1000 * MTU);
        let mut last = path.cwnd;
        for _ in 0..400 {
            path.round(2, BASE);
            assert!(path.cwnd >= last, "{} < {last}", path.cwnd);
            last = path.cwnd;
        }
        // CUBIC's convex growth from its plateau: 20 s at 50 ms is 400 MTUs past it (Reno's
        // additive increase would have added 400 too, but halved at every loss).
        assert!(path.cwnd > 2300 * MTU, "{}", path.cwnd / MTU);
    }

    #[test]
    fn a_round_over_the_loss_threshold_shrinks_the_window_once() {
        let mut path = Path::new(1000 * MTU, 500 * MTU);
        path.round(0, BASE);
        let before = path.cwnd;
        // 5 % lost, twice: one congestion event (the second round was sent before the decrease).
        path.round(50, BASE);
        path.round(35, BASE);
        let after = path.cwnd;
        assert!(after.abs_diff(before * 7 / 10) < 10 * MTU, "{} vs {}", after / MTU, before / MTU);
        // A third lossy round is judged again.
        path.round(35, BASE);
        path.round(0, BASE);
        assert!(path.cwnd < after * 8 / 10, "{} vs {}", path.cwnd / MTU, after / MTU);
    }

    #[test]
    fn a_standing_queue_of_half_a_round_trip_shrinks_the_window() {
        let mut path = Path::new(1000 * MTU, 500 * MTU);
        path.round(0, BASE);
        path.round(0, BASE + BASE / 4);
        path.round(0, BASE + BASE / 4);
        let before = path.cwnd;
        assert!(before >= 1000 * MTU, "a quarter of a round trip of queue is tolerated");
        path.round(0, BASE + BASE / 2 + Duration::from_millis(1));
        path.round(0, BASE + BASE / 2 + Duration::from_millis(1));
        assert!(path.cwnd < before * 8 / 10, "{} vs {}", path.cwnd / MTU, before / MTU);
    }

    #[test]
    fn one_random_loss_on_a_small_window_is_not_congestion() {
        // 20 packets: one loss is 5 % of the window, but two MTUs at least must be lost.
        let mut path = Path::new(20 * MTU, 10 * MTU);
        let before = path.cwnd;
        for _ in 0..10 {
            path.round(1, BASE);
        }
        assert!(path.cwnd >= before, "{} vs {before}", path.cwnd);
    }

    #[test]
    fn slow_start_ends_when_the_round_trip_stays_grown() {
        let mut path = Path::new(10 * MTU, usize::MAX);
        for _ in 0..6 {
            path.round(0, BASE);
        }
        assert_eq!(path.ssthresh, usize::MAX);
        let grown = path.cwnd;
        assert!(grown > 100 * MTU, "slow start grows by half per round: {}", grown / MTU);
        // An eighth of the base is 6.25 ms: the round trip grew by 7 ms, and stays so through
        // Conservative Slow Start's rounds, which hold the window.
        path.round(0, BASE + Duration::from_millis(7));
        path.round(0, BASE + Duration::from_millis(7));
        assert_eq!(path.ssthresh, usize::MAX, "conservative slow start first");
        let css = path.cwnd;
        for _ in 0..CSS_ROUNDS {
            path.round(0, BASE + Duration::from_millis(7));
        }
        assert!(path.ssthresh < usize::MAX, "slow start ended");
        assert!(path.ssthresh >= grown, "without a decrease");
        assert!(path.cwnd < css + css / 4, "{} vs {}", path.cwnd / MTU, css / MTU);
    }

    #[test]
    fn one_stretched_round_trip_does_not_end_slow_start() {
        // A busy host or a delayed SACK stretches one round's samples: slow start goes on.
        let mut path = Path::new(10 * MTU, usize::MAX);
        for _ in 0..3 {
            path.round(0, BASE);
        }
        path.round(0, BASE + Duration::from_millis(8));
        for _ in 0..(CSS_ROUNDS + 2) {
            path.round(0, BASE);
        }
        assert_eq!(path.ssthresh, usize::MAX, "still in slow start");
        let before = path.cwnd;
        path.round(0, BASE);
        assert!(path.cwnd > before * 13 / 10, "at slow start's pace: {} vs {}", path.cwnd, before);
    }

    #[test]
    fn conservative_slow_start_holds_the_window_and_ends_at_the_second_round_end() {
        let mut path = Path::new(10 * MTU, usize::MAX);
        for _ in 0..6 {
            path.round(0, BASE);
        }
        let late = BASE + Duration::from_millis(7);
        // Into the first late round: 8 samples, then Conservative Slow Start.
        let mut ends = 0;
        while path.cc.css.is_none() {
            ends += usize::from(path.sack(late, true));
            assert!(ends < 2, "no CSS");
        }
        let held = path.cwnd;
        ends = 0;
        while ends < 2 {
            assert_eq!(path.ssthresh, usize::MAX, "after {ends} round ends");
            assert_eq!(path.cwnd, held, "the window holds");
            ends += usize::from(path.sack(late, true));
        }
        assert_eq!(path.ssthresh, held, "ended at the second round end, where it was");
    }

    #[test]
    fn a_conservative_round_without_samples_does_not_end_slow_start() {
        let mut path = Path::new(10 * MTU, usize::MAX);
        for _ in 0..6 {
            path.round(0, BASE);
        }
        let late = BASE + Duration::from_millis(7);
        while path.cc.css.is_none() {
            path.sack(late, true);
        }
        // Rounds whose SACKs carry no sample (retransmitted chunks, Karn's rule): not judged.
        for _ in 0..3 {
            while !path.sack(late, false) {}
        }
        assert_eq!(path.ssthresh, usize::MAX, "still in slow start");
        // Samples back at the base resume it.
        for _ in 0..HYSTART_SAMPLES {
            path.sack(BASE, true);
        }
        assert!(path.cc.css.is_none());
    }

    #[test]
    fn after_a_timeout_slow_start_runs_to_the_threshold() {
        // RFC 9406 § 4.3: HyStart++ is for the first slow start; the one after a timeout runs to
        // the threshold it left, round trip or not.
        let mut path = Path::new(MTU, 1000 * MTU);
        let mut ssthresh = 60 * MTU;
        path.cc.on_timeout(120 * MTU, 1000 * MTU, &mut ssthresh, Tsn(1));
        path.ssthresh = ssthresh;
        path.cwnd = 4 * MTU;
        for _ in 0..12 {
            path.round(0, BASE + Duration::from_millis(20));
        }
        assert_eq!(path.ssthresh, 60 * MTU);
        assert!(path.cwnd >= 60 * MTU, "{}", path.cwnd / MTU);
    }

    #[test]
    fn a_timeout_is_recovered_from_before_losses_count_and_backs_off_without_halving() {
        let mut path = Path::new(400 * MTU, 400 * MTU);
        path.round(0, BASE);
        // A timeout: the retransmission queue set the window to one MTU and the threshold to
        // half the window.
        let (old_cwnd, old_ssthresh) = (path.cwnd, path.ssthresh);
        let mut ssthresh = old_cwnd / 2;
        let next = path.acked.add_to(1 + (path.cwnd / MTU) as u32);
        path.cc.on_timeout(old_cwnd, old_ssthresh, &mut ssthresh, next);
        assert_eq!(ssthresh, old_cwnd / 2);
        // Its back-off, before anything sent since was acknowledged: the threshold stays.
        let mut again = 4 * MTU;
        path.cc.on_timeout(MTU, ssthresh, &mut again, next);
        assert_eq!(again, old_cwnd / 2, "kept through the back-off");
        // SACKs that declare what was sent before the timeout lost: not congestion.
        path.ssthresh = again;
        path.cwnd = 8 * MTU;
        for _ in 0..3 {
            path.acked = path.acked.add_to(2);
            path.now = path.now + BASE / 4;
            let sack = SackSummary {
                acked: 2 * MTU,
                lost: 10 * MTU,
                rtt: None,
                highest_acked: path.acked,
                next_tsn: next.add_to(8),
                fully_utilized: true,
            };
            path.cc.on_sack(path.now, sack, &mut path.cwnd, &mut path.ssthresh);
        }
        assert_eq!(path.ssthresh, old_cwnd / 2, "no decrease for losses before the timeout");
        assert!(path.cwnd > 8 * MTU, "slow start goes on");
        // Recovered (what was sent after the timeout is acknowledged): the losses declared
        // during the recovery are not carried into the round.
        path.acked = next;
        let sack = SackSummary {
            acked: 2 * MTU,
            lost: 0,
            rtt: None,
            highest_acked: next,
            next_tsn: next.add_to(8),
            fully_utilized: true,
        };
        path.cc.on_sack(path.now, sack, &mut path.cwnd, &mut path.ssthresh);
        assert_eq!(path.ssthresh, old_cwnd / 2, "no decrease for them after it either");
    }

    #[test]
    fn congestion_in_slow_start_ends_it_with_a_decrease() {
        let mut path = Path::new(10 * MTU, usize::MAX);
        for _ in 0..6 {
            path.round(0, BASE);
        }
        let before = path.cwnd;
        path.round(before / MTU / 10, BASE);
        path.round(0, BASE);
        assert!(path.ssthresh < usize::MAX, "slow start ended");
        let after = path.cwnd;
        path.round(0, BASE);
        assert!(path.cwnd < after * 11 / 10, "no more doubling: {} vs {}", path.cwnd, after);
    }

    #[test]
    fn after_a_decrease_the_window_climbs_back_to_its_plateau_concavely() {
        let mut path = Path::new(1000 * MTU, 500 * MTU);
        path.round(0, BASE);
        path.round(100, BASE);
        path.round(0, BASE);
        let low = path.cwnd;
        assert!(low < 750 * MTU, "{}", low / MTU);
        // K = cbrt(W_max × (1 − β) ÷ C) = cbrt(1000 × 0.3 ÷ 0.4) ≈ 9.1 s, about 180 rounds.
        for _ in 0..90 {
            path.round(0, BASE);
        }
        let mid = path.cwnd;
        assert!(mid > low + (1000 * MTU - low) / 2, "concave: most of the way back at K/2");
        assert!(mid < 1000 * MTU, "not past the plateau yet");
        for _ in 0..200 {
            path.round(0, BASE);
        }
        assert!(path.cwnd > 1000 * MTU, "past the plateau after K: {}", path.cwnd / MTU);
    }

    #[test]
    fn the_minimum_round_trip_expires() {
        let mut path = Path::new(100 * MTU, 50 * MTU);
        path.round(0, BASE);
        assert_eq!(path.cc.min_rtt(), Some(BASE));
        // The path got longer: after the window, a round's minimum replaces the old base.
        for _ in 0..250 {
            path.round(0, 3 * BASE);
        }
        assert_eq!(path.cc.min_rtt(), Some(3 * BASE));
    }
}
