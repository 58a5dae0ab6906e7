import { Redis, type RedisOptions } from "ioredis";
import { describeError } from "../errors";
import { type Logger, silentLogger } from "../log";
import type { Broker, FanoutPayload, LinkState, MessageHandler, PublishReceipt, Subscription } from "./broker";
import { DuplicateFilter } from "./duplicate-filter";
import { encodeEnvelope, envelopePayload, readEnvelopeHeader } from "./fanout-envelope";
import { FanoutStats } from "./fanout-stats";
import { checkInstanceId, newInstanceId } from "./instance-id";
import { backoffDelayMs } from "../backoff";
import { defaultReconnectBackoff, type ReconnectBackoff } from "./reconnect-backoff";
import { TopicTable } from "./topic-table";

/** Options of {@link RedisBroker}. */
export interface RedisBrokerOptions {
  /** `redis://[user:pass@]host:port[/db]` or `rediss://...`. */
  readonly url: string;
  /** Default: a fresh id per process ({@link newInstanceId}). */
  readonly instanceId?: string;
  /**
   * Prefix of every Redis key and channel, so gateways of different deployments (or tests) can
   * share a Redis. Default `"xiaozhi:"`.
   */
  readonly keyPrefix?: string;
  /** Reconnect delays. Default 100 ms doubling to 1 s, jittered. */
  readonly reconnect?: Partial<ReconnectBackoff>;
  /**
   * How long a command (a publish, a directory update) may wait for Redis's answer before it
   * counts as failed. Default 2000. Bounds the wait on a half-dead connection.
   */
  readonly commandTimeoutMs?: number;
  readonly logger?: Logger;
  /** Shared with the directory so that one object feeds `/metrics`. Default: a new one. */
  readonly stats?: FanoutStats;
}

/**
 * The cross-instance broker on Redis pub/sub, with ioredis: one command connection (publishes,
 * and the directory's commands) and one subscriber connection per instance.
 *
 * How the {@link Broker} guarantee is kept:
 * - Local handlers are called inside `publish`; our own message coming back from Redis is
 *   recognised by its origin id and skipped, so local devices never wait for, nor depend on,
 *   Redis and never get a message twice.
 * - The command connection never queues or resends: no offline queue, no resending of commands
 *   that were in flight when the connection dropped (a resent PUBLISH is a duplicate), no
 *   retries. A publish that Redis did not confirm resolves `failed`.
 * - The subscriber connection resubscribes by itself after a reconnect (ioredis
 *   `autoResubscribe`). That cannot duplicate: Redis keeps a channel subscribed once per
 *   connection however often SUBSCRIBE is sent, and this class has one `messageBuffer`
 *   listener that routes by channel, attached once. (Bun's built-in client is not used because
 *   it does neither: it forgets server-side subscriptions while keeping listeners.)
 * - Receivers drop an envelope whose origin/sequence they have seen ({@link DuplicateFilter}),
 *   the last line of defence should anything upstream repeat a message.
 * - `state` becomes `ready` only after the subscriber answered a PING sent after its
 *   resubscription, i.e. once every subscription is in effect again.
 */
export class RedisBroker implements Broker {
  readonly instanceId: string;
  readonly stats: FanoutStats;
  /**
   * The command connection. Also the one the device directory runs its commands on: it fails
   * fast while Redis is down (no offline queue), which is what every caller here wants.
   */
  readonly commands: Redis;
  private readonly subscriber: Redis;
  private readonly table: TopicTable;
  private readonly filter = new DuplicateFilter();
  private readonly logger: Logger;
  private readonly channelPrefix: string;
  private readonly channelPrefixBytes: number;
  private readonly origin: Uint8Array;
  private seq = 0;
  private current: LinkState = "connecting";
  private commandsReady = false;
  private subscriberReady = false;
  /** Bumped on every subscriber (re)connect, so a late PING answer of an old one is ignored. */
  private subscriberEpoch = 0;
  private everLost = false;
  private publishFailureLogged = false;
  private stateListeners: ((state: LinkState) => void)[] = [];

