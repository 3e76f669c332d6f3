// Browser ↔ native peer to peer: `dcengine chat --host` hosts the call in
// its own engine and serves signalling (and the web root, demo tokens, CORS
// for the suite's server's origin). Two browsers join it directly: "web"
// from a page of the host's own origin with a demo token, "xo" from a page
// of the suite's server, cross-origin, with a hex token from `dcengine token`;
// and the demo page itself, served by the host.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { NativeChat, WAIT, env, freePort, harnessPage, joinPage, launchBrowser, mintToken, unique, waitPage } from "./lib.mjs";

const CALL = unique("p2p");

describe(`browser ↔ native peer to peer: dcengine chat --host (${CALL})`, { timeout: 5 * 60_000 }, () => {
  let browser;
  let host;
  let hostUrl;
  const p = {};

  before(async () => {
    const port = await freePort();
    host = new NativeChat(
      ["--host", "--http", `127.0.0.1:${port}`, "--bind", "127.0.0.1:0", "--call", CALL, "--participant", "nat",
        "--web", env.web, "--demo-tokens", "--cors-origin", env.base],
      "nat",
    );
    await host.line(new RegExp(`^hosting ${CALL} as nat on UDP `));
    hostUrl = `http://127.0.0.1:${port}`;
    browser = await launchBrowser();
  });

  after(async () => {
    if (host) host.kill();
    if (browser) await browser.close();
  });

  it("two browsers join the native host directly (same origin with a demo token; cross-origin with a minted hex token)", async () => {
    p.web = await harnessPage(browser.context, "web", { origin: hostUrl });
    const a = await joinPage(p.web, CALL, "web");
    assert.equal(a.state, "connected");
    p.xo = await harnessPage(browser.context, "xo");
    const token = await mintToken(CALL, "xo");
    assert.match(token, /^[0-9a-f]+$/);
    const b = await joinPage(p.xo, CALL, "xo", { token, url: hostUrl });
    assert.equal(b.state, "connected");
    await waitPage(p.web, "web to see nat and xo", () => JSON.stringify(window.T.remote()) === '["nat","xo"]');
    await waitPage(p.xo, "xo to see nat and web", () => JSON.stringify(window.T.remote()) === '["nat","web"]');
    await host.line(/\bxo\b.*joined|joined.*\bxo\b/);
  });

  it("the demo page, served by the host, joins from its URL (?call=&name=&join=1)", async () => {
    p.demo = await browser.context.newPage();
    await p.demo.goto(`${hostUrl}/?call=${CALL}&name=page&join=1`);
    await p.demo.locator('body[data-state="joined"]').waitFor({ timeout: WAIT });
    await p.demo.locator('#participants li[data-participant="nat"]').waitFor({ timeout: WAIT });
  });

  it("the native host's chat reaches both browsers and the demo page", async () => {
    host.say("hello browsers");
    await p.demo.locator("#messages li", { hasText: "nat: hello browsers" }).waitFor({ timeout: WAIT });
    await p.demo.fill("#chat-input", "the page answers");
    await p.demo.press("#chat-input", "Enter");
    await host.line("page: the page answers");
    for (const name of ["web", "xo"]) {
      await waitPage(p[name], `${name} to get nat's chat`, () => window.T.texts(10000, "nat").includes("hello browsers"));
      const [r] = await p[name].evaluate(() => window.T.view(10000, "nat"));
      assert.deepEqual(r.msgs.map((m) => [m.seq, m.text]), [[1, "hello browsers"]]);
    }
  });

  it("each browser's chat reaches the native host and the other browser", async () => {
    for (const name of ["web", "xo"]) {
      await p[name].evaluate(() => window.T.sender("chat", { channelId: 10000 }));
      await p[name].evaluate((n) => window.T.send("chat", `hi nat, ${n} here`), name);
      await host.line(`${name}: hi nat, ${name} here`);
    }
    await waitPage(p.web, "web to get xo's chat", () => window.T.texts(10000, "xo").includes("hi nat, xo here"));
    await waitPage(p.xo, "xo to get web's chat", () => window.T.texts(10000, "web").includes("hi nat, web here"));
  });

  it("targeted to the native host only", async () => {
    await p.web.evaluate(() => window.T.setParticipants("chat", ["nat"]));
    await p.web.evaluate(() => window.T.send("chat", "just between us"));
    await host.line("web: just between us");
    await p.web.evaluate(() => window.T.setParticipants("chat", []));
    await p.web.evaluate(() => window.T.send("chat", "all of you"));
    await host.line("web: all of you");
    await waitPage(p.xo, "xo to get 'all of you'", () => window.T.texts(10000, "web").includes("all of you"));
    const [r] = await p.xo.evaluate(() => window.T.view(10000, "web"));
    assert.deepEqual(r.msgs.map((m) => [m.seq, m.text]), [[1, "hi nat, web here"], [3, "all of you"]]);
  });

  it("Durable in order, browser to browser through the host: 40 messages, sequence 1..40", async () => {
    await p.xo.evaluate(() => window.T.sender("seq", { channelId: 24 }));
    const texts = Array.from({ length: 40 }, (_, i) => `n${i + 1}`);
    const outcomes = await p.xo.evaluate((t) => window.T.burst("seq", t), texts);
    assert.deepEqual(outcomes.filter((o) => !o.ok), []);
    await waitPage(p.web, "web to get 40 messages", () => window.T.texts(24, "xo").length >= 40);
    const [r] = await p.web.evaluate(() => window.T.view(24, "xo"));
    assert.deepEqual(r.msgs.map((m) => [m.seq, m.text]), texts.map((t, i) => [i + 1, t]));
  });

  it("a browser leaves: the host prints that its chat stopped", async () => {
    await p.xo.evaluate(() => window.T.call.leave());
    await host.line("(xo stopped sending)");
    await waitPage(p.web, "web to see xo leave", () => !window.T.remote().includes("xo"));
  });

  it("the host leaves (Ctrl-D): the browser's call ends", async () => {
    const exit = await host.close();
    assert.equal(exit.code, 0, `dcengine chat --host exited ${JSON.stringify(exit)}: ${host.stderr.slice(-10).join("\n")}`);
    await waitPage(p.web, "web's call to end", () => window.T.call.state === "disconnected", undefined, WAIT);
    await p.demo.locator('body[data-state="left"]').waitFor({ timeout: WAIT });
    assert.equal(await p.demo.textContent("#status"), `Disconnected from ${CALL}.`);
  });
});
