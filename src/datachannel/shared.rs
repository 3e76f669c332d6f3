//! State shared between the application's handles and the hub that drives
//! them. The per-message paths (send, receive) are lock-free; mutexes guard
//! only rare control operations (creating senders, roster changes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Waker;

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use crossbeam_queue::SegQueue;

use super::{
    ChannelConfig, DataChannelMessage, DataChannelPriority, DataChannelReliability, ParticipantId,
};
use crate::wire::{CloseReason, MemberId};

/// Locks, recovering the data if another thread panicked while holding it
/// (the guarded state stays consistent between statements).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakers of tasks waiting for a rare event (ready, ended, closed).
#[derive(Default)]
pub(crate) struct Wakers(Mutex<Vec<Waker>>);

impl Wakers {
    pub(crate) fn register(&self, w: &Waker) {
        let mut v = lock(&self.0);
        if !v.iter().any(|x| x.will_wake(w)) {
            v.push(w.clone());
        }
    }

    pub(crate) fn wake_all(&self) {
        // Take the list first: the lock must not be held while waking (a
        // woken task may register again at once).
        let wakers = std::mem::take(&mut *lock(&self.0));
        for w in wakers {
            w.wake();
        }
    }
}

/// Bytes charged per queued message on top of its payload, so queue bounds
/// also bound the number of (possibly empty) messages.
pub(crate) const PER_MESSAGE_COST: usize = 64;

/// What a queued message of `len` payload bytes counts against a bound.
pub(crate) fn message_cost(len: usize) -> usize {
    len + PER_MESSAGE_COST
}

/// A callback the application registers once.
pub(crate) type Callback = Box<dyn Fn() + Send + Sync>;

/// Work the handles hand to the hub.
pub(crate) enum Work {
    /// The sender has operations queued.
    Sender(Arc<SenderShared>),
    /// The application asked to leave the call.
    Leave(Arc<CallShared>),
    /// A task waits in `writable()` for the traffic rules' tokens: wake
    /// its sender's writable waiters at this instant.
    WakeAt(Arc<SenderShared>, std::time::Instant),
}

/// Shared by a hub and every handle of its calls.
#[derive(Default)]
pub(crate) struct HubShared {
    pub(crate) work: SegQueue<Work>,
    /// Set when work was queued and the driver not yet told.
    pending: AtomicBool,
    /// How the driver wants to be woken (set by the runtime).
    wake_hook: OnceLock<Callback>,
    /// The driver's clock, as the handles read it (default: the system's).
    clock: OnceLock<crate::sched::Clock>,
}

impl HubShared {
    pub(crate) fn push(&self, work: Work) {
        self.work.push(work);
        // One wake-up per batch: only the push that raises the flag wakes.
        if !self.pending.swap(true, Ordering::SeqCst)
            && let Some(hook) = self.wake_hook.get()
        {
            hook();
        }
    }

    pub(crate) fn has_work(&self) -> bool {
        self.pending.load(Ordering::SeqCst)
    }

    /// Takes the queued work (clearing the flag first, so a push racing with
    /// the drain wakes the driver again).
    pub(crate) fn take_work(&self) -> impl Iterator<Item = Work> + '_ {
        self.pending.store(false, Ordering::SeqCst);
        std::iter::from_fn(|| self.work.pop())
    }

    pub(crate) fn set_wake_hook(&self, hook: Callback) -> bool {
        self.wake_hook.set(hook).is_ok()
    }

    /// Sets the clock the handles read; `false` if one was set already.
    pub(crate) fn set_clock(&self, clock: crate::sched::Clock) -> bool {
        self.clock.set(clock).is_ok()
    }

    /// The time as the driver sees it.
    pub(crate) fn now(&self) -> std::time::Instant {
        match self.clock.get() {
            Some(c) => c.now(),
            None => std::time::Instant::now(),
        }
    }
}

/// Lifecycle of a call as the application sees it.
pub(crate) const STATE_CONNECTING: u8 = 0;
pub(crate) const STATE_JOINED: u8 = 1;
pub(crate) const STATE_ENDED: u8 = 2;

