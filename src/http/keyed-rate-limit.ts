import { TokenBucket } from "../token-bucket";

/**
 * A token bucket per key (a client address, a token's subject), bounded in memory: at most
 * `maxKeys` buckets, the least recently used forgotten first. A forgotten key starts again
 * with a full burst, which favours only a client that has been quiet the longest; a flood
 * from many keys cannot grow the map.
 */
export class KeyedRateLimit {
  private readonly buckets = new Map<string, TokenBucket>();

  /**
   * @param ratePerSecond sustained takes per second per key, > 0
   * @param burst takes a key may make at once, > 0
   */
  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
    private readonly maxKeys = 100_000,
  ) {
    if (!(ratePerSecond > 0) || !(burst > 0)) throw new RangeError("a rate limit needs a positive rate and burst");
  }

  /** Takes one for `key`: 0 when taken, else the milliseconds until one is there. */
  take(key: string, nowMs: number): number {
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
      bucket = new TokenBucket(this.ratePerSecond, this.burst, nowMs);
    } else {
      // Re-inserted: the Map's order is least recently used first.
      this.buckets.delete(key);
    }
    this.buckets.set(key, bucket);
    return bucket.take(1, nowMs) ? 0 : Math.max(1, Math.ceil(bucket.msUntil(1, nowMs)));
  }

  /** Keys tracked now (for tests and metrics). */
  get size(): number {
    return this.buckets.size;
  }
}
