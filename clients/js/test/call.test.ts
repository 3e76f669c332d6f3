// The client's core (src/call.ts) driven deterministically: a fake
// transport records what it sends, a fake clock moves time, and frames from
// "the server" are encoded with the codec.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Call,
  DEFAULT_CLIENT_CONFIG,
  Features,
  RELIABLE_HIGH_WATER,
  type ClientConfig,
  type DataChannelReceiver,
  type Lane,
} from "../src/call.js";
import { DataChannelError } from "../src/errors.js";
import { UNLIMITED_TRAFFIC_POLICY } from "../src/traffic.js";
import { decodeMessage, encodeMessage, framesOf, type Frame, type JoinAccepted } from "../src/wire.js";

const ACCEPTED: JoinAccepted = {
  type: "JoinAccepted",
  version: 4,
  member: 1,
  maxMessageSize: 32 * 1024,
  idleTimeoutMs: 120_000,
  traffic: {
    durableKbps: 64,
    lossyKbps: 512,
    highLossyKbps: 200,
    broadcastPacketsPerSecond: 80,
    packetBytes: 1200,
    burstMs: 1000,
    memberKbps: 2048,
    memberMessagesPerSecond: 2000,
  },
  maxSenders: 64,
};

const NO_RULES = {
  ...ACCEPTED.traffic,
  durableKbps: 0,
  lossyKbps: 0,
  highLossyKbps: 0,
  broadcastPacketsPerSecond: 0,
  memberKbps: 0,
  memberMessagesPerSecond: 0,
};

/** The client's own rules off: only the server's apply. */
const FREE: Partial<ClientConfig> = { traffic: UNLIMITED_TRAFFIC_POLICY };

class World {
  sent: { lane: Lane; frame: Frame }[] = [];
  buffered = { reliable: 0, lossy: 0 };
  t = 1000;
  call: Call;

  constructor(accepted: Partial<JoinAccepted> = {}, config: Partial<ClientConfig> = {}) {
    const transport = {
      send: (lane: Lane, bytes: Uint8Array) => {
        for (const frame of framesOf(decodeMessage(bytes))) this.sent.push({ lane, frame });
      },
      buffered: (lane: Lane) => this.buffered[lane],
    };
    this.call = new Call(
      transport,
      "c",
      "me",
      { ...ACCEPTED, ...accepted },
      { ...DEFAULT_CLIENT_CONFIG, ...config },
      () => this.t,
    );
  }

  get dc() {
    return this.call.feature(Features.DataChannel);
  }

  /** Frames from the server. */
  deliver(...frames: Frame[]): void {
    const msg = frames.length === 1 ? frames[0]! : { type: "Batch" as const, frames };
    this.call.handleMessage(encodeMessage(msg));
  }

  take(): { lane: Lane; frame: Frame }[] {
    const s = this.sent;
    this.sent = [];
    return s;
  }

  types(): string[] {
    return this.take().map((s) => s.frame.type);
  }
}

const bytes = (n: number, fill = 7) => new Uint8Array(n).fill(fill);

async function rejects(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof DataChannelError && e.code === code);
}

test("a Durable sender opens, sends numbered Data in order on the reliable lane, and closes", async () => {
  const w = new World();
  const s = w.dc.createDataChannelSender({ channelId: 10000 });
  await s.sendMessage(bytes(3));
  await s.sendMessage(bytes(4));
  s.close();
  const out = w.take();
  assert.deepEqual(
    out.map((o) => [o.lane, o.frame.type]),
    [
      ["reliable", "SenderOpened"],
      ["reliable", "Data"],
      ["reliable", "Data"],
      ["reliable", "SenderClosed"],
    ],
  );
  const [open, d1, d2] = out.map((o) => o.frame);
  assert.ok(open?.type === "SenderOpened" && open.reliability === "durable" && open.channel === 10000);
  assert.ok(d1?.type === "Data" && d1.seq === 1 && d1.epoch === undefined && d1.session === open.session);
  assert.ok(d2?.type === "Data" && d2.seq === 2);
  await rejects(s.sendMessage(bytes(1)), "DataChannelSenderClosed");
  assert.equal(s.closeReason, "closed");
});

