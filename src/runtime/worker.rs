//! One worker: its loop, and the queues between the workers of an engine.
//!
//! A worker owns a socket on the engine's port (`SO_REUSEPORT` when there
//! are several), a backend (ring or poll), a [`Hub`] (with its node, its
//! associations and its timers), a command channel from the [`Engine`]
//! and an inbox from the other workers. Nothing of it is shared: the only
//! state the workers share is [`Shared`] (the inboxes, their wake-ups and
//! the client directory below).
//!
//! # Inboxes
//! Each worker has one inbox, a bounded lock-free queue
//! ([`crossbeam_queue::ArrayQueue`]) of [`Inbound`] batches: work that
//! another worker's hub relays to this one's (a call's members and its home
//! on different workers, see [`Hub::poll_relay`]), or datagrams that the
//! kernel gave another worker's socket (below). After each turn a worker
//! moves everything its hub has for others (`poll_relay`: one batch per
//! destination) into their inboxes and wakes each destination once. At the
//! top of each turn it empties its own inbox in order
//! ([`Hub::handle_relay`], or the datagrams to its hub).
//!
//! Backpressure: a full inbox never loses a relay batch. The sender keeps
//! the batch (and everything after it for that destination, in order),
//! marks itself waiting on that inbox and retries; the destination, after
//! emptying its inbox, wakes every worker marked waiting. (SeqCst fences on
//! both sides make sure that a sender either finds room on its retry or is
//! seen waiting.) Forwarded datagrams are held the same way, up to
//! [`MAX_HELD_DATAGRAMS`] per destination; past that they are dropped, as
//! a full socket buffer would.
//!
//! # Associations this engine starts
//! With `SO_REUSEPORT` the kernel picks the socket for an incoming datagram
//! by a hash of its addresses, not by which socket sent the last datagram
//! to that peer. A server does not mind: a client's datagrams always land
//! on the same worker, whose node then owns the association. But the
//! replies to an association a worker *starts* (`join_remote`) may land on
//! another worker's socket. So a worker that starts one lists itself in the
//! [`Directory`] under the remote address first, and a worker whose node
//! cannot place a datagram (no association has its verification tag) that
//! is not an INIT looks the source up there and forwards the datagram to
//! the listed workers' inboxes. The directory is an `RwLock<HashMap>`,
//! written only when a worker starts an association to a new remote or
//! finds it has none left to it (checked at most once a second after the
//! worker's association count fell), and read only on that miss path; an
//! empty directory (every server-only engine) is one atomic load per
//! datagram. The engine also sends every `join_remote` to a remote that a
//! worker already has associations with to that worker, so the replies of
//! all of them are forwarded to one place.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError, RwLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

#[cfg(doc)]
use super::Engine;
use super::{Command, Io, Wake};
use crate::datachannel::shared::WakeBatch;
use crate::hub::secure::IceHome;
use crate::hub::{Hub, HubEvent, Relay};
use crate::proto::{DropReason, Placement};

/// Batches one inbox holds.
pub(super) const INBOX_CAPACITY: usize = 1024;

/// Forwarded datagrams a worker holds for one destination whose inbox is
/// full before it drops more.
const MAX_HELD_DATAGRAMS: usize = 4096;

/// How often at most a worker checks which of its directory entries it
/// still needs.
const DIRECTORY_CHECK: Duration = Duration::from_secs(1);

/// How long a stopping worker keeps flushing what is left to send.
const FINAL_FLUSH: Duration = Duration::from_millis(200);

/// Events a worker keeps for [`Engine::events`] (older ones are dropped).
const MAX_EVENTS: usize = 10_000;

/// What one worker hands another.
#[derive(Debug)]
pub(super) enum Inbound {
    /// Work from another worker's hub, for [`Hub::handle_relay`].
    Relay(Vec<Relay>),
    /// Datagrams the kernel gave another worker's socket that belong to an
    /// association this worker started: `(source, payload)`.
    Datagrams(Vec<(SocketAddr, Bytes)>),
}

// The inboxes move relays between threads.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Relay>();
    send::<Inbound>();
};

/// One worker's inbox.
struct Inbox {
    queue: ArrayQueue<Inbound>,
    /// `waiting[i]`: worker `i` holds batches for this inbox and waits to be
    /// woken when it has room.
    waiting: Box<[AtomicBool]>,
    /// Some `waiting` flag may be set.
    any_waiting: AtomicBool,
}

