import type { RelayResponse, ServerEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";

/** Default cap on events per RelayResponse. */
export const RELAY_BATCH_MAX_EVENTS = 256;

/**
 * Collects the server events of many sessions and hands them to the Relay response stream
 * as batches. The stream's writer takes everything queued whenever it is ready for the next
 * message: a lone event leaves on the next microtask (no timer), and events emitted while
 * the writer is busy share one RelayResponse, at most `maxEvents` each. Iterate it once.
 */
export class RelayBatcher implements AsyncIterable<RelayResponse> {
  private pending: ServerEvent[] = [];
  private open = true;
  private wake: (() => void) | undefined;
  private readonly maxEvents: number;

  /** @param maxEvents cap on events per batch, default {@link RELAY_BATCH_MAX_EVENTS}. */
  constructor(maxEvents = RELAY_BATCH_MAX_EVENTS) {
    this.maxEvents = Math.max(1, Math.floor(maxEvents));
  }

  /** Queues `event`; dropped once closed. */
  add(event: ServerEvent): void {
    if (!this.open) return;
    this.pending.push(event);
    if (this.pending.length === 1) this.notify();
  }

  /** No more events: the iterator yields what is queued, then ends. Idempotent. */
  close(): void {
    this.open = false;
    this.notify();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<RelayResponse, void, undefined> {
    for (;;) {
      if (this.pending.length > 0) {
        let events = this.pending;
        if (events.length > this.maxEvents) {
          this.pending = events.slice(this.maxEvents);
          events = events.slice(0, this.maxEvents);
        } else {
          this.pending = [];
        }
        yield { $typeName: "xiaozhi.ai.v1.RelayResponse", events };
        continue;
      }
      if (!this.open) return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private notify(): void {
    const w = this.wake;
    if (w === undefined) return;
    this.wake = undefined;
    w();
  }
}
