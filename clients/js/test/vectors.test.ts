// The shared codec vectors: rust.json and invalid.json are written by the
// Rust test tests/js_vectors.rs; ts.json by `npm run vectors` (and decoded
// and re-encoded by the same Rust test).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { DecodeError, decodeMessage, encodeMessage } from "../src/wire.js";
import { fromHex, messageFromJson, messageToJson, toHex, type InvalidVector, type Vector } from "./json.js";
import { tsVectors } from "./ts-vectors.js";

function load<T>(file: string): T[] {
  const text = readFileSync(new URL(`../../test/vectors/${file}`, import.meta.url), "utf8");
  const v = JSON.parse(text) as T[];
  assert.ok(Array.isArray(v) && v.length > 0, `${file} holds no vectors`);
  return v;
}

function checkValid(v: Vector): void {
  const bytes = fromHex(v.hex);
  const decoded = decodeMessage(bytes);
  assert.deepEqual(messageToJson(decoded), { batch: v.batch, frames: v.frames }, `${v.name}: decoded`);
  assert.equal(toHex(encodeMessage(decoded)), v.hex, `${v.name}: re-encoded`);
  assert.equal(toHex(encodeMessage(messageFromJson(v))), v.hex, `${v.name}: encoded from its description`);
  // Every strict prefix is rejected with UnexpectedEnd, or for a batch
  // TooLong("batch count") (docs/protocol.md section 3).
  for (let cut = 0; cut < bytes.length && cut < 600; cut++) {
    assert.throws(
      () => decodeMessage(bytes.subarray(0, cut)),
      (e: unknown) =>
        e instanceof DecodeError &&
        (e.kind === "UnexpectedEnd" || (v.batch && e.kind === "TooLong" && e.details.what === "batch count")),
      `${v.name}: prefix ${cut}`,
    );
  }
  // One byte more is TrailingBytes(1).
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.throws(
    () => decodeMessage(longer),
    (e: unknown) => e instanceof DecodeError && e.kind === "TrailingBytes" && e.details.trailing === 1,
    `${v.name}: trailing byte`,
  );
}

test("every rust.json vector decodes to its description and re-encodes byte for byte", () => {
  const vectors = load<Vector>("rust.json");
  const types = new Set<string>();
  for (const v of vectors) {
    checkValid(v);
    for (const f of v.frames) types.add(f.type);
    if (v.batch) types.add("Batch");
  }
  assert.equal(types.size, 14, `frame types covered: ${[...types].join(", ")}`);
});

test("every invalid.json case is rejected with its DecodeError kind and details", () => {
  const cases = load<InvalidVector>("invalid.json");
  for (const c of cases) {
    let thrown: unknown;
    try {
      decodeMessage(fromHex(c.hex));
    } catch (e) {
      thrown = e;
    }
    assert.ok(thrown instanceof DecodeError, `${c.name}: threw ${String(thrown)} instead of a DecodeError`);
    assert.equal(thrown.kind, c.kind, `${c.name}: kind (${thrown.message})`);
    // Every detail the Rust decoder reported, the same (`len` as a decimal string).
    const details: Record<string, unknown> = { ...thrown.details };
    if (details["len"] !== undefined) details["len"] = String(details["len"]);
    for (const key of ["what", "len", "max", "value", "bits", "type", "expected", "trailing"] as const) {
      assert.equal(details[key], c[key], `${c.name}: ${key} (${thrown.message})`);
    }
  }
});

test("ts.json is what `npm run vectors` writes, and each vector is valid", () => {
  const onDisk = load<Vector>("ts.json");
  const built = tsVectors();
  assert.deepEqual(onDisk, built, "ts.json is stale: run `npm run vectors` and commit it");
  for (const v of onDisk) checkValid(v);
});
