//! How much an association may hold in its transport queue.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Pacer;

/// How long a base round trip stays valid before it is measured again.
const RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long the budget stays at its minimum to measure the base round trip.
const PROBE_TIME: Duration = Duration::from_millis(200);
/// Most send marks kept for round-trip samples.
const MAX_MARKS: usize = 1024;
/// Bytes of one full packet's worth of messages.
const QUANTUM: usize = crate::proto::MAX_PACKET_MESSAGE;
/// The standing queue a round may show before the budget grows, in packets.
const LOW_PACKETS: f64 = 0.25;
/// The standing queue a round may show before the budget shrinks, in
/// packets.
const HIGH_PACKETS: f64 = 1.0;
/// On a long path the standing-queue target is at least this share of the
/// base round trip.
const TARGET_OF_BASE: f64 = 0.25;

/// The egress budget of one association (sans-IO): how many bytes the
/// engine lets sit in the transport's own queue (in flight plus unsent).
///
/// SCTP keeps one FIFO per association and fills whatever bottleneck queue
/// the path has; anything the engine hands it is out of the scheduler's
/// hands. So the engine hands it about a bandwidth-delay product plus a
/// small standing queue, found by watching delay, as TCP Vegas does:
///
/// - Round trips are sampled per hand-over of at least half a packet (a
///   smaller one crosses a slow link faster than the packets the budget is
///   about): from handing it over until its first byte has left the queue
///   (acknowledged) for the *base* round trip, the windowed minimum; until
///   its last byte has, for the queue a round shows (that byte waited
///   behind everything handed over before it, its own batch included).
/// - Each *round* (about one round trip: until the bytes handed over when
///   it began have left) in which the budget held the sender back, the
///   smallest round trip of the round tells how much of the budget sat in
///   a queue: `budget × (1 − base / round trip)` bytes. Below
///   a quarter of a packet the budget grows (by an eighth, at least a
///   packet); above one packet it shrinks. On a fast path,
///   where `target` × rate is more than a packet, the marks are half of
///   that and that instead, `target` being at least a quarter of the base
///   round trip (a host's scheduling jitter of a few milliseconds is a
///   small share of a long path's round trip, and what a long path holds
///   in flight dwarfs the queue it allows). So a slow link keeps about one
///   packet queued (each packet of queue delays a High message by its
///   serialization time), a fast one about `target`. On a fast path a
///   round over the high mark shrinks the budget only when the round
///   judged before it was over too: one round whose acknowledgements a
///   busy host delayed does not take back what the path holds.
/// - It starts at `min` and, each round that shows no more than the high
///   mark of queue (*startup*), grows by what the path carried in a base
///   round trip: it doubles while under the path's bandwidth-delay product
///   (a large path is found in a few round trips) and adds a packet at a
///   time on a path whose product is under the minimum (a second of queue
///   in one round on a 20 kbit/s link made SCTP's retransmission timer
///   fire early). The first round over the high mark ends startup. Past
///   the high mark the budget shrinks back to the middle of the marks (a
///   packet at least) in one step. After a change, the next round (which
///   began under the old budget) is not judged.
/// - A round in which the budget did not hold the sender back (it sent all
///   it had) says nothing about the path and changes nothing.
/// - Every [`RTT_WINDOW`] without a new minimum the budget drops to `min`
///   for [`PROBE_TIME`] again, so the base follows a path that got longer
///   (as BBR's ProbeRTT does); it comes back a quarter (a packet at least)
///   lower, not in one burst onto the emptied path, which High messages
///   would wait behind. High senders' reserve counts from the budget
///   outside probes ([`EgressBudget::steady_budget`]).
///
/// Round trips are only as honest as the acknowledgements: the hub has the
/// node ask for an immediate SACK on every DATA packet of an association it
/// budgets (RFC 7053; `Node::set_immediate_acks`), so no sample waits for
/// the peer's delayed-ack timer or for a second packet.
#[derive(Debug, Clone)]
pub struct EgressBudget {
    min: usize,
    max: usize,
    target: Duration,
    budget: usize,
    /// Bytes handed over so far.
    handed: u64,
    /// Bytes that left the queue so far.
    delivered: u64,
    /// `(byte, when, kind)` of recent hand-overs: the first byte of each
    /// for the base, the last for the round.
    marks: VecDeque<(u64, Instant, Sample)>,
    base: Option<(Duration, Instant)>,
    /// Until when the budget is held at `min`, and the best base sample
    /// seen meanwhile.
    probe: Option<(Instant, Option<Duration>)>,
    /// The round under way (none before the first hand-over).
    round: Option<Round>,
    /// Still looking for the path's size (see the type's documentation).
    startup: bool,
    /// The delivery rate of the last round the budget held the sender
    /// back, bytes a second.
    rate: Option<f64>,
    /// The sender was held back since the last [`EgressBudget::on_progress`].
    held: bool,
    /// The last judged round showed a queue over the high mark.
    over: bool,
    /// The pacing rate, from the delivery rates measured here.
    pacer: Pacer,
    /// The last [`EgressBudget::pacing_rate`] paced.
    paced: bool,
}