/// Remote address → the workers that started associations to it.
#[derive(Debug, Default)]
pub(super) struct Directory {
    /// Remotes listed; 0 lets the receive path skip the lookup.
    listed: AtomicUsize,
    owners: RwLock<HashMap<SocketAddr, Vec<usize>>>,
}

impl Directory {
    fn is_empty(&self) -> bool {
        self.listed.load(Ordering::Acquire) == 0
    }

    /// The first worker listed for `remote`.
    pub(super) fn owner(&self, remote: SocketAddr) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        owners.get(&remote).and_then(|o| o.first().copied())
    }

    /// Lists `worker` under `remote`.
    fn claim(&self, remote: SocketAddr, worker: usize) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        let list = owners.entry(remote).or_default();
        if list.is_empty() {
            self.listed.fetch_add(1, Ordering::Release);
        }
        if !list.contains(&worker) {
            list.push(worker);
        }
    }

    /// Takes `worker` off `remote`'s list.
    fn release(&self, remote: SocketAddr, worker: usize) {
        let mut owners = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = owners.get_mut(&remote) {
            list.retain(|&w| w != worker);
            if list.is_empty() {
                owners.remove(&remote);
                self.listed.fetch_sub(1, Ordering::Release);
            }
        }
    }

    /// The workers listed under `remote`, other than `except`, into `out`.
    fn others(&self, remote: SocketAddr, except: usize, out: &mut Vec<usize>) {
        out.clear();
        let owners = self.owners.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = owners.get(&remote) {
            out.extend(list.iter().copied().filter(|&w| w != except));
        }
    }
}

/// What the workers of one engine share.
pub(super) struct Shared {
    inboxes: Box<[Inbox]>,
    /// Each worker's wake-up, set once every backend is ready.
    wakes: OnceLock<Box<[Wake]>>,
    pub(super) directory: Directory,
    /// ICE sessions (by local username fragment) → the worker whose DTLS
    /// carries their peer: where a valid check that reached another worker
    /// goes (its peer's address changed, and the kernel picked another
    /// socket for the new one). Written on joins and expiries, read only
    /// for checks of sessions a worker does not host.
    ice_homes: RwLock<HashMap<String, usize>>,
    /// Datagrams forwarded to the worker owning their association.
    forwarded: AtomicU64,
    /// Datagrams that could not be forwarded (the owner's inbox stayed full).
    forward_dropped: AtomicU64,
    /// Workers still running: stopping workers keep their sockets open
    /// until all are done, so that the kernel's choice of socket for the
    /// others' peers does not change while they close.
    running: Mutex<usize>,
    stopped: Condvar,
}

impl Shared {
    pub(super) fn new(workers: usize, capacity: usize) -> Self {
        let inboxes = (0..workers)
            .map(|_| Inbox {
                queue: ArrayQueue::new(capacity.max(1)),
                waiting: (0..workers).map(|_| AtomicBool::new(false)).collect(),
                any_waiting: AtomicBool::new(false),
            })
            .collect();
        Self {
            inboxes,
            wakes: OnceLock::new(),
            directory: Directory::default(),
            ice_homes: RwLock::new(HashMap::new()),
            forwarded: AtomicU64::new(0),
            forward_dropped: AtomicU64::new(0),
            running: Mutex::new(workers),
            stopped: Condvar::new(),
        }
    }

    /// Sets the workers' wake-ups (in worker order), once.
    pub(super) fn set_wakes(&self, wakes: Vec<Wake>) {
        let _ = self.wakes.set(wakes.into_boxed_slice());
    }

    fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Datagrams forwarded to the worker owning their association, and
    /// those dropped because its inbox stayed full.
    pub(super) fn forward_counts(&self) -> (u64, u64) {
        (
            self.forwarded.load(Ordering::Relaxed),
            self.forward_dropped.load(Ordering::Relaxed),
        )
    }

    fn wake(&self, worker: usize) {
        if let Some(wake) = self.wakes.get().and_then(|w| w.get(worker)) {
            // A failed wake-up only delays the work to the worker's next turn.
            let _ = wake();
        }
    }