test("a Lossy sender's first message goes ordered behind its SenderOpened, the rest on the Lossy lane with the epoch", async () => {
  const w = new World();
  const s = w.dc.createDataChannelSender({ channelId: 5, reliability: "lossy", participants: ["bob"] });
  await s.sendMessage(bytes(1));
  await s.sendMessage(bytes(1));
  s.setParticipants([{ communicationUserId: "carol" }]);
  await s.sendMessage(bytes(1));
  const out = w.take();
  assert.deepEqual(
    out.map((o) => [o.lane, o.frame.type, o.frame.type === "Data" ? o.frame.epoch : o.frame.type === "SetParticipants" ? o.frame.epoch : -1]),
    [
      ["reliable", "SenderOpened", -1],
      ["reliable", "SetParticipants", 1],
      ["reliable", "Data", 1],
      ["lossy", "Data", 1],
      ["reliable", "SetParticipants", 2],
      ["lossy", "Data", 2],
    ],
  );
  const set = out[4]?.frame;
  assert.ok(set?.type === "SetParticipants");
  assert.deepEqual(set.participants, ["carol"]);
});

test("the traffic rules: a Durable sender gets MessageFailureForTrafficLimit past its bucket, and sends again after it refills", async () => {
  const w = new World();
  const s = w.dc.createDataChannelSender({ channelId: 1, participants: ["bob"] });
  // 64 kbps = 8,000 B/s; the bucket holds max(8,000, 32 KiB): one 32 KiB message.
  await s.sendMessage(bytes(32 * 1024));
  await rejects(s.sendMessage(bytes(100)), "DataChannelMessageFailureForTrafficLimit");
  w.t += 100; // 800 bytes back
  await s.sendMessage(bytes(700));
  await rejects(s.sendMessage(bytes(700)), "DataChannelMessageFailureForTrafficLimit");
});

test("the broadcast rule counts 1,200-byte packets: 80 a second", async () => {
  const w = new World({ traffic: { ...NO_RULES, broadcastPacketsPerSecond: 80, packetBytes: 1200 } }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 1, reliability: "lossy" });
  // Depth: max(80, packets of one 32 KiB message = 28) = 80 packets.
  for (let i = 0; i < 40; i++) await s.sendMessage(bytes(2400)); // 2 packets each
  await rejects(s.sendMessage(bytes(10)), "DataChannelMessageFailureForTrafficLimit");
  // A targeted sender is not a broadcast.
  s.setParticipants(["bob"]);
  await s.sendMessage(bytes(10));
});

test("a server's stricter rules apply; the client's own stricter ones too", async () => {
  const w = new World({ traffic: { ...ACCEPTED.traffic, durableKbps: 8 } }, {});
  assert.equal(w.call.traffic.durableKbps, 8);
  const w2 = new World({}, { traffic: { ...UNLIMITED_TRAFFIC_POLICY, durableKbps: 16 } });
  assert.equal(w2.call.traffic.durableKbps, 16);
  assert.equal(w2.call.traffic.lossyKbps, 512);
});

test("MessageSizeOverLimit past the server's max message size", async () => {
  const w = new World({ maxMessageSize: 1000 });
  const s = w.dc.createDataChannelSender({ channelId: 2 });
  assert.equal(s.maxMessageSizeInBytes, 1000);
  await s.sendMessage(bytes(1000));
  await rejects(s.sendMessage(bytes(1001)), "DataChannelMessageSizeOverLimit");
});

