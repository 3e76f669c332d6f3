//! [`HubCluster`]: the hubs of a multi-worker engine in one sans-IO value.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Hub, HubConfig, HubEvent, HubStats, JoinError, home_worker};
use crate::datachannel::{Call, ParticipantId};
use crate::proto::Transmit;
use crate::wire::MemberId;

/// The hubs of an engine with several workers, driven as one sans-IO host:
/// what the runtime does with threads, sockets and queues, done in order
/// on one thread, so the simulator (and fuzzing) can run a multi-worker
/// server deterministically.
///
/// - Datagrams go to the worker the kernel would pick: the one that last
///   sent to that address, else a fixed hash of the address (as
///   `SO_REUSEPORT` hashes the 4-tuple).
/// - After every input, relays ([`Hub::poll_relay`]) are handed to their
///   workers until none is left.
/// - Remote joins go to the workers in turn; hosted participants to their
///   call's home worker.
///
/// The runtime does not use this type: each of its workers owns one hub on
/// its own thread, and relays travel through lock-free queues.
#[derive(Debug)]
pub struct HubCluster {
    hubs: Vec<Hub>,
    /// Address → the worker that talks to it (grows with the peers seen;
    /// meant for tests and fuzzing, not for serving).
    steer: HashMap<SocketAddr, usize>,
    /// ICE sessions (by local username fragment) → the worker hosting
    /// their peer, as the runtime keeps them.
    ice_homes: HashMap<String, usize>,
    next_join: usize,
    next_tx: usize,
    /// How long a relay batch takes to reach its worker (see
    /// [`HubCluster::set_relay_delay`]).
    relay_delay: Duration,
    /// Relay batches on their way: (due, destination, batch), in order.
    in_transit: VecDeque<(Instant, usize, Vec<super::Relay>)>,
}

impl HubCluster {
    /// `workers` hubs (at least one) with `config`, each told its index.
    pub fn new(config: HubConfig, workers: usize) -> Self {
        let workers = workers.max(1);
        let hubs = (0..workers)
            .map(|i| {
                let mut c = config.clone();
                c.workers = workers;
                c.worker = i;
                c.seed = config
                    .seed
                    .wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                Hub::new(c)
            })
            .collect();
        Self {
            hubs,
            steer: HashMap::new(),
            ice_homes: HashMap::new(),
            next_join: 0,
            next_tx: 0,
            relay_delay: Duration::ZERO,
            in_transit: VecDeque::new(),
        }
    }

    /// Relay batches take `delay` to reach their worker (default none: at
    /// once, within the input that made them), as a worker busy or
    /// descheduled for that long takes its inbox late in the runtime.
    /// Batches keep their order.
    pub fn set_relay_delay(&mut self, delay: Duration) {
        self.relay_delay = delay;
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.hubs.len()
    }

    /// Worker `i`'s hub.
    pub fn hub(&self, i: usize) -> &Hub {
        &self.hubs[i]
    }

