// The client black-box against a real `dcengine serve` over loopback UDP
// (ICE-lite, DTLS, SCTP), with node-datachannel (libdatachannel: usrsctp,
// OpenSSL, libjuice — a WebRTC stack nobody here wrote) as the
// RTCPeerConnection. Every wait is bounded; nothing asserts on timing.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import {
  DataChannelError,
  Features,
  JoinError,
  UNLIMITED_TRAFFIC_POLICY,
  type Call,
  type DataChannelReceiver,
} from "../src/index.js";
import { Server, until } from "./server.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Everything one participant receives: its receivers, and their messages as text. */
class Inbox {
  receivers: DataChannelReceiver[] = [];
  messages = new Map<DataChannelReceiver, { seq: number; text: string }[]>();

  constructor(call: Call) {
    call.feature(Features.DataChannel).on("dataChannelReceiverCreated", (r) => {
      this.receivers.push(r);
      const got: { seq: number; text: string }[] = [];
      this.messages.set(r, got);
      r.on("messageReady", () => {
        for (let m = r.readMessage(); m !== undefined; m = r.readMessage()) {
          got.push({ seq: m.sequenceNumber, text: dec.decode(m.data) });
        }
      });
    });
  }

  /** The receivers of `channel` from `from`, oldest first. */
  of(channel: number, from: string): DataChannelReceiver[] {
    return this.receivers.filter(
      (r) => r.channelId === channel && r.senderParticipantIdentifier.communicationUserId === from,
    );
  }

  /** The texts `channel` from `from` delivered, over all its sessions. */
  texts(channel: number, from: string): string[] {
    return this.of(channel, from).flatMap((r) => (this.messages.get(r) ?? []).map((m) => m.text));
  }

  /** The sequence numbers of one receiver. */
  seqs(r: DataChannelReceiver | undefined): number[] {
    return r === undefined ? [] : (this.messages.get(r) ?? []).map((m) => m.seq);
  }
}

let server: Server;

before(async () => {
  server = await Server.start();
});

after(async () => {
  await server.stop();
});

test("three participants: the roster, broadcast with sequence numbers, targeted senders and setParticipants", async () => {
  const alice = await server.join("roster", "alice");
  const bob = await server.join("roster", "bob");
  const carol = await server.join("roster", "carol");
  try {
    assert.deepEqual(
      carol.remoteParticipants.map((p) => p.identifier.communicationUserId).sort(),
      ["alice", "bob"],
    );
    await until("alice to see bob and carol", () => alice.remoteParticipants.length === 2);
    const inBob = new Inbox(bob);
    const inCarol = new Inbox(carol);
    const dc = alice.feature(Features.DataChannel);

    const chat = dc.createDataChannelSender({ channelId: 10000 });
    for (let i = 1; i <= 20; i++) await chat.sendMessage(enc.encode(`all ${i}`));
    const whisper = dc.createDataChannelSender({ channelId: 11, participants: [{ communicationUserId: "bob" }] });
    await whisper.sendMessage(enc.encode("for bob"));
    await until("the broadcast at bob and carol", () =>
      inBob.texts(10000, "alice").length === 20 && inCarol.texts(10000, "alice").length === 20,
    );
    const want = Array.from({ length: 20 }, (_, i) => `all ${i + 1}`);
    assert.deepEqual(inBob.texts(10000, "alice"), want);
    assert.deepEqual(inCarol.texts(10000, "alice"), want);
    assert.deepEqual(inBob.seqs(inBob.of(10000, "alice")[0]), want.map((_, i) => i + 1));

    await until("the whisper at bob", () => inBob.texts(11, "alice").length === 1);
    whisper.setParticipants(["carol"]);
    await whisper.sendMessage(enc.encode("for carol"));
    await until("the second whisper at carol", () => inCarol.texts(11, "alice").length === 1);
    // A Durable barrier after it on the same ordered channel: once carol has
    // it, anything routed to bob would have arrived too.
    await chat.sendMessage(enc.encode("barrier"));
    await until("the barrier", () => inBob.texts(10000, "alice").length === 21);
    assert.deepEqual(inBob.texts(11, "alice"), ["for bob"]);
    assert.deepEqual(inCarol.texts(11, "alice"), ["for carol"]);
    // The session's sequence numbers go on across list changes.
    assert.deepEqual(inCarol.seqs(inCarol.of(11, "alice")[0]), [2]);
  } finally {
    await Promise.all([alice.leave(), bob.leave(), carol.leave()]);
  }
});

