//! The application's handles.

use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_queue::SegQueue;

use super::shared::{
    CallShared, ReceiverShared, STATE_CONNECTING, STATE_ENDED, STATE_JOINED, SenderOp,
    SenderShared, Wakers, Work, lock, message_cost,
};
use super::{
    DataChannelError, DataChannelMessage, DataChannelPriority, DataChannelReliability,
    DataChannelSenderOptions, ParticipantId, check_participants,
};
use crate::wire::CloseReason;

/// Where a call stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallState {
    /// Joining: senders cannot start yet.
    Connecting,
    /// Joined: the data channel is ready.
    Joined,
    /// Over (left, rejected, or the connection was lost), with the reason.
    Ended(String),
}

/// One participant's membership in a call, made by
/// [`Engine::join_remote`](crate::Engine::join_remote) or
/// [`Engine::join_local`](crate::Engine::join_local) (on a hub driven by
/// hand, [`Hub::join_remote`](crate::Hub::join_remote) or
/// [`Hub::join_local`](crate::Hub::join_local)).
#[derive(Clone)]
pub struct Call {
    pub(crate) shared: Arc<CallShared>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("call_id", &self.shared.call_id)
            .field("participant_id", &self.shared.participant_id)
            .field("state", &self.state())
            .finish()
    }
}

impl Call {
    /// The call's id.
    pub fn call_id(&self) -> &str {
        &self.shared.call_id
    }

    /// Who this participant is.
    pub fn participant_id(&self) -> &ParticipantId {
        &self.shared.participant_id
    }

    /// Where the call stands.
    pub fn state(&self) -> CallState {
        match self.shared.state() {
            STATE_CONNECTING => CallState::Connecting,
            STATE_JOINED => CallState::Joined,
            _ => CallState::Ended(
                lock(&self.shared.control)
                    .end_reason
                    .clone()
                    .unwrap_or_default(),
            ),
        }
    }

    /// Whether the join completed and the call has not ended.
    pub fn is_joined(&self) -> bool {
        self.shared.state() == STATE_JOINED
    }

    /// Waits until the join completes (`true`) or the call ends first
    /// (`false`): the "ready" signal to wait for before creating senders.
    ///
    /// ```
    /// # use dcengine::*;
    /// async fn start_chat(call: Call) -> Result<DataChannelSender, DataChannelError> {
    ///     if !call.ready().await {
    ///         return Err(DataChannelError::FailedToStart);
    ///     }
    ///     call.data_channel().create_sender(DataChannelSenderOptions::default())
    /// }
    /// ```
    pub async fn ready(&self) -> bool {
        poll_fn(|cx| {
            self.shared.state_wakers.register(cx.waker());
            match self.shared.state() {
                STATE_JOINED => Poll::Ready(true),
                STATE_ENDED => Poll::Ready(false),
                _ => Poll::Pending,
            }
        })
        .await
    }

