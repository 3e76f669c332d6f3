//! A deterministic in-memory network for testing hubs (and anything else
//! sans-IO) without sockets or a real clock.
//!
//! [`Network`] holds hosts (anything that implements [`Host`], such as a
//! [`Hub`](crate::Hub)), gives each an address, and routes the datagrams
//! they emit through links with seeded loss, duplication, reordering,
//! latency with jitter and a rate limit. Virtual time jumps straight to the
//! next delivery or host timeout, so a minute of traffic runs in however long
//! the computation takes, and a run is repeatable for a given seed. Hubs
//! get the network's virtual clock ([`Host::use_clock`]), so their
//! application handles see the same time.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use dcengine::sim::{LinkConfig, Network};
//! use dcengine::{HmacVerifier, Hub, HubConfig, WallClock, mint_token};
//!
//! // 50 ms each way, 1 % of the datagrams lost.
//! let link = LinkConfig { loss: 0.01, ..LinkConfig::with_latency(Duration::from_millis(50)) };
//! let mut net: Network<Hub> = Network::new(7, link);
//! let unix_now = Duration::from_secs(1_800_000_000);
//! let verifier = HmacVerifier::new(b"secret", WallClock::new(net.now(), unix_now)).unwrap();
//! let server = net.add_host(Hub::new(HubConfig::server(Arc::new(verifier))));
//! let client = net.add_host(Hub::new(HubConfig::client()));
//! let token = mint_token(b"secret", "call-1", "alice", unix_now.as_secs() + 60).unwrap();
//! let (now, to) = (net.now(), net.addr(server));
//! let call = net.host_mut(client).join_remote(now, to, "call-1", "alice", token).unwrap();
//! assert!(net.run_until(Duration::from_secs(5), |_| call.is_joined()));
//! ```
#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::proto::{Node, Transmit};
use crate::sched::Clock;

/// An instant to start virtual time from (the real `Instant::now()` of the
/// call: an `Instant` cannot be made any other way). Tests that drive a node
/// by hand start their clock here.
pub(crate) fn start_instant() -> Instant {
    Instant::now()
}

/// Something the network can drive: a sans-IO endpoint.
pub trait Host {
    /// A datagram arrived.
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes);
    /// The time from [`Host::poll_timeout`] arrived.
    fn handle_timeout(&mut self, now: Instant);
    /// The network's virtual clock, given once when the host is added, for
    /// hosts whose other parts (application handles) need the time.
    fn use_clock(&mut self, clock: &Clock) {
        let _ = clock;
    }
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When [`Host::handle_timeout`] should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
}

impl Host for Node {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        // The node counts what it drops; the network needs no answer.
        let _ = Node::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Node::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Node::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Node::poll_timeout(self)
    }
}

/// Index of a host in its [`Network`].
pub type HostId = usize;

/// The behaviour of a one-way link. All probabilities are per datagram.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Base one-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per datagram (reorders
    /// datagrams closer together than the jitter).
    pub jitter: Duration,
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice (the copy gets its own
    /// delay).
    pub duplicate: f64,
    /// Probability a datagram is held back by [`LinkConfig::reorder_delay`]
    /// more, so later ones overtake it.
    pub reorder: f64,
    /// The hold-back for reordered datagrams.
    pub reorder_delay: Duration,
    /// Link rate in bits per second; `None` is unlimited. Datagrams queue
    /// behind each other at this rate.
    pub rate_bps: Option<u64>,
    /// With a rate, most bytes that may wait in the link's queue; beyond it
    /// datagrams are dropped (tail drop).
    pub queue_bytes: usize,
    /// With a rate: 0 models a serializing link (a datagram leaves when its
    /// last bit has crossed it, `len / rate` after the one before); above
    /// 0, a token bucket of this many bytes as Linux's `tbf` qdisc shapes
    /// (a datagram leaves at once when the bucket holds its length, which
    /// fills at the rate up to `burst_bytes`). Must be at least the largest
    /// datagram; a larger one waits for a full bucket.
    pub burst_bytes: usize,
}

impl Default for LinkConfig {
    /// 10 ms latency, nothing else.
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(20),
            rate_bps: None,
            queue_bytes: 256 * 1024,
            burst_bytes: 0,
        }
    }
}

impl LinkConfig {
    /// A perfect link with `latency`.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }
}

/// Counters of one link (or of all links summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkStats {
    /// Datagrams offered to the link.
    pub sent: u64,
    /// Datagrams lost at random.
    pub lost: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Datagrams held back to be reordered.
    pub reordered: u64,
    /// Datagrams dropped because the rate-limited queue was full.
    pub queue_dropped: u64,
    /// Datagrams handed to the receiving host.
    pub delivered: u64,
    /// Datagrams dropped because an end was down or unknown.
    pub unroutable: u64,
}

