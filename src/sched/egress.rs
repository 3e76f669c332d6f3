//! Which channel of an association sends next.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use crate::idhash::IdMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::TokenBucket;
use crate::wire::Priority;

/// How one flow (a sender channel) is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSpec {
    /// High flows go before Normal ones.
    pub priority: Priority,
    /// Lossy flows drop messages that waited longer than the scheduler's
    /// latency budget; others wait as long as it takes.
    pub lossy: bool,
    /// Shaping: bytes a second and bucket depth. `None`: unshaped.
    pub shaping: Option<(u64, u64)>,
}

/// What the caller knows about the message at the head of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes it costs; 0 for control operations (open, close, list
    /// changes), which take no tokens and are never dropped.
    pub len: usize,
    /// When the application queued it.
    pub queued_at: Instant,
}

/// The scheduler's decision about a flow's head message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick<K> {
    /// Send it now.
    Send(K),
    /// Drop it (Lossy, past the latency budget) and count it.
    Drop(K),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing queued (as far as the scheduler knows).
    Idle,
    /// In its class's round-robin list.
    Active,
    /// Waiting for shaping tokens until this instant.
    Parked(Instant),
}

#[derive(Debug)]
struct Flow {
    spec: FlowSpec,
    bucket: Option<TokenBucket>,
    /// Deficit round robin: bytes the flow may still send this round.
    deficit: i64,
    /// Gets its quantum when it next reaches the front.
    fresh: bool,
    state: State,
    /// Which insertion of its key this is: list entries of an earlier one
    /// are stale (removal leaves them behind, and they are skipped).
    generation: u64,
}

/// Egress scheduler of one association (sans-IO).
///
/// - **Strict priority**: a High flow with a message eligible to send always
///   goes before any Normal one. There is no starvation guard: the traffic
///   rules bound what High senders may send (200 kbps for High Lossy,
///   64 kbps for Durable), which leaves Normal the rest of the link.
/// - **Deficit round robin** by bytes within a class, with a quantum of
///   about one packet, so a flow of large messages gets the same share of
///   bytes as a flow of small ones.
/// - **Shaping**: a flow with a rate waits for tokens (a token bucket at
///   least one max-size message deep); while it waits it is parked and
///   others go. A Lossy message that would wait past `lossy_budget` from
///   when it was queued is dropped instead — counting the time it would
///   then wait in the transport's queue ([`Scheduler::set_transit`]), so
///   what goes arrives within the budget of the path's own delay.
///
/// The scheduler holds no messages: the caller keeps each flow's queue,
/// tells the scheduler when a flow gets work ([`Scheduler::wake`]), and asks
/// [`Scheduler::next`] what to do, describing a flow's head when asked.
/// [`Scheduler::poll_timeout`] is when a parked flow becomes eligible.
#[derive(Debug)]
pub struct Scheduler<K> {
    flows: IdMap<K, Flow>,
    /// Round-robin lists: `[High, Normal]`, of (flow, generation). A flow
    /// removed leaves its entry behind (removal is O(1), so dropping many
    /// senders at once costs no quadratic time); entries whose flow is
    /// gone or of another generation are skipped when they come up.
    active: [VecDeque<(K, u64)>; 2],
    /// How many entries of each list are stale.
    stale: [usize; 2],
    next_generation: u64,
    parked: BinaryHeap<Reverse<(Instant, u64, K)>>,
    parked_seq: u64,
    quantum: i64,
    lossy_budget: Duration,
    /// How long a message picked now waits in the transport's queue.
    transit: Duration,
}

/// The default deficit-round-robin quantum: about one packet.
const DEFAULT_QUANTUM: usize = 1200;

fn class(p: Priority) -> usize {
    match p {
        Priority::High => 0,
        Priority::Normal => 1,
    }
}

impl<K: Copy + Eq + Hash + Ord> Scheduler<K> {
    /// A scheduler dropping Lossy messages older than `lossy_budget`.
    pub fn new(lossy_budget: Duration) -> Self {
        Self {
            flows: IdMap::default(),
            active: [VecDeque::new(), VecDeque::new()],
            stale: [0, 0],
            next_generation: 0,
            parked: BinaryHeap::new(),
            parked_seq: 0,
            quantum: DEFAULT_QUANTUM as i64,
            lossy_budget,
            transit: Duration::ZERO,
        }
    }

