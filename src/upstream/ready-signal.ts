/**
 * Readiness that callers can wait for with a deadline: `set()` releases every waiter.
 * Shared by the connection pool (a warmed connection) and Relay (a verified stream).
 */
export class ReadySignal {
  private waiters: (() => void)[] = [];

  constructor(private readonly isReady: () => boolean) {}

  /** Resolves true once ready (at once if already), false after `timeoutMs`. */
  wait(timeoutMs: number): Promise<boolean> {
    if (this.isReady()) return Promise.resolve(true);
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => resolve(false), timeoutMs);
    this.waiters.push(() => {
      clearTimeout(timer);
      resolve(true);
    });
    return promise;
  }

  /** Became ready: release the waiters. */
  set(): void {
    for (const w of this.waiters.splice(0)) w();
  }
}
