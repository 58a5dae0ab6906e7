import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import type { ConnectionPool } from "./connection-pool";

/** What both transports (`relay`, `converse`) are built with. */
export interface TransportOptions {
  readonly pool: ConnectionPool;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Heartbeat interval of each stream; one unanswered for a whole interval kills the stream. */
  readonly heartbeatMs: number;
  /** First delay before re-opening a failed stream; doubles (jittered) up to the max. */
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** Audio kept per session while it has no usable stream (oldest dropped, counted). */
  readonly bufferMs: number;
}
