import type { Logger } from "../log";
import type { MemoryBudget } from "../memory-budget";
import type { Metrics } from "../metrics";
import type { ConnectionPool } from "./connection-pool";

/** What both transports (`relay`, `converse`) are built with. */
export interface TransportOptions {
  readonly pool: ConnectionPool;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Heartbeat interval of each stream; one unanswered for a whole interval kills the stream. */
  readonly heartbeatMs: number;
  /** A new stream that has not answered its first Heartbeat this long after opening has
   * failed (an AI service that accepts more streams than it serves, like a grpcio server
   * whose thread pool is smaller than its streams, would otherwise hang the session until
   * the heartbeat check, silently). */
  readonly openTimeoutMs: number;
  /** First delay before re-opening a failed stream; doubles (jittered) up to the max. */
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** Audio kept per session while it has no usable stream (oldest dropped, counted). */
  readonly bufferMs: number;
  /** The process-wide budget that queued device bytes count against, if any. */
  readonly budget?: MemoryBudget;
}
