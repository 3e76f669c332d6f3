/**
 * dcengine's wire codec: the framing inside each SCTP user message, as
 * specified by `docs/protocol.md` sections 2–5 (conventions, decoding rules,
 * messages, frames). One user message holds exactly one {@link Message}: a
 * single frame, or a batch of frames.
 *
 * - {@link decodeMessage} decodes one whole user message. On bad input it
 *   throws a {@link DecodeError} (and nothing else), whose `kind` is one of
 *   the errors of the document's section 3.
 * - {@link encodeMessage} encodes one; the encoding is canonical (minimal
 *   varints, flags exactly the optional fields present), so
 *   `encodeMessage(decodeMessage(b))` gives back `b` byte for byte. A value
 *   that cannot be encoded (a string over 255 bytes, a number out of its
 *   field's range, ...) throws an {@link EncodeError}.
 *
 * No runtime dependencies: only `TextEncoder` / `TextDecoder` and typed
 * arrays, available in browsers and Node.
 */

/** The protocol version this codec speaks (`wire::PROTOCOL_VERSION`). */
export const PROTOCOL_VERSION = 4;
/** Longest short string (call id, participant id, reason), in UTF-8 bytes. */
export const MAX_STR_LEN = 255;
/** Longest join token, in bytes. */
export const MAX_TOKEN_LEN = 4096;
/** Longest `Data` payload, in bytes (256 KiB). */
export const MAX_PAYLOAD_LEN = 262_144;
/** Most participant ids in a `SetParticipants` list. */
export const MAX_PARTICIPANTS = 64;
/** Largest varint value, 2^62 − 1 (not a safe JS integer: see {@link decodeVarint}). */
export const MAX_VARINT = 2n ** 62n - 1n;
/** Shortest possible frame (`JoinRejected`, `Leave` or `Error` with an empty reason). */
export const MIN_FRAME_LEN = 4;

/** Frame type bytes (the first byte of every frame). */
export const FrameType = {
  Join: 0x01,
  JoinAccepted: 0x02,
  JoinRejected: 0x03,
  Leave: 0x04,
  ParticipantJoined: 0x05,
  ParticipantLeft: 0x06,
  SenderOpened: 0x07,
  SenderClosed: 0x08,
  SetParticipants: 0x09,
  Data: 0x0a,
  Error: 0x0b,
  KeepAlive: 0x0c,
  FlowControl: 0x0d,
  Batch: 0x0f,
} as const;

/** Flag bit: an origin member id follows (SenderOpened, SenderClosed, Data, KeepAlive). */
export const FLAG_ORIGIN = 0x01;
/** Flag bit (Data only): a participant-list epoch follows. */
export const FLAG_EPOCH = 0x02;
/** Flag bit (FlowControl only): the sender is paused. */
export const FLAG_PAUSED = 0x01;

/** Close reasons (`SenderClosed.reason`); other values are kept as they are. */
export const CloseReason = {
  CLOSED: 0,
  REPLACED: 1,
  LEFT: 2,
  ASSOCIATION_LOST: 4,
  TRAFFIC_LIMIT: 5,
  RECEIVER_OVERFLOW: 6,
  TOO_MANY_SENDERS: 7,
} as const;

/** Error codes (`JoinRejected`, `Leave`, `Error`); other values are kept as they are. */
export const ErrorCode = {
  NONE: 0,
  VERSION_MISMATCH: 1,
  BAD_TOKEN: 2,
  TOKEN_EXPIRED: 3,
  NOT_JOINED: 4,
  PROTOCOL_VIOLATION: 5,
  TRAFFIC_LIMIT: 6,
  SLOW_CONSUMER: 7,
  SHUTTING_DOWN: 8,
  INTERNAL: 9,
  CALL_FULL: 10,
} as const;

// ---- Frames ----------------------------------------------------------------
// Integer fields are plain numbers: u8, u16 and u32 as their names say
// (member ids, sessions, sequence numbers, bitrates are u32; channels and
// epochs u16). Optional fields (`origin`, `epoch`) are absent when the flag
// is clear; a decoder never sets them to `undefined`.