/// Which round trip a mark samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sample {
    /// A hand-over's first byte: on an idle path, the base.
    First,
    /// A hand-over's last byte: the queue it met, its own batch included.
    Last,
}

/// One round of the budget's measurements.
#[derive(Debug, Clone)]
struct Round {
    /// The round ends when `delivered` reaches this.
    end: u64,
    start: Instant,
    delivered_at_start: u64,
    rtt: Option<Duration>,
    limited: bool,
    /// The budget when the round began.
    budget: usize,
}

impl EgressBudget {
    /// A budget between `min` and `max` bytes allowing about `target` of
    /// standing queue on a fast path (one packet on a slow one); it starts
    /// at `min`.
    pub fn new(min: usize, max: usize, target: Duration) -> Self {
        let min = min.min(max);
        Self {
            min,
            max,
            target,
            budget: min,
            handed: 0,
            delivered: 0,
            marks: VecDeque::new(),
            base: None,
            probe: None,
            round: None,
            startup: true,
            rate: None,
            held: false,
            over: false,
            pacer: Pacer::default(),
            paced: false,
        }
    }

    /// `bytes` were handed to the transport at `now`.
    pub fn on_sent(&mut self, bytes: usize, now: Instant) {
        if bytes == 0 {
            return;
        }
        if self.round.is_none() || self.handed == self.delivered {
            // Idle until now: a new round starts with this hand-over.
            self.round = Some(self.new_round(now));
        }
        let first = self.handed + 1;
        self.handed += bytes as u64;
        if bytes >= QUANTUM / 2 && self.marks.len() + 2 <= MAX_MARKS {
            self.marks.push_back((first, now, Sample::First));
            self.marks.push_back((self.handed, now, Sample::Last));
        }
    }

    /// The budget held the sender back: it had more to send than the
    /// budget's room.
    pub fn on_limited(&mut self) {
        self.held = true;
        if let Some(r) = &mut self.round {
            r.limited = true;
        }
    }

    /// The transport holds data it has not sent yet (waiting for the
    /// pacer's rate or its congestion window), though the budget did not
    /// hold the sender back: the sender is not application-limited, so the
    /// delivery rates measured meanwhile are the path's, and the pacer
    /// takes them (the budget's rounds are not judged for it). Without
    /// this, a pacer whose estimate a stall had made low paced a sender
    /// whose queue never filled the budget (a window of messages end to
    /// end, `dcengine load --window`) at that rate, took no sample of
    /// anything faster, and stayed there until the base was measured again
    /// (`perf/run.sh p2p-100B` over loopback: 4 k messages a second in
    /// two runs of three).
    pub fn on_backlogged(&mut self) {
        self.held = true;
    }

    fn new_round(&self, now: Instant) -> Round {
        Round {
            end: self.handed + 1,
            start: now,
            delivered_at_start: self.delivered,
            rtt: None,
            limited: false,
            budget: self.budget,
        }
    }

