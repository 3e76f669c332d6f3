// The vector files' JSON shape (see README.md), and conversions between it
// and the codec's typed messages.
import type { Frame, Message } from "../src/wire.js";

/** A frame as JSON: the typed frame with `token` / `payload` as lowercase hex. */
export type FrameJson = Record<string, unknown> & { type: string };

/** One entry of `rust.json` / `ts.json`. */
export interface Vector {
  name: string;
  /** The encoded message, lowercase hex. */
  hex: string;
  /** true: the message is a Batch holding `frames`; false: `frames` is exactly one frame. */
  batch: boolean;
  frames: FrameJson[];
}

/** One entry of `invalid.json`. */
export interface InvalidVector {
  name: string;
  hex: string;
  /** The DecodeError kind (docs/protocol.md section 3). */
  kind: string;
  /** TooLong, InvalidValue: the field the document names. */
  what?: string;
  /** TooLong: the length or count on the wire, as a decimal string (it may exceed 2^53). */
  len?: string;
  /** TooLong: the limit. */
  max?: number;
  /** InvalidValue: the value on the wire. */
  value?: number;
  /** ReservedFlags: the reserved bits that were set. */
  bits?: number;
  /** UnknownFrameType, WrongFrameType: the type byte found. */
  type?: number;
  /** WrongFrameType: the type asked for. */
  expected?: number;
  /** TrailingBytes: how many bytes were left over. */
  trailing?: number;
}

export function toHex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(s: string): Uint8Array {
  if (s.length % 2 !== 0 || /[^0-9a-f]/.test(s)) throw new Error(`bad hex: ${s.slice(0, 40)}`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function frameToJson(f: Frame): FrameJson {
  const out: FrameJson = { ...f };
  if (f.type === "Join") out["token"] = toHex(f.token);
  if (f.type === "Data") out["payload"] = toHex(f.payload);
  if (f.type === "SetParticipants") out["participants"] = [...f.participants];
  if (f.type === "JoinAccepted") out["traffic"] = { ...f.traffic };
  return out;
}

export function frameFromJson(j: FrameJson): Frame {
  const f: Record<string, unknown> = { ...j };
  if (j.type === "Join") f["token"] = fromHex(j["token"] as string);
  if (j.type === "Data") f["payload"] = fromHex(j["payload"] as string);
  return f as unknown as Frame;
}

export function messageToJson(m: Message): { batch: boolean; frames: FrameJson[] } {
  return m.type === "Batch"
    ? { batch: true, frames: m.frames.map(frameToJson) }
    : { batch: false, frames: [frameToJson(m)] };
}

export function messageFromJson(v: { batch: boolean; frames: FrameJson[] }): Message {
  if (v.batch) return { type: "Batch", frames: v.frames.map(frameFromJson) };
  if (v.frames.length !== 1) throw new Error("a non-batch vector holds exactly one frame");
  return frameFromJson(v.frames[0] as FrameJson);
}
