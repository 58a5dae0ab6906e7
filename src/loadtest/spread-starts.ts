/** A running {@link spreadStarts}. */
export interface SpreadStarts {
  /** Resolves once every start was called, or when cancelled. */
  readonly done: Promise<void>;
  /** Calls no further starts. */
  cancel(): void;
}

/**
 * Calls `start(i)` for i = 0..count-1 at `startMs + i * spanMs / count` (performance.now()
 * times): the ramp, connects spread evenly so the gateway sees a steady arrival rate rather
 * than a thundering herd. One timer at a time, on an absolute schedule; a late timer starts
 * every overdue device at once.
 */
export function spreadStarts(count: number, startMs: number, spanMs: number, start: (index: number) => void): SpreadStarts {
  const { promise, resolve } = Promise.withResolvers<void>();
  const stepMs = count > 0 ? spanMs / count : 0;
  let next = 0;
  let timer: Timer | undefined;
  const tick = () => {
    timer = undefined;
    const now = performance.now();
    while (next < count && startMs + next * stepMs <= now) start(next++);
    if (next < count) timer = setTimeout(tick, Math.max(0, startMs + next * stepMs - now));
    else resolve();
  };
  tick();
  return {
    done: promise,
    cancel() {
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      next = count;
      resolve();
    },
  };
}
