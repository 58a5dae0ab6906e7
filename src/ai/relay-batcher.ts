import type { ServerEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";

/** Default cap on events per RelayResponse. */
export const RELAY_BATCH_MAX_EVENTS = 256;

/**
 * Collects the server events of many sessions into batches, one per event-loop turn: the first
 * event of a batch schedules a flush with `setImmediate`, so everything emitted in the same turn
 * (one request batch's worth of answers, timers that fired together) leaves as one message,
 * while a lone event waits no longer than the rest of the turn. A batch that reaches
 * `maxEvents` is flushed at once.
 */
export class RelayBatcher {
  private batch: ServerEvent[] = [];
  private immediate: ReturnType<typeof setImmediate> | undefined;
  private readonly maxEvents: number;

  /**
   * @param flushBatch receives each non-empty batch, in order; it owns the array.
   * @param maxEvents cap on events per batch, default {@link RELAY_BATCH_MAX_EVENTS}.
   */
  constructor(
    private readonly flushBatch: (events: ServerEvent[]) => void,
    maxEvents = RELAY_BATCH_MAX_EVENTS,
  ) {
    this.maxEvents = Math.max(1, Math.floor(maxEvents));
  }

  add(event: ServerEvent): void {
    this.batch.push(event);
    if (this.batch.length >= this.maxEvents) {
      this.flush();
      return;
    }
    this.immediate ??= setImmediate(this.onImmediate);
  }

  /** Hands over what is collected now (nothing when empty) and cancels the pending flush. */
  flush(): void {
    if (this.immediate !== undefined) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    if (this.batch.length === 0) return;
    const events = this.batch;
    this.batch = [];
    this.flushBatch(events);
  }

  private readonly onImmediate = (): void => {
    this.immediate = undefined;
    this.flush();
  };
}
