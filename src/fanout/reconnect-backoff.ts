/** Reconnect delays, in ms. */
export interface ReconnectBackoff {
  /** First delay. Default 100. */
  readonly minMs: number;
  /** Cap. Default 5000. */
  readonly maxMs: number;
}

export const defaultReconnectBackoff: ReconnectBackoff = { minMs: 100, maxMs: 5_000 };

/**
 * The delay before reconnect attempt `attempt` (1-based): doubling from `minMs` up to `maxMs`,
 * with "equal jitter" (a random point in the upper half) so that a fleet of gateways losing the same Redis does
 * not reconnect in lockstep.
 */
export function reconnectDelayMs(attempt: number, backoff: ReconnectBackoff, random: () => number = Math.random): number {
  const ceiling = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(attempt - 1, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
