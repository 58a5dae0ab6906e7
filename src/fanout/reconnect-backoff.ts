/** The Redis link's reconnect delays, in ms (jittered by `backoffDelayMs`). */
export interface ReconnectBackoff {
  /** First delay. Default 100. */
  readonly minMs: number;
  /** Cap (before jitter). Default 1000. */
  readonly maxMs: number;
}

/**
 * A 1 s cap: the directory's "newest wins" can only be re-enforced once every instance holding
 * a device is back on Redis, so the last one to reconnect sets how long a Device-Id may stay
 * live on two instances after an outage (measured with a 5 s cap: 3.6 s). One connect attempt
 * per second per connection is nothing for Redis, even from many instances.
 */
export const defaultReconnectBackoff: ReconnectBackoff = { minMs: 100, maxMs: 1_000 };