#[derive(Debug, Default)]
struct LinkState {
    config: Option<LinkConfig>,
    /// When the rate-limited link finishes sending what is queued.
    busy_until: Option<Instant>,
    /// A token-bucket link ([`LinkConfig::burst_bytes`]): the bytes the
    /// bucket held when the last datagram left at `busy_until`.
    tokens: f64,
    stats: LinkStats,
}

struct InFlight {
    from: SocketAddr,
    to: HostId,
    /// The address it was sent to: dropped if the host no longer has it.
    to_addr: SocketAddr,
    payload: Bytes,
}

struct Slot<H> {
    host: H,
    addr: SocketAddr,
    up: bool,
}

/// N hosts, the links between them and virtual time. See the module docs.
pub struct Network<H> {
    now: Instant,
    clock: Clock,
    rng: ChaCha8Rng,
    default_link: LinkConfig,
    hosts: Vec<Slot<H>>,
    by_addr: HashMap<SocketAddr, HostId>,
    links: HashMap<(HostId, HostId), LinkState>,
    /// Datagrams on the wire, by delivery time then a sequence number (so
    /// equal times keep their sending order).
    queue: BinaryHeap<Reverse<(Instant, u64)>>,
    in_flight: HashMap<u64, InFlight>,
    seq: u64,
    unroutable: u64,
}

impl<H: Host> Network<H> {
    /// An empty network whose random choices come from `seed`, with
    /// `default_link` between any two hosts unless set otherwise.
    ///
    /// Virtual time starts at the real `Instant::now()` of this call (an
    /// `Instant` cannot be made otherwise) and then moves only when the
    /// network steps.
    pub fn new(seed: u64, default_link: LinkConfig) -> Self {
        let now = start_instant();
        Self {
            now,
            clock: Clock::manual(now),
            rng: ChaCha8Rng::seed_from_u64(seed),
            default_link,
            hosts: Vec::new(),
            by_addr: HashMap::new(),
            links: HashMap::new(),
            queue: BinaryHeap::new(),
            in_flight: HashMap::new(),
            seq: 0,
            unroutable: 0,
        }
    }

