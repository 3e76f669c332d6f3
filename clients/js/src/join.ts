// Joining a call over WebRTC: an RTCPeerConnection with the engine's two
// data channels (pre-negotiated: id 0 reliable and ordered, id 1 unordered
// without retransmissions; docs/protocol.md §1), the offer posted to the
// server's signalling endpoint (or handed to the application's own
// signalling), then `Join` on the reliable channel. This file is the shell
// around `call.ts`: it moves messages and time into the core.

import {
  Call,
  DEFAULT_CLIENT_CONFIG,
  RELIABLE_HIGH_WATER,
  type ClientConfig,
  type Lane,
  type Transport,
} from "./call.js";
import { JoinError } from "./errors.js";
import { DecodeError, PROTOCOL_VERSION, decodeMessage, encodeMessage, framesOf, MAX_STR_LEN, MAX_TOKEN_LEN } from "./wire.js";

/** How to join a call. Give `url` (the server's signalling) or `signal` (your own). */
export interface JoinOptions {
  /** The call's id (1 to 255 bytes). */
  call: string;
  /** Who joins (1 to 255 bytes); the token must be for this participant and call. */
  participant: string;
  /** The join token: hex (as `dcengine token` prints it) or bytes. */
  token: string | Uint8Array;
  /**
   * The signalling server's base URL (e.g. `location.origin`, or
   * `https://host:8443`): the offer is posted to
   * `{url}/v1/calls/{call}/join` with the participant and token.
   */
  url?: string;
  /**
   * Your own signalling instead of `url`: gets the SDP offer, returns the
   * answer (e.g. from a native engine's `Engine::accept_offer`, peer to
   * peer). The token still travels in `Join`.
   */
  signal?: (offer: string) => Promise<string>;
  /** The RTCPeerConnection to use (default the global one; in Node, node-datachannel's polyfill). */
  RTCPeerConnection?: typeof RTCPeerConnection;
  /** `fetch` for `url` (default the global one). */
  fetch?: typeof fetch;
  /** How long joining may take, ms. Default 15,000. */
  timeoutMs?: number;
  /** Limits and timers; see {@link ClientConfig}. */
  config?: Partial<ClientConfig>;
}

/** The end reason of a leave that could not send everything it had accepted. */
const UNSENT = "left the call with messages unsent (the connection closed or 10 s passed first)";

/** How often the core's timers run, ms. */
const TICK_MS = 250;
/** How long `leave()` waits for what is queued to be sent and the server to close, ms. */
const LEAVE_DRAIN_MS = 10_000;

const utf8 = new TextEncoder();

function tokenBytes(token: string | Uint8Array): Uint8Array {
  if (token instanceof Uint8Array) return token;
  const hex = token.trim();
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new JoinError("options", "the token must be hex (as `dcengine token` prints it) or a Uint8Array");
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function checkId(what: string, id: unknown): string {
  if (typeof id !== "string") throw new JoinError("options", `${what} must be a string`);
  const n = utf8.encode(id).length;
  if (n === 0 || n > MAX_STR_LEN) throw new JoinError("options", `${what} must be 1 to 255 bytes of UTF-8`);
  return id;
}

/** Posts `offer` to the server's signalling endpoint and returns its answer. */
function httpSignal(
  fetchFn: typeof fetch,
  url: string,
  call: string,
  participant: string,
  token: Uint8Array,
): (offer: string) => Promise<string> {
  const endpoint = `${url.replace(/\/+$/, "")}/v1/calls/${encodeURIComponent(call)}/join`;
  return async (offer) => {
    let response: Response;
    try {
      response = await fetchFn(endpoint, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ participant, token: toHex(token), sdp: offer }),
      });
    } catch (e) {
      throw new JoinError("signalling", `signalling at ${endpoint}: ${String(e)}`);
    }
    let body: { sdp?: unknown; error?: unknown } = {};
    try {
      body = (await response.json()) as typeof body;
    } catch {
      // Reported below with the status.
    }
    if (!response.ok || typeof body.sdp !== "string") {
      const why = typeof body.error === "string" ? body.error : "no answer in the reply";
      const reason = response.status === 401 ? "unauthorized" : "signalling";
      throw new JoinError(reason, `signalling at ${endpoint}: ${response.status}: ${why}`, {
        status: response.status,
      });
    }
    return body.sdp;
  };
}

/**
 * Joins a call: resolves with the {@link Call} once the server accepted the
 * join (its participants already in `remoteParticipants`); rejects with a
 * {@link JoinError} saying which step failed.
 *
 * ```js
 * const call = await joinCall({ url: location.origin, call: "standup", participant: "alice", token });
 * const dataChannel = call.feature(Features.DataChannel);
 * ```
 */
