// Shared helpers of the browser suite: headless Chromium through
// playwright-core, a test harness installed into pages of the demo's origin
// (`window.T`, over `/dcengine.js`), the native `dcengine chat` as a child
// process, and bounded polling. run.sh starts the server and sets:
//   DCENGINE_BASE_URL  the server's HTTP origin (serve --http, --web, --demo-tokens)
//   DCENGINE_UDP       the server's UDP address (serve --bind)
//   DCENGINE_SECRET    the server's token secret
//   DCENGINE_BIN       the dcengine binary
//   DCENGINE_ARTIFACTS where screenshots go
//   CHROMIUM           the browser (default /usr/bin/chromium)
//   DCENGINE_WAIT_MS   the bound of every wait (default 20000)

import { execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { createInterface } from "node:readline";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

export const env = {
  base: required("DCENGINE_BASE_URL"),
  udp: required("DCENGINE_UDP"),
  http: new URL(required("DCENGINE_BASE_URL")).host,
  secret: required("DCENGINE_SECRET"),
  bin: required("DCENGINE_BIN"),
  artifacts: process.env.DCENGINE_ARTIFACTS || join(import.meta.dirname, "artifacts"),
  chromium: process.env.CHROMIUM || "/usr/bin/chromium",
  web: join(import.meta.dirname, "..", "web"),
};

/** The bound of every wait, in ms. */
export const WAIT = Number(process.env.DCENGINE_WAIT_MS || 20000);

function required(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run the suite with browser-tests/run.sh`);
  return v;
}

/** A name unique to this run, for calls. */
export function unique(prefix) {
  return `${prefix}-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}`;
}

/** A TCP port free on 127.0.0.1 just now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer().listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}

/** A join token from `dcengine token` (hex), with the suite's secret. */
export function mintToken(call, participant) {
  return new Promise((resolve, reject) =>
    execFile(env.bin, ["token", "--call", call, "--participant", participant], { env: { ...process.env, DCENGINE_SECRET: env.secret } }, (err, stdout, stderr) =>
      err ? reject(new Error(`dcengine token: ${err.message} ${stderr}`)) : resolve(stdout.trim()),
    ),
  );
}

// ------------------------------------------------------------------ browser

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // Host candidates on 127.0.0.1 (the server listens on loopback), and
  // the real address rather than an mDNS name.
  "--allow-loopback-in-peer-connection",
  "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/** One headless Chromium with a fresh profile; `close()` removes it. */
export async function launchBrowser() {
  const profile = await mkdtemp(join(tmpdir(), "dcengine-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: env.chromium,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      await rm(profile, { recursive: true, force: true }).catch(() => {});
    },
  };
}

/** A page of the demo's origin (the suite's server, or `origin`) with the
 *  harness installed; `name` labels its console output. */
export async function harnessPage(context, name, { origin = env.base, path = "/index.html?harness" } = {}) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error(`[${name}] page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.error(`[${name}] console.${m.type()}: ${m.text()}`);
  });
  await page.goto(`${origin}${path}`);
  await page.evaluate(installHarness);
  return page;
}

/** Joins the call as `participant` through the page's harness (a demo token
 *  from the server unless `opts.token`); returns the call's ids. */
export async function joinPage(page, call, participant, opts = {}) {
  return page.evaluate(([c, p, o]) => window.T.join(c, p, o), [call, participant, opts]);
}

/** Runs in the page: `window.T`, which joins, keeps every receiver and
 *  message it sees, and drives senders by key. */
