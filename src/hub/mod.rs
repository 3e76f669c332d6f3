//! [`Hub`]: the sans-IO engine core behind the DataChannel API.
//!
//! One hub owns one [`Node`] and plays any of three parts at once:
//! - **server**: accepts associations, authenticates [`Join`]s with a
//!   [`JoinVerifier`], keeps each call's members, and fans every message out
//!   to its targets (encoded once, the same `Bytes` to every association);
//! - **client**: joins calls on other hubs ([`Hub::join_remote`]);
//! - **host**: runs participants inside the hub itself
//!   ([`Hub::join_local`]). A peer-to-peer call is a hub hosting one
//!   participant and another hub joining it remotely: no third party, same
//!   API.
//!
//! Like [`Node`], a hub does no I/O and reads no clock; see the contract
//! there. Application handles ([`Call`], senders, receivers) queue their
//! work for the hub and wake its driver through the hook given to
//! [`Hub::set_wake_hook`]; [`Hub::poll_timeout`] then returns an instant
//! that has already passed, and the driver calls [`Hub::handle_timeout`].
//!
//! # A second join with the same participant id
//! It is a second endpoint of the same participant, as in ACS (where two
//! endpoints with one identifier count twice): both stay in the call, each
//! with its own member number. Messages addressed to that identifier reach
//! both; a broadcast from one of them reaches the other.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::auth::{JoinRejection, JoinRequest};
use crate::datachannel::participant::{Out, ParticipantCore};
use crate::datachannel::{Call, CallShared, ChannelConfig, HubShared, ParticipantId, Work};
use crate::proto::{AssocId, CloseReason as NodeCloseReason, Delivery, Event, Node, Transmit};
use crate::sched::{EgressBudget, TokenBucket, TrafficLimiter};
use crate::wire::{
    Batch, CloseReason, Codec, Data, ErrorCode, ErrorFrame, Frame, Join, JoinAccepted,
    JoinRejected, KeepAlive, Leave, MemberId, Message, PROTOCOL_VERSION, ParticipantJoined,
    ParticipantLeft, Priority, Reliability, SenderClosed, SenderOpened, ShortStr,
};
use egress::{EgressOp, Limits, MemberEgress, Pushed};

enum Link {
    /// Server side: connected, not joined yet.
    Pending { since: Instant },
    /// Server side: a joined member.
    Member { call_id: String, member: MemberId },
    /// Being closed (rejected, left, timed out): frames are ignored.
    Closing,
    /// Server side, several workers: a joined member of a call homed on
    /// worker `home`; its frames are relayed there, and the home relays
    /// back what to send it.
    Relayed { home: usize },
    /// Client side: this hub's own participant in a remote call.
    Uplink {
        core: Box<ParticipantCore>,
        join: Option<Join>,
        /// How much the association's SCTP queue may hold.
        budget: Box<EgressBudget>,
    },
}

/// Bytes `assoc` holds in SCTP (in flight and unsent) on both streams.
fn sctp_queued(node: &mut Node, assoc: AssocId) -> usize {
    node.buffered_amount(assoc, Delivery::Reliable) + node.buffered_amount(assoc, Delivery::Lossy)
}

/// The smallest egress budget: a few packets, so a slow path still moves.
const MIN_EGRESS_BUDGET: usize = 2400;

/// Room High senders get beyond the egress budget: two packets.
const HIGH_RESERVE: usize = 2400;

/// How many bytes past the budget's room High senders may hand over while
/// the transport holds `queued`: up to [`HIGH_RESERVE`] past the budget —
/// the budget as it is outside its round-trip probes, so a probe that
/// drains the queue slows Normal traffic only.
fn high_reserve(budget: &EgressBudget, queued: usize) -> usize {
    let room = budget.room(queued);
    (budget.steady_budget() + HIGH_RESERVE)
        .saturating_sub(queued)
        .saturating_sub(room)
}

enum Endpoint {
    /// An association of this hub.
    Remote(AssocId),
    /// An association of another worker's hub (several workers).
    Relayed { worker: usize, assoc: AssocId },
    /// A participant hosted by this hub.
    Local(Box<ParticipantCore>),
}

struct Member {
    participant_id: ParticipantId,
    endpoint: Endpoint,
    /// Server policing: how many more messages over the traffic rules it
    /// may send before it is disconnected (see
    /// [`HubConfig::policing_tolerance`]).
    strikes: TokenBucket,
}

/// The server's view of one open sender.
struct Route {
    session: u32,
    reliability: Reliability,
    priority: Priority,
    bitrate_kbps: u32,
    epoch: u16,
    /// Empty: everyone else in the call.
    targets: Vec<ParticipantId>,
    /// Members that got `SenderOpened` (and so have a receiver).
    announced: BTreeSet<MemberId>,
    /// Members that closed their receiver of this session (a Durable one
    /// whose buffer was full): no longer sent it, nor announced it again.
    declined: BTreeSet<MemberId>,
    /// The traffic rules, policed independently of the client's own check.
    limiter: TrafficLimiter,
    /// A message of this session was over the rules already.
    policed: bool,
}

impl Route {
    /// Where frames of this route (sent by `origin` on `channel`) go in a
    /// member's egress.
    fn kind(&self, origin: MemberId, channel: u16, len: usize, queued_at: Instant) -> Kind {
        Kind::Route {
            origin,
            channel,
            priority: self.priority,
            lossy: self.reliability == Reliability::Lossy,
            len,
            queued_at,
        }
    }
}

#[derive(Default)]
struct Room {
    members: BTreeMap<MemberId, Member>,
    next_member: u32,
    routes: HashMap<(MemberId, u16), Route>,
}

/// Largest Durable batch: one packet (`MAX_PACKET_MESSAGE`, 1,200 B), so
/// the receiver delivers each packet's messages as it arrives instead of
/// reassembling a larger batch first, and the egress budget moves by
/// packets. Against 16 KiB batches it costs 7 % of the node pair's
/// throughput (1.37 vs 1.47 M msg/s, perf/README.md).
const BATCH_BYTES: usize = crate::proto::MAX_PACKET_MESSAGE;

/// Largest Lossy batch: one packet. A Lossy batch is abandoned whole when
/// one of its packets is lost, so one packet's worth loses least.
const LOSSY_BATCH_BYTES: usize = crate::proto::MAX_PACKET_MESSAGE;

/// How large a batch on `delivery`'s stream may grow.
fn batch_limit(delivery: Delivery) -> usize {
    match delivery {
        Delivery::Reliable => BATCH_BYTES,
        Delivery::Lossy => LOSSY_BATCH_BYTES,
    }
}

/// The engine's sans-IO core. See the module documentation.
pub struct Hub {
    config: HubConfig,
    node: Node,
    shared: Arc<HubShared>,
    links: HashMap<AssocId, Link>,
    rooms: HashMap<String, Room>,
    /// Calls joined remotely: call key → association.
    uplinks: HashMap<u64, AssocId>,
    /// Calls hosted here: call key → (call id, member).
    locals: HashMap<u64, (String, MemberId)>,
    next_call_key: u64,
    /// Calls (by key) whose senders have queued work: waiting for room in
    /// their association or for shaping tokens.
    backlog: BTreeSet<u64>,
    events: VecDeque<HubEvent>,
    now: Option<Instant>,
    next_tick: Option<Instant>,
    /// Uplinks whose `JoinAccepted` arrived in the events being processed.
    joining: Vec<AssocId>,
    stats: HubStats,
    /// Where fan-out goes: member egress queues, relays.
    sink: Sink,
    /// Home side, several workers: members whose association lives on
    /// another worker, by (worker, association).
    relayed: HashMap<(usize, AssocId), (String, MemberId)>,
}