    /// How long a message picked from now on will wait in the transport's
    /// queue before it leaves (what is queued there ahead of it, at the
    /// rate it drains): a Lossy message is late when its age plus this is
    /// past the budget.
    pub fn set_transit(&mut self, transit: Duration) {
        self.transit = transit;
    }

    /// Adds (or replaces) flow `k`, idle, its bucket full at `now`.
    pub fn insert(&mut self, k: K, spec: FlowSpec, now: Instant) {
        let bucket = spec
            .shaping
            .map(|(rate, depth)| TokenBucket::new(rate, depth.max(1), now));
        self.next_generation += 1;
        // A replaced flow's list entries are of another generation now.
        let old = self.flows.insert(
            k,
            Flow {
                spec,
                bucket,
                deficit: 0,
                fresh: true,
                state: State::Idle,
                generation: self.next_generation,
            },
        );
        if let Some(old) = old {
            self.unlist(k, &old);
        }
    }

    /// Removes flow `k`. Its list and parked entries stay behind and are
    /// skipped when they come up.
    pub fn remove(&mut self, k: K) {
        if let Some(old) = self.flows.remove(&k) {
            self.unlist(k, &old);
        }
    }

    /// Flow `k` (as `old`) is gone: its list entry, if it has one, is
    /// dropped when at the front (a flow removed right after it sent) and
    /// counted stale otherwise.
    fn unlist(&mut self, k: K, old: &Flow) {
        if old.state != State::Active {
            return; // Idle or parked: in no list.
        }
        let c = class(old.spec.priority);
        if self.active[c].front() == Some(&(k, old.generation)) {
            self.active[c].pop_front();
        } else {
            self.stale[c] += 1;
        }
    }

    /// Flow `k` has work queued (idempotent; an unknown flow is ignored).
    pub fn wake(&mut self, k: K) {
        if let Some(f) = self.flows.get_mut(&k)
            && f.state == State::Idle
        {
            f.state = State::Active;
            f.fresh = true;
            self.active[class(f.spec.priority)].push_back((k, f.generation));
        }
    }