/// One joined (or joining) call of one local participant.
pub(crate) struct CallShared {
    pub(crate) hub: Arc<HubShared>,
    /// Unique within the hub.
    pub(crate) key: u64,
    pub(crate) call_id: String,
    pub(crate) participant_id: ParticipantId,
    pub(crate) config: ChannelConfig,
    state: AtomicU8,
    max_message_size: AtomicU32,
    /// Most senders open at once, as the server announced (0: no limit).
    max_senders: AtomicU32,
    /// The traffic rules senders of this call follow, once joined: the
    /// config's, tightened by the server's (see `ChannelConfig::traffic`).
    traffic: OnceLock<crate::sched::TrafficPolicy>,
    /// The member rules: every sender of this call together, once joined.
    member_limiter: OnceLock<crate::sched::TrafficLimiter>,
    pub(crate) control: Mutex<Control>,
    pub(crate) new_receivers: SegQueue<super::DataChannelReceiver>,
    pub(crate) receiver_waker: AtomicWaker,
    pub(crate) receiver_callback: OnceLock<Box<dyn Fn(super::DataChannelReceiver) + Send + Sync>>,
    pub(crate) state_wakers: Wakers,
    /// The hub is done with the call: what it accepted was handed to the
    /// transport and its connection closed (or it never had one).
    done: AtomicBool,
}

/// The call's control-plane state, behind a mutex.
#[derive(Default)]
pub(crate) struct Control {
    /// Open senders by channel id.
    pub(crate) channels: HashMap<u16, Arc<SenderShared>>,
    /// Everyone else in the call, by member.
    pub(crate) roster: HashMap<MemberId, ParticipantId>,
    /// Why the call ended, once it has.
    pub(crate) end_reason: Option<String>,
    next_session: u32,
    /// State of the random channel-id picker.
    pub(crate) rng: u64,
}

impl Control {
    pub(crate) fn next_session(&mut self) -> u32 {
        self.next_session = self.next_session.wrapping_add(1).max(1);
        self.next_session
    }

    /// A free id from `range`, chosen at random: a few random draws, then
    /// (for a nearly full pool) a scan from a random start, so exhaustion is
    /// detected exactly.
    pub(crate) fn random_channel(&mut self, range: &std::ops::RangeInclusive<u16>) -> Option<u16> {
        let (lo, hi) = (u32::from((*range.start()).max(1)), u32::from(*range.end()));
        if lo > hi {
            return None;
        }
        let size = hi - lo + 1;
        let free = |c: &Self, off: u32| {
            let id = (lo + off % size) as u16;
            (!c.channels.contains_key(&id)).then_some(id)
        };
        for _ in 0..16 {
            let off = (self.next_random() % u64::from(size)) as u32;
            if let Some(id) = free(self, off) {
                return Some(id);
            }
        }
        let start = (self.next_random() % u64::from(size)) as u32;
        (0..size).find_map(|i| free(self, start + i))
    }

    /// splitmix64: cheap, good enough to spread ids, seeded per call.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl CallShared {
    pub(crate) fn new(
        hub: Arc<HubShared>,
        key: u64,
        call_id: String,
        participant_id: ParticipantId,
        config: ChannelConfig,
    ) -> Self {
        Self {
            max_message_size: AtomicU32::new(config.max_message_size),
            max_senders: AtomicU32::new(0),
            hub,
            key,
            call_id,
            participant_id,
            config,
            state: AtomicU8::new(STATE_CONNECTING),
            traffic: OnceLock::new(),
            member_limiter: OnceLock::new(),
            control: Mutex::default(),
            new_receivers: SegQueue::new(),
            receiver_waker: AtomicWaker::new(),
            receiver_callback: OnceLock::new(),
            state_wakers: Wakers::default(),
            done: AtomicBool::new(false),
        }
    }

    pub(crate) fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    pub(crate) fn max_message_size(&self) -> u32 {
        self.max_message_size.load(Ordering::Relaxed)
    }

    /// The traffic rules new senders follow.
    pub(crate) fn traffic(&self) -> &crate::sched::TrafficPolicy {
        self.traffic.get().unwrap_or(&self.config.traffic)
    }

    /// The member rules (every sender of the call together), once joined.
    pub(crate) fn member_limiter(&self) -> Option<&crate::sched::TrafficLimiter> {
        self.member_limiter.get()
    }

    /// Most senders open at once (0: no limit).
    pub(crate) fn max_senders(&self) -> u32 {
        self.max_senders.load(Ordering::Relaxed)
    }

