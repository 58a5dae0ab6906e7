/**
 * Bounds the WebSocket handshakes in flight (`--concurrency`): a fleet ramping faster than
 * the gateway accepts would otherwise pile up thousands of half-open sockets and measure the
 * client's own backlog. FIFO, so devices connect in their ramp order. Once closed, waiters
 * and later callers are refused.
 */
export class ConnectGate {
  private inUse = 0;
  private readonly waiters: ((admitted: boolean) => void)[] = [];
  private head = 0;
  private isClosed = false;

  constructor(readonly limit: number) {}

  /** Resolves true when a slot is taken (release it with {@link release}), false once closed. */
  acquire(): Promise<boolean> {
    if (this.isClosed) return Promise.resolve(false);
    if (this.inUse < this.limit) {
      this.inUse++;
      return Promise.resolve(true);
    }
    const { promise, resolve } = Promise.withResolvers<boolean>();
    this.waiters.push(resolve);
    return promise;
  }

  /** Frees a slot taken by {@link acquire}, handing it to the longest waiter. */
  release(): void {
    if (this.head < this.waiters.length) {
      const next = this.waiters[this.head]!;
      this.waiters[this.head++] = noop;
      // Compact now and then: the queue is consumed from the front.
      if (this.head > 1024 && this.head * 2 > this.waiters.length) {
        this.waiters.splice(0, this.head);
        this.head = 0;
      }
      next(true);
      return;
    }
    this.inUse--;
  }

  /** Refuses every waiter and every later acquire (the run is ending). */
  close(): void {
    this.isClosed = true;
    const rest = this.waiters.splice(this.head);
    this.head = 0;
    this.waiters.length = 0;
    for (const w of rest) w(false);
  }
}

function noop(): void {}
