import type { UpgradeRefusal } from "../metrics";
import { TokenBucket } from "../token-bucket";

/** How many device connections the gateway takes (IM_MAX_CONNECTIONS, IM_MAX_CONNECTS_PER_SECOND). */
export interface AdmissionLimits {
  /** Connections held at once (open sockets plus upgrades being verified). */
  readonly maxConnections: number;
  /** New connections per second, sustained; the burst is one second's worth. */
  readonly maxConnectsPerSecond: number;
}

/** Why an upgrade is refused and when to try again. */
export interface Refusal {
  readonly reason: UpgradeRefusal;
  /** For the Retry-After header: whole seconds, at least 1. */
  readonly retryAfterSeconds: number;
  readonly message: string;
}

/** Retry-After when full: long enough for sessions to end, jittered so that a refused fleet
 * does not come back in one wave. */
const FULL_RETRY_AFTER_SECONDS = 5;
const FULL_RETRY_JITTER_SECONDS = 5;
/** Spread of Retry-After beyond the time the connect budget needs to refill. */
const RATE_RETRY_JITTER_SECONDS = 2;

/**
 * Admission of device upgrades, decided before any work is spent on them (token
 * verification included): a reconnect storm after a restart or a network blip must cost
 * the gateway a cheap 503 per refused connection, not a JWT verification and a session.
 */
export class AdmissionControl {
  private readonly connects: TokenBucket;

  constructor(
    private readonly limits: AdmissionLimits,
    nowMs: number,
    private readonly random: () => number = Math.random,
  ) {
    this.connects = new TokenBucket(limits.maxConnectsPerSecond, limits.maxConnectsPerSecond, nowMs);
  }

  /** Admits one more connection while `connections` are held (spending one connect), or
   * says why not (spending nothing). */
  admit(connections: number, nowMs: number): Refusal | undefined {
    if (connections >= this.limits.maxConnections) {
      return {
        reason: "max-connections",
        retryAfterSeconds: FULL_RETRY_AFTER_SECONDS + this.jitter(FULL_RETRY_JITTER_SECONDS),
        message: `the gateway holds its maximum of ${this.limits.maxConnections} connections; retry later`,
      };
    }
    if (!this.connects.take(1, nowMs)) {
      const waitSeconds = Math.max(1, Math.ceil(this.connects.msUntil(1, nowMs) / 1000));
      return {
        reason: "connect-rate",
        retryAfterSeconds: waitSeconds + this.jitter(RATE_RETRY_JITTER_SECONDS),
        message: `more than ${this.limits.maxConnectsPerSecond} new connections per second; retry later`,
      };
    }
    return undefined;
  }

  /** A whole number of seconds from 0 to `max`. */
  private jitter(max: number): number {
    return Math.floor(this.random() * (max + 1));
  }
}