    /// When a parked flow becomes eligible.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.parked.peek().map(|Reverse((at, _, _))| *at)
    }

    /// Whether some flow is active or parked.
    pub fn has_work(&self) -> bool {
        self.active[0].len() > self.stale[0]
            || self.active[1].len() > self.stale[1]
            || !self.parked.is_empty()
    }

    fn unpark(&mut self, now: Instant) {
        while let Some(Reverse((at, _, k))) = self.parked.peek().copied() {
            if at > now {
                break;
            }
            self.parked.pop();
            if let Some(f) = self.flows.get_mut(&k)
                && f.state == State::Parked(at)
            {
                f.state = State::Active;
                f.fresh = true;
                self.active[class(f.spec.priority)].push_back((k, f.generation));
            }
        }
    }

    /// What to do next at `now`: send or drop the head of some flow, or
    /// `None` when no flow has an eligible message. `head(k)` describes
    /// flow `k`'s head, `None` if its queue is empty (the flow goes idle).
    ///
    /// After `Pick::Send(k)` or `Pick::Drop(k)` the caller must remove that
    /// head from the flow's queue before calling again.
    #[cfg(feature = "_internal")]
    pub fn next(&mut self, now: Instant, head: impl FnMut(K) -> Option<Head>) -> Option<Pick<K>> {
        self.next_of(now, true, head)
    }

    /// [`Scheduler::next`] among High flows only (`normal == false`): for
    /// a caller that keeps a little room for High traffic alone.
    pub fn next_of(
        &mut self,
        now: Instant,
        normal: bool,
        mut head: impl FnMut(K) -> Option<Head>,
    ) -> Option<Pick<K>> {
        self.unpark(now);
        let classes = if normal { 2 } else { 1 };
        for c in 0..classes {
            // Each flow visit either returns, removes the flow from the list,
            // or moves it to the back with a fresh quantum; a flow whose
            // deficit needs several quanta comes round several times.
            while let Some(&(k, generation)) = self.active[c].front() {
                let Some(f) = self
                    .flows
                    .get_mut(&k)
                    .filter(|f| f.generation == generation)
                else {
                    // Stale: the flow was removed (or replaced).
                    self.active[c].pop_front();
                    self.stale[c] = self.stale[c].saturating_sub(1);
                    continue;
                };
                let Some(h) = head(k) else {
                    f.state = State::Idle;
                    f.deficit = 0;
                    self.active[c].pop_front();
                    continue;
                };
                if h.len == 0 {
                    return Some(Pick::Send(k));
                }
                if f.fresh {
                    f.fresh = false;
                    f.deficit = (f.deficit + self.quantum).min(self.quantum);
                }
                if f.deficit <= 0 {
                    f.fresh = true;
                    self.active[c].rotate_left(1);
                    continue;
                }
                let transit = self.transit;
                let late = |at: Instant| {
                    at.checked_add(transit).is_none_or(|t| {
                        t.saturating_duration_since(h.queued_at) > self.lossy_budget
                    })
                };
                if f.spec.lossy && late(now) {
                    return Some(Pick::Drop(k));
                }
                if let Some(b) = &mut f.bucket {
                    // A message larger than the bucket waits for a full one.
                    let need = (h.len as u64).min(b.depth());
                    match b.time_until(need, now) {
                        Some(Duration::ZERO) | None => b.take_up_to(h.len as u64, now),
                        Some(wait) => {
                            let at = now + wait;
                            if f.spec.lossy && late(at) {
                                return Some(Pick::Drop(k));
                            }
                            f.state = State::Parked(at);
                            self.active[c].pop_front();
                            self.parked_seq += 1;
                            self.parked.push(Reverse((at, self.parked_seq, k)));
                            continue;
                        }
                    }
                }
                f.deficit -= h.len as i64;
                return Some(Pick::Send(k));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spec(priority: Priority) -> FlowSpec {
        FlowSpec {
            priority,
            lossy: false,
            shaping: None,
        }
    }

    /// Drains `queues` (flow → message lengths) through the scheduler at
    /// one instant; returns the flows in the order they sent.
    fn drain(
        s: &mut Scheduler<u32>,
        queues: &mut HashMap<u32, VecDeque<usize>>,
        now: Instant,
    ) -> Vec<u32> {
        let mut order = Vec::new();
        while let Some(p) = s.next(now, |k| {
            queues.get(&k)?.front().map(|&len| Head {
                len,
                queued_at: now,
            })
        }) {
            let (Pick::Send(k) | Pick::Drop(k)) = p;
            queues.get_mut(&k).and_then(|q| q.pop_front());
            order.push(k);
        }
        order
    }

    #[test]
    fn high_goes_first_and_normal_shares_bytes_fairly() {
        let now = crate::sim::start_instant();
        let mut s = Scheduler::new(Duration::from_millis(100));
        let mut q = HashMap::new();
        // Flow 1: ten 1,200-byte messages; flow 2: forty 300-byte ones;
        // flow 3 (High): three messages, woken last.
        for (k, p, n, len) in [
            (1, Priority::Normal, 10, 1200),
            (2, Priority::Normal, 40, 300),
            (3, Priority::High, 3, 100),
        ] {
            s.insert(k, spec(p), now);
            q.insert(k, VecDeque::from(vec![len; n]));
            s.wake(k);
        }
        let order = drain(&mut s, &mut q, now);
        assert_eq!(&order[..3], &[3, 3, 3]);
        // Equal bytes: one 1,200-byte message per four 300-byte ones.
        let normal = &order[3..23];
        assert_eq!(normal.iter().filter(|&&k| k == 1).count(), 4);
        assert_eq!(normal.iter().filter(|&&k| k == 2).count(), 16);
        assert_eq!(order.len(), 53);
        assert!(!s.has_work());
    }

    #[test]
    fn shaped_flows_park_and_lossy_drop_past_the_budget() {
        let t0 = crate::sim::start_instant();
        let mut s = Scheduler::new(Duration::from_millis(100));
        // 1,000 bytes a second, 1,000 deep.
        let shaped = |lossy| FlowSpec {
            priority: Priority::Normal,
            lossy,
            shaping: Some((1000, 1000)),
        };
        s.insert(1, shaped(false), t0);
        s.insert(2, shaped(true), t0);
        let mut q: HashMap<u32, VecDeque<usize>> = HashMap::new();
        q.insert(1, VecDeque::from(vec![500; 4]));
        q.insert(2, VecDeque::from(vec![500; 4]));
        s.wake(1);
        s.wake(2);
        // Each bucket lets two messages through at once.
        let first = drain(&mut s, &mut q, t0);
        assert_eq!(first.iter().filter(|&&k| k == 1).count(), 2);
        // The Lossy flow's third message would wait 500 ms > 100 ms: dropped,
        // and so is its fourth.
        assert_eq!(first.iter().filter(|&&k| k == 2).count(), 4);
        assert!(q[&2].is_empty());
        // The Durable flow waits for its tokens: eligible at t0 + 500 ms.
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        assert!(drain(&mut s, &mut q, t0 + Duration::from_millis(499)).is_empty());
        assert_eq!(
            drain(&mut s, &mut q, t0 + Duration::from_millis(500)),
            vec![1]
        );
        assert_eq!(
            drain(&mut s, &mut q, t0 + Duration::from_millis(1000)),
            vec![1]
        );
        assert!(!s.has_work());
    }

    #[test]
    fn control_operations_pass_without_tokens_and_removed_flows_vanish() {
        let t0 = crate::sim::start_instant();
        let mut s = Scheduler::new(Duration::from_millis(100));
        s.insert(
            7,
            FlowSpec {
                priority: Priority::High,
                lossy: false,
                shaping: Some((1, 1)),
            },
            t0,
        );
        let mut q: HashMap<u32, VecDeque<usize>> = HashMap::new();
        q.insert(7, VecDeque::from(vec![0, 0, 0]));
        s.wake(7);
        assert_eq!(drain(&mut s, &mut q, t0), vec![7, 7, 7]);
        // A message bigger than the bucket is not blocked forever.
        q.insert(7, VecDeque::from(vec![5000]));
        s.wake(7);
        assert_eq!(drain(&mut s, &mut q, t0), vec![7]);
        q.insert(7, VecDeque::from(vec![10]));
        s.wake(7);
        s.remove(7);
        assert!(drain(&mut s, &mut q, t0 + Duration::from_secs(100)).is_empty());
    }

    /// A Lossy message that would go past its budget while waiting in the
    /// transport is dropped now rather than sent late.
    #[test]
    fn transit_counts_towards_the_lossy_budget() {
        let t0 = crate::sim::start_instant();
        let mut s: Scheduler<u32> = Scheduler::new(Duration::from_millis(100));
        s.insert(
            1,
            FlowSpec {
                lossy: true,
                ..spec(Priority::Normal)
            },
            t0,
        );
        s.wake(1);
        let head = |_| {
            Some(Head {
                len: 100,
                queued_at: t0,
            })
        };
        let at = t0 + Duration::from_millis(70);
        assert_eq!(s.next(at, head), Some(Pick::Send(1)));
        s.set_transit(Duration::from_millis(40));
        assert_eq!(s.next(at, head), Some(Pick::Drop(1)));
    }

    /// Removing a flow is O(1) (its list entry goes stale and is skipped):
    /// the others keep their turns, a flow re-inserted under the same key
    /// is served once per round, and `has_work` counts live entries only.
    #[test]
    fn removed_flows_are_skipped_and_a_reinserted_one_served_once() {
        let now = crate::sim::start_instant();
        let mut s = Scheduler::new(Duration::from_millis(100));
        let mut q: HashMap<u32, VecDeque<usize>> = HashMap::new();
        for k in 1..=1000u32 {
            s.insert(k, spec(Priority::Normal), now);
            q.insert(k, VecDeque::from(vec![1200]));
            s.wake(k);
        }
        // Remove every flow but 1 and 1000, from the middle of the list.
        for k in 2..1000u32 {
            s.remove(k);
            q.remove(&k);
        }
        assert!(s.has_work());
        // Flow 500 comes back with two messages.
        s.insert(500, spec(Priority::Normal), now);
        q.insert(500, VecDeque::from(vec![1200, 1200]));
        s.wake(500);
        assert_eq!(drain(&mut s, &mut q, now), vec![1, 1000, 500, 500]);
        assert!(!s.has_work(), "stale entries are no work");
        // Removing the only live flows leaves nothing to do.
        s.insert(7, spec(Priority::High), now);
        q.insert(7, VecDeque::from(vec![100]));
        s.wake(7);
        s.insert(8, spec(Priority::High), now);
        q.insert(8, VecDeque::from(vec![100]));
        s.wake(8);
        s.remove(8);
        s.remove(7);
        assert!(!s.has_work());
        assert!(drain(&mut s, &mut q, now).is_empty());
    }
}