/// What fan-out writes to: the egress of each member association this hub
/// owns, and the batches for other workers.
struct Sink {
    egress: HashMap<AssocId, MemberEgress>,
    /// Member associations with egress work.
    ready: BTreeSet<AssocId>,
    /// Those of `ready` worth pumping at the next settle: new work, or
    /// their transport moved (`Node::poll_progress`). The others wait for
    /// acknowledgements that free room (an association with egress work
    /// always has data in flight after a pump, so one comes), and the
    /// hub's cost per input stays proportional to what the input touched,
    /// not to how many members are backlogged.
    kick: BTreeSet<AssocId>,
    /// Egress pumps so far (tests check the work per input is bounded).
    #[cfg(test)]
    pumps: u64,
    /// Member associations over their Durable limit: closed after the
    /// current fan-out.
    slow: Vec<AssocId>,
    relay: relay::Outbox,
    limits: Limits,
    lossy_dropped: u64,
}

/// Which part of a member's egress a frame goes to.
#[derive(Clone, Copy)]
enum Kind {
    /// Member-level control: ahead of every flow.
    Control,
    /// A frame of the route (origin, channel): in that route's flow.
    Route {
        origin: MemberId,
        channel: u16,
        priority: Priority,
        lossy: bool,
        /// Payload bytes (0: a control frame of the route).
        len: usize,
        queued_at: Instant,
    },
    /// `ParticipantLeft`: after that participant's flows.
    Left(MemberId),
}

impl Kind {
    fn op(self, delivery: Delivery, bytes: Bytes) -> EgressOp {
        match self {
            Kind::Control => EgressOp::Control { delivery, bytes },
            Kind::Route {
                origin,
                channel,
                priority,
                lossy,
                len,
                queued_at,
            } => EgressOp::Route {
                origin,
                channel,
                priority,
                lossy,
                delivery,
                bytes,
                len,
                queued_at,
            },
            Kind::Left(origin) => EgressOp::Left { origin, bytes },
        }
    }
}

impl Sink {
    /// Queues `op` for association `assoc` of this hub.
    fn push(&mut self, now: Instant, assoc: AssocId, op: EgressOp) {
        let Some(e) = self.egress.get_mut(&assoc) else {
            return; // Closing: its Closed event removes the member.
        };
        match e.push(op, now, self.limits) {
            Pushed::Queued => {
                self.ready.insert(assoc);
                self.kick.insert(assoc);
            }
            Pushed::Dropped => self.lossy_dropped += 1,
            Pushed::Overflow => self.slow.push(assoc),
        }
    }

    /// Gives one frame to a member: the encoded bytes to a remote one's
    /// egress (here or on its worker), the frame to a hosted one.
    fn deliver(
        &mut self,
        now: Instant,
        member: &mut Member,
        kind: Kind,
        delivery: Delivery,
        frame: &Frame,
        encoded: &Bytes,
    ) {
        match &mut member.endpoint {
            Endpoint::Remote(assoc) => self.push(now, *assoc, kind.op(delivery, encoded.clone())),
            Endpoint::Relayed { worker, assoc } => self.relay.push(
                *worker,
                Relay::new(RelayMsg::Egress {
                    assoc: *assoc,
                    op: kind.op(delivery, encoded.clone()),
                }),
            ),
            Endpoint::Local(core) => core.handle_frame(now, frame.clone()),
        }
    }

    /// Tells the members that heard of `route` (no longer in `room`) that
    /// it closed: in the route's flow, after what it still has queued.
    fn route_closed(&mut self, now: Instant, room: &mut Room, route: &Route, closed: SenderClosed) {
        let Some(origin) = closed.origin else {
            return;
        };
        let kind = route.kind(origin, closed.channel, 0, now);
        self.announce(
            now,
            room,
            &route.announced,
            kind,
            Delivery::Reliable,
            closed.into(),
        );
    }