test("FlowControl pauses a Durable sender: its messages queue (bufferedAmount), MessageFailureForBandwidth past 1 MiB, all sent in order on resume", async () => {
  const w = new World({ traffic: NO_RULES, maxMessageSize: 64 * 1024 }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 3 });
  const other = w.dc.createDataChannelSender({ channelId: 4 });
  const open = w.take()[0]!.frame;
  assert.ok(open.type === "SenderOpened");
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: true });
  let accepted = 0;
  for (;;) {
    try {
      await s.sendMessage(bytes(60 * 1024, accepted & 0xff));
      accepted++;
    } catch (e) {
      assert.ok(e instanceof DataChannelError && e.code === "DataChannelMessageFailureForBandwidth");
      break;
    }
  }
  assert.equal(accepted, 17); // 17 × (60 KiB + 64) ≤ 1 MiB < 18 ×
  assert.equal(s.bufferedAmount, 17 * (60 * 1024 + 64));
  // Another sender is not held up.
  await other.sendMessage(bytes(5));
  assert.deepEqual(w.types(), ["Data"]);
  let low = 0;
  s.bufferedAmountLowThreshold = 0;
  s.on("bufferedAmountLow", () => low++);
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: false });
  const out = w.take().map((o) => o.frame);
  assert.equal(out.length, 17);
  out.forEach((f, i) => assert.ok(f.type === "Data" && f.seq === i + 1 && f.payload[0] === (i & 0xff)));
  assert.equal(s.bufferedAmount, 0);
  assert.equal(low, 1);
});

test("what a pause held back goes out at the rules' pace, not in one burst the server would police", async () => {
  // The server's rules (Durable 64 kbps: 8,000 B/s, a bucket of one 32 KiB
  // message). Paused for a minute, the sender keeps within the rules.
  const w = new World({ maxMessageSize: 32 * 1024 });
  const s = w.dc.createDataChannelSender({ channelId: 3, participants: ["bob"] });
  const open = w.take()[0]!.frame;
  assert.ok(open.type === "SenderOpened");
  w.take();
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: true });
  let accepted = 0;
  for (let i = 0; i < 600; i++) {
    w.t += 100;
    await s.sendMessage(bytes(780));
    accepted++;
  }
  assert.ok(s.bufferedAmount > 400_000, `${s.bufferedAmount} queued`);
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: false });
  const burst = w.take().reduce((n, o) => n + (o.frame.type === "Data" ? o.frame.payload.length : 0), 0);
  assert.ok(burst <= 32 * 1024 + 780, `${burst} bytes at once`);
  w.t += 1000;
  w.call.tick();
  const next = w.take().reduce((n, o) => n + (o.frame.type === "Data" ? o.frame.payload.length : 0), 0);
  assert.ok(next > 0 && next <= 8000 + 780, `${next} bytes in the next second`);
  assert.equal(accepted, 600);
});

test("a full reliable channel queues; the queue drains when it empties", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 3 });
  w.take();
  w.buffered.reliable = RELIABLE_HIGH_WATER;
  await s.sendMessage(bytes(10));
  assert.deepEqual(w.types(), []);
  assert.equal(s.bufferedAmount, 74);
  w.buffered.reliable = 0;
  w.call.pump();
  assert.deepEqual(w.types(), ["Data"]);
});

test("bufferedAmountLow fires when a queue drains, not for messages that went out at once", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 3, reliability: "lossy" });
  let low = 0;
  s.on("bufferedAmountLow", () => low++);
  for (let i = 0; i < 5; i++) await s.sendMessage(bytes(10_000));
  assert.equal(low, 0);
  const d = w.dc.createDataChannelSender({ channelId: 4 });
  d.on("bufferedAmountLow", () => low++);
  w.buffered.reliable = RELIABLE_HIGH_WATER;
  await d.sendMessage(bytes(10));
  await d.sendMessage(bytes(10));
  w.buffered.reliable = 0;
  w.call.pump();
  assert.equal(low, 1);
});

test("a send from a bufferedAmountLow listener goes after what was queued (found in review: it went first)", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 3 });
  w.take();
  w.buffered.reliable = RELIABLE_HIGH_WATER;
  await s.sendMessage(bytes(1, 1));
  await s.sendMessage(bytes(1, 2));
  let refilled = false;
  s.on("bufferedAmountLow", () => {
    if (!refilled) {
      refilled = true;
      void s.sendMessage(bytes(1, 3));
    }
  });
  w.buffered.reliable = 0;
  w.call.pump();
  const out = w.take().map((o) => o.frame);
  assert.deepEqual(
    out.map((f) => (f.type === "Data" ? [f.seq, f.payload[0]] : f.type)),
    [
      [1, 1],
      [2, 2],
      [3, 3],
    ],
  );
});