    /// The join completed with the server's `JoinAccepted`: its limits and
    /// traffic rules.
    pub(crate) fn set_joined(&self, accepted: &crate::wire::JoinAccepted) {
        let (max_message_size, rules) = (accepted.max_message_size, &accepted.traffic);
        self.max_senders
            .store(accepted.max_senders, Ordering::Relaxed);
        if self.config.follow_server_traffic_rules {
            let _ = self.traffic.set(self.config.traffic.stricter(rules));
        }
        self.max_message_size.store(
            max_message_size.min(self.config.max_message_size),
            Ordering::Relaxed,
        );
        let limiter = self
            .traffic()
            .member_limiter(self.max_message_size(), 1, self.hub.now());
        let _ = self.member_limiter.set(limiter);
        self.state.store(STATE_JOINED, Ordering::Release);
        self.state_wakers.wake_all();
    }

    /// The application leaves: the call ends at once (no new sender, no
    /// new send), and every open sender is closed after the sends already
    /// in progress, so each of them precedes its sender's close in the
    /// queue the hub flushes on the leave. `false` if it had ended already.
    pub(crate) fn begin_leave(&self) -> bool {
        let senders: Vec<_> = {
            let mut c = lock(&self.control);
            if self.state() == STATE_ENDED {
                return false;
            }
            self.state.store(STATE_ENDED, Ordering::SeqCst);
            c.end_reason
                .get_or_insert_with(|| "left the call".to_owned());
            c.channels.drain().map(|(_, s)| s).collect()
        };
        for s in senders {
            s.close(crate::wire::CloseReason::LEFT);
        }
        self.state_wakers.wake_all();
        self.receiver_waker.wake();
        true
    }

    /// The hub is done with the call (see [`CallShared::is_done`]).
    /// The connection the call was left (or shut down) on closed before
    /// the peer had everything: the end reason says so (`why`: the
    /// transport's reason), so an application reading
    /// [`CallState::Ended`](crate::CallState::Ended) after
    /// [`Call::left`](crate::Call::left) learns it.
    pub(crate) fn set_close_failed(&self, why: &str) {
        let mut c = lock(&self.control);
        let before = c.end_reason.take().unwrap_or_default();
        c.end_reason = Some(if before.is_empty() {
            format!("the connection closed before everything was delivered: {why}")
        } else {
            format!("{before}, but the connection closed before everything was delivered: {why}")
        });
    }

    pub(crate) fn set_done(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.state_wakers.wake_all();
    }

    /// Whether the hub is done with the call: what it accepted was handed
    /// to the transport, which has closed.
    pub(crate) fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }

    /// The call ended: every sender closes, waiters wake.
    pub(crate) fn set_ended(&self, reason: &str) {
        let senders: Vec<_> = {
            let mut c = lock(&self.control);
            // Under the lock, so a racing `create_sender` either sees the end
            // or registers a sender that is drained here.
            self.state.store(STATE_ENDED, Ordering::SeqCst);
            c.end_reason.get_or_insert_with(|| reason.to_owned());
            c.roster.clear();
            c.channels.drain().map(|(_, s)| s).collect()
        };
        for s in senders {
            s.mark_closed();
            s.close_wakers.wake_all();
            s.writable_wakers.wake_all();
        }
        self.state_wakers.wake_all();
        self.receiver_waker.wake();
    }

    /// Announces a new receiver to the application.
    pub(crate) fn announce(&self, r: super::DataChannelReceiver) {
        match self.receiver_callback.get() {
            Some(cb) => cb(r),
            None => {
                self.new_receivers.push(r);
                self.receiver_waker.wake();
            }
        }
    }
}

/// An operation on a sender, in the order the application made them.
pub(crate) enum SenderOp {
    Open,
    /// Sequence number and list epoch are given by the hub, in queue order;
    /// the instant is when the application sent it, read only where
    /// something needs it ([`SenderShared::timed`]): `None` for a Durable
    /// sender under no traffic rule (a clock read per send was 2 % of a
    /// p2p 100 B profile).
    Data(Bytes, Option<std::time::Instant>),
    SetParticipants(Vec<ParticipantId>),
    Close(CloseReason),
}

