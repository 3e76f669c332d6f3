//! The in-memory link and the loop that drives one pair over it, in
//! virtual time: packets take `one_way` to cross and are lost with
//! probability `loss` (seeded, independent per packet, both directions);
//! when nothing is due now, time jumps to the next packet arrival or the
//! next timer of either side.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cpu::thread_cpu;
use crate::net::{Mode, Net, To, VTime};

/// Iterations of the loop in one run, at most (each loop is bounded).
const MAX_ITERATIONS: u64 = 200_000_000;

struct InFlight {
    at: VTime,
    seq: u64,
    to: To,
    packet: Bytes,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The link between the two sides of one pair.
pub struct Link {
    one_way: Duration,
    loss: f64,
    rng: ChaCha8Rng,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Packets handed to the link.
    pub packets: u64,
    /// Of which lost.
    pub dropped: u64,
    /// Bytes handed to the link.
    pub bytes: u64,
}

impl Link {
    pub fn new(one_way: Duration, loss: f64, seed: u64) -> Self {
        Self {
            one_way,
            loss,
            rng: ChaCha8Rng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            packets: 0,
            dropped: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, now: VTime, to: To, packet: Bytes) {
        self.packets += 1;
        self.bytes += packet.len() as u64;
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            self.dropped += 1;
            return;
        }
        self.seq += 1;
        self.queue.push(Reverse(InFlight {
            at: now + self.one_way,
            seq: self.seq,
            to,
            packet,
        }));
    }

    fn next_arrival(&self) -> Option<VTime> {
        self.queue.peek().map(|Reverse(p)| p.at)
    }

    fn pop_due(&mut self, now: VTime) -> Option<(To, Bytes)> {
        if self.next_arrival()? <= now {
            self.queue.pop().map(|Reverse(p)| (p.to, p.packet))
        } else {
            None
        }
    }
}

/// Runs `pair`'s handshake on a lossless, zero-latency link; the time it
/// ended (virtual).
pub fn establish<N: Net>(net: &mut N, pair: usize, mut now: VTime) -> VTime {
    let mut link = Link::new(Duration::ZERO, 0.0, 0);
    let mut out = Vec::new();
    for _ in 0..10_000 {
        while let Some((to, p)) = link.pop_due(now) {
            net.input(now, pair, to, p);
        }
        if net.next_timeout(pair).is_some_and(|t| t <= now) {
            net.timeout(now, pair);
        }
        net.output(now, pair, &mut out);
        for (to, p) in out.drain(..) {
            link.push(now, to, p);
        }
        if net.connected(pair) && link.queue.is_empty() {
            return now;
        }
        if let Some(f) = net.failure(pair) {
            panic!("{}: handshake of pair {pair} failed: {f}", N::NAME);
        }
        if link.queue.is_empty() {
            match net.next_timeout(pair) {
                Some(t) => now = now.max(t),
                None => panic!("{}: handshake of pair {pair} stalled", N::NAME),
            }
        }
    }
    panic!("{}: handshake of pair {pair} did not end", N::NAME);
}

/// One transfer: what to send and over what link.
#[derive(Debug, Clone)]
pub struct Spec {
    pub count: u64,
    pub size: usize,
    pub mode: Mode,
    /// Messages sent and not yet received by the receiving application, at most.
    pub window: u64,
    pub one_way: Duration,
    pub loss: f64,
    pub seed: u64,
    /// Virtual time the transfer may take, at most.
    pub virtual_limit: Duration,
    /// Wall time the transfer may take, at most.
    pub wall_limit: Duration,
}

/// What a transfer did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub delivered: u64,
    /// Every message arrived, none twice, and (Reliable) in the order sent.
    pub in_order: bool,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub completed: bool,
    pub failure: Option<String>,
    pub virtual_elapsed: Duration,
    pub wall: Duration,
    pub cpu: Duration,
    pub packets: u64,
    pub dropped: u64,
    pub link_bytes: u64,
    pub allocs: u64,
    /// Times the loop had nothing to do at `now` and jumped to a timer.
    pub timer_jumps: u64,
}

/// Moves what `pair` has to send onto the link; whether there was any.
fn flush<N: Net>(
    net: &mut N,
    link: &mut Link,
    out: &mut Vec<(To, Bytes)>,
    now: VTime,
    pair: usize,
) -> bool {
    net.output(now, pair, out);
    let any = !out.is_empty();
    for (to, p) in out.drain(..) {
        link.push(now, to, p);
    }
    any
}