/** 0x01: a client asks to join a call. */
export interface Join {
  type: "Join";
  /** u16: the protocol version the client speaks ({@link PROTOCOL_VERSION}). */
  version: number;
  callId: string;
  participantId: string;
  /** At most {@link MAX_TOKEN_LEN} bytes, opaque. */
  token: Uint8Array;
}

/** The traffic-limit rules in `JoinAccepted`, eight u32 in this order (0: no rule). */
export interface TrafficRules {
  durableKbps: number;
  lossyKbps: number;
  highLossyKbps: number;
  broadcastPacketsPerSecond: number;
  packetBytes: number;
  burstMs: number;
  memberKbps: number;
  memberMessagesPerSecond: number;
}

/** 0x02: the server accepts a join, with the rules it enforces (51 bytes). */
export interface JoinAccepted {
  type: "JoinAccepted";
  version: number;
  /** u32: the client's own member id. */
  member: number;
  maxMessageSize: number;
  idleTimeoutMs: number;
  traffic: TrafficRules;
  maxSenders: number;
}

/** 0x03: the server rejects a join. */
export interface JoinRejected {
  type: "JoinRejected";
  /** u16, an {@link ErrorCode}. */
  code: number;
  reason: string;
}

/** 0x04: a participant leaves (either direction). */
export interface Leave {
  type: "Leave";
  code: number;
  reason: string;
}

/** 0x05: roster, a participant joined. */
export interface ParticipantJoined {
  type: "ParticipantJoined";
  member: number;
  participantId: string;
}

/** 0x06: roster, a participant left. */
export interface ParticipantLeft {
  type: "ParticipantLeft";
  member: number;
}

/** Delivery class: 0 on the wire is Lossy, 1 Durable. */
export type Reliability = "lossy" | "durable";
/** Scheduling class: 0 on the wire is Normal, 1 High. */
export type Priority = "normal" | "high";

/** 0x07: a sender session opened on a channel. */
export interface SenderOpened {
  type: "SenderOpened";
  channel: number;
  session: number;
  reliability: Reliability;
  priority: Priority;
  bitrateKbps: number;
  /** Server → receiver leg only (flag ORIGIN). */
  origin?: number;
}

/** 0x08: a sender session closed. */
export interface SenderClosed {
  type: "SenderClosed";
  channel: number;
  session: number;
  /** u8, a {@link CloseReason}. */
  reason: number;
  origin?: number;
}

/** 0x09: a sender changes who its next messages go to (empty: broadcast). */
export interface SetParticipants {
  type: "SetParticipants";
  channel: number;
  epoch: number;
  /** At most {@link MAX_PARTICIPANTS} ids, each a short string. */
  participants: string[];
}

/** 0x0a: one application message on a channel. */
export interface Data {
  type: "Data";
  channel: number;
  session: number;
  seq: number;
  /** Flag ORIGIN. */
  origin?: number;
  /** u16, flag EPOCH. */
  epoch?: number;
  /** At most {@link MAX_PAYLOAD_LEN} bytes. Decoded payloads are views of the input (no copy). */
  payload: Uint8Array;
}

/** 0x0b: an error report. */
export interface ErrorFrame {
  type: "Error";
  code: number;
  reason: string;
}

/** 0x0c: keeps a channel's receivers (or, with channel 0 and session 0, the association) alive. */
export interface KeepAlive {
  type: "KeepAlive";
  channel: number;
  session: number;
  origin?: number;
}

/** 0x0d: the server pauses or resumes a Durable sender. */
export interface FlowControl {
  type: "FlowControl";
  channel: number;
  session: number;
  paused: boolean;
}

/** Any one frame, discriminated by `type`. */
export type Frame =
  | Join
  | JoinAccepted
  | JoinRejected
  | Leave
  | ParticipantJoined
  | ParticipantLeft
  | SenderOpened
  | SenderClosed
  | SetParticipants
  | Data
  | ErrorFrame
  | KeepAlive
  | FlowControl;

/** 0x0f: many frames in one user message (never nested). */
export interface Batch {
  type: "Batch";
  frames: Frame[];
}

/** What one SCTP user message holds: one frame, or one batch. */
export type Message = Frame | Batch;