export async function joinCall(options: JoinOptions): Promise<Call> {
  const callId = checkId("call", options.call);
  const participant = checkId("participant", options.participant);
  const token = tokenBytes(options.token);
  if (token.length > MAX_TOKEN_LEN) throw new JoinError("options", `the token is over ${MAX_TOKEN_LEN} bytes`);
  const PC = options.RTCPeerConnection ?? (globalThis as { RTCPeerConnection?: typeof RTCPeerConnection }).RTCPeerConnection;
  if (PC === undefined) {
    throw new JoinError("options", "no RTCPeerConnection: pass one (in Node, node-datachannel/polyfill's)");
  }
  let signal = options.signal;
  if (signal === undefined) {
    if (options.url === undefined) throw new JoinError("options", "give `url` (the server's signalling) or `signal`");
    const fetchFn = options.fetch ?? globalThis.fetch;
    signal = httpSignal(fetchFn.bind(globalThis), options.url, callId, participant, token);
  }
  const config: ClientConfig = { ...DEFAULT_CLIENT_CONFIG, ...options.config };
  const timeoutMs = options.timeoutMs ?? 15_000;

  const pc = new PC({ iceServers: [] });
  const reliable = pc.createDataChannel("dcengine", { negotiated: true, id: 0, ordered: true });
  const lossy = pc.createDataChannel("dcengine-lossy", { negotiated: true, id: 1, ordered: false, maxRetransmits: 0 });
  reliable.binaryType = "arraybuffer";
  lossy.binaryType = "arraybuffer";
  reliable.bufferedAmountLowThreshold = RELIABLE_HIGH_WATER / 2;

  const transport: Transport = {
    send(lane: Lane, bytes: Uint8Array): void {
      const dc = lane === "lossy" && lossy.readyState === "open" ? lossy : reliable;
      if (dc.readyState !== "open") {
        // The channel is closing: the call ends with it (its close event
        // follows); nothing more is accepted meanwhile.
        if (lane === "reliable") call?._end("the connection closed");
        return;
      }
      dc.send(bytes);
    },
    buffered(lane: Lane): number {
      return (lane === "lossy" ? lossy : reliable).bufferedAmount;
    },
  };

  const now = (): number => performance.now();
  let call: Call | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let settle: { resolve: (c: Call) => void; reject: (e: JoinError) => void } | undefined;
  const joined = new Promise<Call>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const fail = (e: JoinError): void => {
    if (settle === undefined) return;
    const s = settle;
    settle = undefined;
    if (timer !== undefined) clearInterval(timer);
    try {
      pc.close();
    } catch {
      // Closing is best effort.
    }
    s.reject(e);
  };

  const onMessage = (ev: MessageEvent): void => {
    const data: unknown = ev.data;
    if (!(data instanceof ArrayBuffer)) return; // The engine sends binary only.
    const bytes = new Uint8Array(data);
    if (call !== undefined) {
      call.handleMessage(bytes);
      return;
    }
    if (settle === undefined) return;
    // Joining: the first message is JoinAccepted (with the roster) or JoinRejected.
    let frames;
    try {
      frames = framesOf(decodeMessage(bytes));
    } catch (e) {
      if (e instanceof DecodeError) {
        fail(new JoinError("rejected", `the server's reply did not decode: ${e.message}`));
        return;
      }
      throw e;
    }
    const [first, ...rest] = frames;
    if (first?.type === "JoinRejected") {
      fail(new JoinError("rejected", `the server refused the join: ${first.reason}`, { code: first.code }));
      return;
    }
    if (first?.type === "Leave") {
      fail(new JoinError("rejected", `the server refused the join: ${first.reason}`, { code: first.code }));
      return;
    }
    if (first?.type !== "JoinAccepted") return; // Not for a joining client: ignored.
    const c = new Call(transport, callId, participant, first, config, now);
    for (const f of rest) {
      if (f.type === "ParticipantJoined") c._addParticipant(f.member, f.participantId, false);
    }
    const others = rest.filter((f) => f.type !== "ParticipantJoined");
    if (others.length > 0) c.handleMessage(encodeMessage({ type: "Batch", frames: others }));
    call = c;
    c._onEnd = () => {
      if (timer !== undefined) clearInterval(timer);
      try {
        pc.close();
      } catch {
        // Closing is best effort.
      }
    };
    c._drain = async () => {
      const deadline = now() + LEAVE_DRAIN_MS;
      // What was queued goes first, then Leave; the server closes the
      // association once it has it (the channel closes here).
      while (now() < deadline && reliable.readyState === "open") {
        c.pump();
        await new Promise((r) => setTimeout(r, 20));
      }
      if (c.state === "connected") {
        // Still open at the deadline: whatever is unsent is lost, and said so.
        const unsent = c._queuedAny || !c._leaveSent || reliable.bufferedAmount > 0;
        c._end(unsent ? UNSENT : "left the call");
      }
      if (c.endReason === UNSENT) {
        throw new JoinError("transport", `the call ended before everything was sent: ${UNSENT}`);
      }
    };
    timer = setInterval(() => c.tick(), TICK_MS);
    const s = settle;
    settle = undefined;
    s.resolve(c);
  };
  reliable.onmessage = onMessage;
  lossy.onmessage = onMessage;
  reliable.onbufferedamountlow = () => call?.pump();
  reliable.onopen = () => {
    const join = encodeMessage({ type: "Join", version: PROTOCOL_VERSION, callId, participantId: participant, token });
    reliable.send(join);
  };
  const lost = (why: string): void => {
    // After `Leave` (and everything before it) went, the server closing the
    // association is the leave completing.
    if (call !== undefined) {
      const clean = call._leaveSent && !call._queuedAny && reliable.bufferedAmount === 0;
      call._end(clean ? "left the call" : call._leaveSent ? UNSENT : why);
    }
    else fail(new JoinError("transport", why));
  };
  reliable.onclose = () => lost("the connection closed");
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "failed") lost("the connection failed (ICE or DTLS)");
    else if (pc.connectionState === "closed") lost("the connection closed");
  };

  const deadline = setTimeout(
    () => fail(new JoinError("timeout", `no answer from the server within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdp = pc.localDescription?.sdp ?? offer.sdp ?? "";
    const answer = await signal(sdp);
    if (settle === undefined) return await joined;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (e) {
    fail(e instanceof JoinError ? e : new JoinError("signalling", String(e)));
  }
  try {
    return await joined;
  } finally {
    clearTimeout(deadline);
  }
}