    /// The transport holds `buffered` bytes at `now`.
    pub fn on_progress(&mut self, buffered: usize, now: Instant) {
        let delivered = self
            .handed
            .saturating_sub(buffered as u64)
            .max(self.delivered);
        self.delivered = delivered;
        if let Some((base, _)) = self.base {
            self.pacer.on_progress(delivered, now, self.held, base);
        }
        self.held = false;
        while let Some(&(upto, at, kind)) = self.marks.front() {
            if upto > delivered {
                break;
            }
            self.marks.pop_front();
            self.rtt_sample(now.saturating_duration_since(at), kind, now);
        }
        if self.round.as_ref().is_some_and(|r| delivered >= r.end) {
            self.end_round(now);
        }
        // Time to measure the base again?
        match self.probe {
            Some((until, best)) if now >= until => {
                self.probe = None;
                // Back in steps, not in one burst onto an emptied path (a
                // High message handed over behind that burst would wait for
                // all of it).
                self.budget = self
                    .budget
                    .saturating_sub((self.budget / 4).max(QUANTUM))
                    .max(self.min);
                if let Some(rtt) = best {
                    self.base = Some((rtt, now));
                } else if let Some((rtt, _)) = self.base {
                    self.base = Some((rtt, now));
                }
            }
            None if self
                .base
                .is_some_and(|(_, at)| now.saturating_duration_since(at) > RTT_WINDOW) =>
            {
                self.probe = Some((now + PROBE_TIME, None));
            }
            _ => {}
        }
    }

    fn rtt_sample(&mut self, rtt: Duration, kind: Sample, now: Instant) {
        match kind {
            Sample::First => {
                if let Some((_, best)) = &mut self.probe {
                    *best = Some(best.map_or(rtt, |b| b.min(rtt)));
                }
                if self.base.is_none_or(|(min, _)| rtt <= min) {
                    self.base = Some((rtt, now));
                }
            }
            Sample::Last => {
                if let Some(r) = &mut self.round {
                    r.rtt = Some(r.rtt.map_or(rtt, |x| x.min(rtt)));
                }
            }
        }
    }

    /// A round ended: grow or shrink by the queue it showed.
    fn end_round(&mut self, now: Instant) {
        let next = self.new_round(now);
        let Some(round) = self.round.replace(next) else {
            return;
        };
        let span = now.saturating_duration_since(round.start);
        // A round that began under another budget (the last change is still
        // showing; startup does not wait) or while probing measures nothing
        // to act on.
        let stale = round.budget != self.budget && !self.startup;
        if !round.limited || self.probe.is_some() || span.is_zero() || stale {
            return;
        }
        let (Some((base, _)), Some(rtt)) = (self.base, round.rtt) else {
            return;
        };
        let rate = (self.delivered - round.delivered_at_start) as f64 / span.as_secs_f64();
        self.rate = Some(rate);
        // Vegas: of the budget in flight, the share `1 − base / rtt` sat in
        // a queue; the budget over the round trip is the rate it went at.
        let (base, rtt) = (base.as_secs_f64(), rtt.as_secs_f64().max(1e-6));
        let in_flight = self.budget as f64;
        let queue = in_flight * (1.0 - base / rtt).max(0.0);
        let target = self.target.as_secs_f64().max(base * TARGET_OF_BASE);
        let by_time = in_flight / rtt * target;
        let low = (QUANTUM as f64 * LOW_PACKETS).max(by_time / 2.0);
        let high = (QUANTUM as f64 * HIGH_PACKETS).max(by_time);
        // On a fast path (the marks by time), a queue must show in two
        // judged rounds in a row before the budget shrinks.
        let was_over = std::mem::replace(&mut self.over, queue > high);
        let confirmed = was_over || by_time <= QUANTUM as f64 * HIGH_PACKETS;
        if self.startup && queue <= high {
            // Add what the path carried in a base round trip: the budget
            // doubles while it is under the path's bandwidth-delay product,
            // and grows by that product when it is over (a slow path whose
            // product is under the minimum budget gets a packet at a time,
            // not a second of queue in one round).
            let bdp = (rate * base) as usize;
            self.budget = self
                .budget
                .saturating_add(bdp.min(self.budget).max(QUANTUM));
        } else if queue < low {
            self.budget = self.budget.saturating_add((self.budget / 8).max(QUANTUM));
        } else {
            self.startup = false;
            if queue > high && confirmed {
                // Back to the middle of the marks, a packet at least.
                let excess = queue - (low + high) / 2.0;
                self.budget = self.budget.saturating_sub((excess as usize).max(QUANTUM));
            }
        }
        self.budget = self.budget.clamp(self.min, self.max);
    }

    /// The bytes the transport may hold now.
    pub fn budget(&self) -> usize {
        if self.probe.is_some() {
            return self.min;
        }
        self.budget
    }

