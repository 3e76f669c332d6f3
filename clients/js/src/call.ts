// The client's core: one joined call, its senders and receivers, over an
// abstract transport (two lanes: the reliable, ordered channel and the Lossy
// one). No WebRTC here and no timers: `join.ts` moves bytes and time in
// (`handleMessage`, `tick`, `pump`), so the tests drive it deterministically.
//
// It speaks docs/protocol.md as the Rust client does (src/hub/participant.rs):
// control frames and Durable data in order on the reliable lane, Lossy data
// on the Lossy lane with the sender's epoch (a session's first Lossy message
// goes on the reliable lane, behind its `SenderOpened`), the traffic rules
// checked on `sendMessage` (the stricter of the client's and the server's),
// `FlowControl` pausing Durable senders, keep-alives for idle senders and the
// association, receivers closing after the call's idle timeout.

import { DataChannelError, type DataChannelErrorCode } from "./errors.js";
import { Emitter } from "./events.js";
import { DEFAULT_TRAFFIC_POLICY, TrafficLimiter, stricter, type TrafficPolicy } from "./traffic.js";
import {
  ASSOCIATION_KEEPALIVE,
  CloseReason,
  DecodeError,
  ErrorCode,
  MAX_PARTICIPANTS,
  MAX_STR_LEN,
  decodeMessage,
  encodeMessage,
  framesOf,
  type Frame,
  type JoinAccepted,
  type Message,
  type Priority,
  type Reliability,
} from "./wire.js";

/** The two channels a client talks to the server on. */
export type Lane = "reliable" | "lossy";

/** What the core needs of the connection: send on a lane, and how much a lane holds unsent. */
export interface Transport {
  /** Sends one engine message on `lane`. */
  send(lane: Lane, bytes: Uint8Array): void;
  /** Bytes handed to `lane` and not yet sent (`RTCDataChannel.bufferedAmount`). */
  buffered(lane: Lane): number;
}

/** A participant, as the product names them (`CommunicationIdentifier`). */
export interface ParticipantIdentifier {
  communicationUserId: string;
}

/** Who to send to: an identifier object or its id string. */
export type ParticipantLike = string | ParticipantIdentifier;

/** A participant of the call other than this one. */
export interface RemoteParticipant {
  /** Who it is. */
  readonly identifier: ParticipantIdentifier;
  /** Its number in the call (the server's member id). */
  readonly memberId: number;
}

/** The options of `createDataChannelSender`, named as the web quickstart names them. */
export interface DataChannelSenderOptions {
  /** 1..=65535; absent or 0: a free random id. */
  channelId?: number;
  /** `'durable'` (lossless, ordered; failure is an error) or `'lossy'` (may drop silently). Default durable. */
  reliability?: Reliability;
  /** `'normal'` or `'high'` (served first). Default normal. */
  priority?: Priority;
  /** The bitrate the sender intends to use, kbit/s (announced to receivers). Default 32. */
  bitrateInKbps?: number;
  /** At most 64 participants; empty or absent: everyone else in the call. */
  participants?: ParticipantLike[];
}

/** One message a receiver got. */
export interface DataChannelMessage {
  /** Counts the sender's messages on its channel from 1. */
  sequenceNumber: number;
  /** The message. */
  data: Uint8Array;
}

/** Why a receiver closed. */
export type ReceiverCloseReason =
  | "senderClosed"
  | "replaced"
  | "senderLeft"
  | "senderLost"
  | "trafficLimit"
  | "overflow"
  | "idle"
  | "callEnded"
  | "other";

/** Why a sender closed. */
export type SenderCloseReason =
  /** `close()` was called. */
  | "closed"
  /** A newer sender on the same channel id replaced it. */
  | "replaced"
  /** The server closed it: it went over the traffic rules. */
  | "trafficLimit"
  /** The server refused it: the call has as many senders open as it admits. */
  | "tooManySenders"
  /** The call ended. */
  | "callEnded";

/** Limits and timers of the client. Defaults as the Rust client's `ChannelConfig`. */
export interface ClientConfig {
  /** The traffic rules the client enforces (tightened by the server's). Default: the product's. */
  traffic: TrafficPolicy;
  /** Bytes a sender may have queued (payload + 64 each) before Durable sends fail. Default 1 MiB. */
  senderQueueBytes: number;
  /** Bytes of unread messages a receiver holds (payload + 64 each). Default 8 MiB. */
  receiverBufferBytes: number;
  /**
   * Bytes of unread messages all receivers of the call hold together
   * (payload + 64 each), so an application that never reads some receivers
   * cannot grow without bound. Default 64 MiB.
   */
  receiverTotalBytes: number;
  /** Most receivers held at once. Default 1,024. */
  maxReceivers: number;
  /** An idle sender's keep-alive interval, ms (at most a quarter of the call's idle timeout). Default 30 s. */
  keepaliveIntervalMs: number;
  /** A receiver closes after this much silence, ms, unless the server says otherwise. Default 120 s. */
  receiverIdleTimeoutMs: number;
  /** A Lossy message waiting longer than this (behind a full channel) is dropped. Default 100 ms. */
  lossyLatencyBudgetMs: number;
  /** The client's own cap on message size (the server's applies too). Default 256 KiB. */
  maxMessageSize: number;
}

