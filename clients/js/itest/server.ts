// A real `dcengine serve` for the integration tests: started on loopback
// with free ports, its signalling URL read from what it prints, stopped
// after the tests. Tokens come from `dcengine token`.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { RTCPeerConnection } from "node-datachannel/polyfill";
import { joinCall, type Call, type JoinOptions } from "../src/index.js";

/** The dcengine binary: $DCENGINE_BIN, or the workspace's debug build. */
export function binary(): string {
  const env = process.env["DCENGINE_BIN"];
  if (env !== undefined && env !== "") return env;
  const built = fileURLToPath(new URL("../../../../target/debug/dcengine", import.meta.url));
  if (!existsSync(built)) {
    throw new Error(`no dcengine binary at ${built}: run \`cargo build --bin dcengine\` or set DCENGINE_BIN`);
  }
  return built;
}

/** Every wait in these tests is bounded by this. */
export const LIMIT_MS = 20_000;

export class Server {
  readonly url: string;
  readonly secret: string;
  readonly #child: ChildProcess;
  #log: string[];

  private constructor(child: ChildProcess, url: string, secret: string, log: string[]) {
    this.#child = child;
    this.url = url;
    this.secret = secret;
    this.#log = log;
  }

  /** Starts a server with `args` added to the defaults (loopback, one worker). */
  static async start(args: string[] = []): Promise<Server> {
    const secret = `itest-${Math.random().toString(16).slice(2)}`;
    const child = spawn(
      binary(),
      ["serve", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0", "--workers", "1", "--secret", secret, ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const log: string[] = [];
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dcengine serve printed no URL:\n${log.join("")}`)), LIMIT_MS);
      child.stdout!.on("data", (chunk: Buffer) => {
        const text = chunk.toString();
        log.push(text);
        const m = /signalling at (https?:\/\/[^/\s]+)\/v1\/calls/.exec(log.join(""));
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.stderr!.on("data", (chunk: Buffer) => log.push(chunk.toString()));
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`dcengine serve exited (${code}):\n${log.join("")}`));
      });
    });
    return new Server(child, url, secret, log);
  }

  /** A join token for `participant` in `call`, hex. */
  token(call: string, participant: string): string {
    return execFileSync(binary(), ["token", "--secret", this.secret, "--call", call, "--participant", participant])
      .toString()
      .trim();
  }

  /** Joins `call` as `participant` with node-datachannel's RTCPeerConnection. */
  join(call: string, participant: string, extra: Partial<JoinOptions> = {}): Promise<Call> {
    return joinCall({
      url: this.url,
      call,
      participant,
      token: this.token(call, participant),
      RTCPeerConnection: RTCPeerConnection as unknown as typeof globalThis.RTCPeerConnection,
      ...extra,
    });
  }

  /** What the server printed so far. */
  log(): string {
    return this.#log.join("");
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s). */
  async stop(): Promise<void> {
    if (this.#child.exitCode !== null) return;
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.kill("SIGTERM");
    const timer = setTimeout(() => this.#child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Waits until `cond()` holds, polling; fails with `what` after `LIMIT_MS`. */
export async function until(what: string, cond: () => boolean, limitMs = LIMIT_MS): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