  constructor(options: RedisBrokerOptions) {
    this.instanceId = options.instanceId === undefined ? newInstanceId() : checkInstanceId(options.instanceId);
    this.stats = options.stats ?? new FanoutStats();
    this.stats.state = this.current;
    this.logger = (options.logger ?? silentLogger).child({ component: "fanout" });
    this.channelPrefix = `${options.keyPrefix ?? "xiaozhi:"}fanout:`;
    this.channelPrefixBytes = Buffer.byteLength(this.channelPrefix);
    this.origin = Buffer.from(this.instanceId, "latin1");
    this.table = new TopicTable(this.stats, this.logger, (topic, active) => this.onTopicChange(topic, active));

    const backoff: ReconnectBackoff = { ...defaultReconnectBackoff, ...options.reconnect };
    const common: RedisOptions = {
      // ioredis counts attempts from 1.
      retryStrategy: (attempt) => backoffDelayMs(attempt - 1, backoff.minMs, backoff.maxMs),
    };
    this.commands = new Redis(options.url, {
      ...common,
      connectionName: `xiaozhi-im:${this.instanceId}:cmd`,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? 2_000,
    });
    this.subscriber = new Redis(options.url, {
      ...common,
      connectionName: `xiaozhi-im:${this.instanceId}:sub`,
      autoResubscribe: true,
      // SUBSCRIBE issued while Redis is away waits for it rather than failing.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
    });

    this.commands.on("ready", () => {
      this.commandsReady = true;
      this.updateState();
    });
    this.commands.on("close", () => this.connectionLost("commands"));
    // ioredis emits an error per failed reconnect attempt (and prints them when nobody
    // listens); the state machine logs once per outage, these only at debug.
    this.commands.on("error", (err) => this.logger.debug({ err: describeError(err), connection: "commands" }, "redis error"));
    this.subscriber.on("ready", () => this.subscriberConnected());
    this.subscriber.on("close", () => this.connectionLost("subscriber"));
    this.subscriber.on("error", (err) => this.logger.debug({ err: describeError(err), connection: "subscriber" }, "redis error"));
    this.subscriber.on("messageBuffer", (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
  }

  get state(): LinkState {
    return this.current;
  }

  subscribe(topic: string, handler: MessageHandler): Subscription {
    return this.table.add(topic, handler);
  }

  publish(topic: string, payload: FanoutPayload): Promise<PublishReceipt> {
    this.stats.published++;
    const local = this.table.deliver(topic, payload);
    if (this.commands.status !== "ready") return Promise.resolve(this.publishFailed(local, `redis ${this.current}`));
    const envelope = encodeEnvelope(this.origin, ++this.seq, payload);
    this.stats.encoded++;
    return this.commands.publish(this.channelPrefix + topic, envelope).then(
      // Redis counts subscribed connections, our own subscriber among them when we have local
      // handlers; `remote` is about the other instances.
      (receivers): PublishReceipt => ({ t: "sent", local, remote: Math.max(0, receivers - (local > 0 ? 1 : 0)) }),
      (err: unknown) => this.publishFailed(local, describeError(err)),
    );
  }

  async subscribers(topic: string): Promise<number | undefined> {
    if (this.current !== "ready") return undefined;
    try {
      const [, count] = (await this.commands.pubsub("NUMSUB", this.channelPrefix + topic)) as [string, number];
      return Number(count);
    } catch {
      return undefined;
    }
  }

  /**
   * A barrier on the subscriber connection: resolves once every subscribe/unsubscribe made so
   * far is in effect in Redis, and every message Redis routed to this instance before the call
   * has been delivered (a PING's answer follows both on the connection). So after a publish
   * resolved `sent`, `sync()` on any instance means that instance has handled it. While Redis
   * is down it waits for the reconnect; rejects if the broker is closed.
   */
  async sync(): Promise<void> {
    await this.subscriber.ping();
  }

  /** Resolves when the link reaches `state` (at once if it is there). */
  whenState(state: LinkState): Promise<void> {
    if (this.current === state) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    const sub = this.onStateChange((s) => {
      if (s !== state) return;
      sub.unsubscribe();
      resolve();
    });
    return promise;
  }

  /** Calls `listener` on every change of {@link state}. */
  onStateChange(listener: (state: LinkState) => void): Subscription {
    this.stateListeners = [...this.stateListeners, listener];
    return {
      unsubscribe: () => {
        this.stateListeners = this.stateListeners.filter((l) => l !== listener);
      },
    };
  }

  async close(): Promise<void> {
    if (this.current === "closed") return;
    this.setState("closed");
    this.table.clear();
    // QUIT lets replies already on their way arrive (pending publishes resolve `sent`);
    // without a live connection there is nothing to wait for.
    await Promise.allSettled([this.commands, this.subscriber].map((conn) => (conn.status === "ready" ? conn.quit() : Promise.resolve(conn.disconnect()))));
  }

  private onTopicChange(topic: string, active: boolean): void {
    if (this.current === "closed") return;
    const channel = this.channelPrefix + topic;
    const done = active ? this.subscriber.subscribe(channel) : this.subscriber.unsubscribe(channel);
    // Failing here means the broker was closed: the subscription is moot then.
    done.catch((err: unknown) => this.logger.debug({ err: describeError(err), topic }, "redis (un)subscribe failed"));
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    const header = readEnvelopeHeader(message);
    if (header === undefined) {
      this.stats.malformed++;
      return;
    }
    if (header.origin === this.instanceId) {
      this.stats.ownSkipped++;
      return;
    }
    if (!this.filter.accept(header.origin, header.seq)) {
      this.stats.duplicates++;
      return;
    }
    const topic = channel.toString("utf8", this.channelPrefixBytes);
    if (this.table.deliver(topic, envelopePayload(message, header)) === 0) this.stats.unrouted++;
    else this.stats.received++;
  }

  private subscriberConnected(): void {
    const epoch = ++this.subscriberEpoch;
    // ioredis wrote its resubscription before emitting "ready"; the PING's answer follows the
    // SUBSCRIBE confirmations, so from then on every topic is live again.
    this.subscriber.ping().then(
      () => {
        if (epoch !== this.subscriberEpoch || this.subscriber.status !== "ready") return;
        this.subscriberReady = true;
        this.updateState();
      },
      () => {
        // The connection dropped again; its "close" handles the state.
      },
    );
  }

  private connectionLost(which: "commands" | "subscriber"): void {
    if (which === "commands") this.commandsReady = false;
    else {
      this.subscriberReady = false;
      this.subscriberEpoch++;
    }
    this.everLost = true;
    this.updateState();
  }

  private updateState(): void {
    if (this.current === "closed") return;
    if (this.commandsReady && this.subscriberReady) this.setState("ready");
    else if (this.everLost) this.setState("down");
  }

  private setState(next: LinkState): void {
    const prev = this.current;
    if (prev === next) return;
    this.current = next;
    this.stats.state = next;
    if (next === "down") {
      this.logger.warn({ instanceId: this.instanceId }, "redis unreachable: cross-instance fan-out paused, local delivery continues");
    } else if (next === "ready") {
      if (prev === "down") this.stats.reconnects++;
      this.publishFailureLogged = false;
      const fields = { instanceId: this.instanceId, publishFailures: this.stats.publishFailures };
      this.logger.info(fields, "redis ready: cross-instance fan-out on");
    }
    for (const listener of this.stateListeners) listener(next);
  }

  private publishFailed(local: number, reason: string): PublishReceipt {
    this.stats.publishFailures++;
    if (!this.publishFailureLogged) {
      // Once per outage: a broadcast storm while Redis is down must not flood the log.
      this.publishFailureLogged = true;
      this.logger.warn({ reason }, "cross-instance publish failed; counting further failures until redis is back");
    }
    return { t: "failed", local, reason };
  }
}