/** The association keep-alive (`0c 00 00 00 00 00 00 00`). */
export const ASSOCIATION_KEEPALIVE: Readonly<KeepAlive> = Object.freeze({
  type: "KeepAlive",
  channel: 0,
  session: 0,
});

// ---- Errors ----------------------------------------------------------------

/** The decode errors of `docs/protocol.md` section 3. */
export type DecodeErrorKind =
  | "UnexpectedEnd"
  | "UnknownFrameType"
  | "WrongFrameType"
  | "TrailingBytes"
  | "InvalidUtf8"
  | "TooLong"
  | "NonMinimalVarint"
  | "ReservedFlags"
  | "NestedBatch"
  | "InvalidValue";

/** Details some kinds carry, as in the document. */
export interface DecodeErrorDetails {
  /** UnknownFrameType: the type byte; WrongFrameType: the type found. */
  type?: number;
  /** WrongFrameType: the type asked for. */
  expected?: number;
  /** TrailingBytes: how many bytes were left. */
  trailing?: number;
  /** TooLong / InvalidValue: which field ("token length", "payload length",
   * "participant count", "batch count"; "reliability", "priority"). */
  what?: string;
  /** TooLong: the length or count on the wire (a bigint above 2^53 − 1). */
  len?: number | bigint;
  /** TooLong: the limit. */
  max?: number;
  /** InvalidValue: the value on the wire. */
  value?: number;
  /** ReservedFlags: only the reserved bits that were set. */
  bits?: number;
}

/** Why a message could not be decoded. The only exception the decoders throw. */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
  readonly kind: DecodeErrorKind;
  readonly details: DecodeErrorDetails;

  constructor(kind: DecodeErrorKind, details: DecodeErrorDetails = {}) {
    super(describe(kind, details));
    this.kind = kind;
    this.details = details;
  }
}

function hex2(n: number): string {
  return "0x" + n.toString(16).padStart(2, "0");
}

function describe(kind: DecodeErrorKind, d: DecodeErrorDetails): string {
  switch (kind) {
    case "UnexpectedEnd":
      return "input ended in the middle of a frame";
    case "UnknownFrameType":
      return `unknown frame type ${hex2(d.type ?? 0)}`;
    case "WrongFrameType":
      return `expected frame type ${hex2(d.expected ?? 0)}, found ${hex2(d.type ?? 0)}`;
    case "TrailingBytes":
      return `${d.trailing ?? 0} trailing bytes after the message`;
    case "InvalidUtf8":
      return "string is not valid UTF-8";
    case "TooLong":
      return `${d.what} is ${d.len}, more than the limit ${d.max}`;
    case "NonMinimalVarint":
      return "variable-length integer is not minimally encoded";
    case "ReservedFlags":
      return `reserved flag bits set: ${hex2(d.bits ?? 0)}`;
    case "NestedBatch":
      return "a batch cannot contain a batch";
    case "InvalidValue":
      return `invalid ${d.what}: ${d.value}`;
  }
}

/** A value that cannot be encoded (out of its field's range or limit). */
export class EncodeError extends RangeError {
  override readonly name = "EncodeError";
}

// ---- Reader ----------------------------------------------------------------

const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const utf8Encoder = new TextEncoder();

class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  need(n: number): void {
    if (this.remaining < n) throw new DecodeError("UnexpectedEnd");
  }

  peek(): number {
    this.need(1);
    return this.bytes[this.pos] as number;
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }

  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  take(n: number): Uint8Array {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** A varint as a number, or a bigint if above 2^53 − 1; minimal encoding enforced. */
  varint(): number | bigint {
    const first = this.u8();
    const size = 1 << (first >> 6);
    this.need(size - 1);
    let value: number | bigint;
    let minimal: boolean;
    if (size === 8) {
      let big = BigInt(first & 0x3f);
      for (let i = 1; i < 8; i++) big = (big << 8n) | BigInt(this.u8());
      minimal = big >= 1n << 30n;
      value = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    } else {
      let v = first & 0x3f;
      for (let i = 1; i < size; i++) v = v * 256 + this.u8();
      value = v;
      minimal = size === 1 ? true : size === 2 ? v >= 64 : v >= 16384;
    }
    if (!minimal) throw new DecodeError("NonMinimalVarint");
    return value;
  }

  /** A varint length checked against `max` (TooLong), then against the bytes left. */
  len(what: string, max: number): number {
    const len = this.varint();
    if (len > max) throw new DecodeError("TooLong", { what, len, max });
    const n = len as number;
    this.need(n);
    return n;
  }

  shortStr(): string {
    const len = this.u8();
    const raw = this.take(len);
    try {
      return utf8Decoder.decode(raw);
    } catch {
      throw new DecodeError("InvalidUtf8");
    }
  }

  flags(allowed: number): number {
    const flags = this.u8();
    const reserved = flags & ~allowed & 0xff;
    if (reserved !== 0) throw new DecodeError("ReservedFlags", { bits: reserved });
    return flags;
  }
}