    /// Gives one frame to each of `to` (encoded once).
    fn announce(
        &mut self,
        now: Instant,
        room: &mut Room,
        to: &BTreeSet<MemberId>,
        kind: Kind,
        delivery: Delivery,
        frame: Frame,
    ) {
        let encoded = Message::Frame(frame.clone()).to_bytes();
        for m in to {
            if let Some(member) = room.members.get_mut(m) {
                self.deliver(now, member, kind, delivery, &frame, &encoded);
            }
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("node", &self.node)
            .field("rooms", &self.rooms.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub with `config`.
    pub fn new(mut config: HubConfig) -> Self {
        config.node.accept_incoming |= config.verifier.is_some();
        config.channel.max_message_size = config
            .channel
            .max_message_size
            .min(crate::datachannel::MAX_MESSAGE_SIZE_LIMIT);
        config.workers = config.workers.max(1);
        config.worker = config.worker.min(config.workers - 1);
        let workers = config.workers;
        let config_limits = (config.lossy_drop_buffer, config.slow_consumer_buffer);
        Self {
            node: Node::new(config.node.clone()),
            shared: {
                let shared = Arc::new(HubShared::default());
                if !config.clock.is_system() {
                    shared.set_clock(config.clock.clone());
                }
                shared
            },
            config,
            links: HashMap::new(),
            rooms: HashMap::new(),
            uplinks: HashMap::new(),
            locals: HashMap::new(),
            next_call_key: 0,
            backlog: BTreeSet::new(),
            events: VecDeque::new(),
            now: None,
            next_tick: None,
            joining: Vec::new(),
            stats: HubStats::default(),
            sink: Sink {
                egress: HashMap::new(),
                ready: BTreeSet::new(),
                kick: BTreeSet::new(),
                #[cfg(test)]
                pumps: 0,
                slow: Vec::new(),
                relay: relay::Outbox::new(workers),
                limits: Limits {
                    lossy: config_limits.0,
                    durable: config_limits.1,
                },
                lossy_dropped: 0,
            },
            relayed: HashMap::new(),
        }
    }

    /// Sets how application handles wake the driver when they queue work
    /// (called from any thread, at most once per batch of work). Returns
    /// `false` if a hook was already set.
    pub fn set_wake_hook(&self, hook: impl Fn() + Send + Sync + 'static) -> bool {
        self.shared.set_wake_hook(Box::new(hook))
    }

    /// Counters since creation.
    pub fn stats(&self) -> HubStats {
        self.stats
    }

    /// The node underneath (for its counters and associations).
    pub(crate) fn node(&self) -> &Node {
        &self.node
    }

    /// Members of `call_id` served by this hub (remote and hosted).
    pub fn members(&self, call_id: &str) -> Vec<(MemberId, ParticipantId)> {
        self.rooms.get(call_id).map_or_else(Vec::new, |r| {
            r.members
                .iter()
                .map(|(m, x)| (*m, x.participant_id.clone()))
                .collect()
        })
    }

    /// Joins `call_id` on the server at `server` as `participant_id`,
    /// proving it with `token`. The call is usable once
    /// [`Call::ready`] resolves `true`.
    pub fn join_remote(
        &mut self,
        now: Instant,
        server: SocketAddr,
        call_id: &str,
        participant_id: &str,
        token: Bytes,
    ) -> Result<Call, JoinError> {
        let now = self.advance(now);
        let (call, pid) = ids(call_id, participant_id)?;
        let assoc = self.node.connect(now, server)?;
        // The uplink's egress budget steers by round trips: they must not
        // wait for the server's delayed acks.
        self.node.set_immediate_acks(assoc, true);
        let shared = self.new_call(call_id, participant_id);
        self.uplinks.insert(shared.key, assoc);
        self.links.insert(
            assoc,
            Link::Uplink {
                budget: Box::new(EgressBudget::new(
                    MIN_EGRESS_BUDGET,
                    self.config.uplink_buffer,
                    self.config.queue_target,
                )),
                core: Box::new(ParticipantCore::new(shared.clone())),
                join: Some(Join {
                    version: PROTOCOL_VERSION,
                    call_id: call,
                    participant_id: pid,
                    token,
                }),
            },
        );
        self.arm_tick(now);
        Ok(Call { shared })
    }

    /// Adds a participant hosted by this hub to `call_id` (created if
    /// needed). Hosted participants are trusted: no token. The call is
    /// joined at once. With several workers, only the call's home worker
    /// hosts its participants ([`JoinError::WrongWorker`] elsewhere).
    pub fn join_local(
        &mut self,
        now: Instant,
        call_id: &str,
        participant_id: &str,
    ) -> Result<Call, JoinError> {
        let now = self.advance(now);
        ids(call_id, participant_id)?;
        let home = home_worker(call_id, self.config.workers);
        if home != self.config.worker {
            return Err(JoinError::WrongWorker { home });
        }
        let shared = self.new_call(call_id, participant_id);
        let mut core = ParticipantCore::new(shared.clone());
        let room = self.rooms.entry(call_id.to_owned()).or_default();
        let member = MemberId(room.next_member);
        room.next_member += 1;
        let accepted = accepted_frame(&self.config.channel, member);
        let room = self.rooms.get(call_id).expect("created above");
        core.handle_frame(now, accepted.into());
        for (m, x) in &room.members {
            core.handle_frame(now, joined_frame(*m, &x.participant_id).into());
        }
        core.complete_join();
        let pid = ParticipantId::from(participant_id);
        self.locals.insert(shared.key, (call_id.to_owned(), member));
        self.admit_member(now, call_id, member, pid, Endpoint::Local(Box::new(core)));
        self.arm_tick(now);
        self.settle(now);
        Ok(Call { shared })
    }

    /// Closes every association gracefully: members of calls served here
    /// are told the server is shutting down, this hub's own remote calls
    /// leave, associations that have not joined yet are told their join is
    /// refused. Queued data is delivered first.
    /// Associations still in their handshake end at once, and from now on
    /// new ones are refused: nothing new starts
    /// while the closes complete.
    pub fn close_all(&mut self, now: Instant) {
        let now = self.advance(now);
        let mut assocs: Vec<AssocId> = self.links.keys().copied().collect();
        assocs.sort_unstable();
        for assoc in assocs {
            let last: Option<Frame> = match self.links.get(&assoc) {
                Some(Link::Member { .. } | Link::Relayed { .. }) => {
                    // What the member's egress holds goes first.
                    if let Some(mut e) = self.drop_egress(assoc) {
                        let mut out = Vec::new();
                        e.pump(now, usize::MAX, 0, &mut out);
                        self.send_encoded_batched(now, assoc, out);
                    }
                    Some(relay::leave(ErrorCode::SHUTTING_DOWN, SHUTTING_DOWN).into())
                }
                Some(Link::Uplink { .. }) => Some(
                    Leave {
                        code: ErrorCode::NONE,
                        reason: ShortStr::default(),
                    }
                    .into(),
                ),
                Some(Link::Pending { .. }) => {
                    // Its join, if one is on the way, finds it closing.
                    self.links.insert(assoc, Link::Closing);
                    Some(
                        JoinRejected {
                            code: ErrorCode::SHUTTING_DOWN,
                            reason: ShortStr::truncated(SHUTTING_DOWN),
                        }
                        .into(),
                    )
                }
                Some(Link::Closing) | None => None,
            };
            if let Some(frame) = last {
                self.send(now, assoc, Delivery::Reliable, frame);
            }
        }
        // Closes every association: those above after their last frame,
        // and those no link knows yet (still in their handshake).
        self.node.close_all(now);
    }

    // ---- sans-IO inputs and outputs --------------------------------------

    /// A UDP datagram arrived.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        let now = self.advance(now);
        self.node.handle_datagram(now, from, datagram);
        self.process_node_events(now);
        self.pump_backlog(now);
        self.settle(now);
    }

    /// The time from [`Hub::poll_timeout`] arrived, or work was queued.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        self.node.handle_timeout(now);
        self.process_node_events(now);
        self.process_work(now);
        self.pump_backlog(now);
        if self.next_tick.is_some_and(|t| now >= t) {
            self.next_tick = None;
            self.tick(now);
        }
        self.process_node_events(now);
        self.settle(now);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.node.poll_transmit()
    }

    /// Work for another worker of the same engine: its index and a batch
    /// (everything this hub has for it since the last call). The driver
    /// hands the batch to that worker's hub with [`Hub::handle_relay`], in
    /// order, never dropping one. Only hubs with
    /// [`HubConfig::workers`] > 1 produce any.
    pub(crate) fn poll_relay(&mut self) -> Option<(usize, Vec<Relay>)> {
        self.sink.relay.poll()
    }

    /// A batch another worker's hub produced for this one (see
    /// [`Hub::poll_relay`]).
    pub(crate) fn handle_relay(&mut self, now: Instant, batch: Vec<Relay>) {
        let now = self.advance(now);
        for relay in batch {
            self.on_relay(now, relay);
        }
        self.process_node_events(now);
        self.settle(now);
    }

    /// The next event for the embedder.
    pub fn poll_event(&mut self) -> Option<HubEvent> {
        self.events.pop_front()
    }

    /// When to call [`Hub::handle_timeout`] next: an instant already past
    /// when application work is waiting.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let work = self.shared.has_work().then_some(self.now).flatten();
        let shaping = self
            .backlog
            .iter()
            .filter_map(|key| self.core(*key)?.poll_timeout())
            .min();
        [self.node.poll_timeout(), self.next_tick, work, shaping]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- internals -------------------------------------------------------

    fn advance(&mut self, now: Instant) -> Instant {
        let now = self.now.map_or(now, |t| t.max(now));
        self.now = Some(now);
        now
    }

    fn new_call(&mut self, call_id: &str, participant_id: &str) -> Arc<CallShared> {
        let key = self.next_call_key;
        self.next_call_key += 1;
        let shared = Arc::new(CallShared::new(
            self.shared.clone(),
            key,
            call_id.to_owned(),
            participant_id.into(),
            self.config.channel.clone(),
        ));
        crate::datachannel::seed_call(
            &shared,
            self.config.seed ^ key.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        shared
    }

    fn tick_interval(&self) -> Duration {
        let c = &self.config.channel;
        (c.receiver_idle_timeout / 8)
            .min(c.keepalive_interval / 2)
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(10))
    }

    fn arm_tick(&mut self, now: Instant) {
        if self.next_tick.is_none() {
            self.next_tick = Some(now + self.tick_interval());
        }
    }

    fn process_node_events(&mut self, now: Instant) {
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::Connected { assoc, .. } => match self.links.get_mut(&assoc) {
                    Some(Link::Uplink { join, .. }) => {
                        if let Some(join) = join.take() {
                            self.send(now, assoc, Delivery::Reliable, join.into());
                        }
                    }
                    Some(_) => {}
                    None => {
                        self.links.insert(assoc, Link::Pending { since: now });
                        self.arm_tick(now);
                    }
                },
                Event::Frame { assoc, frame, .. } => self.on_frame(now, assoc, frame),
                Event::Malformed { assoc, error } => {
                    self.protocol_error(now, assoc, &format!("undecodable message: {error}"));
                }
                Event::Closed { assoc, reason } => self.on_closed(now, assoc, &reason),
            }
        }
        // Joins accepted by what just arrived: complete now that the rest of
        // the welcome (the roster) is in too.
        for assoc in std::mem::take(&mut self.joining) {
            if let Some(Link::Uplink { core, .. }) = self.links.get_mut(&assoc) {
                core.complete_join();
            }
        }
    }

    fn protocol_error(&mut self, now: Instant, assoc: AssocId, what: &str) {
        self.stats.protocol_errors += 1;
        let frame = ErrorFrame {
            code: ErrorCode::PROTOCOL_VIOLATION,
            reason: ShortStr::truncated(what),
        };
        self.send(now, assoc, Delivery::Reliable, frame.into());
    }

    fn on_frame(&mut self, now: Instant, assoc: AssocId, frame: Frame) {
        match self.links.get_mut(&assoc) {
            None | Some(Link::Pending { .. }) => match frame {
                Frame::Join(join) => self.admit(now, assoc, join),
                _ => {
                    self.stats.protocol_errors += 1;
                    let reject = JoinRejected {
                        code: ErrorCode::NOT_JOINED,
                        reason: ShortStr::truncated("the first frame must be a join"),
                    };
                    self.send(now, assoc, Delivery::Reliable, reject.into());
                    self.links.insert(assoc, Link::Closing);
                    self.node.close(now, assoc);
                }
            },
            Some(Link::Member { call_id, member }) => {
                let (call_id, member) = (call_id.clone(), *member);
                self.on_member_frame(now, &call_id, member, frame);
            }
            Some(Link::Relayed { home }) => {
                let home = *home;
                if matches!(frame, Frame::Leave(_)) {
                    self.end_link(now, assoc, CloseReason::LEFT);
                    self.node.close(now, assoc);
                } else {
                    let worker = self.config.worker;
                    self.sink.relay.push(
                        home,
                        Relay::new(RelayMsg::Frame {
                            worker,
                            assoc,
                            frame,
                        }),
                    );
                }
            }
            Some(Link::Closing) => {}
            Some(Link::Uplink { core, .. }) => {
                // A rejected join, or the server removing this participant
                // (it shuts down, or finds it too slow or over the rules):
                // the call is over, and the server closes its side next.
                // Closing this side at once lets the two shutdowns meet
                // rather than leave the server waiting on a SACK this side
                // would only send after its delayed-ack timer.
                let over = matches!(frame, Frame::JoinRejected(_) | Frame::Leave(_));
                if matches!(frame, Frame::JoinAccepted(_)) {
                    self.joining.push(assoc);
                }
                core.handle_frame(now, frame);
                let mut notices = Out::new();
                core.take_notices(&mut notices);
                if over {
                    self.node.close(now, assoc);
                } else {
                    self.send_out(now, assoc, notices);
                }
            }
        }
    }

    /// A message of `from` was over the traffic rules and dropped. A Durable
    /// session with a hole is not Durable: its route closes (`SenderClosed`
    /// with `TRAFFIC_LIMIT` to its receivers, after what they got) and the
    /// sender is told (`SenderClosed` without origin), so the sending
    /// application sees its sender closed instead of a silent gap. A Lossy
    /// one may drop: the sender gets one `Error` per session.
    fn policed_notice(
        &mut self,
        now: Instant,
        call_id: &str,
        from: MemberId,
        d: &Data,
        reliability: Reliability,
        first: bool,
    ) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        let notice: Frame = match reliability {
            Reliability::Durable => {
                let Some(route) = room.routes.remove(&(from, d.channel)) else {
                    return;
                };
                tracing::info!(call = call_id, member = %from, channel = d.channel, "closed a Durable sender over the traffic rules");
                let closed = SenderClosed {
                    channel: d.channel,
                    session: d.session,
                    reason: CloseReason::TRAFFIC_LIMIT,
                    origin: Some(from),
                };
                self.sink.route_closed(now, room, &route, closed.clone());
                SenderClosed {
                    origin: None,
                    ..closed
                }
                .into()
            }
            Reliability::Lossy if first => ErrorFrame {
                code: ErrorCode::TRAFFIC_LIMIT,
                reason: ShortStr::truncated(&format!(
                    "Lossy messages on channel {} dropped: over the traffic limit rules",
                    d.channel
                )),
            }
            .into(),
            Reliability::Lossy => return,
        };
        let encoded = Message::Frame(notice.clone()).to_bytes();
        if let Some(member) = room.members.get_mut(&from) {
            self.sink.deliver(
                now,
                member,
                Kind::Control,
                Delivery::Reliable,
                &notice,
                &encoded,
            );
        }
    }

    /// Checks a join and admits or rejects it.
    fn admit(&mut self, now: Instant, assoc: AssocId, join: Join) {
        let verdict = if join.version != PROTOCOL_VERSION {
            Err(JoinRejection {
                code: ErrorCode::VERSION_MISMATCH,
                reason: format!(
                    "protocol version {} is not {PROTOCOL_VERSION}",
                    join.version
                ),
            })
        } else if join.call_id.as_str().is_empty() || join.participant_id.as_str().is_empty() {
            Err(JoinRejection::bad_token())
        } else {
            match &self.config.verifier {
                Some(v) => v.verify(
                    &JoinRequest {
                        call_id: join.call_id.as_str(),
                        participant_id: join.participant_id.as_str(),
                        token: &join.token,
                    },
                    now,
                ),
                None => Err(JoinRejection {
                    code: ErrorCode::INTERNAL,
                    reason: "this hub serves no calls".into(),
                }),
            }
        };
        if let Err(rejection) = verdict {
            self.stats.joins_rejected += 1;
            let frame = JoinRejected {
                code: rejection.code,
                reason: ShortStr::truncated(&rejection.reason),
            };
            self.send(now, assoc, Delivery::Reliable, frame.into());
            self.links.insert(assoc, Link::Closing);
            self.node.close(now, assoc);
            self.events.push_back(HubEvent::JoinRejected {
                remote: self
                    .node
                    .remote(assoc)
                    .unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
                call_id: join.call_id.to_string(),
                participant_id: join.participant_id.to_string(),
                rejection,
            });
            return;
        }
        self.stats.joins_accepted += 1;
        let call_id = join.call_id.as_str();
        let pid = ParticipantId::from(join.participant_id.as_str());
        let home = home_worker(call_id, self.config.workers);
        self.sink.egress.insert(assoc, self.new_egress());
        // The egress budget steers by round trips: they must not wait for
        // the member's delayed acks.
        self.node.set_immediate_acks(assoc, true);
        if home != self.config.worker {
            // The call lives on another worker: it admits the member and
            // relays back what to send it.
            self.links.insert(assoc, Link::Relayed { home });
            self.sink.relay.push(
                home,
                Relay::new(RelayMsg::Attach {
                    worker: self.config.worker,
                    assoc,
                    call_id: call_id.to_owned(),
                    participant_id: pid,
                }),
            );
            return;
        }
        let room = self.rooms.entry(call_id.to_owned()).or_default();
        let member = MemberId(room.next_member);
        room.next_member += 1;
        let mut welcome: Vec<Frame> = vec![accepted_frame(&self.config.channel, member).into()];
        if let Some(room) = self.rooms.get(call_id) {
            welcome.extend(
                room.members
                    .iter()
                    .map(|(m, x)| joined_frame(*m, &x.participant_id).into()),
            );
        }
        self.send_frames(now, assoc, Delivery::Reliable, welcome);
        self.links.insert(
            assoc,
            Link::Member {
                call_id: call_id.to_owned(),
                member,
            },
        );
        self.admit_member(now, call_id, member, pid, Endpoint::Remote(assoc));
    }

    /// Adds a member to a room and tells everyone else.
    fn admit_member(
        &mut self,
        now: Instant,
        call_id: &str,
        member: MemberId,
        pid: ParticipantId,
        endpoint: Endpoint,
    ) {
        let announce: Frame = joined_frame(member, &pid).into();
        let encoded = Message::Frame(announce.clone()).to_bytes();
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        for other in room.members.values_mut() {
            self.sink.deliver(
                now,
                other,
                Kind::Control,
                Delivery::Reliable,
                &announce,
                &encoded,
            );
        }
        room.members.insert(
            member,
            Member {
                participant_id: pid.clone(),
                endpoint,
                strikes: TokenBucket::new(
                    self.config.policing_tolerance.0,
                    self.config.policing_tolerance.1,
                    now,
                ),
            },
        );
        self.events.push_back(HubEvent::ParticipantJoined {
            call_id: call_id.to_owned(),
            participant_id: pid,
            member,
        });
    }

    /// Where member `member` of `call_id` is connected: `None` for a hosted
    /// participant (or one that is gone).
    fn member_link(&self, call_id: &str, member: MemberId) -> Option<(Option<usize>, AssocId)> {
        match self.rooms.get(call_id)?.members.get(&member)?.endpoint {
            Endpoint::Remote(assoc) => Some((None, assoc)),
            Endpoint::Relayed { worker, assoc } => Some((Some(worker), assoc)),
            Endpoint::Local(_) => None,
        }
    }

    /// A frame from member `from` of `call_id` (remote, relayed from
    /// another worker, or hosted).
    fn on_member_frame(&mut self, now: Instant, call_id: &str, from: MemberId, frame: Frame) {
        let link = self.member_link(call_id, from);
        let violation = |hub: &mut Self, what: &str| match link {
            Some((None, a)) => hub.protocol_error(now, a, what),
            Some((Some(worker), assoc)) => {
                hub.stats.protocol_errors += 1;
                let frame: Frame = ErrorFrame {
                    code: ErrorCode::PROTOCOL_VIOLATION,
                    reason: ShortStr::truncated(what),
                }
                .into();
                let op = EgressOp::Control {
                    delivery: Delivery::Reliable,
                    bytes: Message::Frame(frame).to_bytes(),
                };
                hub.sink
                    .relay
                    .push(worker, Relay::new(RelayMsg::Egress { assoc, op }));
            }
            None => {}
        };
        match frame {
            Frame::SenderOpened(o) if o.origin.is_none() => {
                let Some(room) = self.rooms.get_mut(call_id) else {
                    return;
                };
                if room
                    .routes
                    .get(&(from, o.channel))
                    .is_some_and(|old| old.session == o.session)
                {
                    return;
                }
                let theirs = room.routes.keys().filter(|(m, _)| *m == from).count();
                if !room.routes.contains_key(&(from, o.channel))
                    && theirs >= self.config.max_senders_per_member
                {
                    violation(self, "too many open senders");
                    return;
                }
                let route = Route {
                    session: o.session,
                    reliability: o.reliability,
                    priority: o.priority,
                    bitrate_kbps: o.bitrate_kbps,
                    epoch: 0,
                    targets: Vec::new(),
                    announced: BTreeSet::new(),
                    declined: BTreeSet::new(),
                    limiter: self.config.channel.traffic.limiter(
                        o.reliability,
                        o.priority,
                        self.config.channel.max_message_size,
                        self.config.channel.traffic.server_slack,
                        now,
                    ),
                    policed: false,
                };
                if let Some(old) = room.routes.insert((from, o.channel), route) {
                    let closed = SenderClosed {
                        channel: o.channel,
                        session: old.session,
                        reason: CloseReason::REPLACED,
                        origin: Some(from),
                    };
                    self.sink.route_closed(now, room, &old, closed);
                }
            }
            Frame::SetParticipants(p) => {
                let Some(route) = self
                    .rooms
                    .get_mut(call_id)
                    .and_then(|r| r.routes.get_mut(&(from, p.channel)))
                else {
                    return;
                };
                route.epoch = p.epoch;
                route.targets = p
                    .participants
                    .ids()
                    .iter()
                    .map(|s| ParticipantId::from(s.as_str()))
                    .collect();
            }
            Frame::Data(d) if d.origin.is_none() => self.forward(now, call_id, from, d),
            Frame::SenderClosed(c) if c.origin.is_none() => {
                let Some(room) = self.rooms.get_mut(call_id) else {
                    return;
                };
                if room
                    .routes
                    .get(&(from, c.channel))
                    .is_some_and(|r| r.session == c.session)
                    && let Some(route) = room.routes.remove(&(from, c.channel))
                {
                    let closed = SenderClosed {
                        origin: Some(from),
                        ..c
                    };
                    self.sink.route_closed(now, room, &route, closed);
                }
            }
            // A receiver of `origin`'s session closed on this member's side.
            Frame::SenderClosed(SenderClosed {
                channel,
                session,
                reason: CloseReason::RECEIVER_OVERFLOW,
                origin: Some(origin),
            }) => {
                if let Some(route) = self
                    .rooms
                    .get_mut(call_id)
                    .and_then(|r| r.routes.get_mut(&(origin, channel)))
                    .filter(|r| r.session == session)
                {
                    route.announced.remove(&from);
                    route.declined.insert(from);
                }
            }
            Frame::KeepAlive(k) if k.origin.is_none() => {
                let Some(room) = self.rooms.get_mut(call_id) else {
                    return;
                };
                if let Some(route) = room
                    .routes
                    .get(&(from, k.channel))
                    .filter(|r| r.session == k.session)
                {
                    let announced = route.announced.clone();
                    let kind = route.kind(from, k.channel, 0, now);
                    let ka = KeepAlive {
                        origin: Some(from),
                        ..k
                    };
                    self.sink
                        .announce(now, room, &announced, kind, Delivery::Lossy, ka.into());
                }
            }
            Frame::Leave(_) => match link {
                Some((None, a)) => {
                    self.end_link(now, a, CloseReason::LEFT);
                    self.node.close(now, a);
                }
                // A relayed member's leave is handled by its owner (a
                // Detach); a hosted one leaves through its handle.
                _ => self.remove_member(now, call_id, from, CloseReason::LEFT),
            },
            Frame::Error(e) => {
                // Peer-controlled: debug level, so a chatty peer cannot flood logs.
                tracing::debug!(call = call_id, member = %from, code = e.code.0, reason = %e.reason, "error from participant");
            }
            other => violation(
                self,
                &format!("{} is not allowed from a participant", other.name()),
            ),
        }
    }

    /// Fans a data frame out to its sender's targets.
    fn forward(&mut self, now: Instant, call_id: &str, from: MemberId, d: Data) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        let Room {
            members, routes, ..
        } = room;
        if d.payload.len() > self.config.channel.max_message_size as usize {
            // The client checks this; one that does not is breaking the rules.
            self.stats.protocol_errors += 1;
            return;
        }
        let Some(route) = routes
            .get_mut(&(from, d.channel))
            .filter(|r| r.session == d.session)
        else {
            self.stats.messages_stale += 1;
            return;
        };
        // A Lossy message may overtake its sender's latest participant list:
        // one sent under another list is dropped rather than misdelivered.
        if route.reliability == Reliability::Lossy && d.epoch != Some(route.epoch) {
            self.stats.messages_stale += 1;
            return;
        }
        // Policing: a client that skips its own limiter loses the excess, and
        // one that keeps at it is disconnected.
        if !route
            .limiter
            .try_admit(d.payload.len(), route.targets.is_empty(), now)
        {
            self.stats.policed += 1;
            let abuser = members.get_mut(&from).and_then(|m| match m.endpoint {
                Endpoint::Remote(assoc) if !m.strikes.try_take(1, now) => Some((None, assoc)),
                Endpoint::Relayed { worker, assoc } if !m.strikes.try_take(1, now) => {
                    Some((Some(worker), assoc))
                }
                _ => None,
            });
            let reliability = route.reliability;
            let first = !std::mem::replace(&mut route.policed, true);
            if let Some((worker, assoc)) = abuser {
                self.stats.traffic_abusers += 1;
                tracing::info!(call = call_id, member = %from, "disconnected: over the traffic rules");
                let leave = relay::leave(
                    ErrorCode::TRAFFIC_LIMIT,
                    "persistently over the traffic limit rules",
                );
                match worker {
                    None => {
                        self.send(now, assoc, Delivery::Reliable, leave.into());
                        self.end_link(now, assoc, CloseReason::ASSOCIATION_LOST);
                        self.node.close(now, assoc);
                    }
                    Some(worker) => {
                        self.close_relayed(worker, assoc, leave);
                        self.remove_member(now, call_id, from, CloseReason::ASSOCIATION_LOST);
                    }
                }
                return;
            }
            self.policed_notice(now, call_id, from, &d, reliability, first);
            return;
        }
        let delivery = match route.reliability {
            Reliability::Durable => Delivery::Reliable,
            Reliability::Lossy => Delivery::Lossy,
        };
        let d_channel = d.channel;
        let len = d.payload.len().max(1);
        let opened: Frame = SenderOpened {
            channel: d.channel,
            session: d.session,
            reliability: route.reliability,
            priority: route.priority,
            bitrate_kbps: route.bitrate_kbps,
            origin: Some(from),
        }
        .into();
        let data: Frame = Data {
            origin: Some(from),
            epoch: None,
            ..d
        }
        .into();
        let control = route.kind(from, d_channel, 0, now);
        let kind = route.kind(from, d_channel, len, now);
        // Encoded once; every member's egress gets the same bytes.
        let encoded = Message::Frame(data.clone()).to_bytes();
        let mut opened_encoded = None;
        for (m, member) in members.iter_mut() {
            let addressed = *m != from
                && !route.declined.contains(m)
                && (route.targets.is_empty() || route.targets.contains(&member.participant_id));
            if !addressed {
                continue;
            }
            let newly_announced = route.announced.insert(*m);
            if newly_announced {
                let bytes =
                    opened_encoded.get_or_insert_with(|| Message::Frame(opened.clone()).to_bytes());
                self.sink
                    .deliver(now, member, control, Delivery::Reliable, &opened, bytes);
            }
            // The first message to a new receiver goes ordered, after its
            // `SenderOpened` (unordered data would overtake it).
            let delivery = if newly_announced {
                Delivery::Reliable
            } else {
                delivery
            };
            self.sink
                .deliver(now, member, kind, delivery, &data, &encoded);
            self.stats.messages_forwarded += 1;
        }
    }

    /// Removes a member: its senders close everywhere, everyone is told.
    fn remove_member(&mut self, now: Instant, call_id: &str, member: MemberId, why: CloseReason) {
        let Some(room) = self.rooms.get_mut(call_id) else {
            return;
        };
        let Some(gone) = room.members.remove(&member) else {
            return;
        };
        let theirs: Vec<_> = room
            .routes
            .keys()
            .filter(|(m, _)| *m == member)
            .copied()
            .collect();
        for key in theirs {
            if let Some(route) = room.routes.remove(&key) {
                let closed = SenderClosed {
                    channel: key.1,
                    session: route.session,
                    reason: why,
                    origin: Some(member),
                };
                self.sink.route_closed(now, room, &route, closed);
            }
        }
        for route in room.routes.values_mut() {
            route.announced.remove(&member);
            route.declined.remove(&member);
        }
        let left: Frame = ParticipantLeft { member }.into();
        let encoded = Message::Frame(left.clone()).to_bytes();
        for other in room.members.values_mut() {
            self.sink.deliver(
                now,
                other,
                Kind::Left(member),
                Delivery::Reliable,
                &left,
                &encoded,
            );
        }
        if room.members.is_empty() {
            self.rooms.remove(call_id);
        }
        match gone.endpoint {
            Endpoint::Local(mut core) => {
                self.locals.remove(&core.shared.key);
                core.end("left the call");
            }
            Endpoint::Relayed { worker, assoc } => {
                self.relayed.remove(&(worker, assoc));
            }
            Endpoint::Remote(_) => {}
        }
        self.events.push_back(HubEvent::ParticipantLeft {
            call_id: call_id.to_owned(),
            participant_id: gone.participant_id,
            member,
        });
    }

    fn on_closed(&mut self, now: Instant, assoc: AssocId, reason: &NodeCloseReason) {
        self.drop_egress(assoc);
        match self.links.remove(&assoc) {
            Some(Link::Member { call_id, member }) => {
                self.remove_member(now, &call_id, member, CloseReason::ASSOCIATION_LOST);
            }
            Some(Link::Relayed { home }) => self.detach(home, assoc, CloseReason::ASSOCIATION_LOST),
            Some(Link::Uplink { mut core, .. }) => {
                self.uplinks.remove(&core.shared.key);
                core.end(&format!("connection closed: {reason}"));
            }
            Some(Link::Pending { .. } | Link::Closing) | None => {}
        }
    }

    /// A member association of this hub stops being one (it is being
    /// closed): its egress is dropped and its member removed from the call
    /// (here, or by a `Detach` to the call's home).
    fn end_link(&mut self, now: Instant, assoc: AssocId, why: CloseReason) {
        self.drop_egress(assoc);
        match self.links.insert(assoc, Link::Closing) {
            Some(Link::Member { call_id, member }) => {
                self.remove_member(now, &call_id, member, why);
            }
            Some(Link::Relayed { home }) => self.detach(home, assoc, why),
            _ => {}
        }
    }

    fn drop_egress(&mut self, assoc: AssocId) -> Option<MemberEgress> {
        self.sink.ready.remove(&assoc);
        self.sink.egress.remove(&assoc)
    }

    fn new_egress(&self) -> MemberEgress {
        MemberEgress::new(
            self.config.channel.lossy_latency_budget,
            EgressBudget::new(
                MIN_EGRESS_BUDGET,
                self.config.uplink_buffer,
                self.config.queue_target,
            ),
        )
    }

    /// After any input: members found too slow are disconnected, and every
    /// member egress with work sends what its budget allows.
    fn settle(&mut self, now: Instant) {
        while !self.sink.slow.is_empty() {
            let slow = std::mem::take(&mut self.sink.slow);
            for assoc in slow {
                if !self.sink.egress.contains_key(&assoc) {
                    continue; // Already handled.
                }
                self.stats.slow_consumers += 1;
                tracing::info!(?assoc, "disconnected: a slow consumer");
                let leave = relay::leave(
                    ErrorCode::SLOW_CONSUMER,
                    "could not keep up with what the call sent",
                );
                self.send(now, assoc, Delivery::Reliable, leave.into());
                self.end_link(now, assoc, CloseReason::ASSOCIATION_LOST);
                self.node.close(now, assoc);
            }
        }
        self.stats.lossy_dropped_slow += std::mem::take(&mut self.sink.lossy_dropped);
        self.pump_egress(now);
    }

    /// Lets each member egress with work hand SCTP what its budget allows.
    fn pump_egress(&mut self, now: Instant) {
        while let Some(assoc) = self.node.poll_progress() {
            if self.sink.ready.contains(&assoc) {
                self.sink.kick.insert(assoc);
            }
        }
        if self.sink.kick.is_empty() {
            return;
        }
        for assoc in std::mem::take(&mut self.sink.kick) {
            if !self.sink.ready.contains(&assoc) {
                continue;
            }
            #[cfg(test)]
            {
                self.sink.pumps += 1;
            }
            let queued = sctp_queued(&mut self.node, assoc);
            let Some(e) = self.sink.egress.get_mut(&assoc) else {
                self.sink.ready.remove(&assoc);
                continue;
            };
            e.budget.on_progress(queued, now);
            let room = e.budget.room(queued);
            let reserve = high_reserve(&e.budget, queued);
            let mut out = Vec::new();
            e.set_transit(e.budget.drain_time(queued));
            self.stats.lossy_dropped_slow += e.pump(now, room, reserve, &mut out);
            if !e.has_work() {
                self.sink.ready.remove(&assoc);
            }
            let handed = self.send_encoded_batched(now, assoc, out);
            if let Some(e) = self.sink.egress.get_mut(&assoc) {
                e.budget.on_sent(handed, now);
                if e.has_work() && handed >= room {
                    e.budget.on_limited();
                }
            }
        }
    }

    /// Sends encoded frames in order, packing runs on the same stream into
    /// batches; returns the bytes handed to SCTP.
    fn send_encoded_batched(
        &mut self,
        now: Instant,
        assoc: AssocId,
        out: Vec<(Delivery, Bytes)>,
    ) -> usize {
        if out.is_empty() {
            return 0;
        }
        let buffered = |node: &mut Node| sctp_queued(node, assoc);
        let before = buffered(&mut self.node);
        let mut run: Vec<Bytes> = Vec::new();
        let mut run_len = 0;
        let mut run_delivery = Delivery::Reliable;
        let flush = |node: &mut Node, run: &mut Vec<Bytes>, delivery: Delivery| {
            let message = if run.len() == 1 {
                run.pop()
            } else {
                Some(Batch::concat(run))
            };
            run.clear();
            if let Some(m) = message {
                // A failure means the association is going away.
                let _ = node.send_encoded(now, assoc, delivery, m);
            }
        };
        for (delivery, bytes) in out {
            if !run.is_empty()
                && (delivery != run_delivery || run_len + bytes.len() > batch_limit(delivery))
            {
                flush(&mut self.node, &mut run, run_delivery);
                run_len = 0;
            }
            run_delivery = delivery;
            run_len += bytes.len();
            run.push(bytes);
        }
        if !run.is_empty() {
            flush(&mut self.node, &mut run, run_delivery);
        }
        buffered(&mut self.node).saturating_sub(before)
    }

    /// Takes the work the application queued.
    fn process_work(&mut self, now: Instant) {
        let shared = self.shared.clone();
        for work in shared.take_work() {
            match work {
                Work::Sender(s) => {
                    let key = s.call.key;
                    match self.core_mut(key) {
                        Some(core) => {
                            core.enqueue(now, &s);
                            self.backlog.insert(key);
                        }
                        None => {
                            // The call is gone: drop what was queued.
                            s.scheduled
                                .store(false, std::sync::atomic::Ordering::SeqCst);
                            while s.ops.pop().is_some() {}
                        }
                    }
                }
                Work::Leave(call) => {
                    if let Some(assoc) = self.uplinks.remove(&call.key) {
                        let leave = Leave {
                            code: ErrorCode::NONE,
                            reason: ShortStr::default(),
                        };
                        self.send(now, assoc, Delivery::Reliable, leave.into());
                        self.node.close(now, assoc);
                        if let Some(Link::Uplink { core, .. }) = self.links.get_mut(&assoc) {
                            core.end("left the call");
                        }
                    } else if let Some((call_id, member)) = self.locals.get(&call.key).cloned() {
                        self.remove_member(now, &call_id, member, CloseReason::LEFT);
                    }
                }
            }
        }
    }

    /// The participant core of call `key` (joined remotely or hosted).
    fn core(&self, key: u64) -> Option<&ParticipantCore> {
        if let Some(assoc) = self.uplinks.get(&key) {
            return match self.links.get(assoc)? {
                Link::Uplink { core, .. } => Some(core),
                _ => None,
            };
        }
        let (call_id, member) = self.locals.get(&key)?;
        match &self.rooms.get(call_id)?.members.get(member)?.endpoint {
            Endpoint::Local(core) => Some(core),
            Endpoint::Remote(_) | Endpoint::Relayed { .. } => None,
        }
    }

    fn core_mut(&mut self, key: u64) -> Option<&mut ParticipantCore> {
        if let Some(assoc) = self.uplinks.get(&key) {
            return match self.links.get_mut(assoc)? {
                Link::Uplink { core, .. } => Some(core),
                _ => None,
            };
        }
        let (call_id, member) = self.locals.get(&key).cloned()?;
        self.local_core(&call_id, member)
    }

    /// Lets every call with queued sender work send what its scheduler
    /// picks: into its association while that holds less than
    /// [`HubConfig::uplink_buffer`] (a remote call), or straight into the
    /// room (a hosted participant).
    fn pump_backlog(&mut self, now: Instant) {
        if self.backlog.is_empty() {
            return;
        }
        let keys: Vec<u64> = self.backlog.iter().copied().collect();
        for key in keys {
            let more = if let Some(&assoc) = self.uplinks.get(&key) {
                let queued = sctp_queued(&mut self.node, assoc);
                let mut out = Out::new();
                let (more, room) = match self.links.get_mut(&assoc) {
                    Some(Link::Uplink { core, budget, .. }) => {
                        budget.on_progress(queued, now);
                        let room = budget.room(queued);
                        let reserve = high_reserve(budget, queued);
                        core.set_transit(budget.drain_time(queued));
                        core.pump(now, room, reserve, &mut out);
                        (core.has_work(), room)
                    }
                    _ => (false, 0),
                };
                let handed = self.send_out(now, assoc, out);
                // Work left with the budget's room used up: the budget held
                // the sender back (work left for want of shaping tokens
                // leaves room).
                if more
                    && handed >= room
                    && let Some(Link::Uplink { budget, .. }) = self.links.get_mut(&assoc)
                {
                    budget.on_limited();
                }
                more
            } else if let Some((call_id, member)) = self.locals.get(&key).cloned() {
                let mut out = Out::new();
                let more = match self.local_core(&call_id, member) {
                    Some(core) => {
                        core.pump(now, usize::MAX, 0, &mut out);
                        core.has_work()
                    }
                    None => false,
                };
                for (_, frame) in out {
                    self.on_member_frame(now, &call_id, member, frame);
                }
                more
            } else {
                false
            };
            if !more {
                self.backlog.remove(&key);
            }
        }
    }

    fn local_core(&mut self, call_id: &str, member: MemberId) -> Option<&mut ParticipantCore> {
        match &mut self
            .rooms
            .get_mut(call_id)?
            .members
            .get_mut(&member)?
            .endpoint
        {
            Endpoint::Local(core) => Some(core),
            Endpoint::Remote(_) | Endpoint::Relayed { .. } => None,
        }
    }

    /// Timers: join deadlines, idle receivers, sender keep-alives.
    fn tick(&mut self, now: Instant) {
        let join_timeout = self.config.join_timeout;
        let late: Vec<AssocId> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l, Link::Pending { since } if now >= *since + join_timeout))
            .map(|(a, _)| *a)
            .collect();
        for assoc in late {
            self.links.insert(assoc, Link::Closing);
            self.node.close(now, assoc);
        }
        let mut uplink_out = Vec::new();
        for (assoc, link) in &mut self.links {
            if let Link::Uplink { core, .. } = link {
                let mut out = Out::new();
                core.tick(now, &mut out);
                if !out.is_empty() {
                    uplink_out.push((*assoc, out));
                }
            }
        }
        for (assoc, out) in uplink_out {
            self.send_out(now, assoc, out);
        }
        let locals: Vec<(String, MemberId)> = self.locals.values().cloned().collect();
        for (call_id, member) in locals {
            let mut out = Out::new();
            if let Some(core) = self.local_core(&call_id, member) {
                core.tick(now, &mut out);
            }
            for (_, frame) in out {
                self.on_member_frame(now, &call_id, member, frame);
            }
        }
        let busy = !self.links.is_empty() || !self.locals.is_empty();
        if busy {
            self.next_tick = Some(now + self.tick_interval());
        }
    }

    fn send(&mut self, now: Instant, assoc: AssocId, delivery: Delivery, frame: Frame) {
        // Failures mean the association is going away; its Closed event
        // does the cleanup.
        let _ = self.node.send(now, assoc, delivery, &Message::Frame(frame));
    }

    /// Sends frames in order, packing runs on the same stream into batches
    /// (and counts what an uplink's egress budget handed over).
    fn send_out(&mut self, now: Instant, assoc: AssocId, out: Out) -> usize {
        if out.is_empty() {
            return 0;
        }
        let buffered = |node: &mut Node| sctp_queued(node, assoc);
        let before = buffered(&mut self.node);
        self.send_batched(now, assoc, out);
        let handed = buffered(&mut self.node).saturating_sub(before);
        if let Some(Link::Uplink { budget, .. }) = self.links.get_mut(&assoc) {
            budget.on_sent(handed, now);
        }
        handed
    }

    fn send_batched(&mut self, now: Instant, assoc: AssocId, out: Out) {
        let mut run: Vec<Frame> = Vec::new();
        let mut run_delivery = Delivery::Reliable;
        for (delivery, frame) in out {
            if delivery != run_delivery && !run.is_empty() {
                self.send_frames(now, assoc, run_delivery, std::mem::take(&mut run));
            }
            run_delivery = delivery;
            run.push(frame);
        }
        if !run.is_empty() {
            self.send_frames(now, assoc, run_delivery, run);
        }
    }

    /// Sends frames on one stream, as few messages as [`batch_limit`] allows.
    fn send_frames(
        &mut self,
        now: Instant,
        assoc: AssocId,
        delivery: Delivery,
        frames: Vec<Frame>,
    ) {
        let mut batch: Vec<Frame> = Vec::new();
        let mut size = 0;
        let flush = |hub: &mut Self, batch: &mut Vec<Frame>| {
            let message = if batch.len() == 1 {
                batch.pop().map(Message::Frame)
            } else {
                Some(Message::Batch(Batch {
                    frames: std::mem::take(batch),
                }))
            };
            if let Some(m) = message {
                let _ = hub.node.send(now, assoc, delivery, &m);
            }
        };
        for frame in frames {
            let len = frame.encoded_len();
            if !batch.is_empty() && size + len > batch_limit(delivery) {
                flush(self, &mut batch);
                size = 0;
            }
            size += len;
            batch.push(frame);
        }
        if !batch.is_empty() {
            flush(self, &mut batch);
        }
    }
}

