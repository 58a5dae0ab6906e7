/**
 * Jittered exponential backoff: attempt n waits base * 2^n, capped, times a random factor
 * in [0.8, 1.2) so that a fleet of sessions cut off together does not reconnect together
 * (and a fleet of gateways losing the same Redis does not come back in lockstep). The one
 * backoff of the gateway: upstream streams and the Redis link use it alike.
 */
export function backoffDelayMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(raw * (0.8 + 0.4 * random()));
}
