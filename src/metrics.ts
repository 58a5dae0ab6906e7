/**
 * Process counters, cheap enough for the per-frame path (plain number fields, no labels
 * allocated per increment). Prometheus exposition is built from these on scrape.
 */

/** Why a frame or message was dropped instead of forwarded. Stable names: they are metric
 * labels and log fields. */
export type DropReason =
  | "before-hello"
  | "frame-short"
  | "frame-size-mismatch"
  | "upstream-backlog"
  | "upstream-closed"
  | "upstream-bad-event"
  | "device-send-failed"
  | "device-closed";

export class Metrics {
  framesIn = 0;
  bytesIn = 0;
  framesOut = 0;
  bytesOut = 0;
  jsonIn = 0;
  jsonOut = 0;
  connectionsOpened = 0;
  connectionsClosed = 0;
  upstreamStreamsOpened = 0;
  upstreamStreamFailures = 0;
  upstreamReconnects = 0;
  /** RelayRequests sent, and the events they carried (their ratio is the batching). */
  relayBatches = 0;
  relayEvents = 0;
  readonly dropped: Record<DropReason, number> = {
    "before-hello": 0,
    "frame-short": 0,
    "frame-size-mismatch": 0,
    "upstream-backlog": 0,
    "upstream-closed": 0,
    "upstream-bad-event": 0,
    "device-send-failed": 0,
    "device-closed": 0,
  };

  drop(reason: DropReason, n = 1): void {
    this.dropped[reason] += n;
  }
}