#[cfg(feature = "sim")]
impl crate::sim::Host for Hub {
    fn use_clock(&mut self, clock: &crate::sched::Clock) {
        self.shared.set_clock(clock.clone());
    }
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: Bytes) {
        Hub::handle_datagram(self, now, from, datagram);
    }
    fn handle_timeout(&mut self, now: Instant) {
        Hub::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Hub::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Hub::poll_timeout(self)
    }
}

/// The reason given to members and joins when the server shuts down.
const SHUTTING_DOWN: &str = "the server is shutting down";

fn ids(call_id: &str, participant_id: &str) -> Result<(ShortStr, ShortStr), JoinError> {
    if call_id.is_empty() || participant_id.is_empty() {
        return Err(JoinError::InvalidId);
    }
    let call = ShortStr::try_from(call_id).map_err(|_| JoinError::InvalidId)?;
    let pid = ShortStr::try_from(participant_id).map_err(|_| JoinError::InvalidId)?;
    Ok((call, pid))
}

fn accepted_frame(channel: &ChannelConfig, member: MemberId) -> JoinAccepted {
    JoinAccepted {
        version: PROTOCOL_VERSION,
        member,
        max_message_size: channel.max_message_size,
        idle_timeout_ms: u32::try_from(channel.receiver_idle_timeout.as_millis())
            .unwrap_or(u32::MAX),
        traffic: channel.traffic.to_rules(),
    }
}

fn joined_frame(member: MemberId, pid: &ParticipantId) -> ParticipantJoined {
    ParticipantJoined {
        member,
        participant_id: ShortStr::truncated(pid.as_str()),
    }
}

#[cfg(feature = "_internal")]
mod cluster;
mod config;
mod egress;
mod relay;
#[cfg(feature = "_internal")]
pub use cluster::HubCluster;
pub use config::{HubConfig, HubEvent, HubStats, JoinError};
pub(crate) use relay::Relay;
use relay::RelayMsg;
pub use relay::home_worker;

#[cfg(test)]
mod tests;
