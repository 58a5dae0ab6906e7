import { describeError } from "../errors";
import { type Logger, silentLogger } from "../log";
import type { Broker, FanoutPayload, LinkState, MessageHandler, PublishReceipt, Subscription } from "./broker";
import type { FanoutStats } from "./fanout-stats";
import type { HubLink } from "./hub-link";
import type { PublishReply } from "./hub-protocol";
import { TopicTable } from "./topic-table";

/** Options of {@link HubBroker}. */
export interface HubBrokerOptions {
  readonly link: HubLink;
  readonly instanceId: string;
  readonly stats: FanoutStats;
  readonly logger?: Logger;
}

/**
 * The broker of a worker of `serve --workers N` without Redis: the workers of one box behave as
 * one gateway through the hub in their supervisor. Local handlers are called synchronously, as
 * with every broker; the hub forwards the message to the other workers subscribed to its topic
 * (it knows them: a worker tells it when a topic gets its first local handler or loses its
 * last) and answers how many got it. The IPC channel is ordered and nothing is retried, so the
 * guarantee of {@link Broker} holds; the link is down only once the supervisor is gone.
 */
export class HubBroker implements Broker {
  readonly instanceId: string;
  private readonly link: HubLink;
  private readonly stats: FanoutStats;
  private readonly logger: Logger;
  private readonly table: TopicTable;
  private closed = false;

  constructor(o: HubBrokerOptions) {
    this.instanceId = o.instanceId;
    this.link = o.link;
    this.stats = o.stats;
    this.logger = o.logger ?? silentLogger;
    this.stats.state = "ready";
    this.table = new TopicTable(this.stats, this.logger, (topic, active) => void this.link.send({ t: active ? "sub" : "unsub", topic }));
    this.link.onPublished = (topic, payload) => {
      this.stats.received++;
      if (this.table.deliver(topic, payload) === 0) this.stats.unrouted++;
    };
    this.link.onDisconnect(() => {
      if (!this.closed) this.stats.state = "down";
    });
  }

  get state(): LinkState {
    return this.stats.state;
  }

  subscribe(topic: string, handler: MessageHandler): Subscription {
    return this.table.add(topic, handler);
  }

  async publish(topic: string, payload: FanoutPayload): Promise<PublishReceipt> {
    this.stats.published++;
    const local = this.table.deliver(topic, payload);
    if (this.closed) return { t: "sent", local, remote: 0 };
    try {
      const reply = await this.link.request<PublishReply>((id) => ({ t: "pub", id, topic, payload }));
      return { t: "sent", local, remote: reply.remote };
    } catch (err) {
      this.stats.publishFailures++;
      return { t: "failed", local, reason: describeError(err) };
    }
  }

  async subscribers(topic: string): Promise<number | undefined> {
    try {
      return await this.link.request<number>((id) => ({ t: "subs", id, topic }));
    } catch {
      return undefined;
    }
  }

  close(): Promise<void> {
    this.closed = true;
    this.stats.state = "closed";
    for (const topic of [...this.table.topics()]) this.link.send({ t: "unsub", topic });
    this.table.clear();
    return Promise.resolve();
  }
}