test("a new sender on a channel id closes the old receiver (replaced); closing a sender closes its receivers", async () => {
  const alice = await server.join("sessions", "alice");
  const bob = await server.join("sessions", "bob");
  try {
    const inBob = new Inbox(bob);
    const dc = alice.feature(Features.DataChannel);
    const first = dc.createDataChannelSender({ channelId: 20 });
    await first.sendMessage(enc.encode("one"));
    await until("the first session", () => inBob.texts(20, "alice").length === 1);
    const second = dc.createDataChannelSender({ channelId: 20 });
    assert.equal(first.closeReason, "replaced");
    await assert.rejects(first.sendMessage(enc.encode("late")), (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelSenderClosed");
    await second.sendMessage(enc.encode("two"));
    await until("the second session", () => inBob.of(20, "alice").length === 2 && inBob.texts(20, "alice").length === 2);
    const [old, neu] = inBob.of(20, "alice");
    await until("the old receiver to close", () => old!.closed);
    assert.equal(old!.closeReason, "replaced");
    assert.deepEqual(inBob.seqs(neu), [1]);
    second.close();
    await until("the new receiver to close", () => neu!.closed);
    assert.equal(neu!.closeReason, "senderClosed");
  } finally {
    await Promise.all([alice.leave(), bob.leave()]);
  }
});

test("errors from the browser's side: MessageSizeOverLimit, MessageFailureForTrafficLimit, a refused token", async () => {
  const alice = await server.join("errors", "alice");
  try {
    const dc = alice.feature(Features.DataChannel);
    const s = dc.createDataChannelSender({ channelId: 30, participants: ["nobody"] });
    assert.equal(s.maxMessageSizeInBytes, 32 * 1024);
    await assert.rejects(
      s.sendMessage(new Uint8Array(32 * 1024 + 1)),
      (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelMessageSizeOverLimit",
    );
    // Durable: 64 kbps, a bucket of one 32 KiB message.
    await s.sendMessage(new Uint8Array(32 * 1024));
    await assert.rejects(
      s.sendMessage(new Uint8Array(1024)),
      (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelMessageFailureForTrafficLimit",
    );
  } finally {
    await alice.leave();
  }
  await assert.rejects(
    server.join("errors", "mallory", { token: server.token("errors", "someone-else") }),
    (e: unknown) => e instanceof JoinError && e.reason === "unauthorized" && e.status === 401,
  );
});

test("Lossy High cursors at 30 Hz arrive, each once, numbered", async () => {
  const alice = await server.join("cursors", "alice");
  const bob = await server.join("cursors", "bob");
  try {
    const inBob = new Inbox(bob);
    const cursor = alice.feature(Features.DataChannel).createDataChannelSender({
      channelId: 40,
      reliability: "lossy",
      priority: "high",
    });
    for (let i = 1; i <= 30; i++) {
      await cursor.sendMessage(enc.encode(JSON.stringify({ x: i, y: 2 * i })));
      await new Promise((r) => setTimeout(r, 33));
    }
    // Lossy may drop; on loopback nearly all arrive. A Durable barrier on
    // another channel marks the end.
    const barrier = alice.feature(Features.DataChannel).createDataChannelSender({ channelId: 41 });
    await barrier.sendMessage(enc.encode("end"));
    await until("the barrier", () => inBob.texts(41, "alice").length === 1);
    await until("most cursors", () => inBob.texts(40, "alice").length >= 20);
    const r = inBob.of(40, "alice")[0]!;
    assert.equal(r.reliability, "lossy");
    assert.equal(r.priority, "high");
    const seqs = inBob.seqs(r);
    assert.equal(new Set(seqs).size, seqs.length, "no message twice");
    assert.ok(seqs.every((s) => s >= 1 && s <= 30));
  } finally {
    await Promise.all([alice.leave(), bob.leave()]);
  }
});

test("leaving right after 1,800 accepted Durable messages delivers every one, in order, before the Leave", async () => {
  const fast = await Server.start([
    "--durable-kbps", "0", "--lossy-kbps", "0", "--high-lossy-kbps", "0",
    "--broadcast-pps", "0", "--member-kbps", "0", "--member-mps", "0",
  ]);
  try {
    const config = { traffic: UNLIMITED_TRAFFIC_POLICY };
    const alice = await fast.join("flush", "alice", { config });
    const bob = await fast.join("flush", "bob", { config });
    const inBob = new Inbox(bob);
    const s = alice.feature(Features.DataChannel).createDataChannelSender({ channelId: 50 });
    // 1,800 messages of 1 KB: accepted at once, far faster than they go.
    // (Under the server's pause overrun, 2 MiB: a WebRTC stack's SCTP send
    // buffer holds megabytes the client cannot see, so a paused sender that
    // accepted more can be closed by the server for what was already on its
    // way; see clients/js/README.md, "Flow control".)
    const n = 1800;
    const pad = "x".repeat(1000);
    for (let i = 1; i <= n; i++) await s.sendMessage(enc.encode(`${i} ${pad}`));
    await alice.leave();
    assert.equal(alice.state, "disconnected");
    assert.equal(alice.endReason, "left the call");
    await until("every message at bob", () => inBob.texts(50, "alice").length === n, 60_000);
    const texts = inBob.texts(50, "alice");
    texts.forEach((t, i) => assert.equal(t.split(" ")[0], String(i + 1)));
    const r = inBob.of(50, "alice")[0]!;
    await until("the receiver to close as its sender left", () => r.closed);
    assert.equal(r.closeReason, "senderLeft");
    await bob.leave();
  } finally {
    await fast.stop();
  }
});

test("a participant leaving is seen by the others; the server stopping ends the call", async () => {
  const solo = await Server.start();
  try {
    const alice = await solo.join("bye", "alice");
    const bob = await solo.join("bye", "bob");
    const removed: string[] = [];
    bob.on("remoteParticipantsUpdated", ({ removed: r }) => removed.push(...r.map((p) => p.identifier.communicationUserId)));
    await alice.leave();
    await until("bob to see alice leave", () => removed.includes("alice"));
    let ended = false;
    bob.on("stateChanged", () => (ended = bob.state === "disconnected"));
    await solo.stop();
    await until("bob's call to end", () => ended);
    assert.ok(bob.endReason !== undefined);
  } finally {
    await solo.stop();
  }
});
