/**
 * A token bucket: `ratePerSecond` tokens flow in, up to `capacity` (the burst). It starts
 * full, so a client may spend its whole burst at once (a device's buffered wake-word audio,
 * a fleet's first connections). Refill is computed from the time since the last call: no
 * timer, and no allocation per call (the per-frame path uses it).
 */
export class TokenBucket {
  private tokens: number;
  private lastMs: number;

  /**
   * @param ratePerSecond sustained tokens per second, > 0
   * @param capacity the most tokens held (the burst), > 0
   * @param nowMs the current time on the clock later calls use (performance.now())
   */
  constructor(
    readonly ratePerSecond: number,
    readonly capacity: number,
    nowMs: number,
  ) {
    if (!(ratePerSecond > 0) || !(capacity > 0)) throw new RangeError("a token bucket needs a positive rate and capacity");
    this.tokens = capacity;
    this.lastMs = nowMs;
  }

  /** Takes `n` tokens if the bucket holds them; takes nothing and returns false if not. */
  take(n: number, nowMs: number): boolean {
    this.refill(nowMs);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Milliseconds until `n` tokens are held (0: now; Infinity: never, `n` > capacity). */
  msUntil(n: number, nowMs: number): number {
    this.refill(nowMs);
    if (n > this.capacity) return Number.POSITIVE_INFINITY;
    if (this.tokens >= n) return 0;
    return ((n - this.tokens) * 1000) / this.ratePerSecond;
  }

  /** Tokens held now (fractional). */
  available(nowMs: number): number {
    this.refill(nowMs);
    return this.tokens;
  }

  private refill(nowMs: number): void {
    const elapsedMs = nowMs - this.lastMs;
    // A clock that steps back (or a caller's stale `now`) must not drain the bucket.
    if (elapsedMs <= 0) return;
    this.lastMs = nowMs;
    this.tokens = Math.min(this.capacity, this.tokens + (elapsedMs * this.ratePerSecond) / 1000);
  }
}