/** The defaults of {@link ClientConfig}. */
export const DEFAULT_CLIENT_CONFIG: Readonly<ClientConfig> = Object.freeze({
  traffic: DEFAULT_TRAFFIC_POLICY,
  senderQueueBytes: 1024 * 1024,
  receiverBufferBytes: 8 * 1024 * 1024,
  receiverTotalBytes: 64 * 1024 * 1024,
  maxReceivers: 1024,
  keepaliveIntervalMs: 30_000,
  receiverIdleTimeoutMs: 120_000,
  lossyLatencyBudgetMs: 100,
  maxMessageSize: 256 * 1024,
});

/** Above this many bytes waiting in the reliable channel, the client queues instead. */
export const RELIABLE_HIGH_WATER = 256 * 1024;
/** Above this many bytes waiting in the Lossy channel, Lossy messages are dropped. */
export const LOSSY_HIGH_WATER = 256 * 1024;
/** An association silent for this long gets a keep-alive (the server sends its own after 5 s too). */
export const ASSOCIATION_KEEPALIVE_MS = 5_000;
/** What a queued or buffered message costs beyond its payload. */
export const MESSAGE_OVERHEAD = 64;

const utf8 = new TextEncoder();

function idOf(p: ParticipantLike): string {
  return typeof p === "string" ? p : p.communicationUserId;
}

function checkParticipants(list: readonly ParticipantLike[]): string[] {
  if (list.length > MAX_PARTICIPANTS) {
    throw new DataChannelError(
      "DataChannelTooManyParticipants",
      `${list.length} participants is more than the limit of ${MAX_PARTICIPANTS}`,
    );
  }
  return list.map((p) => {
    const id = idOf(p);
    const len = typeof id === "string" ? utf8.encode(id).length : 0;
    if (typeof id !== "string" || len === 0 || len > MAX_STR_LEN) {
      throw new DataChannelError(
        "DataChannelInvalidParticipantId",
        `participant identifiers must be 1 to 255 bytes: ${JSON.stringify(id)}`,
      );
    }
    return id;
  });
}

function receiverReason(reason: number): ReceiverCloseReason {
  switch (reason) {
    case CloseReason.CLOSED:
      return "senderClosed";
    case CloseReason.REPLACED:
      return "replaced";
    case CloseReason.LEFT:
      return "senderLeft";
    case CloseReason.ASSOCIATION_LOST:
      return "senderLost";
    case CloseReason.TRAFFIC_LIMIT:
      return "trafficLimit";
    case CloseReason.RECEIVER_OVERFLOW:
      return "overflow";
    default:
      return "other";
  }
}

/** One operation of a sender, in the order the application made them. */
type Op =
  | { kind: "open"; sender: DataChannelSender }
  | { kind: "data"; sender: DataChannelSender; payload: Uint8Array; at: number }
  | { kind: "set"; sender: DataChannelSender; participants: string[] }
  | { kind: "close"; sender: DataChannelSender };

/** Counters of what the client did not deliver or did not understand. */
export interface CallStats {
  /** Lossy messages dropped before sending (channel full, too late, sender queue full). */
  lossyDropped: number;
  /** Lossy messages dropped on arrival (receiver buffer full, unknown session). */
  lossyDroppedIn: number;
  /** Engine messages that failed to decode. */
  malformed: number;
  /** Frames that made no sense here (unknown session, wrong direction). */
  unexpected: number;
  /** `Error` frames the server sent. */
  serverErrors: number;
}

/** The events of a {@link Call}. */
export type CallEvents = {
  /** Participants joined or left. */
  remoteParticipantsUpdated: [{ added: RemoteParticipant[]; removed: RemoteParticipant[] }];
  /** `state` changed (to `"disconnected"`: the call ended; `endReason` says why). */
  stateChanged: [];
  /** The server reported an error (an `Error` frame: the code and its reason). */
  error: [{ code: number; reason: string }];
};

/** The events of the {@link DataChannelFeature}. */
export type DataChannelEvents = {
  /** A sender in the call opened a session that reaches this participant. Keep the receiver: it is announced once. */
  dataChannelReceiverCreated: [DataChannelReceiver];
};

/** The events of a {@link DataChannelSender}. */
export type SenderEvents = {
  /** `bufferedAmount` fell to `bufferedAmountLowThreshold` or below. */
  bufferedAmountLow: [];
  /** The sender closed (`closeReason` says why). */
  close: [];
};

/** The events of a {@link DataChannelReceiver}. */
export type ReceiverEvents = {
  /** A message arrived: `readMessage()` returns it. */
  messageReady: [];
  /** The receiver closed (`closeReason` says why); unread messages can still be read. */
  close: [];
};

/** The feature names `call.feature()` takes. */
export const Features = Object.freeze({
  /** The DataChannel feature. */
  DataChannel: "DataChannel" as const,
});

/**
 * A joined call (from `joinCall`). `feature(Features.DataChannel)` gives the
 * DataChannel API; `remoteParticipants` the others in the call; `leave()`
 * sends what is queued, then leaves.
 */
export class Call extends Emitter<CallEvents> {
  /** The call's id. */
  readonly id: string;
  /** This participant's id. */
  readonly participantId: string;
  /** This participant's member id in the call. */
  readonly memberId: number;
  /** The largest message the server accepts, bytes. */
  readonly serverMaxMessageSize: number;
  /** What the client enforces: its rules tightened by the server's. */
  readonly traffic: TrafficPolicy;
  /** The most senders the server lets this participant have open (0: no limit). */
  readonly maxSenders: number;
  /** Counters. */
  readonly stats: CallStats = { lossyDropped: 0, lossyDroppedIn: 0, malformed: 0, unexpected: 0, serverErrors: 0 };
  /** Why the call ended, once `state` is `"disconnected"`. */
  endReason: string | undefined;