    /// Adds a host; it gets the address `127.H.L.1:5000` where `H.L` is its
    /// index (loopback range: never routed anywhere, only named).
    pub fn add_host(&mut self, mut host: H) -> HostId {
        host.use_clock(&self.clock);
        let id = self.hosts.len();
        let [_, _, hi, lo] = (id as u32).to_be_bytes();
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, hi, lo, 1)), 5000);
        self.hosts.push(Slot {
            host,
            addr,
            up: true,
        });
        self.by_addr.insert(addr, id);
        id
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// A clock that reads this network's virtual time, for hubs whose
    /// handles must see it ([`HubConfig::clock`](crate::HubConfig::clock)).
    pub fn clock(&self) -> Clock {
        self.clock.clone()
    }

    fn set_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
        self.clock.set(self.now);
    }

    /// The address of host `id`.
    pub fn addr(&self, id: HostId) -> SocketAddr {
        self.hosts[id].addr
    }

    /// Host `id`.
    pub fn host(&self, id: HostId) -> &H {
        &self.hosts[id].host
    }

    /// Host `id`, to give it commands (at [`Network::now`]). Its output is
    /// collected at the next step.
    pub fn host_mut(&mut self, id: HostId) -> &mut H {
        &mut self.hosts[id].host
    }

    /// Number of hosts.
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: HostId, to: HostId, config: LinkConfig) {
        self.links.entry((from, to)).or_default().config = Some(config);
    }

    /// Sets the links between `a` and `b`, both directions.
    pub fn set_links(&mut self, a: HostId, b: HostId, config: LinkConfig) {
        self.set_link(a, b, config.clone());
        self.set_link(b, a, config);
    }

    /// Gives host `id` a new address, the same IP with `port`, as a NAT
    /// does when its mapping for the host changes (a rebinding): what the
    /// host sends comes from the new address from now on, and datagrams to
    /// the old one, even those already on the wire, are dropped (counted as
    /// unroutable). Returns the new address.
    ///
    /// # Panics
    /// If another host has that address.
    pub fn rebind(&mut self, id: HostId, port: u16) -> SocketAddr {
        let old = self.hosts[id].addr;
        let new = SocketAddr::new(old.ip(), port);
        assert!(
            !self.by_addr.contains_key(&new) || new == old,
            "{new} is another host's address"
        );
        self.by_addr.remove(&old);
        self.by_addr.insert(new, id);
        self.hosts[id].addr = new;
        new
    }

    /// Takes host `id` off the network (it vanished: a crash or a cut
    /// cable) or puts it back. A down host receives nothing, its datagrams
    /// are dropped and its timers do not run.
    pub fn set_up(&mut self, id: HostId, up: bool) {
        self.hosts[id].up = up;
    }

    /// Counters of the link from `from` to `to`.
    pub fn link_stats(&self, from: HostId, to: HostId) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(|l| l.stats)
            .unwrap_or_default()
    }

    /// How long what waits in the rate-limited queue of the link from
    /// `from` to `to` takes to leave it (zero without a rate, or empty): the
    /// queueing delay a datagram sent now meets.
    pub fn link_backlog(&self, from: HostId, to: HostId) -> Duration {
        self.links
            .get(&(from, to))
            .and_then(|l| l.busy_until)
            .map_or(Duration::ZERO, |until| {
                until.saturating_duration_since(self.now)
            })
    }

    /// All links' counters summed (plus datagrams to unknown addresses).
    pub fn total_stats(&self) -> LinkStats {
        let mut t = LinkStats {
            unroutable: self.unroutable,
            ..LinkStats::default()
        };
        for l in self.links.values() {
            let s = l.stats;
            t.sent += s.sent;
            t.lost += s.lost;
            t.duplicated += s.duplicated;
            t.reordered += s.reordered;
            t.queue_dropped += s.queue_dropped;
            t.delivered += s.delivered;
            t.unroutable += s.unroutable;
        }
        t
    }

    /// When the next thing happens: a delivery or a host's timeout.
    pub fn next_event_time(&self) -> Option<Instant> {
        let delivery = self.queue.peek().map(|Reverse((at, _))| *at);
        let timeout = self
            .hosts
            .iter()
            .filter(|s| s.up)
            .filter_map(|s| s.host.poll_timeout())
            .min();
        [delivery, timeout].into_iter().flatten().min()
    }

    /// Collects what hosts want to send, then advances to the next event (if
    /// it is no later than `limit`) and runs it. Returns `false` when nothing
    /// happens up to `limit` (time then stands at `limit`).
    pub fn step(&mut self, limit: Instant) -> bool {
        self.collect_transmits();
        let Some(at) = self.next_event_time().filter(|&at| at <= limit) else {
            self.set_now(limit);
            return false;
        };
        self.set_now(at);
        let now = self.now;
        // Every delivery due now, in order.
        while let Some(&Reverse((due, seq))) = self.queue.peek() {
            if due > now {
                break;
            }
            self.queue.pop();
            if let Some(d) = self.in_flight.remove(&seq) {
                let slot = &mut self.hosts[d.to];
                if slot.up && slot.addr == d.to_addr {
                    slot.host.handle_datagram(now, d.from, d.payload);
                    self.link_mut_by_addr(d.from, d.to).stats.delivered += 1;
                } else {
                    self.link_mut_by_addr(d.from, d.to).stats.unroutable += 1;
                }
            }
        }
        // Every host timeout due now.
        for slot in self.hosts.iter_mut().filter(|s| s.up) {
            if slot.host.poll_timeout().is_some_and(|t| t <= now) {
                slot.host.handle_timeout(now);
            }
        }
        self.collect_transmits();
        true
    }

    /// Runs until `cond` holds (checked before each step) or `max` of
    /// virtual time passes. Returns whether `cond` held.
    pub fn run_until(&mut self, max: Duration, mut cond: impl FnMut(&mut Self) -> bool) -> bool {
        let limit = self.now + max;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(limit) {
                return cond(self);
            }
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
    }

    fn link_mut_by_addr(&mut self, from: SocketAddr, to: HostId) -> &mut LinkState {
        let from = self.by_addr.get(&from).copied().unwrap_or(usize::MAX);
        self.links.entry((from, to)).or_default()
    }

    /// Moves every datagram the hosts emit onto its link.
    fn collect_transmits(&mut self) {
        for from in 0..self.hosts.len() {
            while let Some(t) = self.hosts[from].host.poll_transmit() {
                self.route(from, t);
            }
        }
    }

    fn route(&mut self, from: HostId, t: Transmit) {
        let Some(&to) = self.by_addr.get(&t.destination) else {
            self.unroutable += 1;
            return;
        };
        let from_addr = self.hosts[from].addr;
        let sender_up = self.hosts[from].up;
        let link = self.links.entry((from, to)).or_default();
        let config = link
            .config
            .clone()
            .unwrap_or_else(|| self.default_link.clone());
        link.stats.sent += 1;
        if !sender_up {
            link.stats.unroutable += 1;
            return;
        }
        if self.rng.random_bool(config.loss.clamp(0.0, 1.0)) {
            link.stats.lost += 1;
            return;
        }
        // Serialisation at the link rate, behind what is already queued.
        let mut depart = self.now;
        if let Some(rate) = config.rate_bps.filter(|&r| r > 0) {
            let start = link.busy_until.unwrap_or(self.now).max(self.now);
            let backlog_bytes = (start - self.now).as_secs_f64() * rate as f64 / 8.0;
            if backlog_bytes + t.payload.len() as f64 > config.queue_bytes as f64 {
                link.stats.queue_dropped += 1;
                return;
            }
            let len = t.payload.len() as f64;
            let bytes_per_s = rate as f64 / 8.0;
            if config.burst_bytes == 0 {
                depart = start + Duration::from_secs_f64(len / bytes_per_s);
            } else {
                // Tokens refill at the rate from the last departure, up to
                // the bucket; the datagram leaves once they cover it.
                let burst = config.burst_bytes as f64;
                let since = link.busy_until.map_or(f64::INFINITY, |last| {
                    start.saturating_duration_since(last).as_secs_f64()
                });
                let tokens = (link.tokens + since * bytes_per_s).min(burst);
                let need = len.min(burst);
                depart = start + Duration::from_secs_f64((need - tokens).max(0.0) / bytes_per_s);
                link.tokens = (tokens - len).max(0.0).min(burst);
            }
            link.busy_until = Some(depart);
        }
        let copies = if self.rng.random_bool(config.duplicate.clamp(0.0, 1.0)) {
            link.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut at = depart + config.latency;
            if !config.jitter.is_zero() {
                at += config.jitter.mul_f64(self.rng.random::<f64>());
            }
            if self.rng.random_bool(config.reorder.clamp(0.0, 1.0)) {
                link.stats.reordered += 1;
                at += config.reorder_delay;
            }
            let seq = self.seq;
            self.seq += 1;
            self.queue.push(Reverse((at, seq)));
            self.in_flight.insert(
                seq,
                InFlight {
                    from: from_addr,
                    to,
                    to_addr: t.destination,
                    payload: t.payload.clone(),
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use super::*;

    /// Sends what it is given; records when datagrams arrive.
    #[derive(Default)]
    struct Probe {
        out: VecDeque<Transmit>,
        arrived: Vec<Instant>,
    }

    impl Host for Probe {
        fn handle_datagram(&mut self, now: Instant, _from: SocketAddr, _datagram: Bytes) {
            self.arrived.push(now);
        }
        fn handle_timeout(&mut self, _now: Instant) {}
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    /// Four 1,000-byte datagrams at once over 1 Mbit/s (125 bytes a ms),
    /// no latency: when each arrives, in ms after the start.
    fn arrivals(burst_bytes: usize) -> Vec<f64> {
        let link = LinkConfig {
            rate_bps: Some(1_000_000),
            burst_bytes,
            ..LinkConfig::with_latency(Duration::ZERO)
        };
        let mut net: Network<Probe> = Network::new(1, link);
        let a = net.add_host(Probe::default());
        let b = net.add_host(Probe::default());
        let to = net.addr(b);
        let start = net.now();
        for _ in 0..4 {
            net.host_mut(a).out.push_back(Transmit {
                destination: to,
                payload: Bytes::from(vec![0u8; 1000]),
            });
        }
        net.collect_transmits();
        net.run_for(Duration::from_millis(100));
        net.host(b)
            .arrived
            .iter()
            .map(|t| (*t - start).as_secs_f64() * 1000.0)
            .collect()
    }

    fn close(got: &[f64], want: &[f64]) -> bool {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.01)
    }

    #[test]
    fn a_serializing_link_delivers_each_datagram_after_its_last_bit() {
        let got = arrivals(0);
        assert!(close(&got, &[8.0, 16.0, 24.0, 32.0]), "{got:?}");
    }

    #[test]
    fn a_token_bucket_lets_its_burst_through_then_holds_the_rate() {
        // 1,600 bytes of tokens: the first datagram leaves at once, the
        // second when 400 more bytes of tokens came (3.2 ms), then one each
        // 8 ms.
        let got = arrivals(1600);
        assert!(close(&got, &[0.0, 3.2, 11.2, 19.2]), "{got:?}");
    }
}
