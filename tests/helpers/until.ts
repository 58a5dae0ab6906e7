/** How {@link until} polls. */
export interface UntilOptions {
  /** What is awaited, for the failure message ("the two instances to see each other"); a
   * function is called at the deadline, so it can report the state then. */
  readonly what: string | (() => string);
  /** How long the condition may take to hold. Default 10 s. */
  readonly timeoutMs?: number;
  /** The pause between two checks. Default 10 ms. */
  readonly intervalMs?: number;
}

/** `T` without its falsy values: what {@link until} resolves with. */
export type Truthy<T> = Exclude<T, false | 0 | 0n | "" | null | undefined>;

/**
 * Polls `condition` until it returns a truthy value, and resolves with that value; rejects
 * naming `what` once `timeoutMs` passed without it. For states that have no event to wait on
 * (counters, a status endpoint, a registry): wherever an event exists, wait on the event.
 * The condition is checked once more at the deadline, so a slow last check never fails a
 * condition that holds.
 */
export async function until<T>(condition: () => T | Promise<T>, o: UntilOptions): Promise<Truthy<T>> {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = await condition();
    if (value) return value as Truthy<T>;
    if (performance.now() >= deadline) {
      const what = typeof o.what === "function" ? o.what() : o.what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await Bun.sleep(Math.min(o.intervalMs ?? 10, Math.max(0, deadline - performance.now())));
  }
}

/** Rejects with `what` if `promise` has not settled within `ms`: a deadline on an event, not
 * a sleep. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
