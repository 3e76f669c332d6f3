// Unit tests of the codec beyond the shared vectors: the document's own
// examples, limits at and over the edge, and the decoder's robustness.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  ASSOCIATION_KEEPALIVE,
  DecodeError,
  EncodeError,
  MAX_PAYLOAD_LEN,
  decodeFrame,
  decodeMessage,
  decodeVarint,
  encodeFrame,
  encodeMessage,
  encodeVarint,
  type Data,
  type Message,
} from "../src/wire.js";
import { fromHex, toHex } from "./json.js";

function kindOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof DecodeError) return e.kind;
    throw e;
  }
  return "ok";
}

test("varints: the document's examples and boundaries", () => {
  assert.equal(toHex(encodeVarint(37)), "25");
  assert.equal(toHex(encodeVarint(15293)), "7bbd");
  assert.equal(decodeVarint(fromHex("7bbd")), 15293);
  assert.equal(decodeVarint(fromHex("9d7f3e7d")), 494878333);
  assert.equal(decodeVarint(fromHex("c2197c5eff14e88c")), 151288809941952652n);
  assert.equal(decodeVarint(fromHex("ffffffffffffffff")), 2n ** 62n - 1n);
  assert.equal(kindOf(() => decodeVarint(fromHex("4025"))), "NonMinimalVarint");
  assert.equal(kindOf(() => decodeVarint(fromHex("800000"))), "UnexpectedEnd");
  for (const v of [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, Number.MAX_SAFE_INTEGER]) {
    const b = encodeVarint(v);
    assert.equal(b.length, v < 64 ? 1 : v < 16384 ? 2 : v < 2 ** 30 ? 4 : 8);
    assert.equal(decodeVarint(b), v);
  }
});

test("the document's Data example", () => {
  const d: Data = { type: "Data", channel: 0x1234, session: 0x01020304, seq: 0x0a0b0c0d, origin: 0x11223344, epoch: 0x5566, payload: new TextEncoder().encode("hi") };
  assert.equal(toHex(encodeMessage(d)), "0a03123401020304" + "0a0b0c0d" + "11223344" + "5566" + "026869");
  assert.equal(toHex(encodeMessage(ASSOCIATION_KEEPALIVE)), "0c00000000000000");
  assert.equal(toHex(encodeMessage({ type: "Batch", frames: [] })), "0f00");
});

test("a maximum-size payload round-trips; one byte more is refused both ways", () => {
  const payload = new Uint8Array(MAX_PAYLOAD_LEN).fill(0xa5);
  const d: Data = { type: "Data", channel: 1, session: 2, seq: 3, payload };
  const bytes = encodeMessage(d);
  assert.equal(bytes.length, 12 + 4 + MAX_PAYLOAD_LEN);
  const back = decodeMessage(bytes) as Data;
  assert.equal(back.payload.length, MAX_PAYLOAD_LEN);
  assert.equal(back.payload.buffer, bytes.buffer, "payload is a view, not a copy");
  assert.throws(() => encodeMessage({ ...d, payload: new Uint8Array(MAX_PAYLOAD_LEN + 1) }), EncodeError);
});

test("the encoder refuses what it cannot encode", () => {
  const bad: unknown[] = [
    { type: "Leave", code: 0, reason: "x".repeat(256) },
    { type: "Leave", code: 65536, reason: "" },
    { type: "Leave", code: -1, reason: "" },
    { type: "Leave", code: 1.5, reason: "" },
    { type: "Leave", code: 0, reason: "\uD800" },
    { type: "ParticipantLeft", member: 2 ** 32 },
    { type: "SetParticipants", channel: 1, epoch: 0, participants: Array.from({ length: 65 }, () => "") },
    { type: "Join", version: 4, callId: "", participantId: "", token: new Uint8Array(4097) },
    { type: "SenderOpened", channel: 1, session: 1, reliability: "sometimes", priority: "high", bitrateKbps: 0 },
    { type: "Batch", frames: [{ type: "Batch", frames: [] }] },
    { type: "Nope" },
  ];
  for (const m of bad) assert.throws(() => encodeMessage(m as Message), EncodeError, JSON.stringify(m).slice(0, 80));
  // 255 bytes of UTF-8 is fine; 256 (with a 3-byte character) is not.
  encodeMessage({ type: "Leave", code: 0, reason: "€".repeat(85) });
  assert.throws(() => encodeMessage({ type: "Leave", code: 0, reason: "€".repeat(85) + "x" }), EncodeError);
});

test("decodeFrame: single frames only, WrongFrameType when asked for another", () => {
  const ka = encodeFrame(ASSOCIATION_KEEPALIVE);
  assert.deepEqual(decodeFrame(ka, "KeepAlive"), { type: "KeepAlive", channel: 0, session: 0 });
  assert.equal(kindOf(() => decodeFrame(ka, "Data")), "WrongFrameType");
  assert.equal(kindOf(() => decodeFrame(fromHex("0f00"))), "NestedBatch");
  assert.equal(kindOf(() => decodeFrame(new Uint8Array(0))), "UnexpectedEnd");
});

test("strings keep a BOM and any code point; invalid UTF-8 is InvalidUtf8", () => {
  const m = decodeMessage(fromHex("0b0000" + "07efbbbf" + "f09f9880")) as { reason: string };
  assert.equal(m.reason, "\uFEFF\u{1F600}");
  assert.equal(kindOf(() => decodeMessage(fromHex("0b000002c0af"))), "InvalidUtf8");
});

test("arbitrary and mutated bytes throw nothing but DecodeError, and what decodes re-encodes identically", () => {
  let x = 12345;
  const rnd = (n: number) => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return (x >>> 8) % n;
  };
  const seeds = [
    "0a03123401020304" + "0a0b0c0d11223344556602" + "6869",
    "0f020c00000000000000" + "0b0000056572726f72",
    "070100010000000101000000201122334",
    "0900010000020005616c696365",
  ].map((h) => fromHex(h.length % 2 ? h + "0" : h));
  let decoded = 0;
  for (let i = 0; i < 20000; i++) {
    let input: Uint8Array;
    if (i % 2 === 0) {
      input = new Uint8Array(rnd(40));
      for (let j = 0; j < input.length; j++) input[j] = rnd(16) < 8 ? rnd(16) : rnd(256);
    } else {
      const seed = seeds[rnd(seeds.length)] as Uint8Array;
      input = seed.slice(0, rnd(seed.length + 1) + 1);
      for (let k = rnd(3); k >= 0 && input.length > 0; k--) input[rnd(input.length)] = rnd(256);
    }
    try {
      const m = decodeMessage(input);
      decoded++;
      assert.equal(toHex(encodeMessage(m)), toHex(input), "canonical");
    } catch (e) {
      if (!(e instanceof DecodeError)) throw e;
    }
  }
  assert.ok(decoded > 0, "some inputs decode");
});