/// A message: its sequence number in the first 8 bytes, then a pattern.
fn message(seq: u64, size: usize) -> Vec<u8> {
    let mut m = vec![0xA5; size.max(8)];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

/// Sends `spec.count` messages from the client of `pair` to its server
/// (established) and checks what arrives: each message once, its length,
/// and, for Reliable, its order.
pub fn transfer<N: Net>(net: &mut N, pair: usize, start: VTime, spec: &Spec) -> Outcome {
    let mut link = Link::new(spec.one_way, spec.loss, spec.seed);
    let mut seen = vec![false; spec.count as usize];
    let mut next_expected = 0u64;
    let mut o = Outcome::default();
    let mut sent = 0u64;
    let mut out = Vec::new();
    let mut now = start;
    let (wall0, cpu0, allocs0) = (Instant::now(), thread_cpu(), crate::alloc::allocs());
    let mut iterations = 0u64;
    loop {
        iterations += 1;
        if iterations > MAX_ITERATIONS {
            o.failure = Some("iteration cap".into());
            break;
        }
        let mut progressed = false;
        // Each datagram is handled, then what the stack has to send is
        // taken, as the engine's node does (a SACK then goes out on every
        // second packet, not once per burst).
        while let Some((to, p)) = link.pop_due(now) {
            net.input(now, pair, to, p);
            progressed = true;
            flush(net, &mut link, &mut out, now, pair);
        }
        if net.next_timeout(pair).is_some_and(|t| t <= now) {
            net.timeout(now, pair);
            progressed |= flush(net, &mut link, &mut out, now, pair);
        }
        let size = spec.size;
        let mode = spec.mode;
        let before = o.delivered;
        net.recv(now, pair, &mut |m: &[u8]| {
            assert_eq!(m.len(), size.max(8), "message length");
            let seq = u64::from_le_bytes(m[..8].try_into().expect("8 bytes"));
            assert!(seq < seen.len() as u64, "a message never sent: {seq}");
            if seen[seq as usize] {
                o.duplicates += 1;
                return;
            }
            seen[seq as usize] = true;
            o.delivered += 1;
            if mode == Mode::Reliable && seq != next_expected {
                o.out_of_order += 1;
            }
            next_expected = next_expected.max(seq + 1);
        });
        progressed |= o.delivered > before;
        if o.delivered == spec.count {
            o.completed = true;
            break;
        }
        if let Some(f) = net.failure(pair) {
            o.failure = Some(f);
            break;
        }
        let room = spec.window.saturating_sub(sent - o.delivered);
        let batch = room.min(spec.count - sent);
        if batch > 0 {
            let msgs = (sent..sent + batch)
                .map(|s| message(s, spec.size))
                .collect();
            let accepted = net.send(now, pair, msgs, spec.mode) as u64;
            sent += accepted;
            progressed |= accepted > 0;
        }
        progressed |= flush(net, &mut link, &mut out, now, pair);
        let next = [link.next_arrival(), net.next_timeout(pair)]
            .into_iter()
            .flatten()
            .min();
        match next {
            None => {
                o.failure = Some("stalled: nothing in flight and no timer".into());
                break;
            }
            Some(t) if t > now => {
                if link.next_arrival() != Some(t) {
                    o.timer_jumps += 1;
                }
                now = t;
            }
            // A timer due now that did nothing: step on rather than spin.
            Some(_) if !progressed => now += Duration::from_millis(1),
            Some(_) => {}
        }
        if now - start > spec.virtual_limit {
            o.failure = Some(format!("virtual time limit {:?}", spec.virtual_limit));
            break;
        }
        if iterations.is_multiple_of(1024) && wall0.elapsed() > spec.wall_limit {
            o.failure = Some(format!("wall time limit {:?}", spec.wall_limit));
            break;
        }
    }
    o.wall = wall0.elapsed();
    o.cpu = thread_cpu() - cpu0;
    o.allocs = crate::alloc::allocs() - allocs0;
    o.virtual_elapsed = now - start;
    o.packets = link.packets;
    o.dropped = link.dropped;
    o.link_bytes = link.bytes;
    o.in_order = o.completed && o.duplicates == 0 && o.out_of_order == 0;
    o
}