// ---- Decoding --------------------------------------------------------------

function readOrigin(r: Reader, flags: number): { origin?: number } {
  return flags & FLAG_ORIGIN ? { origin: r.u32() } : {};
}

function readReliability(r: Reader): Reliability {
  const v = r.u8();
  if (v === 0) return "lossy";
  if (v === 1) return "durable";
  throw new DecodeError("InvalidValue", { what: "reliability", value: v });
}

function readPriority(r: Reader): Priority {
  const v = r.u8();
  if (v === 0) return "normal";
  if (v === 1) return "high";
  throw new DecodeError("InvalidValue", { what: "priority", value: v });
}

function readFrame(r: Reader): Frame {
  const type = r.u8();
  switch (type) {
    case FrameType.Join: {
      const version = r.u16();
      const callId = r.shortStr();
      const participantId = r.shortStr();
      const token = r.take(r.len("token length", MAX_TOKEN_LEN));
      return { type: "Join", version, callId, participantId, token };
    }
    case FrameType.JoinAccepted: {
      const version = r.u16();
      const member = r.u32();
      const maxMessageSize = r.u32();
      const idleTimeoutMs = r.u32();
      const traffic: TrafficRules = {
        durableKbps: r.u32(),
        lossyKbps: r.u32(),
        highLossyKbps: r.u32(),
        broadcastPacketsPerSecond: r.u32(),
        packetBytes: r.u32(),
        burstMs: r.u32(),
        memberKbps: r.u32(),
        memberMessagesPerSecond: r.u32(),
      };
      const maxSenders = r.u32();
      return { type: "JoinAccepted", version, member, maxMessageSize, idleTimeoutMs, traffic, maxSenders };
    }
    case FrameType.JoinRejected:
    case FrameType.Leave:
    case FrameType.Error: {
      const code = r.u16();
      const reason = r.shortStr();
      const name = type === FrameType.JoinRejected ? "JoinRejected" : type === FrameType.Leave ? "Leave" : "Error";
      return { type: name, code, reason };
    }
    case FrameType.ParticipantJoined: {
      const member = r.u32();
      const participantId = r.shortStr();
      return { type: "ParticipantJoined", member, participantId };
    }
    case FrameType.ParticipantLeft:
      return { type: "ParticipantLeft", member: r.u32() };
    case FrameType.SenderOpened: {
      const flags = r.flags(FLAG_ORIGIN);
      const channel = r.u16();
      const session = r.u32();
      const reliability = readReliability(r);
      const priority = readPriority(r);
      const bitrateKbps = r.u32();
      return { type: "SenderOpened", channel, session, reliability, priority, bitrateKbps, ...readOrigin(r, flags) };
    }
    case FrameType.SenderClosed: {
      const flags = r.flags(FLAG_ORIGIN);
      const channel = r.u16();
      const session = r.u32();
      const reason = r.u8();
      return { type: "SenderClosed", channel, session, reason, ...readOrigin(r, flags) };
    }
    case FrameType.SetParticipants: {
      const channel = r.u16();
      const epoch = r.u16();
      const count = r.u8();
      if (count > MAX_PARTICIPANTS) {
        throw new DecodeError("TooLong", { what: "participant count", len: count, max: MAX_PARTICIPANTS });
      }
      // Each id takes at least its length byte.
      r.need(count);
      const participants: string[] = [];
      for (let i = 0; i < count; i++) participants.push(r.shortStr());
      return { type: "SetParticipants", channel, epoch, participants };
    }
    case FrameType.Data: {
      const flags = r.flags(FLAG_ORIGIN | FLAG_EPOCH);
      const channel = r.u16();
      const session = r.u32();
      const seq = r.u32();
      const origin = readOrigin(r, flags);
      const epoch = flags & FLAG_EPOCH ? { epoch: r.u16() } : {};
      const payload = r.take(r.len("payload length", MAX_PAYLOAD_LEN));
      return { type: "Data", channel, session, seq, ...origin, ...epoch, payload };
    }
    case FrameType.KeepAlive: {
      const flags = r.flags(FLAG_ORIGIN);
      const channel = r.u16();
      const session = r.u32();
      return { type: "KeepAlive", channel, session, ...readOrigin(r, flags) };
    }
    case FrameType.FlowControl: {
      const flags = r.flags(FLAG_PAUSED);
      const channel = r.u16();
      const session = r.u32();
      return { type: "FlowControl", channel, session, paused: (flags & FLAG_PAUSED) !== 0 };
    }
    case FrameType.Batch:
      throw new DecodeError("NestedBatch");
    default:
      throw new DecodeError("UnknownFrameType", { type });
  }
}

