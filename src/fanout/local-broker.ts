import { type Logger, silentLogger } from "../log";
import type { Broker, FanoutPayload, LinkState, MessageHandler, PublishReceipt, Subscription } from "./broker";
import { FanoutStats } from "./fanout-stats";
import { checkInstanceId, newInstanceId } from "./instance-id";
import { TopicTable } from "./topic-table";

/** Options of {@link LocalBroker}. */
export interface LocalBrokerOptions {
  /** Default: a fresh id ({@link newInstanceId}). */
  readonly instanceId?: string;
  readonly logger?: Logger;
  /** Shared with the directory so that one object feeds `/metrics`. Default: a new one. */
  readonly stats?: FanoutStats;
}

/**
 * The single-instance broker (no `REDIS_URL`): an in-process topic map calling handlers
 * synchronously. It stays this small because the gateway does its websocket fan-out with Bun's
 * own `server.publish`; this only routes API-originated messages to those handlers.
 */
export class LocalBroker implements Broker {
  readonly instanceId: string;
  readonly stats: FanoutStats;
  private readonly table: TopicTable;
  private closed = false;

  constructor(options: LocalBrokerOptions = {}) {
    this.instanceId = options.instanceId === undefined ? newInstanceId() : checkInstanceId(options.instanceId);
    this.stats = options.stats ?? new FanoutStats();
    this.table = new TopicTable(this.stats, options.logger ?? silentLogger);
  }

  get state(): LinkState {
    return this.closed ? "closed" : "local";
  }

  subscribe(topic: string, handler: MessageHandler): Subscription {
    return this.table.add(topic, handler);
  }

  publish(topic: string, payload: FanoutPayload): Promise<PublishReceipt> {
    this.stats.published++;
    const local = this.table.deliver(topic, payload);
    return Promise.resolve({ t: "sent", local, remote: 0 });
  }

  /** One instance: this one, always subscribed (its clients subscribe through Bun). */
  subscribers(_topic: string): Promise<number | undefined> {
    return Promise.resolve(1);
  }

  close(): Promise<void> {
    this.closed = true;
    this.stats.state = "closed";
    this.table.clear();
    return Promise.resolve();
  }
}
