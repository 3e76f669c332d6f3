// The TypeScript side's own vector set (written to test/vectors/ts.json by
// `npm run vectors`; the Rust test tests/js_vectors.rs decodes and re-encodes
// every one). Deterministic: no randomness, no clock.
import type { Data, Frame, Message } from "../src/wire.js";
import { ASSOCIATION_KEEPALIVE, CloseReason, ErrorCode, MAX_PARTICIPANTS, MAX_TOKEN_LEN, PROTOCOL_VERSION } from "../src/wire.js";
import { messageToJson, toHex, type Vector } from "./json.js";
import { encodeMessage } from "../src/wire.js";

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const U32_MAX = 0xffffffff;
const U16_MAX = 0xffff;

export function tsMessages(): [string, Message][] {
  const v: [string, Message][] = [];
  v.push(["ts join", { type: "Join", version: PROTOCOL_VERSION, callId: "room-7", participantId: "8:acs:zoë", token: bytes(45, 1) }]);
  v.push(["ts join empty", { type: "Join", version: 0, callId: "", participantId: "", token: new Uint8Array(0) }]);
  v.push(["ts join max token, 255-byte ids", { type: "Join", version: U16_MAX, callId: "c".repeat(255), participantId: "€".repeat(85), token: bytes(MAX_TOKEN_LEN, 2) }]);
  v.push(["ts join token 64 bytes (2-byte varint)", { type: "Join", version: 4, callId: "a", participantId: "b", token: bytes(64, 3) }]);
  v.push(["ts join accepted", {
    type: "JoinAccepted", version: 4, member: 3, maxMessageSize: 65536, idleTimeoutMs: 30000,
    traffic: { durableKbps: 1, lossyKbps: 2, highLossyKbps: 3, broadcastPacketsPerSecond: 4, packetBytes: 5, burstMs: 6, memberKbps: 7, memberMessagesPerSecond: 8 },
    maxSenders: 9,
  }]);
  v.push(["ts join accepted max", {
    type: "JoinAccepted", version: U16_MAX, member: U32_MAX, maxMessageSize: U32_MAX, idleTimeoutMs: U32_MAX,
    traffic: { durableKbps: U32_MAX, lossyKbps: U32_MAX, highLossyKbps: U32_MAX, broadcastPacketsPerSecond: U32_MAX, packetBytes: U32_MAX, burstMs: U32_MAX, memberKbps: U32_MAX, memberMessagesPerSecond: U32_MAX },
    maxSenders: U32_MAX,
  }]);
  v.push(["ts join rejected", { type: "JoinRejected", code: ErrorCode.CALL_FULL, reason: "call is full" }]);
  v.push(["ts join rejected unknown code", { type: "JoinRejected", code: U16_MAX, reason: "x".repeat(255) }]);
  v.push(["ts leave", { type: "Leave", code: ErrorCode.NONE, reason: "" }]);
  v.push(["ts participant joined", { type: "ParticipantJoined", member: 0, participantId: "日本語" }]);
  v.push(["ts participant left", { type: "ParticipantLeft", member: U32_MAX }]);
  for (const reliability of ["lossy", "durable"] as const) {
    for (const priority of ["normal", "high"] as const) {
      for (const origin of [undefined, 0x01020304]) {
        const f: Frame = { type: "SenderOpened", channel: 500, session: 77, reliability, priority, bitrateKbps: 128, ...(origin === undefined ? {} : { origin }) };
        v.push([`ts sender opened ${reliability} ${priority}${origin === undefined ? "" : " origin"}`, f]);
      }
    }
  }
  v.push(["ts sender closed", { type: "SenderClosed", channel: 1, session: 2, reason: CloseReason.CLOSED }]);
  v.push(["ts sender closed origin overflow", { type: "SenderClosed", channel: U16_MAX, session: U32_MAX, reason: CloseReason.RECEIVER_OVERFLOW, origin: 42 }]);
  v.push(["ts sender closed unknown reason", { type: "SenderClosed", channel: 9, session: 9, reason: 255 }]);
  v.push(["ts set participants broadcast", { type: "SetParticipants", channel: 3, epoch: 0, participants: [] }]);
  v.push(["ts set participants", { type: "SetParticipants", channel: 3, epoch: U16_MAX, participants: ["alice", "", "alice", "\u{1F600}"] }]);
  v.push(["ts set participants 64", { type: "SetParticipants", channel: 4, epoch: 1, participants: Array.from({ length: MAX_PARTICIPANTS }, (_, i) => `p${i}`) }]);
  for (const origin of [undefined, 7]) {
    for (const epoch of [undefined, 0x1234]) {
      const d: Data = { type: "Data", channel: 10, session: 20, seq: 30, ...(origin === undefined ? {} : { origin }), ...(epoch === undefined ? {} : { epoch }), payload: bytes(5, 4) };
      v.push([`ts data${origin === undefined ? "" : " origin"}${epoch === undefined ? "" : " epoch"}`, d]);
    }
  }
  v.push(["ts data empty payload", { type: "Data", channel: 0, session: 0, seq: 0, payload: new Uint8Array(0) }]);
  v.push(["ts data 16384-byte payload (4-byte varint)", { type: "Data", channel: 1, session: 1, seq: U32_MAX, epoch: 0, payload: bytes(16384, 5) }]);
  v.push(["ts error", { type: "Error", code: ErrorCode.PROTOCOL_VIOLATION, reason: "undecodable message: unknown frame type 0x7f" }]);
  v.push(["ts keepalive association", { ...ASSOCIATION_KEEPALIVE }]);
  v.push(["ts keepalive origin", { type: "KeepAlive", channel: 12, session: 13, origin: 14 }]);
  v.push(["ts flow control paused", { type: "FlowControl", channel: 5, session: 6, paused: true }]);
  v.push(["ts flow control resumed", { type: "FlowControl", channel: 5, session: 6, paused: false }]);
  v.push(["ts batch empty", { type: "Batch", frames: [] }]);
  const all = v.filter(([, m]) => m.type !== "Batch" && !(m.type === "Data" && m.payload.length > 1000) && !(m.type === "Join" && m.token.length > 1000)).map(([, m]) => m as Frame);
  v.push(["ts batch of every small frame", { type: "Batch", frames: all }]);
  v.push(["ts batch of 64 shortest frames (2-byte count)", { type: "Batch", frames: Array.from({ length: 64 }, (): Frame => ({ type: "Error", code: 0, reason: "" })) }]);
  return v;
}

export function tsVectors(): Vector[] {
  return tsMessages().map(([name, m]) => ({ name, hex: toHex(encodeMessage(m)), ...messageToJson(m) }));
}