  /** @internal */ readonly _config: ClientConfig;
  /** @internal */ readonly _idleTimeoutMs: number;
  /** @internal */ readonly _keepaliveMs: number;
  /** @internal */ _memberLimiter: TrafficLimiter | undefined;
  /** @internal The member rules at emission. */
  _memberShaper: TrafficLimiter | undefined;
  #transport: Transport;
  #state: "connected" | "disconnected" = "connected";
  #roster = new Map<number, RemoteParticipant>();
  #feature: DataChannelFeature;
  /** The open sender on each channel id. */
  #senders = new Map<number, DataChannelSender>();
  /** Operations not yet sent, per channel id, in order. */
  #queues = new Map<number, Op[]>();
  #receivers = new Map<string, DataChannelReceiver>();
  /** Bytes of unread messages over all receivers (shared with them). */
  #unread = { bytes: 0 };
  #nextSession = 0;
  #lastSent: number;
  #leaving = false;
  /** The sender whose `sendMessage` is running (its own message leaving at once is not news). */
  #sending: DataChannelSender | undefined;
  #pumping = false;
  #pumpAgain = false;
  #leaveSent = false;
  #now: () => number;
  /** @internal Set by the shell: waits for the leave to be sent, then ends the call. */
  _drain: (() => Promise<void>) | undefined;
  /** @internal Called by the shell when the call ends (to close the connection). */
  _onEnd: (() => void) | undefined;

  /** @internal Use `joinCall`. */
  constructor(
    transport: Transport,
    callId: string,
    participantId: string,
    accepted: JoinAccepted,
    config: ClientConfig,
    now: () => number,
  ) {
    super();
    this.#transport = transport;
    this.#now = now;
    this.id = callId;
    this.participantId = participantId;
    this.memberId = accepted.member;
    this.serverMaxMessageSize = accepted.maxMessageSize;
    this._config = config;
    this.traffic = stricter(config.traffic, accepted.traffic);
    this.maxSenders = accepted.maxSenders;
    this._idleTimeoutMs = accepted.idleTimeoutMs > 0 ? accepted.idleTimeoutMs : config.receiverIdleTimeoutMs;
    this._keepaliveMs = Math.min(config.keepaliveIntervalMs, this._idleTimeoutMs / 4);
    this.#lastSent = now();
    this.#feature = new DataChannelFeature(this);
    const t = this.traffic;
    if (t.memberKbps > 0 || t.memberMessagesPerSecond > 0) {
      this._memberLimiter = TrafficLimiter.forMember(t, this.maxMessageSize, now());
      this._memberShaper = TrafficLimiter.forMember(t, this.maxMessageSize, now());
    }
  }

  /** @internal The core's clock, ms. */
  _clock(): number {
    return this.#now();
  }

  /** `"connected"` until the call ends. */
  get state(): "connected" | "disconnected" {
    return this.#state;
  }

  /** The largest message a sender may send: the server's limit within the client's own. */
  get maxMessageSize(): number {
    return Math.min(this.serverMaxMessageSize, this._config.maxMessageSize);
  }