    /// See [`Hub::join_remote`]; the workers take turns.
    pub fn join_remote(
        &mut self,
        now: Instant,
        server: SocketAddr,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, JoinError> {
        let i = self.next_join % self.hubs.len();
        self.next_join += 1;
        let call = self.hubs[i].join_remote(now, server, call_id, participant_id, token);
        self.relay(now);
        call
    }

    /// See [`Hub::allow_dtls_peer`]; on the worker datagrams from
    /// `remote` go to.
    pub fn allow_dtls_peer(
        &mut self,
        now: Instant,
        remote: SocketAddr,
        fingerprint: crate::dtls::Fingerprint,
    ) -> bool {
        let i = self.worker_for(remote);
        self.hubs[i].allow_dtls_peer(now, remote, fingerprint)
    }

    /// See [`Hub::accept_offer`]; every worker learns the peer (as the
    /// engine does it).
    pub fn accept_offer(
        &mut self,
        now: Instant,
        offer: &str,
        candidates: &[SocketAddr],
        join: &crate::auth::JoinRequest<'_>,
    ) -> Result<String, super::SignalError> {
        let answer = self.hubs[0].accept_offer(now, offer, candidates, join)?;
        let parsed = crate::sdp::parse_answer(&answer)?;
        let offer = crate::sdp::parse_offer(offer)?;
        let peer = super::ExpectedPeer {
            local_ufrag: parsed.ice_ufrag,
            local_pwd: parsed.ice_pwd,
            remote_ufrag: offer.ice_ufrag.clone(),
            fingerprint: crate::dtls::Fingerprint(
                offer.sha256().ok_or(crate::sdp::SdpError::MissingFingerprint)?,
            ),
        };
        for hub in &mut self.hubs[1..] {
            hub.expect_peer(now, &peer)?;
        }
        Ok(answer)
    }

    /// See [`Hub::offer`] (worker 0's).
    pub fn offer(&mut self) -> Result<super::PendingOffer, super::SignalError> {
        self.hubs[0].offer()
    }

    /// See [`Hub::join_answered`] (on worker 0).
    pub fn join_answered(
        &mut self,
        now: Instant,
        offer: &super::PendingOffer,
        answer: &str,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, JoinError> {
        let call = self.hubs[0].join_answered(now, offer, answer, call_id, participant_id, token);
        self.relay(now);
        call
    }

    /// See [`Hub::trust_dtls_server`]; on every worker.
    pub fn trust_dtls_server(&mut self, server: SocketAddr, fingerprint: crate::dtls::Fingerprint) {
        for hub in &mut self.hubs {
            hub.trust_dtls_server(server, fingerprint);
        }
    }

    /// DTLS sessions held by all workers.
    pub fn dtls_session_count(&self) -> usize {
        self.hubs.iter().map(Hub::dtls_session_count).sum()
    }

    /// See [`Hub::join_local`]; runs on the call's home worker.
    pub fn join_local(
        &mut self,
        now: Instant,
        call_id: &str,
        participant_id: &str,
    ) -> Result<Call, JoinError> {
        let i = home_worker(call_id, self.hubs.len());
        let call = self.hubs[i].join_local(now, call_id, participant_id);
        self.relay(now);
        call
    }

    /// The workers' counters, added up.
    pub fn stats(&self) -> HubStats {
        let mut sum = HubStats::default();
        for hub in &self.hubs {
            sum += hub.stats();
        }
        sum
    }

    /// Members of `call_id` (kept by its home worker).
    pub fn members(&self, call_id: &str) -> Vec<(MemberId, ParticipantId)> {
        self.hubs[home_worker(call_id, self.hubs.len())].members(call_id)
    }

    /// The next event of any worker.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.hubs.iter_mut().find_map(Hub::poll_event)
    }

    /// Associations of all workers.
    pub fn association_count(&self) -> usize {
        self.hubs.iter().map(|h| h.node().association_count()).sum()
    }

    /// See [`Hub::close_all`].
    pub fn close_all(&mut self, now: Instant) {
        for hub in &mut self.hubs {
            hub.close_all(now);
        }
        self.relay(now);
    }

    /// Takes the workers' notes of the ICE sessions they host and of peers
    /// that moved to them.
    fn follow_homes(&mut self) {
        for i in 0..self.hubs.len() {
            while let Some(home) = self.hubs[i].poll_ice_home() {
                match home {
                    super::secure::IceHome::Hosted(ufrag) => {
                        self.ice_homes.insert(ufrag, i);
                    }
                    super::secure::IceHome::Released(ufrag) => {
                        if self.ice_homes.get(&ufrag) == Some(&i) {
                            self.ice_homes.remove(&ufrag);
                        }
                    }
                }
            }
            while let Some(peer) = self.hubs[i].poll_moved_peer() {
                self.steer.insert(peer, i);
            }
        }
    }

    /// Hands relays to their workers until there are none (or, with a
    /// relay delay, none due).
    fn relay(&mut self, now: Instant) {
        loop {
            let mut moved = false;
            while let Some((due, _, _)) = self.in_transit.front()
                && *due <= now
            {
                if let Some((_, to, batch)) = self.in_transit.pop_front()
                    && let Some(hub) = self.hubs.get_mut(to)
                {
                    hub.handle_relay(now, batch);
                    moved = true;
                }
            }
            for i in 0..self.hubs.len() {
                while let Some((to, batch)) = self.hubs[i].poll_relay() {
                    if !self.relay_delay.is_zero() {
                        self.in_transit
                            .push_back((now + self.relay_delay, to, batch));
                    } else if let Some(hub) = self.hubs.get_mut(to) {
                        hub.handle_relay(now, batch);
                        moved = true;
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }

    /// The worker a datagram from `from` goes to.
    pub fn worker_for(&self, from: SocketAddr) -> usize {
        if let Some(&i) = self.steer.get(&from) {
            return i;
        }
        // FNV-1a over the address and port.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let ip = match from.ip() {
            std::net::IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            std::net::IpAddr::V6(a) => a.octets(),
        };
        for b in ip.iter().chain(&from.port().to_be_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h % self.hubs.len() as u64) as usize
    }
}

impl crate::sim::Host for HubCluster {
    fn use_clock(&mut self, clock: &crate::sched::Clock) {
        for hub in &mut self.hubs {
            crate::sim::Host::use_clock(hub, clock);
        }
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        let i = self.worker_for(from);
        self.hubs[i].handle_datagram(now, from, datagram.clone());
        // As the runtime does: a valid ICE check for a session another
        // worker hosts goes there too (its peer may have moved), and what
        // arrives from a peer that moved goes to the worker it moved on.
        if let Some(ufrag) = self.hubs[i].take_foreign_check()
            && let Some(&home) = self.ice_homes.get(&ufrag)
            && home != i
        {
            self.hubs[home].handle_datagram(now, from, datagram);
        }
        self.follow_homes();
        self.relay(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.relay(now);
        for hub in &mut self.hubs {
            if hub.poll_timeout().is_some_and(|t| t <= now) {
                hub.handle_timeout(now);
            }
        }
        self.follow_homes();
        self.relay(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let n = self.hubs.len();
        for k in 0..n {
            let i = (self.next_tx + k) % n;
            if let Some(t) = self.hubs[i].poll_transmit() {
                self.steer.entry(t.destination).or_insert(i);
                self.next_tx = i;
                return Some(t);
            }
        }
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        let relay = self.in_transit.front().map(|(due, _, _)| *due);
        self.hubs
            .iter()
            .filter_map(Hub::poll_timeout)
            .chain(relay)
            .min()
    }
}
