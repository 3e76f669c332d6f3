// The demo page (web/index.html) as people use it: three browsers join a
// call through the form (demo tokens; one pastes a token from `dcengine
// token`), a native `dcengine chat` joins too,
// they chat, alice's cursor shows on bob's board, alice drops a file that
// bob can download; then a screenshot of bob's page (artifacts/demo.png),
// with the chat checked in its DOM.

import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { NativeChat, WAIT, env, launchBrowser, mintToken, unique, until } from "./lib.mjs";

const CALL = unique("demo");

describe(`the demo page (${CALL})`, { timeout: 5 * 60_000 }, () => {
  let browser;
  const p = {};
  let dave;

  /** The chat lines on a page, as shown. */
  const chatLines = (page) => page.locator("#messages li:not(.system)").allTextContents();
  const waitText = (page, line) =>
    page.locator("#messages li", { hasText: line }).first().waitFor({ timeout: WAIT }).catch(async (e) => {
      throw new Error(`"${line}" not shown: ${e.message.split("\n")[0]}; shown: ${JSON.stringify(await page.locator("#messages li").allTextContents())}`);
    });

  before(async () => {
    browser = await launchBrowser();
    for (const name of ["alice", "bob", "carol"]) {
      const page = await browser.context.newPage();
      page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
      await page.goto(`${env.base}/`);
      await page.locator('body[data-state="ready"]').waitFor({ timeout: WAIT });
      p[name] = page;
    }
  });

  after(async () => {
    if (dave) dave.kill();
    if (browser) await browser.close();
  });

  it("joins a call by name through the form (demo tokens, or a pasted hex token) and lists the participants", async () => {
    for (const name of ["alice", "bob", "carol"]) {
      const page = p[name];
      await page.fill("#call", CALL);
      await page.fill("#name", name);
      // carol pastes a token from `dcengine token`; the others get one from
      // the server's demo route.
      if (name === "carol") await page.fill("#token", await mintToken(CALL, name));
      await page.click("#join");
      await page.locator('body[data-state="joined"]').waitFor({ timeout: WAIT });
      assert.equal(await page.textContent("#status"), `In call ${CALL} as ${name}.`);
    }
    dave = NativeChat.join(CALL, "dave");
    const joined = await dave.line(/^joined .* as dave; others here: \[/);
    assert.deepEqual(joined.replace(/^.*\[|\]$/g, "").split(", ").sort(), ["alice", "bob", "carol"]);
    for (const [name, others] of [["alice", ["bob", "carol", "dave"]], ["bob", ["alice", "carol", "dave"]], ["carol", ["alice", "bob", "dave"]]]) {
      for (const o of others) await p[name].locator(`#participants li[data-participant="${o}"]`).waitFor({ timeout: WAIT });
      assert.equal(await p[name].textContent("#participants li:first-child"), `${name} (you)`);
    }
  });

  it("chats: browser to browser and native, native to browsers", async () => {
    await p.alice.fill("#chat-input", "hello bob");
    await p.alice.press("#chat-input", "Enter");
    await waitText(p.bob, "alice: hello bob");
    await waitText(p.alice, "alice: hello bob");
    await dave.line("alice: hello bob");

    await p.bob.fill("#chat-input", "hi alice, dave is here too");
    await p.bob.click("#chat-form button");
    await waitText(p.alice, "bob: hi alice, dave is here too");
    await dave.line("bob: hi alice, dave is here too");

    dave.say("hello from the terminal");
    for (const name of ["alice", "bob", "carol"]) await waitText(p[name], "dave: hello from the terminal");
    assert.deepEqual(await chatLines(p.bob), ["alice: hello bob", "bob: hi alice, dave is here too", "dave: hello from the terminal"]);
  });

  it("shows alice's cursor on bob's board, with her name, where she points", async () => {
    // Input goes to a background tab at about one event a second: alice's
    // tab is the one in front while she moves.
    await p.alice.bringToFront();
    const board = await p.alice.locator("#board").boundingBox();
    await p.alice.mouse.move(board.x + board.width * 0.25, board.y + board.height * 0.5);
    const dot = p.bob.locator('#board .cursor[data-participant="alice"]');
    await dot.waitFor({ timeout: WAIT });
    assert.equal(await dot.textContent(), "alice");
    const left = () => dot.evaluate((el) => parseFloat(el.style.left));
    await until("the dot at 25 %", async () => Math.abs((await left()) - 25) < 1);
    // Moving on: the dot follows.
    await p.alice.mouse.move(board.x + board.width * 0.75, board.y + board.height * 0.4, { steps: 10 });
    await until("the dot at 75 %", async () => Math.abs((await left()) - 75) < 1);
  });

  it("drops a file: chunked, paced, with progress; bob gets a download link to the same bytes", async () => {
    const bytes = randomBytes(20_000);
    const started = Date.now();
    await p.alice.setInputFiles("#file-input", { name: "notes.bin", mimeType: "application/octet-stream", buffer: bytes });
    const incoming = p.bob.locator('#files li.incoming[data-done="1"]');
    await incoming.waitFor({ timeout: WAIT });
    const ms = Date.now() - started;
    assert.match(await incoming.locator(".file-name").textContent(), /^notes\.bin \(19\.5 KiB\) from alice$/);
    const link = incoming.locator("a[download]");
    assert.equal(await link.getAttribute("download"), "notes.bin");
    const got = await link.evaluate(async (a) => {
      const buf = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
      const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
      return { size: buf.length, sha256: Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("") };
    });
    assert.deepEqual(got, { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex") });
    assert.equal(await incoming.locator("progress").evaluate((el) => el.value), 1);
    const outgoing = p.alice.locator('#files li.outgoing[data-done="1"]');
    await outgoing.waitFor({ timeout: WAIT });
    assert.equal(await outgoing.locator(".file-state").textContent(), "sent");
    // 20,000 B at the page's 6,000 B/s: paced, not sent at once.
    assert.ok(ms > 2000, `the file took ${ms} ms`);
    console.log(`# file: ${bytes.length} B in ${ms} ms`);
  });

  it("saves a screenshot of the page after the chat exchange, the messages in its DOM", async () => {
    const lines = await chatLines(p.bob);
    for (const want of ["alice: hello bob", "bob: hi alice, dave is here too", "dave: hello from the terminal"]) {
      assert.ok(lines.includes(want), `"${want}" in ${JSON.stringify(lines)}`);
      assert.ok(await p.bob.locator("#messages li", { hasText: want }).isVisible(), `"${want}" visible`);
    }
    await mkdir(env.artifacts, { recursive: true });
    const path = join(env.artifacts, "demo.png");
    await p.bob.screenshot({ path, fullPage: true });
    const png = await readFile(path);
    assert.equal(png.subarray(0, 8).toString("hex"), "89504e470d0a1a0a", "a PNG");
    assert.ok(png.length > 10_000, `screenshot of ${png.length} B`);
    console.log(`# screenshot: ${path} (${png.length} B)`);
  });

  it("leaves: the others see it", async () => {
    await p.alice.click("#leave");
    await p.alice.locator('body[data-state="left"]').waitFor({ timeout: WAIT });
    await p.bob.locator('#participants li[data-participant="alice"]').waitFor({ state: "detached", timeout: WAIT });
    await waitText(p.bob, "alice left");
    await dave.line("(alice stopped sending)");
  });
});