    /// The budget outside its round-trip probes (what [`EgressBudget::budget`]
    /// is, except while it dips to `min` to re-measure the base): for
    /// traffic a probe should not hold back.
    pub fn steady_budget(&self) -> usize {
        self.budget
    }

    /// How many more bytes may be handed over while the transport holds
    /// `buffered`.
    pub fn room(&self, buffered: usize) -> usize {
        self.budget().saturating_sub(buffered)
    }

    /// How long the transport takes to send `buffered` bytes at the
    /// measured delivery rate (zero before there is one): how long a
    /// message handed over now waits behind them.
    pub fn drain_time(&self, buffered: usize) -> Duration {
        // Past a minute the answer is "late" for any use; the cap keeps the
        // arithmetic finite whatever the rate.
        const MAX: Duration = Duration::from_secs(60);
        match self.rate {
            Some(rate) if rate > 0.0 => {
                Duration::try_from_secs_f64(buffered as f64 / rate).map_or(MAX, |d| d.min(MAX))
            }
            _ => Duration::ZERO,
        }
    }

    /// The rate to release data into the path at now, with `in_flight()`
    /// bytes sent and not yet acknowledged (asked only on a slow path),
    /// bytes a second (`None`: not
    /// paced; see [`Pacer`]): about the bottleneck's rate on a slow path
    /// once startup has found it, nothing elsewhere.
    pub fn pacing_rate(
        &mut self,
        now: Instant,
        in_flight: impl FnOnce() -> usize,
    ) -> Option<f64> {
        let rate = match self.base {
            Some((base, _)) if !self.startup && self.probe.is_none() => {
                self.pacer.rate(now, base, in_flight)
            }
            _ => None,
        };
        self.paced = rate.is_some();
        rate
    }

    /// Whether the last [`EgressBudget::pacing_rate`] paced.
    pub fn is_paced(&self) -> bool {
        self.paced
    }

    /// The path's bandwidth-delay product by the pacer's bottleneck rate
    /// and the base round trip, bytes (none before both are measured).
    pub fn bandwidth_delay(&self) -> Option<usize> {
        let (base, _) = self.base?;
        let rate = self.pacer.bottleneck_rate()?;
        Some((rate * base.as_secs_f64()) as usize)
    }

    /// A budget of `budget` bytes that has measured a delivery rate of
    /// `rate` bytes a second and a base round trip of `base` (for tests of
    /// what sizes itself by them).
    #[cfg(test)]
    pub(crate) fn measured(budget: usize, rate: f64, base: Duration, now: Instant) -> Self {
        let mut b = Self::new(2400, budget.max(2400), Duration::from_millis(5));
        b.budget = budget;
        b.rate = Some(rate);
        b.base = Some((base, now));
        b.startup = false;
        b
    }

    /// The delivery rate of the last round in which the budget held the
    /// sender back, bytes a second (none before one).
    pub fn delivery_rate(&self) -> Option<f64> {
        self.rate
    }

