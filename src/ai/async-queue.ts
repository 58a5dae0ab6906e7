/**
 * An unbounded single-consumer queue that a push-based producer (a session's emit callback)
 * fills and an async generator (a Connect response stream) drains. Closing it lets the consumer
 * take what is queued and then end; a consumer waiting on an empty queue wakes at once.
 */
export class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private head = 0;
  private open = true;
  private wake: (() => void) | undefined;

  /** Number of items queued and not yet taken. */
  get size(): number {
    return this.items.length - this.head;
  }

  /** Queues `item`; returns false (dropping it) once the queue is closed. */
  push(item: T): boolean {
    if (!this.open) return false;
    this.items.push(item);
    this.notify();
    return true;
  }

  /** No more items; the consumer ends after taking what is queued. Idempotent. */
  close(): void {
    this.open = false;
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for (;;) {
      while (this.head < this.items.length) {
        const item = this.items[this.head]!;
        this.head++;
        yield item;
      }
      // Reset instead of shift(): O(1) per item and the array is reused.
      this.items.length = 0;
      this.head = 0;
      if (!this.open) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const wake = this.wake;
    if (wake === undefined) return;
    this.wake = undefined;
    wake();
  }
}
