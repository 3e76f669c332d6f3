// One call on `dcengine serve`: three headless Chromium pages (alice, bob,
// carol) and the native `dcengine chat` (dave). The tests run in order and
// share the call; each uses channels of its own.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NativeChat, harnessPage, joinPage, launchBrowser, unique, waitPage } from "./lib.mjs";

const CALL = unique("group");
const BROWSERS = ["alice", "bob", "carol"];
const EVERYONE = [...BROWSERS, "dave"];

describe(`a call of three browsers and a native participant (${CALL})`, { timeout: 10 * 60_000 }, () => {
  let browser;
  /** name → page */
  const p = {};
  let dave;

  before(async () => {
    browser = await launchBrowser();
    for (const name of BROWSERS) {
      p[name] = await harnessPage(browser.context, name);
      const ids = await joinPage(p[name], CALL, name);
      assert.equal(ids.state, "connected");
      assert.equal(ids.participantId, name);
    }
    dave = NativeChat.join(CALL, "dave");
    await dave.line(new RegExp(`^joined ${CALL} as dave; others here: \\[`));
  });

  after(async () => {
    if (dave) dave.kill();
    if (browser) await browser.close();
  });

  it("everyone sees everyone else in the participant list", async () => {
    for (const name of BROWSERS) {
      const others = EVERYONE.filter((n) => n !== name).sort();
      await waitPage(p[name], `${name}'s remote participants to be ${others}`, (want) => JSON.stringify(window.T.remote()) === want, JSON.stringify(others));
    }
    const joined = dave.lines.find((l) => l.startsWith(`joined ${CALL} as dave`));
    for (const name of BROWSERS) assert.match(joined, new RegExp(`\\b${name}\\b`), joined);
  });

  it("a join with someone else's token is refused (JoinError), and nobody sees it", async () => {
    const page = await harnessPage(browser.context, "mallory");
    const started = Date.now();
    const r = await page.evaluate(async (call) => {
      const token = await window.T.token(call, "alice");
      try {
        await window.T.join(call, "mallory", { token });
        return { joined: true };
      } catch (e) {
        return { name: e.name, typed: e instanceof window.T.sdk.JoinError, message: e.message };
      }
    }, CALL);
    assert.equal(r.name, "JoinError", JSON.stringify(r));
    assert.equal(r.typed, true);
    assert.match(r.message, /401/);
    assert.ok(Date.now() - started < 15000);
    await page.close();
    for (const name of BROWSERS) assert.ok(!(await p[name].evaluate(() => window.T.remote())).includes("mallory"));
  });

  it("chat broadcast: a browser's message reaches the other browsers and the native, with sequence numbers", async () => {
    for (const name of BROWSERS) await p[name].evaluate(() => window.T.sender("chat", { channelId: 10000 }));
    await p.alice.evaluate(() => window.T.send("chat", "hello from alice"));
    await dave.line("alice: hello from alice");
    for (const name of ["bob", "carol"]) {
      await waitPage(p[name], `${name} to get alice's chat`, () => window.T.texts(10000, "alice").includes("hello from alice"));
      const [r, ...more] = await p[name].evaluate(() => window.T.view(10000, "alice"));
      assert.equal(more.length, 0);
      assert.equal(r.reliability, "durable");
      assert.equal(r.priority, "normal");
      assert.deepEqual(r.msgs.map((m) => [m.seq, m.text]), [[1, "hello from alice"]]);
    }
    assert.equal((await p.alice.evaluate(() => window.T.view(10000))).length, 0, "alice does not receive her own message");
  });

  it("chat from the native participant reaches every browser", async () => {
    dave.say("hi from dave");
    for (const name of BROWSERS) {
      await waitPage(p[name], `${name} to get dave's chat`, () => window.T.texts(10000, "dave").includes("hi from dave"));
      const [r] = await p[name].evaluate(() => window.T.view(10000, "dave"));
      assert.deepEqual(r.msgs.map((m) => m.seq), [1]);
    }
  });

  it("setParticipants: to the native participant only, then everyone again (sequence numbers skip what others got)", async () => {
    await p.alice.evaluate(() => window.T.setParticipants("chat", ["dave"]));
    await p.alice.evaluate(() => window.T.send("chat", "only for dave"));
    await dave.line("alice: only for dave");
    await p.alice.evaluate(() => window.T.setParticipants("chat", []));
    await p.alice.evaluate(() => window.T.send("chat", "everyone again"));
    await dave.line("alice: everyone again");
    for (const name of ["bob", "carol"]) {
      // Same sender, Durable: "everyone again" arrives after anything sent before it.
      await waitPage(p[name], `${name} to get "everyone again"`, () => window.T.texts(10000, "alice").includes("everyone again"));
      const rs = await p[name].evaluate(() => window.T.view(10000, "alice"));
      assert.equal(rs.length, 1, "the same receiver: setParticipants is not a new session");
      assert.deepEqual(rs[0].msgs.map((m) => [m.seq, m.text]), [[1, "hello from alice"], [3, "everyone again"]]);
    }
  });

  it("targeted: a sender to bob only, and one to carol only (as an identifier object)", async () => {
    await p.alice.evaluate(() => window.T.sender("to-bob", { channelId: 60, participants: ["bob"] }));
    await p.alice.evaluate(() => window.T.sender("to-carol", { channelId: 61, participants: [{ communicationUserId: "carol" }] }));
    await p.alice.evaluate(() => window.T.send("to-bob", "for bob"));
    await p.alice.evaluate(() => window.T.send("to-carol", "for carol"));
    await waitPage(p.bob, "bob to get his message", () => window.T.texts(60, "alice").includes("for bob"));
    await waitPage(p.carol, "carol to get hers", () => window.T.texts(61, "alice").includes("for carol"));
    // Both went out of alice's reliable channel in order, through the same
    // server: by now the other would have arrived too.
    await p.alice.evaluate(() => window.T.send("to-bob", "fence"));
    await p.alice.evaluate(() => window.T.send("to-carol", "fence"));
    await waitPage(p.bob, "bob's fence", () => window.T.texts(60, "alice").includes("fence"));
    await waitPage(p.carol, "carol's fence", () => window.T.texts(61, "alice").includes("fence"));
    assert.deepEqual(await p.bob.evaluate(() => window.T.view(61)), []);
    assert.deepEqual(await p.carol.evaluate(() => window.T.view(60)), []);
    const bobs = await p.bob.evaluate(() => window.T.view(60, "alice"));
    assert.deepEqual(bobs[0].msgs.map((m) => [m.seq, m.text]), [[1, "for bob"], [2, "fence"]]);
  });

  it("setParticipants moves a sender from bob to carol, then to everyone", async () => {
    await p.alice.evaluate(() => window.T.sender("moving", { channelId: 21, participants: ["bob"] }));
    await p.alice.evaluate(() => window.T.send("moving", "m1"));
    await waitPage(p.bob, "bob to get m1", () => window.T.texts(21).includes("m1"));
    await p.alice.evaluate(() => window.T.setParticipants("moving", ["carol"]));
    await p.alice.evaluate(() => window.T.send("moving", "m2"));
    await waitPage(p.carol, "carol to get m2", () => window.T.texts(21).includes("m2"));
    await p.alice.evaluate(() => window.T.setParticipants("moving", []));
    await p.alice.evaluate(() => window.T.send("moving", "m3"));
    await waitPage(p.bob, "bob to get m3", () => window.T.texts(21).includes("m3"));
    await waitPage(p.carol, "carol to get m3", () => window.T.texts(21).includes("m3"));
    const bob = await p.bob.evaluate(() => window.T.view(21, "alice"));
    const carol = await p.carol.evaluate(() => window.T.view(21, "alice"));
    assert.deepEqual(bob.flatMap((r) => r.msgs.map((m) => [m.seq, m.text])), [[1, "m1"], [3, "m3"]]);
    assert.deepEqual(carol.flatMap((r) => r.msgs.map((m) => [m.seq, m.text])), [[2, "m2"], [3, "m3"]]);
  });

  it("sequence numbers: 40 Durable messages sent at once arrive as 1..40, in order, at both others", async () => {
    await p.bob.evaluate(() => window.T.sender("seq", { channelId: 24 }));
    const texts = Array.from({ length: 40 }, (_, i) => `n${i + 1}`);
    const outcomes = await p.bob.evaluate((t) => window.T.burst("seq", t), texts);
    assert.deepEqual(outcomes.filter((o) => !o.ok), []);
    for (const name of ["alice", "carol"]) {
      await waitPage(p[name], `${name} to get 40 messages`, () => window.T.texts(24, "bob").length >= 40);
      const rs = await p[name].evaluate(() => window.T.view(24, "bob"));
      assert.equal(rs.length, 1);
      assert.deepEqual(rs[0].msgs.map((m) => m.seq), texts.map((_, i) => i + 1));
      assert.deepEqual(rs[0].msgs.map((m) => m.text), texts);
    }
  });

  it("session replacement: a new sender on the same channel closes the old receiver", async () => {
    await p.carol.evaluate(() => window.T.sender("old", { channelId: 40 }));
    await p.carol.evaluate(() => window.T.send("old", "old-1"));
    for (const name of ["alice", "bob"]) await waitPage(p[name], `${name} to get old-1`, () => window.T.texts(40, "carol").includes("old-1"));
    await p.carol.evaluate(() => window.T.sender("new", { channelId: 40 }));
    await p.carol.evaluate(() => window.T.send("new", "new-1"));
    // What the old sender does now is reported, not required; its messages
    // must not reach anyone.
    const late = await p.carol.evaluate(() => window.T.trySend("old", "old-2"));
    await p.carol.evaluate(() => window.T.send("new", "new-2"));
    for (const name of ["alice", "bob"]) {
      await waitPage(p[name], `${name}: a second receiver with new-1, new-2, the first closed`, () => {
        const rs = window.T.view(40, "carol");
        return rs.length === 2 && rs[0].closed && rs[1].msgs.length >= 2;
      });
      const [oldR, newR] = await p[name].evaluate(() => window.T.view(40, "carol"));
      assert.deepEqual(oldR.msgs.map((m) => [m.seq, m.text]), [[1, "old-1"]]);
      assert.deepEqual(newR.msgs.map((m) => [m.seq, m.text]), [[1, "new-1"], [2, "new-2"]]);
      assert.equal(newR.closed, false);
    }
    const oldSender = await p.carol.evaluate(() => ({ closed: window.T.senders.old.closed }));
    console.log(`# replaced sender: closed=${oldSender.closed}, a send on it: ${JSON.stringify(late)}`);
  });

  it("a receiver closes when its sender closes; the closed sender refuses sends", async () => {
    await p.bob.evaluate(() => window.T.sender("closing", { channelId: 50 }));
    await p.bob.evaluate(() => window.T.send("closing", "last words"));
    for (const name of ["alice", "carol"]) await waitPage(p[name], `${name} to get bob's message`, () => window.T.texts(50, "bob").includes("last words"));
    await p.bob.evaluate(() => window.T.closeSender("closing"));
    for (const name of ["alice", "carol"]) {
      await waitPage(p[name], `${name}'s receiver of bob's channel 50 to close`, () => window.T.view(50, "bob").every((r) => r.closed));
    }
    await waitPage(p.bob, "bob's sender to emit close", () => window.T.senders.closing.closed);
    const r = await p.bob.evaluate(() => window.T.trySend("closing", "too late"));
    assert.equal(r.ok, false);
    assert.equal(r.code, "DataChannelSenderClosed");
    assert.equal(r.typed, true, "a DataChannelError");
  });

  it("MessageSizeOverLimit: one byte over maxMessageSizeInBytes is refused; exactly the limit goes through", async () => {
    const { max } = await p.alice.evaluate(() => window.T.sender("big", { channelId: 70, reliability: "lossy" }));
    assert.equal(max, 32 * 1024);
    const over = await p.alice.evaluate((n) => window.T.trySend("big", n), max + 1);
    assert.equal(over.ok, false);
    assert.equal(over.code, "DataChannelMessageSizeOverLimit");
    assert.equal(over.typed, true);
    const exact = await p.alice.evaluate((n) => window.T.trySend("big", n), max);
    assert.deepEqual(exact, { ok: true });
    await waitPage(p.bob, "bob to get the 32 KiB message", (n) => window.T.view(70, "alice").some((r) => r.msgs.some((m) => m.len === n)), max);
  });

  it("MessageFailureForTrafficLimit: a Durable burst over 64 kbps, and a broadcast over 80 packets/s (a targeted one is not)", async () => {
    // 48 × 1,000 B at once: over the Durable bucket (32 KiB deep: the
    // largest message).
    await p.alice.evaluate(() => window.T.sender("bytes", { channelId: 80 }));
    const bytes = await p.alice.evaluate(() => window.T.burst("bytes", Array.from({ length: 48 }, (_, i) => `${i}:`.padEnd(1000, "x"))));
    const refused = bytes.filter((o) => !o.ok);
    assert.ok(refused.length > 0, "some of the burst is refused");
    assert.ok(refused.length < 48, "some of the burst goes");
    assert.deepEqual([...new Set(refused.map((o) => o.code))], ["DataChannelMessageFailureForTrafficLimit"]);
    assert.ok(refused.every((o) => o.typed));
    const sent = bytes.flatMap((o, i) => (o.ok ? [`${i}:`] : []));
    await waitPage(p.bob, `bob to get the ${sent.length} accepted messages`, (n) => window.T.texts(80, "alice").length >= n, sent.length);
    const [got] = await p.bob.evaluate(() => window.T.view(80, "alice"));
    assert.deepEqual(got.msgs.map((m) => m.text.split(":")[0] + ":"), sent);
    // A refused message takes no sequence number: no gaps.
    assert.deepEqual(got.msgs.map((m) => m.seq), sent.map((_, i) => i + 1));

    // 100 tiny messages at once: 100 packets, over the broadcast rule of 80
    // a second; the same to one participant is within every rule.
    await p.carol.evaluate(() => window.T.sender("pps", { channelId: 81 }));
    await p.carol.evaluate(() => window.T.sender("pps-bob", { channelId: 82, participants: ["bob"] }));
    const tiny = Array.from({ length: 100 }, (_, i) => `t${i}`);
    const broadcast = await p.carol.evaluate((t) => window.T.burst("pps", t), tiny);
    const targeted = await p.carol.evaluate((t) => window.T.burst("pps-bob", t), tiny);
    const bRefused = broadcast.filter((o) => !o.ok);
    assert.ok(bRefused.length > 0 && bRefused.length < 100, `broadcast refused ${bRefused.length} of 100`);
    assert.deepEqual([...new Set(bRefused.map((o) => o.code))], ["DataChannelMessageFailureForTrafficLimit"]);
    assert.deepEqual(targeted.filter((o) => !o.ok), [], "targeted: none refused");
    await waitPage(p.bob, "bob to get the 100 targeted messages", () => window.T.texts(82, "carol").length >= 100);
  });

  it("Lossy High cursors at 30 Hz for a second: most arrive, each with the sequence number it was sent with", async () => {
    const opts = { channelId: 30, reliability: "lossy", priority: "high" };
    await p.alice.evaluate((o) => window.T.sender("cursor", o), opts);
    const sent = await p.alice.evaluate(async () => {
      // 30 positions, one every 33 ms, each carrying its index and send time.
      const results = [];
      const t0 = performance.now();
      for (let i = 1; i <= 30; i++) {
        const due = t0 + (i - 1) * (1000 / 30);
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        results.push(window.T.trySend("cursor", JSON.stringify({ i, x: i * 10, y: 300 - i * 10, at: Date.now() })));
      }
      const outcomes = await Promise.all(results);
      return { ms: performance.now() - t0, refused: outcomes.filter((o) => !o.ok) };
    });
    assert.deepEqual(sent.refused, []);
    assert.ok(sent.ms >= 900 && sent.ms < 5000, `30 sends took ${sent.ms} ms`);
    for (const name of ["bob", "carol"]) {
      // All 30 on loopback, normally; a Lossy loss is allowed, so after the
      // bound, at least 24 (80 %) will do.
      await waitPage(p[name], `${name} to get all 30 cursors`, () => window.T.texts(30, "alice").length >= 30, 5000).catch(() => {});
      const rs = await p[name].evaluate(() => window.T.view(30, "alice"));
      assert.equal(rs.length, 1);
      assert.equal(rs[0].reliability, "lossy");
      assert.equal(rs[0].priority, "high");
      const msgs = rs[0].msgs;
      assert.ok(msgs.length >= 24, `${name} got ${msgs.length} of 30`);
      const seqs = msgs.map((m) => m.seq);
      assert.equal(new Set(seqs).size, seqs.length, "no duplicates");
      for (const m of msgs) assert.equal(JSON.parse(m.text).i, m.seq, "sequence number = send order");
      const latencies = msgs.map((m) => m.at - JSON.parse(m.text).at).sort((a, b) => a - b);
      const p50 = latencies[Math.floor(latencies.length / 2)];
      const max = latencies[latencies.length - 1];
      const reordered = seqs.filter((s, i) => i > 0 && s < seqs[i - 1]).length;
      console.log(`# ${name}: ${msgs.length}/30 cursors, ${reordered} out of order, latency p50 ${p50} ms, max ${max} ms`);
      assert.ok(p50 < 1000, `p50 latency ${p50} ms`);
    }
  });

  it("the native participant leaves: its receivers close and it leaves every list", async () => {
    const exit = await dave.close();
    assert.equal(exit.code, 0, `dcengine chat exited ${JSON.stringify(exit)}: ${dave.stderr.join("\n")}`);
    for (const name of BROWSERS) {
      await waitPage(p[name], `${name} to see dave leave`, () => !window.T.remote().includes("dave") && window.T.view(10000, "dave").every((r) => r.closed));
    }
  });

  it("a browser leaves: the others see it go and its receivers close", async () => {
    await p.carol.evaluate(() => window.T.call.leave());
    for (const name of ["alice", "bob"]) {
      await waitPage(p[name], `${name} to see carol leave`, () => !window.T.remote().includes("carol") && window.T.view(undefined, "carol").every((r) => r.closed));
      const ev = await p[name].evaluate(() => window.T.events.filter((e) => e.ev === "participants" && e.removed.includes("carol")));
      assert.equal(ev.length, 1);
    }
    assert.equal(await p.carol.evaluate(() => window.T.call.state), "disconnected");
  });
});

