/** Reconnect delays, in ms. */
export interface ReconnectBackoff {
  /** First delay. Default 100. */
  readonly minMs: number;
  /** Cap. Default 1000. */
  readonly maxMs: number;
}

/**
 * A 1 s cap: the directory's "newest wins" can only be re-enforced once every instance holding
 * a device is back on Redis, so the last one to reconnect sets how long a Device-Id may stay
 * live on two instances after an outage (measured with a 5 s cap: 3.6 s). One connect attempt
 * per second per connection is nothing for Redis, even from many instances.
 */
export const defaultReconnectBackoff: ReconnectBackoff = { minMs: 100, maxMs: 1_000 };

/**
 * The delay before reconnect attempt `attempt` (1-based): doubling from `minMs` up to `maxMs`,
 * with "equal jitter" (a random point in the upper half) so that a fleet of gateways losing the same Redis does
 * not reconnect in lockstep.
 */
export function reconnectDelayMs(attempt: number, backoff: ReconnectBackoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(attempt - 1, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
