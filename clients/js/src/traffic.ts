// The traffic-limit rules, checked on every send as the Rust client does
// (src/sched/policy.rs): each rule a token bucket, full at the start,
// `max(rate × burst, one largest message)` deep.

import type { Priority, Reliability, TrafficRules } from "./wire.js";

/** The least a message costs the byte rules: about its frame's overhead. */
export const MIN_MESSAGE_COST = 16;

/**
 * The rules a client enforces, per sender (and per member: all its senders
 * together). A rate of 0 means no rule. Defaults: the product's.
 */
export interface TrafficPolicy {
  durableKbps: number;
  lossyKbps: number;
  highLossyKbps: number;
  broadcastPacketsPerSecond: number;
  packetBytes: number;
  burstMs: number;
  memberKbps: number;
  memberMessagesPerSecond: number;
}

/** The product's rules: Durable 64 kbps, Lossy 512, High Lossy 200, broadcast 80 packets/s of 1,200 bytes. */
export const DEFAULT_TRAFFIC_POLICY: Readonly<TrafficPolicy> = Object.freeze({
  durableKbps: 64,
  lossyKbps: 512,
  highLossyKbps: 200,
  broadcastPacketsPerSecond: 80,
  packetBytes: 1200,
  burstMs: 1000,
  memberKbps: 2048,
  memberMessagesPerSecond: 2000,
});

/** No rule at all (load tests). */
export const UNLIMITED_TRAFFIC_POLICY: Readonly<TrafficPolicy> = Object.freeze({
  durableKbps: 0,
  lossyKbps: 0,
  highLossyKbps: 0,
  broadcastPacketsPerSecond: 0,
  packetBytes: 1200,
  burstMs: 1000,
  memberKbps: 0,
  memberMessagesPerSecond: 0,
});

/**
 * `own` tightened by a server's announced `rules`, rule by rule: the lower
 * rate where both have one, either's where only one has, the smaller packet
 * size and the shorter burst (as `TrafficPolicy::stricter` in Rust).
 */
export function stricter(own: TrafficPolicy, rules: TrafficRules): TrafficPolicy {
  const tighter = (a: number, b: number): number => (a > 0 && b > 0 ? Math.min(a, b) : a > 0 ? a : b);
  return {
    durableKbps: tighter(own.durableKbps, rules.durableKbps),
    lossyKbps: tighter(own.lossyKbps, rules.lossyKbps),
    highLossyKbps: tighter(own.highLossyKbps, rules.highLossyKbps),
    broadcastPacketsPerSecond: tighter(own.broadcastPacketsPerSecond, rules.broadcastPacketsPerSecond),
    packetBytes: rules.packetBytes > 0 ? Math.min(own.packetBytes, rules.packetBytes) : own.packetBytes,
    burstMs: rules.burstMs > 0 ? Math.min(own.burstMs, rules.burstMs) : own.burstMs,
    memberKbps: tighter(own.memberKbps, rules.memberKbps),
    memberMessagesPerSecond: tighter(own.memberMessagesPerSecond, rules.memberMessagesPerSecond),
  };
}

/** A token bucket: `rate` tokens a second, at most `depth`, full at `now`. Times in milliseconds. */
export class TokenBucket {
  readonly rate: number;
  readonly depth: number;
  #tokens: number;
  #at: number;

  constructor(rate: number, depth: number, now: number) {
    this.rate = rate;
    this.depth = Math.max(1, depth);
    this.#tokens = this.depth;
    this.#at = now;
  }

  #refill(now: number): void {
    if (now > this.#at) {
      this.#tokens = Math.min(this.depth, this.#tokens + ((now - this.#at) * this.rate) / 1000);
      this.#at = now;
    }
  }

  /** Takes `n` tokens if there are that many at `now`. */
  tryTake(n: number, now: number): boolean {
    this.#refill(now);
    if (this.#tokens + 1e-9 < n) return false;
    this.#tokens -= n;
    return true;
  }

  /** Gives back `n` tokens. */
  refund(n: number): void {
    this.#tokens = Math.min(this.depth, this.#tokens + n);
  }
}

/** One sender's (or a member's) rules: a byte bucket and a packet bucket, either optional. */
export class TrafficLimiter {
  readonly #bytes: TokenBucket | undefined;
  readonly #packets: TokenBucket | undefined;
  readonly #packetBytes: number;

  private constructor(bytes: TokenBucket | undefined, packets: TokenBucket | undefined, packetBytes: number) {
    this.#bytes = bytes;
    this.#packets = packets;
    this.#packetBytes = Math.max(1, packetBytes);
  }

  /** The limiter of one sender of this kind under `policy`, full at `now`. */
  static forSender(
    policy: TrafficPolicy,
    reliability: Reliability,
    priority: Priority,
    maxMessageSize: number,
    now: number,
  ): TrafficLimiter {
    const kbps =
      reliability === "durable" ? policy.durableKbps : priority === "high" ? policy.highLossyKbps : policy.lossyKbps;
    const burst = policy.burstMs / 1000;
    const bytes =
      kbps > 0 ? new TokenBucket(kbps * 125, Math.max(Math.floor(kbps * 125 * burst), maxMessageSize), now) : undefined;
    const pps = policy.broadcastPacketsPerSecond;
    const least = Math.max(1, Math.ceil(maxMessageSize / Math.max(1, policy.packetBytes)));
    const packets = pps > 0 ? new TokenBucket(pps, Math.max(Math.floor(pps * burst), least), now) : undefined;
    return new TrafficLimiter(bytes, packets, policy.packetBytes);
  }

  /** The limiter of one member's senders together under `policy` (its packet rule counts messages). */
  static forMember(policy: TrafficPolicy, maxMessageSize: number, now: number): TrafficLimiter {
    const burst = policy.burstMs / 1000;
    const kbps = policy.memberKbps;
    const bytes =
      kbps > 0 ? new TokenBucket(kbps * 125, Math.max(Math.floor(kbps * 125 * burst), maxMessageSize), now) : undefined;
    const n = policy.memberMessagesPerSecond;
    const packets = n > 0 ? new TokenBucket(n, Math.max(Math.floor(n * burst), 1), now) : undefined;
    return new TrafficLimiter(bytes, packets, Number.MAX_SAFE_INTEGER);
  }

  #packetsOf(cost: number): number {
    return Math.max(1, Math.ceil(cost / this.#packetBytes));
  }

  /**
   * Whether a message of `len` bytes may go at `now` (`broadcast`: the
   * sender has no participant list, so the packet rule applies). Takes the
   * tokens only if every rule admits it.
   */
  tryAdmit(len: number, broadcast: boolean, now: number): boolean {
    const cost = Math.max(len, MIN_MESSAGE_COST);
    if (this.#bytes !== undefined && !this.#bytes.tryTake(cost, now)) return false;
    if (broadcast && this.#packets !== undefined && !this.#packets.tryTake(this.#packetsOf(cost), now)) {
      this.#bytes?.refund(cost);
      return false;
    }
    return true;
  }

  /** Gives back what `tryAdmit` took for a message of `len` bytes. */
  refund(len: number, broadcast: boolean): void {
    const cost = Math.max(len, MIN_MESSAGE_COST);
    this.#bytes?.refund(cost);
    if (broadcast) this.#packets?.refund(this.#packetsOf(cost));
  }
}