/// One sender.
pub(crate) struct SenderShared {
    pub(crate) call: Arc<CallShared>,
    pub(crate) channel: u16,
    pub(crate) session: u32,
    pub(crate) priority: DataChannelPriority,
    pub(crate) reliability: DataChannelReliability,
    pub(crate) bitrate_kbps: u32,
    pub(crate) ops: SegQueue<SenderOp>,
    /// Payload bytes queued in `ops` and not yet taken by the hub.
    pub(crate) queued_bytes: AtomicUsize,
    /// The latest participant list (for the getter; the hub uses the ops).
    pub(crate) participants: Mutex<Vec<ParticipantId>>,
    /// [`CLOSED`] and the number of operations in progress (see
    /// [`SenderShared::enter`]).
    pub(crate) state: AtomicU64,
    /// In the hub's work queue (so it is queued once per batch).
    pub(crate) scheduled: AtomicBool,
    /// Lossy messages dropped (queue full, or too late to be worth it).
    pub(crate) dropped: AtomicU64,
    pub(crate) close_wakers: Wakers,
    /// The traffic-limit rules, checked on `send` (lock-free, like the
    /// queue).
    pub(crate) limiter: crate::sched::TrafficLimiter,
    /// No participant list: the broadcast rule applies.
    pub(crate) broadcast: AtomicBool,
    /// `buffered_amount` at or below which the low event fires.
    pub(crate) low_threshold: AtomicUsize,
    pub(crate) on_low: OnceLock<Callback>,
    /// Tasks waiting in `writable()`.
    pub(crate) writable_wakers: Wakers,
    /// A [`Work::WakeAt`] for this sender is in the hub's hands.
    pub(crate) token_wait: AtomicBool,
}

/// Where a task waiting in `writable()` is woken: when the buffered amount
/// falls to half the low threshold, not at the threshold itself. A writer
/// woken at the threshold finds room for one message or a few, fills it,
/// and parks again at once: a wake-up (a futex call on the driver's
/// thread, a context switch on the writer's) every few messages, 7.7 % of
/// a p2p 100 B profile (perf/README.md). Woken at half, it has room for a
/// run of sends while the queue still holds the other half for the hub
/// to take. `writable()` still returns as soon as it is polled at or
/// below the threshold; the `on_buffered_amount_low` event still fires at
/// the threshold.
pub(crate) fn writable_wake_mark(threshold: usize) -> usize {
    threshold / 2
}

/// The closed bit of [`SenderShared::state`]; the rest counts operations in
/// progress.
const CLOSED: u64 = 1 << 63;

impl SenderShared {
    /// Queues `op` and makes sure the hub will look at this sender.
    pub(crate) fn push(self: &Arc<Self>, op: SenderOp) {
        self.ops.push(op);
        if !self.scheduled.swap(true, Ordering::SeqCst) {
            self.call.hub.push(Work::Sender(self.clone()));
        }
    }

