import type { DeviceEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { MemoryBudget } from "../memory-budget";
import type { Metrics } from "../metrics";

/** The device bytes an event carries (audio, an image, an MCP message or a chat text, the
 * ones a client can make large): what it costs to hold. String lengths count UTF-16 units,
 * close enough for a budget. */
export function eventBytes(ev: DeviceEvent): number {
  const e = ev.event;
  switch (e.case) {
    case "audio":
      return e.value.opus.length;
    case "image":
      return e.value.data.length;
    case "mcp":
      return e.value.payloadJson.length;
    case "chat":
      return e.value.text.length;
    default:
      return 0;
  }
}

/**
 * A session's events waiting for a stream: every control event is kept, in order, but at
 * most `maxAudio` audio events (the oldest audio is dropped and counted). Bounded by time,
 * never by hope: `maxAudio` is the buffer duration divided by the frame duration.
 */
export class EventBacklog {
  private events: DeviceEvent[] = [];
  private head = 0;
  private audio = 0;
  /** Device bytes held (counted in the budget too, when there is one). */
  bytes = 0;

  constructor(
    private readonly maxAudio: number,
    private readonly metrics: Metrics,
    private readonly budget?: MemoryBudget,
  ) {}

  get length(): number {
    return this.events.length - this.head;
  }

  push(ev: DeviceEvent): void {
    this.events.push(ev);
    this.hold(eventBytes(ev));
    if (ev.event.case === "audio" && ++this.audio > this.maxAudio) this.dropOldestAudio();
  }

  /** The oldest event, or undefined when empty. */
  shift(): DeviceEvent | undefined {
    if (this.head >= this.events.length) return undefined;
    const ev = this.events[this.head]!;
    this.head++;
    // Compact once the consumed prefix dominates: amortised O(1) without a ring buffer.
    if (this.head === this.events.length) {
      this.events = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.head = 0;
    }
    if (ev.event.case === "audio") this.audio--;
    this.hold(-eventBytes(ev));
    return ev;
  }

  /** The events waiting, in order, without taking them. */
  peek(): readonly DeviceEvent[] {
    return this.events.slice(this.head);
  }

  /** Empties the backlog, returning its events in order. */
  drain(): DeviceEvent[] {
    const out = this.events.slice(this.head);
    this.events = [];
    this.head = 0;
    this.audio = 0;
    this.hold(-this.bytes);
    return out;
  }

  private hold(bytes: number): void {
    this.bytes += bytes;
    if (this.budget !== undefined) this.budget.queued += bytes;
  }

  private dropOldestAudio(): void {
    for (let i = this.head; i < this.events.length; i++) {
      if (this.events[i]!.event.case === "audio") {
        this.hold(-eventBytes(this.events[i]!));
        this.events.splice(i, 1);
        this.audio--;
        this.metrics.drop("upstream-backlog");
        return;
      }
    }
  }
}

/** How many audio frames `bufferMs` holds at `frameDurationMs` (at least 1). */
export function audioFramesFor(bufferMs: number, frameDurationMs: number): number {
  return Math.max(1, Math.ceil(bufferMs / Math.max(1, frameDurationMs)));
}