    /// The measured base round trip (the windowed minimum), if any.
    pub fn base_rtt(&self) -> Option<Duration> {
        self.base.map(|(r, _)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bottleneck of `rate` bytes a second and `rtt` of propagation,
    /// every packet acknowledged at once, fed with 1,000-byte packets by a
    /// sender that has `offered` bytes a second to send (`None`: always
    /// more) and hands over what the budget allows each millisecond.
    /// Returns the budgets and the standing queues (time the link was
    /// booked ahead) seen after `settle`, and the bytes delivered then.
    fn run(
        rate: f64,
        rtt: Duration,
        target: Duration,
        offered: Option<f64>,
        settle: Duration,
        total: Duration,
    ) -> (Vec<usize>, Vec<Duration>, usize) {
        run_jittered(rate, rtt, Duration::ZERO, target, offered, settle, total)
    }

    /// [`run`], each acknowledgement up to `jitter` late (seeded, in
    /// order): a busy host that reads its datagrams late.
    fn run_jittered(
        rate: f64,
        rtt: Duration,
        jitter: Duration,
        target: Duration,
        offered: Option<f64>,
        settle: Duration,
        total: Duration,
    ) -> (Vec<usize>, Vec<Duration>, usize) {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut late = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            jitter.mul_f64((seed % 1024) as f64 / 1023.0)
        };
        let mut last_ack = crate::sim::start_instant();
        let t0 = crate::sim::start_instant();
        let mut b = EgressBudget::new(2400, 4 << 20, target);
        let mut in_flight: VecDeque<(Instant, usize)> = VecDeque::new();
        let mut link_free = t0;
        let mut buffered = 0usize;
        let mut backlog = 0.0f64;
        let step = Duration::from_millis(1);
        let mut now = t0;
        let (mut budgets, mut queues, mut delivered) = (Vec::new(), Vec::new(), 0);
        while now < t0 + total {
            now += step;
            while let Some(&(acked_at, n)) = in_flight.front() {
                if acked_at > now {
                    break;
                }
                in_flight.pop_front();
                buffered -= n;
                if now > t0 + settle {
                    delivered += n;
                }
            }
            b.on_progress(buffered, now);
            backlog += offered.map_or(f64::INFINITY, |r| r / 1000.0);
            let room = b.room(buffered);
            let mut handed = 0;
            while handed < room && backlog >= 1000.0 {
                let start = link_free.max(now);
                link_free = start + Duration::from_secs_f64(1000.0 / rate);
                let acked_at = (link_free + rtt + late()).max(last_ack);
                last_ack = acked_at;
                in_flight.push_back((acked_at, 1000));
                buffered += 1000;
                handed += 1000;
                backlog -= 1000.0;
            }
            b.on_sent(handed, now);
            if backlog >= 1000.0 && handed >= room {
                b.on_limited();
            }
            if offered.is_some() {
                backlog = backlog.min(10_000.0);
            }
            if now > t0 + settle {
                budgets.push(b.budget());
                queues.push(link_free.saturating_duration_since(now));
            }
        }
        budgets.sort_unstable();
        queues.sort_unstable();
        (budgets, queues, delivered)
    }

    /// 1 Mbit/s and 20 ms: the link stays busy and about one packet waits
    /// (a packet takes 8 ms to serialize here).
    #[test]
    fn a_slow_path_stays_full_with_about_a_packet_queued() {
        let (rate, rtt) = (125_000.0, Duration::from_millis(20));
        let (budgets, queues, delivered) = run(
            rate,
            rtt,
            Duration::from_millis(5),
            None,
            Duration::from_secs(5),
            Duration::from_secs(35),
        );
        // 30 s at 125 kB/s: the link is busy at least 90 % of the time.
        // The path holds 3.5 packets; the budget keeps 3 to 4 in flight (a
        // quarter of a packet of standing queue is its low mark), and each
        // 10 s the base is re-measured: 200 ms at the minimum, under this
        // path's product. (The simulator's 1 Mbit/s tests carry 95 %.)
        assert!(delivered as f64 >= 0.90 * rate * 30.0, "{delivered}");
        let q99 = queues[queues.len() * 99 / 100];
        // A packet in service (8 ms) and one or two more: the budget moves
        // a packet at a time around a band narrower than a packet, and
        // this sender goes past it by the packet that ends a hand-over.
        // (With the high mark at three packets: 36 ms.)
        assert!(q99 <= Duration::from_millis(25), "queue p99 {q99:?}");
        // 125 kB/s × 28 ms is 3.5 kB in flight; the sender here (as the
        // engine's pumps) may go past the budget by the message that ends
        // a hand-over, so the budget itself sits at or a packet under that.
        let median = budgets[budgets.len() / 2];
        assert!((2_400..=5_000).contains(&median), "median budget {median}");
    }

    /// 100 Mbit/s and 20 ms: startup finds the path in a few round trips,
    /// and the standing queue stays about the target.
    #[test]
    fn a_fast_path_is_found_quickly_and_queues_about_the_target() {
        let (rate, rtt) = (12_500_000.0, Duration::from_millis(20));
        let (budgets, queues, delivered) = run(
            rate,
            rtt,
            Duration::from_millis(5),
            None,
            Duration::from_secs(1),
            Duration::from_secs(11),
        );
        assert!(delivered as f64 >= 0.95 * rate * 10.0, "{delivered}");
        let q99 = queues[queues.len() * 99 / 100];
        // The target, plus a growth step (an eighth of the budget, 3 ms
        // here) before the round that shows it.
        assert!(q99 <= Duration::from_millis(10), "queue p99 {q99:?}");
        let median = budgets[budgets.len() / 2];
        // The bandwidth-delay product is 250 kB; up to 5 ms more.
        assert!(
            (250_000..=330_000).contains(&median),
            "median budget {median}"
        );
        // Startup doubles: in its first 300 ms the path carries at least
        // 40 % of what it could (growing by an eighth a round, under 5 %).
        let (_, _, early) = run(
            rate,
            rtt,
            Duration::from_millis(5),
            None,
            Duration::ZERO,
            Duration::from_millis(300),
        );
        assert!(early as f64 >= 0.4 * rate * 0.3, "{early}");
    }

    /// A long fast path (100 Mbit/s, 50 ms) whose acknowledgements come up
    /// to 10 ms late at random, as on a loaded host: the jitter is a small
    /// share of the round trip, and the budget keeps the path about full
    /// (97 % of the link, the budget at the product plus 12.5 ms). With
    /// the fixed 5 ms target, judged round by round, every late round
    /// looked like a standing queue and the budget shrank far under the
    /// path's product (15 % of the link).
    #[test]
    fn a_long_path_with_a_jittery_host_stays_about_full() {
        let (rate, rtt) = (12_500_000.0, Duration::from_millis(50));
        let (budgets, _, delivered) = run_jittered(
            rate,
            rtt,
            Duration::from_millis(10),
            Duration::from_millis(5),
            None,
            Duration::from_secs(2),
            Duration::from_secs(12),
        );
        let share = delivered as f64 / (rate * 10.0);
        let median = budgets[budgets.len() / 2];
        assert!(share >= 0.9, "{:.0} % of the link, median budget {median}", share * 100.0);
    }

    /// A sender that sends less than the path takes is never held back:
    /// its budget has room for what it sends, and does not grow past it.
    #[test]
    fn an_app_limited_sender_is_not_held_back() {
        let (budgets, queues, delivered) = run(
            125_000.0,
            Duration::from_millis(20),
            Duration::from_millis(5),
            Some(50_000.0),
            Duration::from_secs(5),
            Duration::from_secs(15),
        );
        assert!(delivered >= 490_000, "{delivered}");
        assert!(queues[queues.len() * 99 / 100] <= Duration::from_millis(9));
        assert!(budgets[budgets.len() - 1] <= 8 * 1024, "{budgets:?}");
    }

    #[test]
    fn the_base_comes_from_packet_sized_hand_overs() {
        let t0 = crate::sim::start_instant();
        let mut b = EgressBudget::new(2400, 1 << 20, Duration::from_millis(5));
        // A tiny hand-over crosses fast; it does not set the base.
        b.on_sent(100, t0);
        b.on_progress(0, t0 + Duration::from_millis(20));
        assert_eq!(b.base_rtt(), None);
        // A packet does.
        let t1 = t0 + Duration::from_millis(30);
        b.on_sent(1000, t1);
        b.on_progress(0, t1 + Duration::from_millis(28));
        assert_eq!(b.base_rtt(), Some(Duration::from_millis(28)));
        // Three packets at once: their first byte's round trip is the
        // path's; the last waited behind the others.
        let t2 = t1 + Duration::from_millis(100);
        b.on_sent(3000, t2);
        b.on_progress(2000, t2 + Duration::from_millis(27));
        assert_eq!(b.base_rtt(), Some(Duration::from_millis(27)));
        b.on_progress(0, t2 + Duration::from_millis(44));
        assert_eq!(b.base_rtt(), Some(Duration::from_millis(27)));
        assert_eq!(b.drain_time(1000), Duration::ZERO, "no rate yet");
    }

    /// A fast path (100 MB/s, 0.1 ms) whose pacer measured it slow (one
    /// sample of 480 kB/s, as a stall of the host leaves), fed by an
    /// application that keeps 116 kB in the transport, far under the
    /// budget's room: the budget never holds it back. The transport paces
    /// as the node does (`Node::set_pacing_rate`): a credit earned at the
    /// rate, a quarter packet saved up at most, a packet whenever it is
    /// positive. Returns, for each 100 ms of 4 s, whether the sender was
    /// paced, and the estimate at the end, with its owner reporting the
    /// transport's unsent backlog (`on_backlogged`, as the hub's pump
    /// does) or not.
    fn paced_slots(report_backlog: bool) -> ([bool; 40], f64) {
        const PACKET: usize = 1200;
        const WINDOW: usize = 116_000;
        let t0 = crate::sim::start_instant();
        let base = Duration::from_micros(100);
        let (rate, prop) = (100e6, Duration::from_micros(50));
        let mut b = EgressBudget::measured(1 << 20, 480_000.0, base, t0);
        b.pacer.on_progress(0, t0, true, base);
        b.pacer.on_progress(2400, t0 + Duration::from_millis(5), true, base);
        b.handed = 2400;
        b.delivered = 2400;
        let mut now = t0 + Duration::from_millis(5);
        let end = now + Duration::from_secs(4);
        // The transport: unsent bytes, and packets in flight (acknowledged
        // at `Instant`).
        let (mut unsent, mut flying) = (0usize, VecDeque::<(Instant, usize)>::new());
        let (mut link_free, mut credit, mut last) = (now, 0.0f64, now);
        let mut paced = [false; 40];
        while now < end {
            now += Duration::from_micros(10);
            while flying.front().is_some_and(|&(at, _)| at <= now) {
                flying.pop_front();
            }
            let in_flight: usize = flying.iter().map(|&(_, n)| n).sum();
            b.on_progress(unsent + in_flight, now);
            let pacing = b.pacing_rate(now, || in_flight);
            // The application tops the transport up to its window.
            let room = b.room(unsent + in_flight);
            let top_up = WINDOW.saturating_sub(unsent + in_flight).min(room);
            unsent += top_up;
            b.on_sent(top_up, now);
            // The transport releases packets on its pacing credit, or at
            // once.
            credit = match pacing {
                Some(r) => (credit + (now - last).as_secs_f64() * r).min(PACKET as f64 / 4.0),
                None => 0.0,
            };
            last = now;
            while unsent > 0 && (pacing.is_none() || credit >= 1.0) {
                let n = unsent.min(PACKET);
                unsent -= n;
                let start = link_free.max(now);
                link_free = start + Duration::from_secs_f64(n as f64 / rate);
                flying.push_back((link_free + prop, n));
                if pacing.is_some() {
                    credit -= n as f64;
                }
            }
            if pacing.is_some() {
                paced[((now - t0).as_millis() / 100).min(39) as usize] = true;
                if report_backlog && unsent > 0 {
                    b.on_backlogged();
                }
            }
        }
        (paced, b.pacer.bottleneck_rate().unwrap_or(0.0))
    }

    #[test]
    fn a_backlogged_sender_paced_too_slow_finds_the_path_again() {
        // Reported, the backlog lets the pacer's probes (phases of two
        // packets: 5 ms at 480 kB/s, the filter keeping the probe's
        // samples through the drain after it) take the path's rate again
        // within 100 ms here; the bound is 2 s. Without the two-packet
        // phases the gains average out under the node's credit and the
        // estimate never grows; with a filter of two whole cycles it grows
        // as fast, but through tbf at 1 Mbit/s that window kept the
        // burst's rate (High p99 behind 32 KiB messages 24 -> 33–41 ms).
        // Unreported, the sender stays paced at about 480 kB/s all along.
        let (reported, estimate) = paced_slots(true);
        let until = reported.iter().rposition(|&p| p).map_or(0, |i| i + 1);
        assert!(until <= 20, "paced until {until} × 100 ms");
        assert!(estimate >= 1.2e6, "{estimate}");
        let (unreported, estimate) = paced_slots(false);
        assert!(unreported.iter().all(|&p| p));
        assert!(estimate < 600e3, "{estimate}");
    }

    /// Any limits, any inputs: no panic, and the budget stays within them.
    #[test]
    fn tiny_and_odd_limits_hold() {
        let t0 = crate::sim::start_instant();
        for (min, max) in [(0, 0), (1, 10), (100, 50), (2400, 1 << 30)] {
            let mut b = EgressBudget::new(min, max, Duration::ZERO);
            let mut now = t0;
            let mut buffered = 0usize;
            for i in 0..2_000u64 {
                now += Duration::from_micros(137 * (i % 7 + 1));
                let bytes = (i as usize * 7919) % 5000;
                b.on_sent(bytes, now);
                buffered += bytes;
                if i % 3 == 0 {
                    b.on_limited();
                }
                buffered -= buffered / 3;
                b.on_progress(buffered, now);
                assert!(
                    b.budget() <= max.max(min.min(max)),
                    "{min} {max}: {}",
                    b.budget()
                );
                assert!(b.budget() >= min.min(max));
                let _ = b.drain_time(buffered);
            }
        }
    }
}