    /// Blocks this thread until the call is joined (`true`), or it ended
    /// or `timeout` passed (`false`): [`Call::ready`] for code without an
    /// async runtime. Never call it from an async task.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        super::block::block_on_timeout(self.ready(), timeout).unwrap_or(false)
    }

    /// Waits until the call ends.
    pub async fn ended(&self) {
        poll_fn(|cx| {
            self.shared.state_wakers.register(cx.waker());
            if self.shared.state() == STATE_ENDED {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// The other participants currently in the call (one entry per endpoint:
    /// the same identifier joined twice appears twice).
    pub fn participants(&self) -> Vec<ParticipantId> {
        let mut v: Vec<_> = lock(&self.shared.control)
            .roster
            .values()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Leaves the call. At once the call reads [`CallState::Ended`]: a new
    /// [`DataChannelFeature::create_sender`] fails with `FailedToStart` and
    /// every sender is closed (`send` fails with `SenderClosed`). What the
    /// senders had accepted before is still delivered: the engine hands it
    /// all to the transport, then leaves, and the connection closes
    /// gracefully. The close waits as long as the server keeps
    /// acknowledging (up to a minute); if the server acknowledges nothing
    /// for the transport's close timeout (3 s by default), the close is
    /// forced, the receivers see [`ReceiverCloseReason::SenderLost`](crate::ReceiverCloseReason::SenderLost)
    /// after what arrived, and [`Call::state`] reads an end reason that
    /// says how many bytes were not delivered. [`Call::left`] resolves when
    /// that is done.
    pub fn leave(&self) {
        if self.shared.begin_leave() {
            self.shared.hub.push(Work::Leave(self.shared.clone()));
        }
    }

    /// Waits until the engine is done with the call: after a
    /// [`Call::leave`], what was accepted has been handed to the transport
    /// and the connection has closed; a call that ended any other way (it
    /// was rejected, removed, or lost its connection, or the engine
    /// stopped) is done when it ends.
    pub async fn left(&self) {
        poll_fn(|cx| {
            self.shared.state_wakers.register(cx.waker());
            if self.shared.is_done() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Blocks this thread until the engine is done with the call (see
    /// [`Call::left`]) or `timeout` passed; `true` if it is done. Never
    /// call it from an async task.
    pub fn wait_left(&self, timeout: Duration) -> bool {
        super::block::block_on_timeout(self.left(), timeout).is_some()
    }

    /// The call's DataChannel feature (the seeds'
    /// `call.feature(Features.DataChannel)`).
    pub fn data_channel(&self) -> DataChannelFeature {
        DataChannelFeature {
            shared: self.shared.clone(),
        }
    }
}

/// The DataChannel feature of one call: creates senders, announces
/// receivers.
#[derive(Clone)]
pub struct DataChannelFeature {
    shared: Arc<CallShared>,
}

impl std::fmt::Debug for DataChannelFeature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannelFeature")
            .field("call_id", &self.shared.call_id)
            .finish_non_exhaustive()
    }
}

impl DataChannelFeature {
    /// Creates a sender (the seeds' `createDataChannelSender` /
    /// `GetDataChannelSender`).
    ///
    /// Fails with [`DataChannelError::FailedToStart`] before the join
    /// completes or after the call ended, with
    /// [`DataChannelError::RandomIdNotAvailable`] when no random id is
    /// free, with [`DataChannelError::TooManyParticipants`] for more
    /// than 64 participants, and with [`DataChannelError::TooManySenders`]
    /// when the call has as many senders open as the server admits. A
    /// sender this participant already has on the same channel id is
    /// closed (its receivers close; the new session gets new receivers).
    ///
    /// ```
    /// # use dcengine::*;
    /// # fn f(call: dcengine::Call) -> Result<(), DataChannelError> {
    /// let chat = call.data_channel().create_sender(DataChannelSenderOptions {
    ///     channel_id: Some(10000),
    ///     ..Default::default()
    /// })?;
    /// chat.send("hello")?;
    /// # Ok(()) }
    /// ```
    pub fn create_sender(
        &self,
        options: DataChannelSenderOptions,
    ) -> Result<DataChannelSender, DataChannelError> {
        check_participants(&options.participants)?;
        let call = &self.shared;
        let (sender, replaced) = {
            let mut control = lock(&call.control);
            if call.state() != STATE_JOINED {
                return Err(DataChannelError::FailedToStart);
            }
            let channel = match options.channel_id {
                None | Some(0) => control
                    .random_channel(&call.config.random_channel_ids)
                    .ok_or(DataChannelError::RandomIdNotAvailable)?,
                Some(id) => id,
            };
            let limit = call.max_senders() as usize;
            if limit > 0
                && !control.channels.contains_key(&channel)
                && control.channels.len() >= limit
            {
                return Err(DataChannelError::TooManySenders { limit });
            }
            let sender = Arc::new(SenderShared {
                call: call.clone(),
                channel,
                session: control.next_session(),
                priority: options.priority,
                reliability: options.reliability,
                bitrate_kbps: options.bitrate_kbps,
                ops: SegQueue::new(),
                queued_bytes: Default::default(),
                participants: options.participants.clone().into(),
                state: 0.into(),
                scheduled: false.into(),
                dropped: 0.into(),
                close_wakers: Wakers::default(),
                limiter: call.traffic().limiter(
                    options.reliability.into(),
                    options.priority.into(),
                    call.max_message_size(),
                    1,
                    call.hub.now(),
                ),
                broadcast: options.participants.is_empty().into(),
                low_threshold: 0.into(),
                on_low: Default::default(),
                writable_wakers: Wakers::default(),
                token_wait: AtomicBool::new(false),
            });
            let replaced = control.channels.insert(channel, sender.clone());
            (sender, replaced)
        };
        if let Some(old) = replaced {
            old.close(CloseReason::REPLACED);
        }
        sender.push(SenderOp::Open);
        if !options.participants.is_empty() {
            sender.push(SenderOp::SetParticipants(options.participants));
        }
        Ok(DataChannelSender {
            guard: Arc::new(SenderGuard(sender)),
        })
    }

    /// The next new receiver, if one is waiting (non-blocking form of the
    /// seeds' `dataChannelReceiverCreated` event).
    pub fn try_next_receiver(&self) -> Option<DataChannelReceiver> {
        self.shared.new_receivers.pop()
    }

    /// Blocks this thread until a new receiver is announced, the call has
    /// ended, or `timeout` passed (`None` for the last two):
    /// [`DataChannelFeature::next_receiver`] for code without an async
    /// runtime. Never call it from an async task.
    pub fn next_receiver_timeout(&self, timeout: Duration) -> Option<DataChannelReceiver> {
        super::block::block_on_timeout(self.next_receiver(), timeout).flatten()
    }

    /// Waits for the next new receiver; `None` once the call has ended and
    /// every announced receiver was taken.
    pub async fn next_receiver(&self) -> Option<DataChannelReceiver> {
        poll_fn(|cx| {
            if let Some(r) = self.shared.new_receivers.pop() {
                return Poll::Ready(Some(r));
            }
            self.shared.receiver_waker.register(cx.waker());
            // Read the state before looking again (see `recv`).
            let ended = self.shared.state() == STATE_ENDED;
            if let Some(r) = self.shared.new_receivers.pop() {
                return Poll::Ready(Some(r));
            }
            if ended {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Hands every future new receiver to `callback` instead of the queue
    /// (the callback form of the event; it runs on the driver's thread, so
    /// keep it short). Returns `false` if a callback was already set.
    pub fn on_receiver_created(
        &self,
        callback: impl Fn(DataChannelReceiver) + Send + Sync + 'static,
    ) -> bool {
        self.shared
            .receiver_callback
            .set(Box::new(callback))
            .is_ok()
    }

    /// The largest message a sender of this call may send.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size() as usize
    }
}

/// Closes the sender when the last handle to it is dropped.
struct SenderGuard(Arc<SenderShared>);

impl Drop for SenderGuard {
    fn drop(&mut self) {
        close_and_release(&self.0, CloseReason::CLOSED);
    }
}

/// Closes `s` and frees its channel id (if it still holds it).
pub(crate) fn close_and_release(s: &Arc<SenderShared>, reason: CloseReason) {
    if s.is_closed() {
        return;
    }
    {
        let mut control = lock(&s.call.control);
        if control
            .channels
            .get(&s.channel)
            .is_some_and(|c| Arc::ptr_eq(c, s))
        {
            control.channels.remove(&s.channel);
        }
    }
    s.close(reason);
}

/// Sends messages on one channel (the seeds' `DataChannelSender`).
///
/// Clones share one sender; when the last clone is dropped the sender
/// closes, as with [`DataChannelSender::close`].
#[derive(Clone)]
pub struct DataChannelSender {
    guard: Arc<SenderGuard>,
}

impl std::fmt::Debug for DataChannelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannelSender")
            .field("channel_id", &self.shared().channel)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl DataChannelSender {
    fn shared(&self) -> &Arc<SenderShared> {
        &self.guard.0
    }

    /// The channel id (the one given, or the random one picked).
    pub fn channel_id(&self) -> u16 {
        self.shared().channel
    }

    /// The largest message [`DataChannelSender::send`] accepts, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.shared().call.max_message_size() as usize
    }

    /// The sender's priority.
    pub fn priority(&self) -> DataChannelPriority {
        self.shared().priority
    }

    /// The sender's reliability.
    pub fn reliability(&self) -> DataChannelReliability {
        self.shared().reliability
    }

    /// Queues a message (the seeds' `sendMessage`). Nothing is sent when an
    /// error is returned; a message for which `Ok` was returned is queued
    /// before any later `close`.
    ///
    /// ```
    /// # use dcengine::*;
    /// fn send_json(sender: &DataChannelSender, json: &str) -> Result<(), DataChannelError> {
    ///     // Bytes in, like the seeds' TextEncoder: &str, String, Vec<u8>, Bytes.
    ///     sender.send(json.to_owned())
    /// }
    /// ```
    ///
    /// Errors: [`DataChannelError::SenderClosed`],
    /// [`DataChannelError::MessageSizeOverLimit`], and for Durable senders
    /// [`DataChannelError::MessageFailureForBandwidth`] when the queue is
    /// full (a Lossy message is then dropped silently instead).
    pub fn send(&self, data: impl Into<Bytes>) -> Result<(), DataChannelError> {
        let data = data.into();
        let s = self.shared();
        if !s.enter() {
            return Err(DataChannelError::SenderClosed);
        }
        let result = self.enqueue(s, data);
        s.leave();
        result
    }

    fn enqueue(&self, s: &Arc<SenderShared>, data: Bytes) -> Result<(), DataChannelError> {
        let limit = self.max_message_size();
        if data.len() > limit {
            return Err(DataChannelError::MessageSizeOverLimit {
                size: data.len(),
                limit,
            });
        }
        let cap = s.call.config.sender_queue_bytes;
        let cost = message_cost(data.len());
        // Reserve only what fits (an empty queue takes any one message): a
        // refused send never touches the count, so no release that the
        // writer's wake-up and the low-threshold event watch for is undone
        // behind their back (an add and a take-back around another
        // thread's release would hide its crossing).
        let reserved = s
            .queued_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |q| {
                (q == 0 || q + cost <= cap).then_some(q + cost)
            });
        if reserved.is_err() {
            return match s.reliability {
                DataChannelReliability::Durable => {
                    Err(DataChannelError::MessageFailureForBandwidth)
                }
                DataChannelReliability::Lossy => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
            };
        }
        if !s.timed() {
            // No rule to check, no latency budget: no clock read.
            s.push(SenderOp::Data(data, None));
            return Ok(());
        }
        let now = s.call.hub.now();
        let broadcast = s.broadcast.load(Ordering::Relaxed);
        // The sender's rules, then the member's (all its senders together).
        let admitted = s.limiter.try_admit(data.len(), broadcast, now)
            && (s
                .call
                .member_limiter()
                .is_none_or(|m| m.try_admit(data.len(), true, now))
                || {
                    s.limiter.refund(data.len(), broadcast);
                    false
                });
        if !admitted {
            s.release(cost);
            return Err(DataChannelError::MessageFailureForTrafficLimit);
        }
        s.push(SenderOp::Data(data, Some(now)));
        Ok(())
    }

    /// Changes who the next messages go to (the seeds' `setParticipants`):
    /// at most 64 identifiers of 1 to 255 bytes; empty is everyone else in
    /// the call.
    ///
    /// ```
    /// # use dcengine::*;
    /// fn whisper(sender: &DataChannelSender) -> Result<(), DataChannelError> {
    ///     sender.set_participants(vec![ParticipantId::from("8:acs:bob")])?;
    ///     sender.send("only bob gets this")?;
    ///     sender.set_participants(Vec::new())?; // back to everyone
    ///     Ok(())
    /// }
    /// ```
    pub fn set_participants(
        &self,
        participants: Vec<ParticipantId>,
    ) -> Result<(), DataChannelError> {
        check_participants(&participants)?;
        let s = self.shared();
        if !s.enter() {
            return Err(DataChannelError::SenderClosed);
        }
        {
            // The lock keeps the getter's list in the order of the ops.
            let mut current = lock(&s.participants);
            current.clone_from(&participants);
            s.broadcast
                .store(participants.is_empty(), Ordering::Relaxed);
            s.push(SenderOp::SetParticipants(participants));
        }
        s.leave();
        Ok(())
    }

    /// The current participant list (empty: everyone).
    pub fn participants(&self) -> Vec<ParticipantId> {
        lock(&self.shared().participants).clone()
    }

    /// Closes the sender: every receiver of this session closes once the
    /// messages queued before it are delivered.
    pub fn close(&self) {
        close_and_release(self.shared(), CloseReason::CLOSED);
    }

    /// Whether the sender is closed.
    pub fn is_closed(&self) -> bool {
        self.shared().is_closed()
    }

    /// Waits until the sender is closed.
    pub async fn closed(&self) {
        poll_fn(|cx| {
            self.shared().close_wakers.register(cx.waker());
            if self.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Lossy messages dropped: the send queue was full, or one waited
    /// longer than the latency budget (`ChannelConfig::lossy_latency_budget`).
    pub fn dropped_messages(&self) -> u64 {
        self.shared().dropped.load(Ordering::Relaxed)
    }

    /// Bytes queued and not yet handed to the transport (each message
    /// counts its payload plus 64 bytes, the measure the queue bound
    /// `ChannelConfig::sender_queue_bytes` uses): WebRTC's
    /// `bufferedAmount`.
    pub fn buffered_amount(&self) -> usize {
        self.shared().queued_bytes.load(Ordering::SeqCst)
    }

    /// Sets the buffered amount at or below which
    /// [`DataChannelSender::on_buffered_amount_low`] fires and
    /// [`DataChannelSender::writable`] is ready when polled (a task already
    /// waiting in it is woken at half the threshold). Default 0 (empty).
    /// Keep it under the queue's bound (`ChannelConfig::sender_queue_bytes`)
    /// less a message's cost: above that, `writable()` can be ready while
    /// the message does not fit.
    pub fn set_buffered_amount_low_threshold(&self, bytes: usize) {
        self.shared().low_threshold.store(bytes, Ordering::Relaxed);
        // Waiters re-check against the new threshold.
        self.shared().writable_wakers.wake_all();
    }

    /// The low threshold (see
    /// [`DataChannelSender::set_buffered_amount_low_threshold`]).
    pub fn buffered_amount_low_threshold(&self) -> usize {
        self.shared().low_threshold.load(Ordering::Relaxed)
    }

    /// Calls `callback` (on the driver's thread) each time the buffered
    /// amount falls from above the low threshold to at or below it:
    /// WebRTC's `bufferedamountlow`. Returns `false` if one was already
    /// set.
    pub fn on_buffered_amount_low(&self, callback: impl Fn() + Send + Sync + 'static) -> bool {
        self.shared().on_low.set(Box::new(callback)).is_ok()
    }

    /// Waits until a message of up to one packet (1,200 bytes, or the
    /// channel's max message size if smaller) may be sent: the buffered
    /// amount is at or below the low threshold, and the traffic rules have
    /// the tokens for it (the engine wakes the task when they will).
    /// Fails with [`DataChannelError::SenderClosed`] once the sender is
    /// closed. Before a larger message, await
    /// [`DataChannelSender::writable_for`] its length.
    ///
    /// A loop that awaits `writable()` before each `send` of at most a
    /// packet goes as fast as the channel allows and never sees
    /// `MessageFailureForBandwidth` or `MessageFailureForTrafficLimit`
    /// (unless other threads send on the same sender meanwhile, or the low
    /// threshold is within a message of the queue's bound).
    ///
    /// ```
    /// # use dcengine::*;
    /// async fn upload(sender: &DataChannelSender, chunks: Vec<bytes::Bytes>) -> Result<(), DataChannelError> {
    ///     for chunk in chunks {
    ///         sender.writable_for(chunk.len()).await?;
    ///         sender.send(chunk)?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn writable(&self) -> Result<(), DataChannelError> {
        self.writable_for(self.max_message_size().min(PACKET_BYTES))
            .await
    }

    /// Waits until a message of `len` bytes may be sent: the buffered
    /// amount is at or below the low threshold and the traffic rules have
    /// the tokens for it. Polled at or below the threshold it is ready at
    /// once; a task that has to wait for the queue is woken when the
    /// buffered amount has fallen to half the threshold, so it finds room
    /// for a run of sends rather than one (one wake-up per half a
    /// threshold of messages, not per message). Fails with [`DataChannelError::SenderClosed`]
    /// once the sender is closed, and with
    /// [`DataChannelError::MessageSizeOverLimit`] for a message no wait
    /// makes sendable.
    pub async fn writable_for(&self, len: usize) -> Result<(), DataChannelError> {
        let limit = self.max_message_size();
        if len > limit {
            return Err(DataChannelError::MessageSizeOverLimit { size: len, limit });
        }
        let s = self.shared();
        let over =
            || s.queued_bytes.load(Ordering::SeqCst) > s.low_threshold.load(Ordering::Relaxed);
        poll_fn(|cx| {
            if s.is_closed() {
                return Poll::Ready(Err(DataChannelError::SenderClosed));
            }
            if over() {
                // Registered only to wait (not on every poll: a lock per
                // send), then checked again: the hub may have taken the
                // queue down, or the sender closed, in between.
                s.writable_wakers.register(cx.waker());
                if s.is_closed() {
                    return Poll::Ready(Err(DataChannelError::SenderClosed));
                }
                if over() {
                    // Woken as the hub takes messages (at half the
                    // threshold: `writable_wake_mark`).
                    return Poll::Pending;
                }
            }
            if s.limiter.is_unlimited() && s.call.member_limiter().is_none_or(|m| m.is_unlimited())
            {
                return Poll::Ready(Ok(())); // No rule to wait for.
            }
            let now = s.call.hub.now();
            let broadcast = s.broadcast.load(Ordering::Relaxed);
            let member = match s.call.member_limiter() {
                Some(m) => m.time_until(len, true, now),
                None => Some(std::time::Duration::ZERO),
            };
            let wait = s.limiter.time_until(len, broadcast, now).zip(member);
            match wait.map(|(a, b)| a.max(b)) {
                Some(wait) if wait.is_zero() => Poll::Ready(Ok(())),
                Some(wait) => {
                    // The engine wakes the waiters when the tokens are in.
                    s.writable_wakers.register(cx.waker());
                    if !s.token_wait.swap(true, Ordering::SeqCst) {
                        s.call.hub.push(Work::WakeAt(s.clone(), now + wait));
                    }
                    Poll::Pending
                }
                // A message larger than a rule's bucket: `send` says so.
                None => Poll::Ready(Ok(())),
            }
        })
        .await
    }
}

/// Bytes of a message that `writable()` makes room for: one packet.
const PACKET_BYTES: usize = 1200;

/// Receives one sender's messages on one channel in one session (the
/// seeds' `DataChannelReceiver`).
#[derive(Clone)]
pub struct DataChannelReceiver {
    pub(crate) shared: Arc<ReceiverShared>,
}

impl std::fmt::Debug for DataChannelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChannelReceiver")
            .field("channel_id", &self.shared.channel)
            .field("sender_id", &self.shared.sender_id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl DataChannelReceiver {
    /// The channel id.
    pub fn channel_id(&self) -> u16 {
        self.shared.channel
    }

    /// Who sends (the seeds' `senderParticipantIdentifier`), as
    /// authenticated by the server.
    pub fn sender_id(&self) -> &ParticipantId {
        &self.shared.sender_id
    }

    /// The sender's reliability.
    pub fn reliability(&self) -> DataChannelReliability {
        self.shared.reliability
    }

    /// The sender's priority.
    pub fn priority(&self) -> DataChannelPriority {
        self.shared.priority
    }

    /// The next message, if one has arrived (the seeds' `readMessage`;
    /// never blocks). Messages that arrived before the receiver closed can
    /// still be read after.
    ///
    /// ```
    /// # use dcengine::*;
    /// fn print_chat(receiver: &DataChannelReceiver) {
    ///     while let Some(m) = receiver.read_message() {
    ///         println!("{} #{}: {}", receiver.sender_id(), m.sequence_number,
    ///             String::from_utf8_lossy(&m.data));
    ///     }
    /// }
    /// ```
    pub fn read_message(&self) -> Option<DataChannelMessage> {
        let m = self.shared.messages.pop()?;
        self.shared
            .buffered_bytes
            .fetch_sub(message_cost(m.data.len()), Ordering::AcqRel);
        Some(m)
    }

    /// Blocks this thread until a message arrives, the receiver is closed
    /// and drained, or `timeout` passed (`None` for the last two):
    /// [`DataChannelReceiver::recv`] for code without an async runtime.
    /// Never call it from an async task.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<DataChannelMessage> {
        super::block::block_on_timeout(self.recv(), timeout).flatten()
    }

    /// Waits for the next message; `None` once the receiver is closed and
    /// drained. One task at a time should await a given receiver.
    ///
    /// ```
    /// # use dcengine::*;
    /// async fn consume(feature: DataChannelFeature) {
    ///     while let Some(receiver) = feature.next_receiver().await {
    ///         // One task per receiver in a real application.
    ///         while let Some(m) = receiver.recv().await {
    ///             let _ = (m.sequence_number, m.data);
    ///         }
    ///     }
    /// }
    /// ```
    pub async fn recv(&self) -> Option<DataChannelMessage> {
        poll_fn(|cx| {
            if let Some(m) = self.read_message() {
                return Poll::Ready(Some(m));
            }
            self.shared.waker.register(cx.waker());
            // Read `closed` before looking again: everything delivered before
            // the close is then visible to the second look.
            let closed = self.is_closed();
            if let Some(m) = self.read_message() {
                return Poll::Ready(Some(m));
            }
            if closed {
                return Poll::Ready(None);
            }
            Poll::Pending
        })
        .await
    }

    /// Calls `callback` (on the driver's thread) when messages arrive: the
    /// seeds' `messageReady` event. The engine's workers call it once for
    /// all the messages one batch of received datagrams brings, after the
    /// batch, so a callback reads until [`read_message`](Self::read_message)
    /// returns `None`. Returns `false` if one was already set.
    ///
    /// ```
    /// # use dcengine::*;
    /// fn on_chat(feature: &DataChannelFeature) {
    ///     feature.on_receiver_created(|receiver| {
    ///         let r = receiver.clone();
    ///         receiver.on_message_ready(move || {
    ///             while let Some(m) = r.read_message() {
    ///                 let _ = m; // hand over to the application's own thread
    ///             }
    ///         });
    ///     });
    /// }
    /// ```
    pub fn on_message_ready(&self, callback: impl Fn() + Send + Sync + 'static) -> bool {
        self.shared.on_message.set(Box::new(callback)).is_ok()
    }

    /// Calls `callback` (on the driver's thread) when the receiver closes:
    /// the seeds' `close` event. Returns `false` if one was already set.
    pub fn on_close(&self, callback: impl Fn() + Send + Sync + 'static) -> bool {
        self.shared.on_close.set(Box::new(callback)).is_ok()
    }

    /// Whether the receiver is closed (its sender closed or was replaced,
    /// the sender left, it was idle too long, or the call ended).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Why the receiver closed, once it has (`None` while open).
    pub fn close_reason(&self) -> Option<super::ReceiverCloseReason> {
        if !self.is_closed() {
            return None;
        }
        self.shared.close_reason.get().copied()
    }

    /// Waits until the receiver is closed.
    pub async fn closed(&self) {
        poll_fn(|cx| {
            self.shared.close_wakers.register(cx.waker());
            if self.is_closed() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Messages dropped at this receiver because its buffer was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}