function readBatch(r: Reader): Batch {
  r.u8(); // 0x0f
  const count = r.varint();
  const max = Math.floor(r.remaining / MIN_FRAME_LEN);
  if (count > max) throw new DecodeError("TooLong", { what: "batch count", len: count, max });
  const frames: Frame[] = [];
  for (let i = 0; i < (count as number); i++) frames.push(readFrame(r));
  return { type: "Batch", frames };
}

function finish<T>(r: Reader, value: T): T {
  if (r.remaining !== 0) throw new DecodeError("TrailingBytes", { trailing: r.remaining });
  return value;
}

function asBytes(bytes: Uint8Array): Uint8Array {
  // Guard against callers passing something else from untyped code.
  if (!(bytes instanceof Uint8Array)) throw new TypeError("decode expects a Uint8Array");
  return bytes;
}

/**
 * Decodes one whole SCTP user message: a batch if the first byte is 0x0f,
 * otherwise one frame. Throws {@link DecodeError} on any bad input
 * (including trailing bytes). Byte-string fields (`token`, `payload`) are
 * views into `bytes`, not copies.
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const r = new Reader(asBytes(bytes));
  if (r.remaining > 0 && r.peek() === FrameType.Batch) return finish(r, readBatch(r));
  return finish(r, readFrame(r));
}

/**
 * Decodes exactly one frame (never a batch: 0x0f is `NestedBatch`). With
 * `expected`, a frame of another type is `WrongFrameType`.
 */
export function decodeFrame(bytes: Uint8Array, expected?: Frame["type"]): Frame {
  const r = new Reader(asBytes(bytes));
  if (expected !== undefined) {
    const want = FrameType[expected];
    const found = r.peek();
    if (found !== want) throw new DecodeError("WrongFrameType", { expected: want, type: found });
  }
  return finish(r, readFrame(r));
}

// ---- Encoding --------------------------------------------------------------

function checkUint(value: unknown, bits: 8 | 16 | 32, field: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0 || value >= 2 ** bits) {
    throw new EncodeError(`${field} must be an integer in 0..2^${bits}, got ${String(value)}`);
  }
  return value;
}

function isWellFormed(s: string): boolean {
  // Lone surrogates would silently become U+FFFD in UTF-8.
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}

function encodeShortStr(s: unknown, field: string): Uint8Array {
  if (typeof s !== "string") throw new EncodeError(`${field} must be a string`);
  if (!isWellFormed(s)) throw new EncodeError(`${field} has a lone surrogate`);
  const bytes = utf8Encoder.encode(s);
  if (bytes.length > MAX_STR_LEN) {
    throw new EncodeError(`${field} is ${bytes.length} bytes, more than ${MAX_STR_LEN}`);
  }
  return bytes;
}

function checkBytes(b: unknown, max: number, field: string): Uint8Array {
  if (!(b instanceof Uint8Array)) throw new EncodeError(`${field} must be a Uint8Array`);
  if (b.length > max) throw new EncodeError(`${field} is ${b.length} bytes, more than ${max}`);
  return b;
}

