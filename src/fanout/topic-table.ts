import type { Logger } from "../log";
import type { FanoutPayload, MessageHandler, Subscription } from "./broker";
import type { FanoutStats } from "./fanout-stats";

/**
 * The handlers of each topic on this instance: the in-process half of every broker.
 * Handler lists are copied on subscribe/unsubscribe and never on delivery, because delivery is
 * the frequent operation and a handler may unsubscribe while being called.
 */
export class TopicTable {
  private readonly handlers = new Map<string, readonly MessageHandler[]>();

  constructor(
    private readonly stats: FanoutStats,
    private readonly logger: Logger,
    /** Called when a topic gets its first handler or loses its last one. */
    private readonly onTopicChange: (topic: string, active: boolean) => void = () => {},
  ) {}

  /** Adds `handler` to `topic`; the subscription removes exactly this registration. */
  add(topic: string, handler: MessageHandler): Subscription {
    const current = this.handlers.get(topic);
    this.handlers.set(topic, current === undefined ? [handler] : [...current, handler]);
    if (current === undefined) this.onTopicChange(topic, true);
    let active = true;
    return {
      unsubscribe: () => {
        if (!active) return;
        active = false;
        this.remove(topic, handler);
      },
    };
  }

  /** Calls every handler of `topic` with `payload`; returns how many were called. */
  deliver(topic: string, payload: FanoutPayload): number {
    const list = this.handlers.get(topic);
    if (list === undefined) return 0;
    for (const handler of list) {
      try {
        handler(payload, topic);
      } catch (err) {
        // One broken consumer must not starve the others of the message.
        this.stats.handlerErrors++;
        this.logger.error({ err, topic }, "fan-out handler threw");
      }
    }
    return list.length;
  }

  has(topic: string): boolean {
    return this.handlers.has(topic);
  }

  /** Every topic with at least one handler. */
  topics(): IterableIterator<string> {
    return this.handlers.keys();
  }

  clear(): void {
    this.handlers.clear();
  }

  private remove(topic: string, handler: MessageHandler): void {
    const current = this.handlers.get(topic);
    if (current === undefined) return;
    const at = current.indexOf(handler);
    if (at < 0) return;
    if (current.length === 1) {
      this.handlers.delete(topic);
      this.onTopicChange(topic, false);
      return;
    }
    this.handlers.set(topic, [...current.slice(0, at), ...current.slice(at + 1)]);
  }
}