test("a full reliable channel holds back its own channel's Durable work, not another's Lossy data", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const bulk = w.dc.createDataChannelSender({ channelId: 1 });
  const cursor = w.dc.createDataChannelSender({ channelId: 2, reliability: "lossy", priority: "high" });
  await cursor.sendMessage(bytes(1)); // the first goes ordered, behind its SenderOpened
  w.take();
  w.buffered.reliable = RELIABLE_HIGH_WATER;
  await bulk.sendMessage(bytes(10));
  await cursor.sendMessage(bytes(1));
  assert.deepEqual(w.take().map((o) => [o.lane, o.frame.type]), [["lossy", "Data"]]);
  assert.equal(bulk.bufferedAmount, 74);
});

test("keep-alives go on a fixed cadence, data or not (a paused sender's receivers stay open)", async () => {
  const w = new World({ idleTimeoutMs: 8_000, traffic: NO_RULES }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 4 });
  const open = w.take()[0]!.frame;
  assert.ok(open.type === "SenderOpened");
  w.deliver({ type: "FlowControl", channel: 4, session: open.session, paused: true });
  await s.sendMessage(bytes(1));
  w.t += 2_000;
  w.call.tick();
  assert.deepEqual(w.take().map((o) => o.frame.type), ["KeepAlive"]);
});

test("a new sender on a channel id replaces the old: the old one closes, what it queued goes first", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const old = w.dc.createDataChannelSender({ channelId: 9 });
  const first = w.take()[0]!.frame;
  assert.ok(first.type === "SenderOpened");
  w.deliver({ type: "FlowControl", channel: 9, session: first.session, paused: true });
  await old.sendMessage(bytes(1, 1));
  const neu = w.dc.createDataChannelSender({ channelId: 9 });
  assert.equal(old.closed, true);
  assert.equal(old.closeReason, "replaced");
  await neu.sendMessage(bytes(1, 2));
  assert.deepEqual(w.types(), []); // all behind the paused session's data
  w.deliver({ type: "FlowControl", channel: 9, session: first.session, paused: false });
  const out = w.take().map((o) => o.frame);
  assert.deepEqual(
    out.map((f) => [f.type, f.type === "Data" || f.type === "SenderOpened" ? f.session : 0]),
    [
      ["Data", first.session],
      ["SenderOpened", first.session + 1],
      ["Data", first.session + 1],
    ],
  );
});

test("random channel ids are free ones; a taken id is never picked", () => {
  const w = new World({ maxSenders: 0 });
  const ids = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const s = w.dc.createDataChannelSender({});
    assert.ok(s.channelId >= 1 && s.channelId <= 65535);
    assert.ok(!ids.has(s.channelId));
    ids.add(s.channelId);
  }
});