/** Bytes the minimal varint encoding of `value` takes (1, 2, 4 or 8). */
export function varintSize(value: number): number {
  if (value < 64) return 1;
  if (value < 16384) return 2;
  if (value < 2 ** 30) return 4;
  return 8;
}

class Writer {
  private buf: Uint8Array;
  private view: DataView;
  pos = 0;

  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  u8(v: number): void {
    this.reserve(1);
    this.view.setUint8(this.pos++, v);
  }

  u16(v: number): void {
    this.reserve(2);
    this.view.setUint16(this.pos, v);
    this.pos += 2;
  }

  u32(v: number): void {
    this.reserve(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
  }

  bytes(b: Uint8Array): void {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  varint(value: number): void {
    if (!Number.isSafeInteger(value) || value < 0) throw new EncodeError(`varint out of range: ${value}`);
    switch (varintSize(value)) {
      case 1:
        this.u8(value);
        break;
      case 2:
        this.u16(0x4000 | value);
        break;
      case 4:
        this.u32((0x80000000 | value) >>> 0);
        break;
      default:
        this.u32((0xc0000000 | Math.floor(value / 2 ** 32)) >>> 0);
        this.u32(value >>> 0);
    }
  }

  shortStr(s: unknown, field: string): void {
    const b = encodeShortStr(s, field);
    this.u8(b.length);
    this.bytes(b);
  }

  lenBytes(b: unknown, max: number, field: string): void {
    const bytes = checkBytes(b, max, field);
    this.varint(bytes.length);
    this.bytes(bytes);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

function originFlag(origin: number | undefined): number {
  return origin === undefined ? 0 : FLAG_ORIGIN;
}

function writeOrigin(w: Writer, origin: number | undefined): void {
  if (origin !== undefined) w.u32(checkUint(origin, 32, "origin"));
}

function writeFrame(w: Writer, f: Frame): void {
  switch (f.type) {
    case "Join":
      w.u8(FrameType.Join);
      w.u16(checkUint(f.version, 16, "version"));
      w.shortStr(f.callId, "callId");
      w.shortStr(f.participantId, "participantId");
      w.lenBytes(f.token, MAX_TOKEN_LEN, "token");
      return;
    case "JoinAccepted": {
      w.u8(FrameType.JoinAccepted);
      w.u16(checkUint(f.version, 16, "version"));
      const t = f.traffic;
      const fields: [number, string][] = [
        [f.member, "member"],
        [f.maxMessageSize, "maxMessageSize"],
        [f.idleTimeoutMs, "idleTimeoutMs"],
        [t.durableKbps, "traffic.durableKbps"],
        [t.lossyKbps, "traffic.lossyKbps"],
        [t.highLossyKbps, "traffic.highLossyKbps"],
        [t.broadcastPacketsPerSecond, "traffic.broadcastPacketsPerSecond"],
        [t.packetBytes, "traffic.packetBytes"],
        [t.burstMs, "traffic.burstMs"],
        [t.memberKbps, "traffic.memberKbps"],
        [t.memberMessagesPerSecond, "traffic.memberMessagesPerSecond"],
        [f.maxSenders, "maxSenders"],
      ];
      for (const [v, name] of fields) w.u32(checkUint(v, 32, name));
      return;
    }
    case "JoinRejected":
    case "Leave":
    case "Error":
      w.u8(FrameType[f.type]);
      w.u16(checkUint(f.code, 16, "code"));
      w.shortStr(f.reason, "reason");
      return;
    case "ParticipantJoined":
      w.u8(FrameType.ParticipantJoined);
      w.u32(checkUint(f.member, 32, "member"));
      w.shortStr(f.participantId, "participantId");
      return;
    case "ParticipantLeft":
      w.u8(FrameType.ParticipantLeft);
      w.u32(checkUint(f.member, 32, "member"));
      return;
    case "SenderOpened":
      w.u8(FrameType.SenderOpened);
      w.u8(originFlag(f.origin));
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u32(checkUint(f.session, 32, "session"));
      if (f.reliability !== "lossy" && f.reliability !== "durable") {
        throw new EncodeError(`reliability must be "lossy" or "durable"`);
      }
      if (f.priority !== "normal" && f.priority !== "high") {
        throw new EncodeError(`priority must be "normal" or "high"`);
      }
      w.u8(f.reliability === "durable" ? 1 : 0);
      w.u8(f.priority === "high" ? 1 : 0);
      w.u32(checkUint(f.bitrateKbps, 32, "bitrateKbps"));
      writeOrigin(w, f.origin);
      return;
    case "SenderClosed":
      w.u8(FrameType.SenderClosed);
      w.u8(originFlag(f.origin));
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u32(checkUint(f.session, 32, "session"));
      w.u8(checkUint(f.reason, 8, "reason"));
      writeOrigin(w, f.origin);
      return;
    case "SetParticipants": {
      w.u8(FrameType.SetParticipants);
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u16(checkUint(f.epoch, 16, "epoch"));
      const ids = f.participants;
      if (!Array.isArray(ids)) throw new EncodeError("participants must be an array");
      if (ids.length > MAX_PARTICIPANTS) {
        throw new EncodeError(`${ids.length} participants, more than ${MAX_PARTICIPANTS}`);
      }
      w.u8(ids.length);
      for (const id of ids) w.shortStr(id, "participant id");
      return;
    }
    case "Data":
      w.u8(FrameType.Data);
      w.u8(originFlag(f.origin) | (f.epoch === undefined ? 0 : FLAG_EPOCH));
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u32(checkUint(f.session, 32, "session"));
      w.u32(checkUint(f.seq, 32, "seq"));
      writeOrigin(w, f.origin);
      if (f.epoch !== undefined) w.u16(checkUint(f.epoch, 16, "epoch"));
      w.lenBytes(f.payload, MAX_PAYLOAD_LEN, "payload");
      return;
    case "KeepAlive":
      w.u8(FrameType.KeepAlive);
      w.u8(originFlag(f.origin));
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u32(checkUint(f.session, 32, "session"));
      writeOrigin(w, f.origin);
      return;
    case "FlowControl":
      w.u8(FrameType.FlowControl);
      w.u8(f.paused ? FLAG_PAUSED : 0);
      w.u16(checkUint(f.channel, 16, "channel"));
      w.u32(checkUint(f.session, 32, "session"));
      return;
    default: {
      const unknown: { type?: unknown } = f;
      throw new EncodeError(`cannot encode a frame of type ${String(unknown.type)}`);
    }
  }
}

/** Encodes one frame (not a batch). Throws {@link EncodeError} on a value out of range. */
export function encodeFrame(frame: Frame): Uint8Array {
  if ((frame as Message).type === "Batch") throw new EncodeError("encodeFrame: a batch is not a frame");
  const w = new Writer();
  writeFrame(w, frame);
  return w.finish();
}

/**
 * Encodes one message (a frame, or a batch of frames) into a new, exactly
 * sized `Uint8Array`. Throws {@link EncodeError} on a value out of range.
 */
export function encodeMessage(msg: Message): Uint8Array {
  const w = new Writer();
  if (msg.type === "Batch") {
    if (!Array.isArray(msg.frames)) throw new EncodeError("batch frames must be an array");
    w.u8(FrameType.Batch);
    w.varint(msg.frames.length);
    for (const f of msg.frames) {
      if ((f as Message).type === "Batch") throw new EncodeError("a batch cannot contain a batch");
      writeFrame(w, f);
    }
  } else {
    writeFrame(w, msg);
  }
  return w.finish();
}

/** The frames of a message, in order. */
export function framesOf(msg: Message): Frame[] {
  return msg.type === "Batch" ? msg.frames : [msg];
}

/** Encodes a varint (minimal; `value` a safe integer ≥ 0). */
export function encodeVarint(value: number): Uint8Array {
  const w = new Writer(8);
  w.varint(value);
  return w.finish();
}

/**
 * Decodes one varint that spans the whole of `bytes`: a number, or a bigint
 * for values above 2^53 − 1. Throws {@link DecodeError}.
 */
export function decodeVarint(bytes: Uint8Array): number | bigint {
  const r = new Reader(asBytes(bytes));
  return finish(r, r.varint());
}