async function installHarness() {
  const sdk = await import("/dcengine.js");
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const T = {
    sdk,
    call: null,
    dc: null,
    events: [],
    receivers: [],
    senders: {},
    async token(call, participant) {
      const res = await fetch(`/v1/calls/${encodeURIComponent(call)}/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ participant }),
      });
      if (!res.ok) throw new Error(`token: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()).token;
    },
    async join(call, participant, opts = {}) {
      const token = opts.token ?? (await T.token(call, participant));
      const o = { call, participant, token, timeoutMs: 15000 };
      if (opts.signal) o.signal = (offer) => window.nodeSignal(offer);
      else o.url = opts.url ?? location.origin;
      T.call = await sdk.joinCall(o);
      T.dc = T.call.feature(sdk.Features.DataChannel);
      T.call.on("remoteParticipantsUpdated", ({ added, removed }) => {
        const ids = (l) => l.map((p) => p.identifier.communicationUserId);
        T.events.push({ ev: "participants", added: ids(added), removed: ids(removed) });
      });
      T.call.on("stateChanged", () => T.events.push({ ev: "state", state: T.call.state }));
      T.dc.on("dataChannelReceiverCreated", (r) => {
        const rec = {
          rid: T.receivers.length,
          ch: r.channelId,
          from: r.senderParticipantIdentifier.communicationUserId,
          reliability: r.reliability,
          priority: r.priority,
          closed: false,
          msgs: [],
        };
        T.receivers.push(rec);
        const drain = () => {
          for (let m = r.readMessage(); m; m = r.readMessage()) {
            const len = m.data.length;
            rec.msgs.push({
              seq: m.sequenceNumber,
              len,
              text: len <= 4096 ? decoder.decode(m.data) : "",
              at: Date.now(),
            });
          }
        };
        r.on("messageReady", drain);
        r.on("close", () => {
          rec.closed = true;
        });
        drain();
      });
      return { id: T.call.id, participantId: T.call.participantId, state: T.call.state };
    },
    remote() {
      return T.call.remoteParticipants.map((p) => p.identifier.communicationUserId).sort();
    },
    sender(key, opts) {
      const s = T.dc.createDataChannelSender(opts);
      const entry = { s, closed: false };
      T.senders[key] = entry;
      s.on("close", () => {
        entry.closed = true;
      });
      return { channelId: s.channelId, max: s.maxMessageSizeInBytes };
    },
    /** Sends `what` (text, or a number: that many bytes) and reports. */
    async trySend(key, what) {
      const data = typeof what === "number" ? new Uint8Array(what).fill(0x61) : encoder.encode(what);
      try {
        await T.senders[key].s.sendMessage(data);
        return { ok: true };
      } catch (e) {
        return { ok: false, code: e.code, name: e.name, message: e.message, typed: e instanceof sdk.DataChannelError };
      }
    },
    async send(key, what) {
      const r = await T.trySend(key, what);
      if (!r.ok) throw new Error(`send on ${key}: ${r.code}: ${r.message}`);
    },
    /** Starts `texts.length` sends at once; reports each outcome. */
    async burst(key, texts) {
      return Promise.all(texts.map((t) => T.trySend(key, t)));
    },
    setParticipants(key, ids) {
      T.senders[key].s.setParticipants(ids);
    },
    closeSender(key) {
      T.senders[key].s.close();
    },
    /** Serialisable view of the receivers on `ch` (from `from`). */
    view(ch, from) {
      return T.receivers.filter((r) => (ch === undefined || r.ch === ch) && (from === undefined || r.from === from));
    },
    texts(ch, from) {
      return T.view(ch, from).flatMap((r) => r.msgs.map((m) => m.text));
    },
  };
  window.T = T;
}

/** Polls `fn(arg)` in the page until it is truthy (at most WAIT ms); on a
 *  timeout, fails with `what` and the page's receivers. */
export async function waitPage(page, what, fn, arg, ms = WAIT) {
  try {
    const handle = await page.waitForFunction(fn, arg, { timeout: ms, polling: 50 });
    return handle.jsonValue();
  } catch (e) {
    let state = "";
    try {
      state = JSON.stringify(await page.evaluate(() => ({ remote: window.T.call && window.T.remote(), receivers: window.T.receivers, events: window.T.events.slice(-20) })));
    } catch {}
    throw new Error(`timed out after ${ms} ms waiting for ${what}: ${e.message.split("\n")[0]}; state: ${state.slice(0, 3000)}`);
  }
}

/** Polls `fn()` (node side) until truthy, at most `ms`. */
export async function until(what, fn, ms = WAIT, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

// ------------------------------------------------------------------ native

/** `dcengine chat` as a child process: lines typed on stdin, what it prints
 *  kept in `lines`. */
export class NativeChat {
  constructor(args, name = "native") {
    this.name = name;
    this.lines = [];
    this.stderr = [];
    this.exit = null;
    this.proc = spawn(env.bin, ["chat", ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, DCENGINE_SECRET: env.secret },
    });
    createInterface({ input: this.proc.stdout }).on("line", (l) => this.lines.push(l));
    createInterface({ input: this.proc.stderr }).on("line", (l) => this.stderr.push(l));
    this.exited = new Promise((resolve) =>
      this.proc.on("exit", (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      }),
    );
  }

  /** Joins the suite's server: `dcengine chat --server UDP --http HTTP`. */
  static join(call, participant) {
    return new NativeChat(["--server", env.udp, "--http", env.http, "--call", call, "--participant", participant], participant);
  }

  /** Waits for a printed line that `match` (a string: equal; a RegExp:
   *  matching) accepts; returns it. */
  async line(match, ms = WAIT) {
    const ok = typeof match === "string" ? (l) => l === match : (l) => match.test(l);
    try {
      return await until(`${this.name} to print ${match}`, () => {
        const l = this.lines.find(ok);
        if (l) return l;
        if (this.exit) throw new Error(`exited (${JSON.stringify(this.exit)})`);
        return null;
      }, ms);
    } catch (e) {
      throw new Error(`${e.message}; ${this.name} printed: ${JSON.stringify(this.lines.slice(-20))}; stderr: ${JSON.stringify(this.stderr.slice(-20))}`);
    }
  }

  say(text) {
    this.proc.stdin.write(`${text}\n`);
  }

  /** Ends stdin (Ctrl-D: it leaves) and waits for the exit; kills it if it
   *  lingers. */
  async close(ms = 10000) {
    if (this.exit) return this.exit;
    this.proc.stdin.end();
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), ms);
    const exit = await this.exited;
    clearTimeout(timer);
    return exit;
  }

  kill() {
    if (!this.exit) this.proc.kill("SIGKILL");
  }
}