  /** The other participants in the call. */
  get remoteParticipants(): readonly RemoteParticipant[] {
    return [...this.#roster.values()];
  }

  /** The DataChannel API of this call. */
  feature(name: typeof Features.DataChannel): DataChannelFeature {
    if (name !== Features.DataChannel) throw new TypeError(`unknown feature ${String(name)}`);
    return this.#feature;
  }

  /**
   * Leaves the call: what the senders queued is sent first (in order; a
   * paused sender's once the server resumes it), then `Leave`. Resolves
   * when the call has ended after the server closed the connection on the
   * `Leave`; rejects if it ended with messages unsent (10 s passed, or the
   * connection closed first: `endReason` says so, and the senders closed
   * with `callEnded`).
   */
  leave(): Promise<void> {
    if (this.#state === "disconnected") return Promise.resolve();
    this.#leaving = true;
    this.pump();
    return this._drain?.() ?? Promise.resolve();
  }

  /** @internal Whether everything is sent, `Leave` included. */
  get _leaveSent(): boolean {
    return this.#leaveSent;
  }

  // ---- Senders -------------------------------------------------------------

  /** @internal */
  _createSender(options: DataChannelSenderOptions): DataChannelSender {
    if (this.#state !== "connected" || this.#leaving) {
      throw new DataChannelError("DataChannelFailedToStart", "the data channel is not ready: the call is not connected");
    }
    const reliability = options.reliability ?? "durable";
    const priority = options.priority ?? "normal";
    if (reliability !== "durable" && reliability !== "lossy") {
      throw new TypeError(`reliability must be 'durable' or 'lossy', not ${String(reliability)}`);
    }
    if (priority !== "normal" && priority !== "high") {
      throw new TypeError(`priority must be 'normal' or 'high', not ${String(priority)}`);
    }
    const bitrate = options.bitrateInKbps ?? 32;
    if (!Number.isInteger(bitrate) || bitrate < 0 || bitrate > 0xffff_ffff) {
      throw new RangeError(`bitrateInKbps must be an integer in 0..=4294967295, not ${bitrate}`);
    }
    const participants = checkParticipants(options.participants ?? []);
    let channel = options.channelId ?? 0;
    if (!Number.isInteger(channel) || channel < 0 || channel > 0xffff) {
      throw new RangeError(`channelId must be an integer in 0..=65535 (0: random), not ${channel}`);
    }
    if (channel === 0) channel = this.#randomChannel();
    const replacing = this.#senders.get(channel);
    if (replacing === undefined && this.maxSenders > 0 && this.#senders.size >= this.maxSenders) {
      throw new DataChannelError(
        "DataChannelTooManySenders",
        `the call has ${this.maxSenders} senders open, as many as the server admits`,
      );
    }
    this.#nextSession = (this.#nextSession + 1) >>> 0 || 1;
    const sender = new DataChannelSender(this, channel, this.#nextSession, reliability, priority, bitrate, participants);
    if (replacing !== undefined) replacing._end("replaced", false);
    this.#senders.set(channel, sender);
    this.#push({ kind: "open", sender });
    if (participants.length > 0) this.#push({ kind: "set", sender, participants });
    this.pump();
    return sender;
  }

  #randomChannel(): number {
    if (this.#senders.size >= 0xffff) {
      throw new DataChannelError("DataChannelRandomIdNotAvailable", "no free random channel id is left");
    }
    const pick = new Uint16Array(1);
    for (let i = 0; i < 64; i++) {
      crypto.getRandomValues(pick);
      const id = pick[0] ?? 0;
      if (id !== 0 && !this.#senders.has(id)) return id;
    }
    // Crowded: walk from a random start.
    crypto.getRandomValues(pick);
    const start = pick[0] ?? 0;
    for (let i = 0; i < 0x10000; i++) {
      const id = (start + i) & 0xffff;
      if (id !== 0 && !this.#senders.has(id)) return id;
    }
    throw new DataChannelError("DataChannelRandomIdNotAvailable", "no free random channel id is left");
  }

  /** @internal Queues `op` behind the channel's earlier ones. */
  #push(op: Op): void {
    const ch = op.sender.channelId;
    let q = this.#queues.get(ch);
    if (q === undefined) {
      q = [];
      this.#queues.set(ch, q);
    }
    q.push(op);
  }

  /** @internal */
  _send(sender: DataChannelSender, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) {
      throw new TypeError("sendMessage takes a Uint8Array (encode strings with TextEncoder)");
    }
    if (sender.closed || this.#leaving) {
      throw new DataChannelError("DataChannelSenderClosed", "the sender is closed");
    }
    const limit = this.maxMessageSize;
    if (data.length > limit) {
      throw new DataChannelError(
        "DataChannelMessageSizeOverLimit",
        `message of ${data.length} bytes is over the limit of ${limit} bytes`,
      );
    }
    const cost = data.length + MESSAGE_OVERHEAD;
    if (sender._queued > 0 && sender._queued + cost > this._config.senderQueueBytes) {
      if (sender.reliability === "durable") {
        throw new DataChannelError(
          "DataChannelMessageFailureForBandwidth",
          "not enough bandwidth: the channel's send queue is full",
        );
      }
      sender._dropped++;
      this.stats.lossyDropped++;
      return;
    }
    const now = this.#now();
    const broadcast = sender._participants.length === 0;
    const member = this._memberLimiter;
    const admitted =
      sender._limiter.tryAdmit(data.length, broadcast, now) &&
      (member === undefined ||
        member.tryAdmit(data.length, true, now) ||
        (sender._limiter.refund(data.length, broadcast), false));
    if (!admitted) {
      throw new DataChannelError(
        "DataChannelMessageFailureForTrafficLimit",
        "the message would exceed the traffic limit rules",
      );
    }
    // The application may reuse its buffer once sendMessage returns.
    const payload = data.slice();
    sender._queued += cost;
    this.#push({ kind: "data", sender, payload, at: now });
    // A message that goes out at once was never buffered: no bufferedAmountLow for it.
    this.#sending = sender;
    try {
      this.pump();
    } finally {
      this.#sending = undefined;
    }
  }

  /** @internal */
  _setParticipants(sender: DataChannelSender, list: readonly ParticipantLike[]): void {
    if (sender.closed) throw new DataChannelError("DataChannelSenderClosed", "the sender is closed");
    const participants = checkParticipants(list);
    sender._participants = participants;
    this.#push({ kind: "set", sender, participants });
    this.pump();
  }

  /** @internal The application closed `sender`: its queued messages go, then `SenderClosed`. */
  _close(sender: DataChannelSender): void {
    if (this.#senders.get(sender.channelId) === sender) this.#senders.delete(sender.channelId);
    if (this.#state === "connected") {
      this.#push({ kind: "close", sender });
      this.pump();
    }
  }

  /**
   * @internal Sends what may go now: each channel's operations in order,
   * until the reliable channel holds `RELIABLE_HIGH_WATER` bytes; a
   * paused Durable session's data (and what follows it on its channel)
   * waits. Then `Leave`, if leaving and all is sent.
   */
  pump(): void {
    if (this.#state !== "connected") return;
    if (this.#pumping) {
      // Called from a listener of an event this pump fired: once more after.
      this.#pumpAgain = true;
      return;
    }
    this.#pumping = true;
    const drained: DataChannelSender[] = [];
    try {
      do {
        this.#pumpAgain = false;
        this.#pumpOnce(drained);
      } while (this.#pumpAgain && this.#state === "connected");
    } finally {
      this.#pumping = false;
    }
    // Events last, so a listener that sends queues behind what is queued.
    for (const s of drained) s._lowReached();
    if (this.#pumpAgain) this.pump();
  }

  #pumpOnce(drained: DataChannelSender[]): void {
    const now = this.#now();
    const reliableFull = (): boolean => this.#transport.buffered("reliable") >= RELIABLE_HIGH_WATER;
    for (const [channel, q] of this.#queues) {
      while (q.length > 0) {
        const op = q[0]!;
        // A paused session waits, leaving or not: the server tolerates only
        // so much (`HubConfig::pause_overrun`) before it closes the session.
        if (op.kind === "data" && op.sender._paused) break;
        const lossyData = op.kind === "data" && op.sender.reliability === "lossy" && op.sender._sentLossy;
        // A full reliable channel holds back this channel's ordered work,
        // not the others' (their Lossy data goes on the other lane).
        if (!lossyData && reliableFull()) break;
        // What waited (a pause, a full channel) goes out at the rules' pace,
        // not in one burst the server would police: the same buckets as on
        // `sendMessage`, charged again at emission (the timer retries).
        if (op.kind === "data" && !this.#shape(op.sender, op.payload.length, now)) break;
        q.shift();
        if (op.kind === "data") {
          const quiet = op.sender === this.#sending;
          if (op.sender._release(op.payload.length + MESSAGE_OVERHEAD) && !quiet && !drained.includes(op.sender)) {
            drained.push(op.sender);
          }
        }
        if (
          lossyData &&
          (now - op.at > this._config.lossyLatencyBudgetMs || this.#transport.buffered("lossy") > LOSSY_HIGH_WATER)
        ) {
          op.sender._dropped++;
          this.stats.lossyDropped++;
          continue;
        }
        this.#emit(op, now);
      }
      if (q.length === 0) this.#queues.delete(channel);
    }
    if (this.#leaving && !this.#leaveSent && this.#queues.size === 0) {
      this.#leaveSent = true;
      this.#transmit("reliable", { type: "Leave", code: ErrorCode.NONE, reason: "" });
    }
  }

  /** Takes emission tokens for a message of `len` bytes of `sender`, or none. */
  #shape(sender: DataChannelSender, len: number, now: number): boolean {
    const broadcast = sender._participants.length === 0;
    if (!sender._shaper.tryAdmit(len, broadcast, now)) return false;
    const member = this._memberShaper;
    if (member !== undefined && !member.tryAdmit(len, true, now)) {
      sender._shaper.refund(len, broadcast);
      return false;
    }
    return true;
  }

  /** @internal Whether anything is still queued in the client. */
  get _queuedAny(): boolean {
    return this.#queues.size > 0;
  }

  #emit(op: Op, now: number): void {
    const s = op.sender;
    switch (op.kind) {
      case "open":
        s._opened = true;
        s._lastSent = now;
        s._lastKeepalive = now;
        this.#transmit("reliable", {
          type: "SenderOpened",
          channel: s.channelId,
          session: s._session,
          reliability: s.reliability,
          priority: s.priority,
          bitrateKbps: s.bitrateInKbps,
        });
        return;
      case "data": {
        const seq = s._nextSeq;
        s._nextSeq = (s._nextSeq + 1) >>> 0;
        s._lastSent = now;
        if (s.reliability === "lossy") {
          const lane: Lane = s._sentLossy ? "lossy" : "reliable";
          s._sentLossy = true;
          this.#transmit(lane, {
            type: "Data",
            channel: s.channelId,
            session: s._session,
            seq,
            epoch: s._epoch,
            payload: op.payload,
          });
        } else {
          this.#transmit("reliable", {
            type: "Data",
            channel: s.channelId,
            session: s._session,
            seq,
            payload: op.payload,
          });
        }
        return;
      }
      case "set":
        s._epoch = (s._epoch + 1) & 0xffff;
        this.#transmit("reliable", {
          type: "SetParticipants",
          channel: s.channelId,
          epoch: s._epoch,
          participants: op.participants,
        });
        return;
      case "close":
        this.#transmit("reliable", {
          type: "SenderClosed",
          channel: s.channelId,
          session: s._session,
          reason: CloseReason.CLOSED,
        });
        return;
    }
  }

  #transmit(lane: Lane, msg: Message): void {
    this.#lastSent = this.#now();
    this.#transport.send(lane, encodeMessage(msg));
  }

  // ---- Incoming ------------------------------------------------------------

  /** @internal One engine message from the server (either lane). */
  handleMessage(bytes: Uint8Array): void {
    if (this.#state !== "connected") return;
    let msg: Message;
    try {
      msg = decodeMessage(bytes);
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
      this.stats.malformed++;
      console.warn(`dcengine: an undecodable message from the server was dropped: ${e.message}`);
      return;
    }
    for (const f of framesOf(msg)) this.#handleFrame(f);
  }

  #handleFrame(f: Frame): void {
    if (this.#state !== "connected") return;
    const now = this.#now();
    switch (f.type) {
      case "ParticipantJoined":
        this._addParticipant(f.member, f.participantId, true);
        return;
      case "ParticipantLeft": {
        const p = this.#roster.get(f.member);
        for (const [key, r] of this.#receivers) {
          if (r._origin === f.member) {
            this.#receivers.delete(key);
            r._close("senderLeft");
          }
        }
        if (p !== undefined) {
          this.#roster.delete(f.member);
          this.emit("remoteParticipantsUpdated", { added: [], removed: [p] });
        }
        return;
      }
      case "SenderOpened":
        if (f.origin === undefined) break;
        this.#openReceiver(f.origin, f.channel, f.session, f.reliability, f.priority, f.bitrateKbps, now);
        return;
      case "Data": {
        if (f.origin === undefined) break;
        const r = this.#receivers.get(`${f.origin}:${f.channel}`);
        if (r === undefined || r._session !== f.session) {
          // Lossy data may outrun its SenderOpened on the unordered lane.
          this.stats.lossyDroppedIn++;
          return;
        }
        r._lastHeard = now;
        const cost = f.payload.length + MESSAGE_OVERHEAD;
        if (
          r._held + cost > this._config.receiverBufferBytes ||
          this.#unread.bytes + cost > this._config.receiverTotalBytes ||
          f.payload.length > this._config.maxMessageSize
        ) {
          if (r.reliability === "lossy") {
            r._dropped++;
            this.stats.lossyDroppedIn++;
            return;
          }
          // A Durable receiver that cannot hold a message can no longer be lossless.
          this.#receivers.delete(`${f.origin}:${f.channel}`);
          this.#declineSession(f.channel, f.session, f.origin);
          r._close("overflow");
          return;
        }
        r._push(f.seq, f.payload, cost);
        return;
      }
      case "KeepAlive": {
        if (f.origin === undefined) return; // The association's: its arrival is enough.
        const r = this.#receivers.get(`${f.origin}:${f.channel}`);
        if (r !== undefined && r._session === f.session) r._lastHeard = now;
        return;
      }
      case "SenderClosed": {
        if (f.origin !== undefined) {
          const key = `${f.origin}:${f.channel}`;
          const r = this.#receivers.get(key);
          if (r !== undefined && r._session === f.session) {
            this.#receivers.delete(key);
            r._close(receiverReason(f.reason));
          }
          return;
        }
        // Server → sender: "your session is closed".
        const s = this.#findSender(f.channel, f.session);
        if (s === undefined) return;
        const why: SenderCloseReason = f.reason === CloseReason.TOO_MANY_SENDERS ? "tooManySenders" : "trafficLimit";
        console.warn(`dcengine: the server closed sender ${f.channel} (${why})`);
        if (this.#senders.get(f.channel) === s) this.#senders.delete(f.channel);
        const q = this.#queues.get(f.channel);
        if (q !== undefined) {
          const kept = q.filter((op) => op.sender !== s);
          if (kept.length > 0) this.#queues.set(f.channel, kept);
          else this.#queues.delete(f.channel);
        }
        s._end(why, true);
        return;
      }
      case "FlowControl": {
        const s = this.#findSender(f.channel, f.session);
        if (s === undefined || s.reliability !== "durable") return;
        s._paused = f.paused;
        if (!f.paused) this.pump();
        return;
      }
      case "Leave":
        this._end(`removed by the server: ${f.reason || "no reason"} (code ${f.code})`);
        return;
      case "Error":
        this.stats.serverErrors++;
        console.warn(`dcengine: the server reported error ${f.code}: ${f.reason}`);
        this.emit("error", { code: f.code, reason: f.reason });
        return;
      default:
        break;
    }
    this.stats.unexpected++;
  }

  #findSender(channel: number, session: number): DataChannelSender | undefined {
    const current = this.#senders.get(channel);
    if (current?._session === session) return current;
    for (const op of this.#queues.get(channel) ?? []) {
      if (op.sender._session === session) return op.sender;
    }
    return undefined;
  }

  /** @internal */
  _addParticipant(member: number, participantId: string, announce: boolean): void {
    if (this.#roster.has(member) || member === this.memberId || this.#roster.size >= 100_000) return;
    const p: RemoteParticipant = Object.freeze({
      identifier: Object.freeze({ communicationUserId: participantId }),
      memberId: member,
    });
    this.#roster.set(member, p);
    if (announce) this.emit("remoteParticipantsUpdated", { added: [p], removed: [] });
  }

  #openReceiver(
    origin: number,
    channel: number,
    session: number,
    reliability: Reliability,
    priority: Priority,
    bitrate: number,
    now: number,
  ): void {
    const key = `${origin}:${channel}`;
    const old = this.#receivers.get(key);
    if (old !== undefined) {
      if (old._session === session) return;
      this.#receivers.delete(key);
      old._close("replaced");
    }
    if (this.#receivers.size >= this._config.maxReceivers) {
      console.warn(`dcengine: ${this.#receivers.size} receivers are open; sender ${channel} of member ${origin} declined`);
      this.#declineSession(channel, session, origin);
      return;
    }
    const who = this.#roster.get(origin)?.identifier ?? { communicationUserId: `member:${origin}` };
    const r = new DataChannelReceiver(origin, channel, session, who, reliability, priority, bitrate, now, this.#unread);
    this.#receivers.set(key, r);
    this.#feature._announce(r);
  }

  /** Tells the server this participant takes no more of the session (`RECEIVER_OVERFLOW`). */
  #declineSession(channel: number, session: number, origin: number): void {
    this.#transmit("reliable", {
      type: "SenderClosed",
      channel,
      session,
      reason: CloseReason.RECEIVER_OVERFLOW,
      origin,
    });
  }

  /**
   * @internal Timers, every few hundred ms: receivers idle past the call's
   * timeout close; idle senders send keep-alives; a silent association
   * gets one; Lossy messages queued too long are dropped.
   */
  tick(): void {
    if (this.#state !== "connected") return;
    const now = this.#now();
    for (const [key, r] of this.#receivers) {
      if (now - r._lastHeard >= this._idleTimeoutMs) {
        this.#receivers.delete(key);
        r._close("idle");
      }
    }
    for (const s of this.#senders.values()) {
      // On a fixed cadence, data or not (as the Rust client): a sender
      // paused longer than the idle timeout, or sending only to others
      // since a list change, keeps every receiver it announced open.
      if (s._opened && now - s._lastKeepalive >= this._keepaliveMs) {
        s._lastKeepalive = now;
        this.#transmit("lossy", { type: "KeepAlive", channel: s.channelId, session: s._session });
      }
    }
    if (now - this.#lastSent >= ASSOCIATION_KEEPALIVE_MS) this.#transmit("lossy", ASSOCIATION_KEEPALIVE);
    this.pump();
  }

  /**
   * @internal The call ended (the server removed it, the connection
   * dropped, or the leave completed): every sender and receiver closes.
   */
  _end(reason: string): void {
    if (this.#state === "disconnected") return;
    this.#state = "disconnected";
    this.endReason = reason;
    const senders = new Set<DataChannelSender>(this.#senders.values());
    for (const q of this.#queues.values()) for (const op of q) senders.add(op.sender);
    this.#senders.clear();
    this.#queues.clear();
    for (const s of senders) s._end("callEnded", true);
    const receivers = [...this.#receivers.values()];
    this.#receivers.clear();
    for (const r of receivers) r._close("callEnded");
    this.emit("stateChanged");
    this._onEnd?.();
  }
}

/** The DataChannel feature of a call: senders, and the receivers others' senders create here. */
export class DataChannelFeature extends Emitter<DataChannelEvents> {
  #call: Call;

  /** @internal */
  constructor(call: Call) {
    super();
    this.#call = call;
  }

  /**
   * A new sender. A sender on a channel id this participant already uses
   * replaces it (the old one closes; what it queued is still sent first).
   * Throws `DataChannelError` (`DataChannelFailedToStart`,
   * `DataChannelRandomIdNotAvailable`, `DataChannelTooManySenders`, or a
   * bad participant list).
   */
  createDataChannelSender(options: DataChannelSenderOptions = {}): DataChannelSender {
    return this.#call._createSender(options);
  }

  /** @internal */
  _announce(r: DataChannelReceiver): void {
    this.emit("dataChannelReceiverCreated", r);
  }
}

/**
 * Sends on one channel (the product's `DataChannelSender`). Messages carry
 * sequence numbers from 1. Usable until `close()`, a newer sender on the
 * same channel id, the server closing it, or the call ending.
 */
export class DataChannelSender extends Emitter<SenderEvents> {
  /** The channel id. */
  readonly channelId: number;
  /** `'durable'` or `'lossy'`. */
  readonly reliability: Reliability;
  /** `'normal'` or `'high'`. */
  readonly priority: Priority;
  /** The declared bitrate, kbit/s. */
  readonly bitrateInKbps: number;
  /** `bufferedAmount` at or below which `bufferedAmountLow` fires (default 0). */
  bufferedAmountLowThreshold = 0;
  /** Why it closed, once `closed`. */
  closeReason: SenderCloseReason | undefined;

  /** @internal */ readonly _session: number;
  /** @internal */ _participants: string[];
  /** @internal */ _queued = 0;
  /** @internal */ _dropped = 0;
  /** @internal */ _paused = false;
  /** @internal */ _opened = false;
  /** @internal */ _sentLossy = false;
  /** @internal */ _nextSeq = 1;
  /** @internal */ _epoch = 0;
  /** @internal */ _lastSent = 0;
  /** @internal */ _lastKeepalive = 0;
  /** @internal */ readonly _limiter: TrafficLimiter;
  /** @internal The same rules at emission: what waited goes out at their pace. */
  readonly _shaper: TrafficLimiter;
  #call: Call;
  #closed = false;

  /** @internal */
  constructor(
    call: Call,
    channel: number,
    session: number,
    reliability: Reliability,
    priority: Priority,
    bitrate: number,
    participants: string[],
  ) {
    super();
    this.#call = call;
    this.channelId = channel;
    this._session = session;
    this.reliability = reliability;
    this.priority = priority;
    this.bitrateInKbps = bitrate;
    this._participants = participants;
    this._limiter = TrafficLimiter.forSender(call.traffic, reliability, priority, call.maxMessageSize, call._clock());
    this._shaper = TrafficLimiter.forSender(call.traffic, reliability, priority, call.maxMessageSize, call._clock());
  }

  /** The largest message `sendMessage` takes, bytes. */
  get maxMessageSizeInBytes(): number {
    return this.#call.maxMessageSize;
  }

  /** Whether the sender is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Bytes of this sender's messages not yet handed to the connection (payload + 64 each). */
  get bufferedAmount(): number {
    return this._queued;
  }

  /** Lossy messages this sender dropped (queue full, waited too long). */
  get droppedMessages(): number {
    return this._dropped;
  }

  /** The participants its messages go to (empty: everyone else in the call). */
  get participants(): readonly ParticipantIdentifier[] {
    return this._participants.map((id) => ({ communicationUserId: id }));
  }

  /**
   * Sends one message. Resolves once it is queued in order (a Durable
   * message is then delivered or the sender or receiver sees an error);
   * rejects with `DataChannelError`: `DataChannelSenderClosed`,
   * `DataChannelMessageSizeOverLimit`, `DataChannelMessageFailureForTrafficLimit`,
   * or for Durable senders `DataChannelMessageFailureForBandwidth` when its
   * queue is full (a Lossy message is then dropped silently).
   */
  sendMessage(data: Uint8Array): Promise<void> {
    try {
      this.#call._send(this, data);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Who the next messages go to: at most 64 participants, empty for everyone. Throws `DataChannelError`. */
  setParticipants(participants: ParticipantLike[]): void {
    this.#call._setParticipants(this, participants);
  }

  /** Closes the sender: what it queued is still sent, then its receivers close. */
  close(): void {
    if (this.#closed) return;
    this.#close("closed");
    this.#call._close(this);
  }

  /** @internal Closed by something other than `close()`; `quiet`: nothing more is sent for it. */
  _end(reason: SenderCloseReason, quiet: boolean): void {
    if (this.#closed) return;
    if (quiet) this._queued = 0;
    this.#close(reason);
  }

  #close(reason: SenderCloseReason): void {
    this.#closed = true;
    this.closeReason = reason;
    this.emit("close");
  }

  /**
   * @internal `bytes` of queued messages left the queue. Returns whether
   * `bufferedAmount` fell to the threshold (the caller fires
   * `bufferedAmountLow` once its work is done: `_lowReached`).
   */
  _release(bytes: number): boolean {
    const before = this._queued;
    this._queued = Math.max(0, before - bytes);
    return before > this.bufferedAmountLowThreshold && this._queued <= this.bufferedAmountLowThreshold;
  }

  /** @internal Fires `bufferedAmountLow` if it still holds. */
  _lowReached(): void {
    if (!this.closed && this._queued <= this.bufferedAmountLowThreshold) this.emit("bufferedAmountLow");
  }
}

/**
 * Receives one sender's session (the product's `DataChannelReceiver`):
 * messages are held until `readMessage()`; `messageReady` fires for each.
 */
export class DataChannelReceiver extends Emitter<ReceiverEvents> {
  /** The channel id. */
  readonly channelId: number;
  /** Who sends. */
  readonly senderParticipantIdentifier: ParticipantIdentifier;
  /** The sender's reliability. */
  readonly reliability: Reliability;
  /** The sender's priority. */
  readonly priority: Priority;
  /** The sender's declared bitrate, kbit/s. */
  readonly bitrateInKbps: number;
  /** Why it closed, once closed. */
  closeReason: ReceiverCloseReason | undefined;

  /** @internal */ readonly _origin: number;
  /** @internal */ readonly _session: number;
  /** @internal */ _lastHeard: number;
  /** @internal */ _held = 0;
  /** @internal */ _dropped = 0;
  #messages: { seq: number; data: Uint8Array; cost: number }[] = [];
  #unread: { bytes: number };
  #head = 0;
  #closed = false;

  /** @internal */
  constructor(
    origin: number,
    channel: number,
    session: number,
    who: ParticipantIdentifier,
    reliability: Reliability,
    priority: Priority,
    bitrate: number,
    now: number,
    unread: { bytes: number },
  ) {
    super();
    this.#unread = unread;
    this._origin = origin;
    this.channelId = channel;
    this._session = session;
    this.senderParticipantIdentifier = who;
    this.reliability = reliability;
    this.priority = priority;
    this.bitrateInKbps = bitrate;
    this._lastHeard = now;
  }

  /** Whether the receiver is closed (its unread messages can still be read). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Unread messages. */
  get pendingMessages(): number {
    return this.#messages.length - this.#head;
  }

  /** Lossy messages dropped because the buffer was full. */
  get droppedMessages(): number {
    return this._dropped;
  }

  /** The next unread message, or `undefined`. */
  readMessage(): DataChannelMessage | undefined {
    const m = this.#messages[this.#head];
    if (m === undefined) return undefined;
    this.#messages[this.#head] = undefined as never;
    this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#messages.length) {
      this.#messages = this.#messages.slice(this.#head);
      this.#head = 0;
    }
    this._held -= m.cost;
    this.#unread.bytes -= m.cost;
    return { sequenceNumber: m.seq, data: m.data };
  }

  /** @internal */
  _push(seq: number, data: Uint8Array, cost: number): void {
    this.#messages.push({ seq, data, cost });
    this._held += cost;
    this.#unread.bytes += cost;
    this.emit("messageReady");
  }

  /** @internal */
  _close(reason: ReceiverCloseReason): void {
    if (this.#closed) return;
    this.#closed = true;
    this.closeReason = reason;
    this.emit("close");
  }
}

/** @internal For the error type's users: every product error code. */
export const DATA_CHANNEL_ERROR_CODES: readonly DataChannelErrorCode[] = Object.freeze([
  "DataChannelFailedToStart",
  "DataChannelRandomIdNotAvailable",
  "DataChannelSenderClosed",
  "DataChannelMessageSizeOverLimit",
  "DataChannelMessageFailureForBandwidth",
  "DataChannelMessageFailureForTrafficLimit",
]);
