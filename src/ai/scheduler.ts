/** Cancels a scheduled callback; calling it after the callback ran or twice is harmless. */
export type CancelScheduled = () => void;

/**
 * Time and timers as the AI session sees them, so that tests can drive pacing with a manual
 * clock instead of sleeping.
 */
export interface Scheduler {
  /** A monotonic time in ms (any origin). */
  now(): number;
  /** Runs `callback` once after `delayMs` (clamped to >= 0). */
  schedule(callback: () => void, delayMs: number): CancelScheduled;
}

/** The real clock: `performance.now()` and `setTimeout`. */
export const realScheduler: Scheduler = {
  now: () => performance.now(),
  schedule(callback, delayMs) {
    const timer = setTimeout(callback, Math.max(0, delayMs));
    return () => clearTimeout(timer);
  },
};