    /// Starts an operation (send, set_participants); `false` if closed. A
    /// started operation finishes before [`SenderShared::close`] queues the
    /// close, so nothing the application was told succeeded comes after it.
    pub(crate) fn enter(&self) -> bool {
        let before = self.state.fetch_add(1, Ordering::SeqCst);
        if before & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Ends an operation started by [`SenderShared::enter`].
    pub(crate) fn leave(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.load(Ordering::SeqCst) & CLOSED != 0
    }

    /// The hub took `cost` bytes off the queue: fires the low-threshold
    /// event when the buffered amount crosses down to the threshold, and
    /// wakes the tasks waiting in `writable()` when it crosses down to
    /// [`writable_wake_mark`] (half the threshold).
    pub(crate) fn release(&self, cost: usize) {
        let before = self.queued_bytes.fetch_sub(cost, Ordering::SeqCst);
        let after = before.saturating_sub(cost);
        let threshold = self.low_threshold.load(Ordering::Relaxed);
        if before > threshold
            && after <= threshold
            && let Some(cb) = self.on_low.get()
        {
            cb();
        }
        let mark = writable_wake_mark(threshold);
        if before > mark && after <= mark {
            self.writable_wakers.wake_all();
        }
    }

    /// Whether sending needs the time: a traffic rule applies (the sender's
    /// or its member's), or the sender is Lossy (its messages have a
    /// latency budget). Otherwise `send` and `writable()` read no clock.
    pub(crate) fn timed(&self) -> bool {
        self.reliability == DataChannelReliability::Lossy
            || !self.limiter.is_unlimited()
            || self
                .call
                .member_limiter()
                .is_some_and(|m| !m.is_unlimited())
    }

    /// Sets the closed bit; `true` for the first caller.
    pub(crate) fn mark_closed(&self) -> bool {
        self.state.fetch_or(CLOSED, Ordering::SeqCst) & CLOSED == 0
    }

    /// Closes: waits for operations in progress (they take nanoseconds),
    /// then queues the close after them. `false` if already closed.
    pub(crate) fn close(self: &Arc<Self>, reason: CloseReason) -> bool {
        if !self.mark_closed() {
            return false;
        }
        let mut spins = 0u32;
        while self.state.load(Ordering::SeqCst) & !CLOSED != 0 {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.push(SenderOp::Close(reason));
        self.close_wakers.wake_all();
        self.writable_wakers.wake_all();
        true
    }
}

/// One receiver.
pub(crate) struct ReceiverShared {
    pub(crate) call: Arc<CallShared>,
    pub(crate) channel: u16,
    pub(crate) sender_id: ParticipantId,
    pub(crate) session: u32,
    pub(crate) reliability: DataChannelReliability,
    pub(crate) priority: DataChannelPriority,
    pub(crate) messages: SegQueue<DataChannelMessage>,
    pub(crate) buffered_bytes: AtomicUsize,
    pub(crate) dropped: AtomicU64,
    pub(crate) closed: AtomicBool,
    /// Why it closed: set once, before `closed`.
    pub(crate) close_reason: OnceLock<super::ReceiverCloseReason>,
    pub(crate) waker: AtomicWaker,
    pub(crate) on_message: OnceLock<Callback>,
    pub(crate) on_close: OnceLock<Callback>,
    pub(crate) close_wakers: Wakers,
    /// Waiting in this thread's [`WakeBatch`] to wake its reader.
    pub(crate) wake_deferred: AtomicBool,
}

std::thread_local! {
    /// Receivers delivered to while a [`WakeBatch`] is open on this thread.
    static DEFERRED: std::cell::RefCell<Option<Vec<Arc<ReceiverShared>>>> =
        const { std::cell::RefCell::new(None) };
}

/// While one is alive on a thread, a receiver delivered to on that thread
/// wakes its reader (its task's waker, its `on_message_ready` callback)
/// once, when the batch ends, rather than once per message: a worker opens
/// one around each batch of I/O completions. A reader woken per message
/// runs dry after each and parks again: at 1,200 B a futex wake per message
/// was 12 % of the worker's time.
pub(crate) struct WakeBatch(());

impl WakeBatch {
    pub(crate) fn open() -> Self {
        DEFERRED.with(|d| {
            d.borrow_mut().get_or_insert_with(Vec::new);
        });
        Self(())
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        let Some(mut list) = DEFERRED.with(|d| d.borrow_mut().take()) else {
            return;
        };
        for r in list.drain(..) {
            // Not again for a receiver whose close already announced them.
            if r.wake_deferred.swap(false, Ordering::AcqRel) {
                r.wake_reader();
            }
        }
    }
}

impl ReceiverShared {
    /// Delivers a message; `false` if it could not be held (over the buffer
    /// limit).
    pub(crate) fn deliver(self: &Arc<Self>, m: DataChannelMessage) -> bool {
        let len = message_cost(m.data.len());
        let held = self.buffered_bytes.load(Ordering::Acquire);
        if held + len > self.call.config.receiver_buffer_bytes {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.buffered_bytes.fetch_add(len, Ordering::AcqRel);
        self.messages.push(m);
        // In a batch, once at its end (`WakeBatch`).
        let deferred = self.wake_deferred.load(Ordering::Acquire)
            || DEFERRED.with(|d| match d.borrow_mut().as_mut() {
                Some(list) => {
                    self.wake_deferred.store(true, Ordering::Release);
                    list.push(self.clone());
                    true
                }
                None => false,
            });
        if !deferred {
            self.wake_reader();
        }
        true
    }

    /// Wakes whoever reads: the task waiting, the callback.
    fn wake_reader(&self) {
        self.waker.wake();
        if let Some(cb) = self.on_message.get() {
            cb();
        }
    }

    pub(crate) fn close(&self, why: super::ReceiverCloseReason) {
        // The first reason wins (a close races nothing: the hub alone
        // closes receivers, but a second close must not change it).
        let _ = self.close_reason.set(why);
        if !self.closed.swap(true, Ordering::AcqRel) {
            // Messages whose wake-up waits for the end of a batch are
            // announced before the close, as without the batch.
            if self.wake_deferred.swap(false, Ordering::AcqRel) {
                self.wake_reader();
            }
            self.waker.wake();
            self.close_wakers.wake_all();
            if let Some(cb) = self.on_close.get() {
                cb();
            }
        }
    }
}
