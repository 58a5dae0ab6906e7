import type { HostPort } from "../config/config-schema";
import type { Logger } from "../log";
import type { MemoryBudget } from "../memory-budget";
import type { Metrics } from "../metrics";
import { ConnectionPool } from "./connection-pool";
import { createConverseUpstream } from "./converse-upstream";
import { createRelayUpstream } from "./relay-upstream";
import type { Upstream } from "./upstream";

export interface UpstreamOptions {
  readonly targets: readonly HostPort[];
  /** `relay`: batched, many sessions per stream; `converse`: one stream per session. */
  readonly transport: "relay" | "converse";
  readonly maxConnections: number;
  readonly heartbeatMs: number;
  /** How long a new stream (and a pool probe) may take to answer its first Heartbeat.
   * Default min(heartbeatMs, 5000). */
  readonly openTimeoutMs?: number;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  readonly bufferMs: number;
  /** Relay: events a backed-up stream may hold before the oldest audio is shed. */
  readonly maxPendingEvents?: number;
  /** Relay: on a busy stream, at most one write per this many ms. Default 0. */
  readonly batchWindowMs?: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Queued device bytes count against it. */
  readonly budget?: MemoryBudget;
}

/** The link to the AI service(s): a warmed connection pool and the chosen transport. The
 * pool warms in the background; `waitReady` tells when it can serve. */
export function createUpstream(o: UpstreamOptions): Upstream {
  const logger = o.logger.child({ component: "upstream" });
  const openTimeoutMs = o.openTimeoutMs ?? Math.min(o.heartbeatMs, 5000);
  const pool = new ConnectionPool({
    targets: o.targets,
    size: o.maxConnections,
    heartbeatMs: o.heartbeatMs,
    probeTimeoutMs: openTimeoutMs,
    reconnectBaseMs: o.reconnectBaseMs,
    reconnectMaxMs: o.reconnectMaxMs,
    logger,
    announceReady: o.transport !== "relay",
  });
  void pool.start();
  const common = {
    pool,
    logger,
    openTimeoutMs,
    metrics: o.metrics,
    reconnectBaseMs: o.reconnectBaseMs,
    reconnectMaxMs: o.reconnectMaxMs,
    bufferMs: o.bufferMs,
    budget: o.budget,
  };
  if (o.transport === "relay") {
    return createRelayUpstream({ ...common, heartbeatMs: o.heartbeatMs, maxPendingEvents: o.maxPendingEvents, batchWindowMs: o.batchWindowMs });
  }
  return createConverseUpstream({ ...common, heartbeatMs: o.heartbeatMs });
}