    /// A worker is done; with `wait_until`, waits (until then at most) for
    /// the others to be done too.
    fn finished(&self, wait_until: Option<Instant>) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        *running = running.saturating_sub(1);
        self.stopped.notify_all();
        let Some(until) = wait_until else { return };
        while *running > 0 {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            running = self
                .stopped
                .wait_timeout(running, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// One worker's side of the inboxes: what it sends to the others.
struct Crossing {
    index: usize,
    shared: Arc<Shared>,
    /// Batches not yet in their destination's inbox (it was full), per
    /// destination, oldest first.
    held: Vec<VecDeque<Inbound>>,
    /// Datagrams in `held`, per destination.
    held_datagrams: Vec<usize>,
    /// Datagrams received this turn for other workers, per destination.
    forward: Vec<Vec<(SocketAddr, Bytes)>>,
    /// Destinations that got a batch since they were last woken.
    pushed: Vec<bool>,
    /// Scratch for directory look-ups.
    owners: Vec<usize>,
}

impl Crossing {
    fn new(index: usize, shared: Arc<Shared>) -> Self {
        let n = shared.workers();
        Self {
            index,
            shared,
            held: (0..n).map(|_| VecDeque::new()).collect(),
            held_datagrams: vec![0; n],
            forward: (0..n).map(|_| Vec::new()).collect(),
            pushed: vec![false; n],
            owners: Vec::new(),
        }
    }

    /// A datagram this worker's node could not place: forward it to the
    /// workers that started associations to its source.
    fn unplaced(&mut self, from: SocketAddr, data: Bytes) {
        self.shared
            .directory
            .others(from, self.index, &mut self.owners);
        for &owner in &self.owners {
            if let Some(out) = self.forward.get_mut(owner) {
                out.push((from, data.clone()));
            }
        }
    }

    /// Queues `item` for `dest`: in its inbox if there is room and nothing
    /// is held for it, else held (in order).
    fn push(&mut self, dest: usize, item: Inbound) {
        if dest >= self.held.len() {
            debug_assert!(false, "a batch for worker {dest} of {}", self.held.len());
            tracing::error!(dest, "a batch for a worker that does not exist; dropped");
            return;
        }
        if self.held[dest].is_empty() {
            match self.offer(dest, item) {
                Ok(()) => {
                    self.pushed[dest] = true;
                    return;
                }
                Err(item) => return self.hold(dest, item),
            }
        }
        self.hold(dest, item);
    }

    fn hold(&mut self, dest: usize, item: Inbound) {
        if let Inbound::Datagrams(d) = &item {
            if self.held_datagrams[dest] + d.len() > MAX_HELD_DATAGRAMS {
                self.shared
                    .forward_dropped
                    .fetch_add(d.len() as u64, Ordering::Relaxed);
                return;
            }
            self.held_datagrams[dest] += d.len();
        }
        self.held[dest].push_back(item);
    }

    /// Pushes `item` into `dest`'s inbox; if it is full, marks this worker
    /// waiting for room and tries once more (the destination either sees
    /// the mark after it pops, or this retry sees the room it made).
    fn offer(&self, dest: usize, item: Inbound) -> Result<(), Inbound> {
        let inbox = &self.shared.inboxes[dest];
        match inbox.queue.push(item) {
            Ok(()) => Ok(()),
            Err(item) => {
                inbox.waiting[self.index].store(true, Ordering::SeqCst);
                inbox.any_waiting.store(true, Ordering::SeqCst);
                fence(Ordering::SeqCst);
                inbox.queue.push(item)
            }
        }
    }

    /// Moves held batches into inboxes that have room again, in order.
    fn retry(&mut self) {
        for dest in 0..self.held.len() {
            while let Some(item) = self.held[dest].pop_front() {
                let datagrams = match &item {
                    Inbound::Datagrams(d) => d.len(),
                    Inbound::Relay(_) => 0,
                };
                match self.offer(dest, item) {
                    Ok(()) => {
                        self.held_datagrams[dest] -= datagrams;
                        self.pushed[dest] = true;
                    }
                    Err(item) => {
                        self.held[dest].push_front(item);
                        break;
                    }
                }
            }
        }
    }

    /// Queues the datagrams gathered this turn.
    fn forward_gathered(&mut self) {
        for dest in 0..self.forward.len() {
            if !self.forward[dest].is_empty() {
                let batch = std::mem::take(&mut self.forward[dest]);
                self.shared
                    .forwarded
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.push(dest, Inbound::Datagrams(batch));
            }
        }
    }

    /// Wakes every destination that got something, once.
    fn wake_pushed(&mut self) {
        for dest in 0..self.pushed.len() {
            if std::mem::take(&mut self.pushed[dest]) {
                self.shared.wake(dest);
            }
        }
    }

    fn holds_any(&self) -> bool {
        self.held.iter().any(|h| !h.is_empty())
    }
}

/// What a worker's backend feeds: the hub, and the way to the other
/// workers.
pub(super) struct Core {
    pub(super) hub: Hub,
    cross: Crossing,
    /// Remotes this worker listed itself under in the directory.
    claimed: Vec<SocketAddr>,
    /// The node's association count at the last look.
    associations: usize,
    /// Some association ended since the directory entries were checked.
    check_claims: bool,
    next_claims_check: Option<Instant>,
}

impl Core {
    pub(super) fn new(hub: Hub, index: usize, shared: Arc<Shared>) -> Self {
        Self {
            hub,
            cross: Crossing::new(index, shared),
            claimed: Vec::new(),
            associations: 0,
            check_claims: false,
            next_claims_check: None,
        }
    }

    /// A datagram arrived on this worker's socket.
    pub(super) fn datagram(&mut self, now: Instant, from: SocketAddr, data: Bytes) {
        // A STUN check (RFC 7983: first byte 0 to 3) may be for a peer
        // another worker hosts: kept for forwarding (several workers only).
        let check = (self.cross.shared.workers() > 1 && data.first().is_some_and(|&b| b <= 3))
            .then(|| data.clone());
        if self.cross.shared.directory.is_empty() {
            self.hub.handle_datagram(now, from, data);
        } else {
            // Some worker started an association, or a peer moved to
            // another worker: a datagram no association here knows may be
            // one of its (an unknown verification tag is dropped without
            // side effects; an INIT is never a reply; a DTLS record other
            // than a ClientHello starts nothing).
            let placement = self.hub.handle_datagram(now, from, data.clone());
            if placement == Placement::Dropped(DropReason::UnknownAssociation) {
                self.cross.unplaced(from, data);
            }
        }
        if let Some(check) = check {
            self.follow_ice(from, check);
        }
    }

    /// A valid ICE check for a session another worker hosts goes there too:
    /// its peer's address changed and the kernel picked this socket for the
    /// new one. That worker moves the peer and lists itself for the new
    /// address, so what else comes from it is forwarded there.
    fn follow_ice(&mut self, from: SocketAddr, data: Bytes) {
        let Some(ufrag) = self.hub.take_foreign_check() else {
            return;
        };
        let home = self
            .cross
            .shared
            .ice_homes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&ufrag)
            .copied();
        if let Some(home) = home
            && home != self.cross.index
            && let Some(out) = self.cross.forward.get_mut(home)
        {
            out.push((from, data));
        }
    }

    /// Publishes the ICE sessions this worker started or stopped hosting,
    /// and lists it for the addresses its peers moved to.
    fn note_ice_homes(&mut self) {
        while let Some(home) = self.hub.poll_ice_home() {
            let mut homes = self
                .cross
                .shared
                .ice_homes
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            match home {
                IceHome::Hosted(ufrag) => {
                    homes.insert(ufrag, self.cross.index);
                }
                IceHome::Released(ufrag) => {
                    if homes.get(&ufrag) == Some(&self.cross.index) {
                        homes.remove(&ufrag);
                    }
                }
            }
        }
        while let Some(peer) = self.hub.poll_moved_peer() {
            self.claim(peer);
        }
    }

    /// Empties this worker's inbox (as much as it held when this started,
    /// at most). Returns `true` if more is waiting.
    fn take_inbox(&mut self, now: Instant) -> bool {
        let shared = &self.cross.shared;
        let inbox = &shared.inboxes[self.cross.index];
        let mut taken = 0;
        while taken < inbox.queue.capacity() {
            let Some(item) = inbox.queue.pop() else { break };
            taken += 1;
            match item {
                Inbound::Relay(batch) => self.hub.handle_relay(now, batch),
                Inbound::Datagrams(datagrams) => {
                    for (from, data) in datagrams {
                        // Forwarded once: never sent on from here.
                        self.hub.handle_datagram(now, from, data);
                        let _ = self.hub.take_foreign_check();
                    }
                }
            }
        }
        if taken > 0 {
            fence(Ordering::SeqCst);
            if inbox.any_waiting.swap(false, Ordering::SeqCst) {
                for (worker, waiting) in inbox.waiting.iter().enumerate() {
                    if waiting.swap(false, Ordering::SeqCst) {
                        shared.wake(worker);
                    }
                }
            }
        }
        !inbox.queue.is_empty()
    }

    /// Hands everything this worker has for others to their inboxes.
    fn send_out(&mut self) {
        self.cross.retry();
        while let Some((dest, batch)) = self.hub.poll_relay() {
            self.cross.push(dest, Inbound::Relay(batch));
        }
        self.cross.forward_gathered();
        self.cross.wake_pushed();
    }

    /// Lists this worker in the directory under `remote` (before it starts
    /// an association there, so that no reply finds the list without it).
    fn claim(&mut self, remote: SocketAddr) {
        if self.cross.shared.workers() < 2 {
            return;
        }
        self.cross.shared.directory.claim(remote, self.cross.index);
        if !self.claimed.contains(&remote) {
            self.claimed.push(remote);
        }
    }

    /// Takes this worker off the directory for remotes it has no
    /// association with any more (at most once per `DIRECTORY_CHECK`, and
    /// only after its association count fell).
    fn check_claims(&mut self, now: Instant) {
        let count = self.hub.node().association_count();
        if count < self.associations {
            self.check_claims = true;
        }
        self.associations = count;
        if !self.check_claims
            || self.claimed.is_empty()
            || self.next_claims_check.is_some_and(|t| now < t)
        {
            return;
        }
        self.check_claims = false;
        self.next_claims_check = Some(now + DIRECTORY_CHECK);
        let (node, directory, index) = (
            self.hub.node(),
            &self.cross.shared.directory,
            self.cross.index,
        );
        self.claimed.retain(|&remote| {
            let keep = node.knows_remote(remote);
            if !keep {
                directory.release(remote, index);
            }
            keep
        });
    }
}

/// One worker: its core, its backend, and the engine's commands.
pub(super) struct Worker<I: Io> {
    core: Core,
    io: I,
    commands: mpsc::Receiver<Command>,
    events: Vec<HubEvent>,
}

impl<I: Io> Worker<I> {
    pub(super) fn new(core: Core, io: I, commands: mpsc::Receiver<Command>) -> Self {
        Self {
            core,
            io,
            commands,
            events: Vec::new(),
        }
    }

    /// The worker loop, until the engine stops it (or waiting fails).
    pub(super) fn run(mut self) {
        let shared = self.core.cross.shared.clone();
        let mut stopping: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.commands(now) {
                stopping.get_or_insert(deadline);
            }
            if let Some(deadline) = stopping
                && (now >= deadline || self.core.hub.node().association_count() == 0)
            {
                self.finish();
                shared.finished(Some(deadline.max(now) + FINAL_FLUSH));
                return;
            }
            let more = self.core.take_inbox(now);
            if self.core.hub.poll_timeout().is_some_and(|t| t <= now) {
                self.core.hub.handle_timeout(now);
            }
            if shared.workers() > 1 {
                self.core.note_ice_homes();
            }
            self.core.check_claims(now);
            self.drain_events();
            self.core.send_out();
            self.io.flush(&mut self.core.hub);
            let deadline = if more {
                Some(now)
            } else {
                [self.core.hub.poll_timeout(), stopping]
                    .into_iter()
                    .flatten()
                    .min()
            };
            // Readers of what this wait's completions deliver are woken
            // once, after all of them.
            let batch = WakeBatch::open();
            let waited = self.io.wait(&mut self.core, deadline);
            drop(batch);
            if let Err(e) = waited {
                tracing::error!(error = %e, "waiting for I/O failed; the worker stops");
                shared.finished(None);
                return;
            }
        }
    }

    /// Sends what is left, for a short while.
    fn finish(&mut self) {
        let until = Instant::now() + FINAL_FLUSH;
        loop {
            self.core.send_out();
            let flushed = self.io.flush(&mut self.core.hub) && self.io.sent_all();
            if (flushed && !self.core.cross.holds_any()) || Instant::now() >= until {
                return;
            }
            if self.io.wait(&mut self.core, Some(until)).is_err() {
                return;
            }
        }
    }

    /// Handles queued commands; returns a shutdown deadline if asked to stop.
    fn commands(&mut self, now: Instant) -> Option<Instant> {
        let mut stop = None;
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::JoinRemote {
                    server,
                    call_id,
                    participant_id,
                    token,
                    reply,
                } => {
                    self.core.claim(server);
                    let r =
                        self.core
                            .hub
                            .join_remote(now, server, &call_id, &participant_id, token);
                    if r.is_err() {
                        self.core.check_claims = true;
                    }
                    let _ = reply.send(r);
                }
                Command::JoinLocal {
                    call_id,
                    participant_id,
                    reply,
                } => {
                    let r = self.core.hub.join_local(now, &call_id, &participant_id);
                    let _ = reply.send(r);
                }
                Command::AllowDtlsPeer {
                    remote,
                    fingerprint,
                } => {
                    self.core.hub.allow_dtls_peer(now, remote, fingerprint);
                }
                Command::ExpectPeer { peer, reply } => {
                    let _ = reply.send(self.core.hub.expect_peer(now, &peer));
                }
                Command::Offer(reply) => {
                    let _ = reply.send(self.core.hub.offer());
                }
                Command::JoinAnswered {
                    offer,
                    answer,
                    call_id,
                    participant_id,
                    token,
                    reply,
                } => {
                    // The server the answer names: this worker owns the
                    // association to it (the directory steers its
                    // datagrams here).
                    let server = crate::sdp::parse_answer(&answer)
                        .ok()
                        .and_then(|a| a.candidates.first().copied());
                    if let Some(server) = server {
                        self.core.claim(server);
                    }
                    let r = self.core.hub.join_answered(
                        now,
                        &offer,
                        &answer,
                        &call_id,
                        &participant_id,
                        token,
                    );
                    if r.is_err() {
                        self.core.check_claims = true;
                    }
                    let _ = reply.send(r);
                }
                Command::TrustDtlsServer {
                    server,
                    fingerprint,
                } => self.core.hub.trust_dtls_server(server, fingerprint),
                Command::Events(reply) => {
                    self.drain_events();
                    let _ = reply.send(std::mem::take(&mut self.events));
                }
                Command::Stats(reply) => {
                    let _ = reply.send(self.core.hub.stats());
                }
                Command::Shutdown { deadline } => {
                    self.core.hub.close_all(now);
                    stop = Some(now + deadline);
                }
            }
        }
        stop
    }

    fn drain_events(&mut self) {
        while let Some(e) = self.core.hub.poll_event() {
            if self.events.len() < MAX_EVENTS {
                self.events.push(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;

    /// Shared state for `n` workers whose wake-ups are counted.
    fn shared(n: usize, capacity: usize) -> (Arc<Shared>, Vec<Arc<AtomicUsize>>) {
        let shared = Arc::new(Shared::new(n, capacity));
        let counts: Vec<Arc<AtomicUsize>> = (0..n).map(|_| Arc::default()).collect();
        shared.set_wakes(
            counts
                .iter()
                .map(|c| {
                    let c = c.clone();
                    Arc::new(move || {
                        c.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    }) as Wake
                })
                .collect(),
        );
        (shared, counts)
    }

    fn datagram(i: u8) -> Inbound {
        let from = SocketAddr::from(([127, 0, 0, 1], 9));
        Inbound::Datagrams(vec![(from, Bytes::from(vec![i]))])
    }

    fn label(item: Inbound) -> u8 {
        match item {
            Inbound::Datagrams(d) => d[0].1[0],
            Inbound::Relay(_) => panic!("a relay batch"),
        }
    }

    #[test]
    fn a_full_inbox_holds_batches_in_order_and_wakes_the_sender_when_it_has_room() {
        let (shared, wakes) = shared(2, 2);
        let mut zero = Crossing::new(0, shared.clone());
        for i in 0..5 {
            zero.push(1, datagram(i));
        }
        zero.wake_pushed();
        assert_eq!(wakes[1].load(Ordering::SeqCst), 1, "one wake-up per turn");
        assert_eq!(zero.held[1].len(), 3, "two fit, three held");
        assert!(zero.holds_any());

        // Worker 1 empties its inbox: worker 0 was waiting and is woken.
        let mut one = Core::new(Hub::new(HubConfig::client()), 1, shared.clone());
        let inbox = &shared.inboxes[1];
        let first: Vec<u8> = std::iter::from_fn(|| inbox.queue.pop().map(label)).collect();
        assert_eq!(first, [0, 1]);
        inbox.queue.push(datagram(100)).expect("room");
        assert!(!one.take_inbox(Instant::now()));
        assert_eq!(wakes[0].load(Ordering::SeqCst), 1, "the waiting sender");

        // Held batches go first and keep their order; a new one queues
        // behind them.
        zero.push(1, datagram(5));
        assert_eq!(zero.held[1].len(), 4, "nothing overtakes held batches");
        zero.retry();
        zero.wake_pushed();
        assert_eq!(wakes[1].load(Ordering::SeqCst), 2);
        let second: Vec<u8> = std::iter::from_fn(|| inbox.queue.pop().map(label)).collect();
        assert_eq!(second, [2, 3]);
        zero.retry();
        let third: Vec<u8> = std::iter::from_fn(|| inbox.queue.pop().map(label)).collect();
        assert_eq!(third, [4, 5]);
        assert!(!zero.holds_any());
        assert_eq!(zero.held_datagrams[1], 0);
    }

    #[test]
    fn relay_batches_are_never_dropped_but_held_datagrams_are_bounded() {
        let (shared, _) = shared(2, 1);
        let mut zero = Crossing::new(0, shared.clone());
        zero.push(1, Inbound::Relay(Vec::new()));
        for _ in 0..3 * MAX_HELD_DATAGRAMS {
            zero.push(1, Inbound::Relay(Vec::new()));
            zero.push(1, datagram(0));
        }
        let relays = zero.held[1]
            .iter()
            .filter(|i| matches!(i, Inbound::Relay(_)))
            .count();
        assert_eq!(relays, 3 * MAX_HELD_DATAGRAMS, "every relay batch kept");
        assert_eq!(zero.held_datagrams[1], MAX_HELD_DATAGRAMS);
        assert_eq!(
            shared.forward_dropped.load(Ordering::Relaxed),
            2 * MAX_HELD_DATAGRAMS as u64
        );
    }

    /// An SCTP packet for an association nobody here has: common header
    /// (ports, verification tag, checksum) and one chunk of type `chunk`.
    fn sctp(tag: u32, chunk: u8) -> Bytes {
        let mut p = vec![0u8; 16];
        p[0..2].copy_from_slice(&5000u16.to_be_bytes());
        p[2..4].copy_from_slice(&5000u16.to_be_bytes());
        p[4..8].copy_from_slice(&tag.to_be_bytes());
        p[12] = chunk;
        p[15] = 4;
        Bytes::from(p)
    }

    #[test]
    fn replies_to_an_association_another_worker_started_are_forwarded_to_it() {
        let (shared, wakes) = shared(3, 16);
        let server = SocketAddr::from(([127, 0, 0, 1], 5000));
        let stranger = SocketAddr::from(([127, 0, 0, 1], 6000));
        let mut zero = Core::new(Hub::new(HubConfig::client()), 0, shared.clone());
        let mut two = Core::new(Hub::new(HubConfig::client()), 2, shared.clone());
        two.claim(server);
        assert_eq!(shared.directory.owner(server), Some(2));

        let now = Instant::now();
        zero.datagram(now, server, sctp(0x1234_5678, 2)); // an INIT ACK
        zero.datagram(now, server, sctp(0, 1)); // an INIT: never forwarded
        zero.datagram(now, stranger, sctp(0x1234_5678, 3)); // nobody's
        zero.send_out();
        assert_eq!(wakes[2].load(Ordering::SeqCst), 1);
        assert_eq!(wakes[1].load(Ordering::SeqCst), 0);
        match shared.inboxes[2].queue.pop() {
            Some(Inbound::Datagrams(d)) => {
                assert_eq!(d.len(), 1);
                assert_eq!(d[0].0, server);
                assert_eq!(d[0].1, sctp(0x1234_5678, 2));
            }
            other => panic!("{other:?}"),
        }
        assert!(shared.inboxes[2].queue.is_empty());

        // The owner's node has no association to the server (it never
        // connected here): its check takes it off the directory.
        two.associations = 1;
        two.check_claims(now);
        assert_eq!(shared.directory.owner(server), None);
        assert!(shared.directory.is_empty());
    }

    #[test]
    fn a_stopping_worker_waits_for_the_others() {
        let shared = Arc::new(Shared::new(2, 1));
        let other = shared.clone();
        let started = Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.finished(Some(Instant::now() + Duration::from_secs(5)));
        });
        shared.finished(Some(Instant::now() + Duration::from_secs(5)));
        assert!(started.elapsed() >= Duration::from_millis(50));
        t.join().expect("the other worker");
        // Never longer than asked.
        let alone = Shared::new(2, 1);
        let started = Instant::now();
        alone.finished(Some(started + Duration::from_millis(20)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
