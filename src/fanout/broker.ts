/**
 * The fan-out broker: how a message published on one gateway instance reaches the subscribers
 * of its topic on every instance.
 *
 * Delivery guarantee (the same for every implementation):
 * - At most once per subscription. A message is never delivered twice to the same handler, not
 *   even across a Redis restart: nothing is retried, and repeated envelopes are dropped by the
 *   receiver (origin instance id + per-instance sequence number).
 * - Handlers on the publishing instance are called synchronously inside `publish`, before it
 *   returns, whether or not Redis is reachable: local service never waits for Redis.
 * - Other instances get the message through Redis pub/sub. While Redis is unreachable nothing
 *   crosses instances: such a publish resolves `{ t: "failed" }` (and is counted), it is neither
 *   queued nor retried, because a late broadcast is worse than none for a live device and a
 *   retry is what would make duplicates. Once Redis is back, subscriptions are restored (each
 *   exactly once) and later messages flow again.
 * - Order: messages from one instance reach each subscriber in publish order. Nothing is
 *   promised about order between instances.
 * - Payloads are encoded once per publish (not per recipient) and decoded once per receiving
 *   instance; every handler of that instance gets the same string or byte view, which it must
 *   not modify.
 */
export interface Broker {
  /** This instance's id: the origin stamped on what it publishes. */
  readonly instanceId: string;
  /** Where the cross-instance path stands (`"local"` for a single-instance broker). */
  readonly state: LinkState;
  /**
   * Calls `handler` for every message published to `topic` on any instance from now on, until
   * the returned subscription is ended. A handler that throws is logged and counted; the other
   * handlers still run.
   */
  subscribe(topic: string, handler: MessageHandler): Subscription;
  /**
   * Publishes `payload` to every subscriber of `topic` on every instance (see the guarantee
   * above). Never rejects: a failure to reach Redis is reported in the receipt, counted in the
   * stats and logged once per outage, so a caller that does not care may drop the promise.
   */
  publish(topic: string, payload: FanoutPayload): Promise<PublishReceipt>;
  /**
   * How many instances (this one included) are subscribed to `topic` now, or undefined when
   * that cannot be known (the link is down). Lets a caller tell, before it promises a
   * delivery to every instance, that one is still resubscribing after a Redis restart.
   */
  subscribers(topic: string): Promise<number | undefined>;
  /** Stops delivery and closes connections. Further publishes only reach local handlers. */
  close(): Promise<void>;
}

/** What travels: text (sent to a device as a text frame) or bytes (binary frame). */
export type FanoutPayload = string | Uint8Array;

/** Receives one message. `topic` is the subscribed topic, so one handler can serve several. */
export type MessageHandler = (payload: FanoutPayload, topic: string) => void;

/** A live subscription. */
export interface Subscription {
  /** Ends the subscription; idempotent. No message is delivered to its handler afterwards. */
  unsubscribe(): void;
}

/**
 * The outcome of one publish.
 * - `sent`: Redis accepted it; `remote` is how many other instances were subscribed to the
 *   topic (0 for a single-instance broker). `local + remote === 0` on a device topic means the
 *   device is connected nowhere.
 * - `failed`: Redis could not be reached (or did not confirm in time), so other instances did
 *   not get it, or, after a timeout, may have; never retried. `reason` is safe to log.
 */
export type PublishReceipt =
  | { readonly t: "sent"; readonly local: number; readonly remote: number }
  | { readonly t: "failed"; readonly local: number; readonly reason: string };

/**
 * The cross-instance link: `local` (no Redis configured), `connecting` (not yet ready the
 * first time), `ready` (both connections up and every subscription confirmed), `down` (lost;
 * reconnecting with backoff), `closed`.
 */
export type LinkState = "local" | "connecting" | "ready" | "down" | "closed";
