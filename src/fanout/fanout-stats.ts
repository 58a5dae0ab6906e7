import type { LinkState } from "./broker";

/**
 * Fan-out and directory counters, plain number fields so that the hot path only increments
 * and `/metrics` reads them on scrape (like `Metrics`, which this module may not extend).
 */
export class FanoutStats {
  /** The cross-instance link, for a `redis_state` gauge. */
  state: LinkState = "local";
  /** Times the link came back after being down. */
  reconnects = 0;

  /** `publish` calls. */
  published = 0;
  /** Cross-instance publishes Redis did not confirm (down, or timed out): not retried. */
  publishFailures = 0;
  /** Envelopes encoded: one per cross-instance publish, whatever the number of recipients. */
  encoded = 0;
  /** Messages from other instances handed to local handlers (once per message, not handler). */
  received = 0;
  /** Our own publications coming back from Redis, skipped (local handlers already had them). */
  ownSkipped = 0;
  /** Envelopes seen before (same origin and sequence), dropped. */
  duplicates = 0;
  /** Messages that are not our envelope format, dropped. */
  malformed = 0;
  /** Messages for a topic no local handler subscribes to any more (a race with unsubscribe). */
  unrouted = 0;
  /** Handlers that threw. */
  handlerErrors = 0;

  /** Devices claimed on this instance. */
  claims = 0;
  /** Takeover notices sent to the instance that held a device before us. */
  takeoversSent = 0;
  /** Sessions of ours found stale (by notice or by refresh), reported to `onTakeover`. */
  takeoversReceived = 0;
  /** Directory entries written again because Redis had lost them (e.g. after a restart). */
  reestablished = 0;
  /** Directory operations that could not reach Redis (retried by the next refresh). */
  directoryFailures = 0;
}