test("TooManySenders at the server's limit; misuse is a clear error", () => {
  const w = new World({ maxSenders: 2 });
  w.dc.createDataChannelSender({ channelId: 1 });
  w.dc.createDataChannelSender({ channelId: 2 });
  assert.throws(() => w.dc.createDataChannelSender({ channelId: 3 }), (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelTooManySenders");
  w.dc.createDataChannelSender({ channelId: 2 }); // a replacement is fine
  assert.throws(() => w.dc.createDataChannelSender({ channelId: 70000 }), RangeError);
  assert.throws(
    () => w.dc.createDataChannelSender({ channelId: 2, participants: Array.from({ length: 65 }, (_, i) => `p${i}`) }),
    (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelTooManyParticipants",
  );
  assert.throws(
    () => w.dc.createDataChannelSender({ channelId: 2, participants: [""] }),
    (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelInvalidParticipantId",
  );
});

test("receivers: created on SenderOpened, messages in order, closed on SenderClosed, replaced by a new session", () => {
  const w = new World();
  w.deliver({ type: "ParticipantJoined", member: 7, participantId: "alice" });
  const created: DataChannelReceiver[] = [];
  w.dc.on("dataChannelReceiverCreated", (r) => created.push(r));
  w.deliver(
    { type: "SenderOpened", channel: 10, session: 5, reliability: "durable", priority: "normal", bitrateKbps: 32, origin: 7 },
    { type: "Data", channel: 10, session: 5, seq: 1, origin: 7, payload: bytes(2, 1) },
    { type: "Data", channel: 10, session: 5, seq: 2, origin: 7, payload: bytes(2, 2) },
  );
  assert.equal(created.length, 1);
  const r = created[0]!;
  assert.deepEqual(r.senderParticipantIdentifier, { communicationUserId: "alice" });
  assert.equal(r.readMessage()?.sequenceNumber, 1);
  assert.equal(r.readMessage()?.sequenceNumber, 2);
  assert.equal(r.readMessage(), undefined);
  // A new session on the same channel replaces it.
  w.deliver({ type: "SenderOpened", channel: 10, session: 6, reliability: "lossy", priority: "high", bitrateKbps: 32, origin: 7 });
  assert.equal(r.closed, true);
  assert.equal(r.closeReason, "replaced");
  const r2 = created[1]!;
  // Stale data of the old session is not delivered to the new receiver.
  w.deliver({ type: "Data", channel: 10, session: 5, seq: 3, origin: 7, payload: bytes(1) });
  assert.equal(r2.pendingMessages, 0);
  w.deliver({ type: "SenderClosed", channel: 10, session: 6, reason: 0, origin: 7 });
  assert.equal(r2.closeReason, "senderClosed");
});

test("a receiver closes after the call's idle timeout unless keep-alives come", () => {
  const w = new World({ idleTimeoutMs: 10_000 });
  const created: DataChannelReceiver[] = [];
  w.dc.on("dataChannelReceiverCreated", (r) => created.push(r));
  w.deliver({ type: "SenderOpened", channel: 1, session: 1, reliability: "durable", priority: "normal", bitrateKbps: 1, origin: 3 });
  const r = created[0]!;
  w.t += 9_000;
  w.deliver({ type: "KeepAlive", channel: 1, session: 1, origin: 3 });
  w.t += 9_000;
  w.call.tick();
  assert.equal(r.closed, false);
  w.t += 1_000;
  w.call.tick();
  assert.equal(r.closeReason, "idle");
});

test("an idle sender sends keep-alives within a quarter of the idle timeout; a silent association gets one", async () => {
  const w = new World({ idleTimeoutMs: 8_000 });
  w.dc.createDataChannelSender({ channelId: 4 });
  w.take();
  w.t += 2_000;
  w.call.tick();
  const out = w.take();
  assert.deepEqual(out.map((o) => [o.lane, o.frame.type, o.frame.type === "KeepAlive" ? o.frame.channel : -1]), [["lossy", "KeepAlive", 4]]);
  const w2 = new World();
  w2.t += 5_000;
  w2.call.tick();
  assert.deepEqual(w2.take().map((o) => o.frame), [{ type: "KeepAlive", channel: 0, session: 0 }]);
});

test("a Durable receiver whose buffer overflows closes and tells the server; a Lossy one drops", () => {
  const w = new World({}, { receiverBufferBytes: 1000 });
  const created: DataChannelReceiver[] = [];
  w.dc.on("dataChannelReceiverCreated", (r) => created.push(r));
  w.deliver(
    { type: "SenderOpened", channel: 1, session: 1, reliability: "durable", priority: "normal", bitrateKbps: 1, origin: 3 },
    { type: "SenderOpened", channel: 2, session: 1, reliability: "lossy", priority: "normal", bitrateKbps: 1, origin: 3 },
  );
  for (let i = 1; i <= 3; i++) {
    w.deliver({ type: "Data", channel: 1, session: 1, seq: i, origin: 3, payload: bytes(400) });
    w.deliver({ type: "Data", channel: 2, session: 1, seq: i, origin: 3, payload: bytes(400) });
  }
  const [durable, lossy] = created;
  assert.equal(durable?.closeReason, "overflow");
  assert.equal(durable?.pendingMessages, 2);
  assert.equal(lossy?.closed, false);
  assert.equal(lossy?.pendingMessages, 2);
  assert.equal(lossy?.droppedMessages, 1);
  assert.deepEqual(w.take().map((o) => o.frame), [
    { type: "SenderClosed", channel: 1, session: 1, reason: 6, origin: 3 },
  ]);
});

test("all receivers together hold at most receiverTotalBytes of unread messages", () => {
  const w = new World({}, { receiverBufferBytes: 1000, receiverTotalBytes: 1500 });
  const created: DataChannelReceiver[] = [];
  w.dc.on("dataChannelReceiverCreated", (r) => created.push(r));
  for (const ch of [1, 2]) {
    w.deliver({ type: "SenderOpened", channel: ch, session: 1, reliability: "lossy", priority: "normal", bitrateKbps: 1, origin: 3 });
  }
  for (let i = 1; i <= 2; i++) {
    w.deliver({ type: "Data", channel: 1, session: 1, seq: i, origin: 3, payload: bytes(400) });
    w.deliver({ type: "Data", channel: 2, session: 1, seq: i, origin: 3, payload: bytes(400) });
  }
  // 3 × 464 fit in 1,500; the fourth does not, though its receiver has room.
  assert.equal(created[0]!.pendingMessages + created[1]!.pendingMessages, 3);
  assert.equal(created[1]!.droppedMessages, 1);
  // Reading makes room again.
  created[0]!.readMessage();
  w.deliver({ type: "Data", channel: 2, session: 1, seq: 3, origin: 3, payload: bytes(400) });
  assert.equal(created[1]!.pendingMessages, 2);
});

test("the server closing a session (TRAFFIC_LIMIT) closes the sender with its reason", async () => {
  const w = new World();
  const s = w.dc.createDataChannelSender({ channelId: 8 });
  const open = w.take()[0]!.frame;
  assert.ok(open.type === "SenderOpened");
  w.deliver({ type: "SenderClosed", channel: 8, session: open.session, reason: 5 });
  assert.equal(s.closeReason, "trafficLimit");
  await rejects(s.sendMessage(bytes(1)), "DataChannelSenderClosed");
});

test("leave sends what is queued (a paused sender's once resumed), then Leave; then the call ends and everything closes", async () => {
  const w = new World({ traffic: NO_RULES }, FREE);
  const s = w.dc.createDataChannelSender({ channelId: 3 });
  const open = w.take()[0]!.frame;
  assert.ok(open.type === "SenderOpened");
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: true });
  await s.sendMessage(bytes(1));
  await w.call.leave();
  assert.deepEqual(w.types(), []);
  w.deliver({ type: "FlowControl", channel: 3, session: open.session, paused: false });
  assert.deepEqual(w.types(), ["Data", "Leave"]);
  assert.throws(() => w.dc.createDataChannelSender({}), (e: unknown) => e instanceof DataChannelError && e.code === "DataChannelFailedToStart");
  let changed = 0;
  w.call.on("stateChanged", () => changed++);
  w.call._end("left the call");
  assert.equal(w.call.state, "disconnected");
  assert.equal(changed, 1);
  assert.equal(s.closeReason, "callEnded");
});

test("undecodable messages are counted and dropped; the call goes on", () => {
  const w = new World();
  w.call.handleMessage(new Uint8Array([0xff, 0, 0, 0]));
  assert.equal(w.call.stats.malformed, 1);
  assert.equal(w.call.state, "connected");
});

test("roster events: joined and left, receivers of a leaver close", () => {
  const w = new World();
  const seen: string[] = [];
  w.call.on("remoteParticipantsUpdated", ({ added, removed }) => {
    for (const p of added) seen.push(`+${p.identifier.communicationUserId}`);
    for (const p of removed) seen.push(`-${p.identifier.communicationUserId}`);
  });
  const created: DataChannelReceiver[] = [];
  w.dc.on("dataChannelReceiverCreated", (r) => created.push(r));
  w.deliver({ type: "ParticipantJoined", member: 2, participantId: "bob" });
  w.deliver({ type: "SenderOpened", channel: 1, session: 1, reliability: "durable", priority: "normal", bitrateKbps: 1, origin: 2 });
  w.deliver({ type: "ParticipantLeft", member: 2 });
  assert.deepEqual(seen, ["+bob", "-bob"]);
  assert.equal(created[0]?.closeReason, "senderLeft");
  assert.equal(w.call.remoteParticipants.length, 0);
});
