import { type InboundLimits, inboundBurstBytes } from "../session/inbound-limiter";

/** What `serve` enforces per client address, resolved from the settings and the budget. */
export interface PerAddressLimits {
  /** Open device connections per address. */
  readonly maxConnectionsPerIp: number;
  /** New device connections per second per address. */
  readonly maxConnectsPerIpPerSecond: number;
  /** Bytes per second all connections of one address may send together, and their burst
   * (the larger of the rate times IM_INBOUND_BURST_SECONDS and two of the largest messages).
   * Absent: no such limit. */
  readonly bytesPerIp?: { readonly ratePerSecond: number; readonly burst: number };
  /** Set when an explicit IM_MAX_CONNECTIONS_PER_IP lets one address, each connection
   * within its limits, burst past the memory budget: the warning to log at start. */
  readonly warning?: string;
}

/** Large enough never to refuse a developer's load test; still a number the limits accept. */
const UNLIMITED = 1_000_000;

/**
 * The per-address limits. One connection may send its inbound byte burst at once (the
 * budget's view of the worst it can cost before the rate limit bites); the per-address
 * connection limit is what multiplies it, so by default it is derived from the budget:
 * `budget / burst` (128 with the defaults and 16 GiB or more of memory), so that one address
 * cannot fill the budget within its own limits. Their bytes together are held to
 * IM_MAX_BYTES_PER_IP_PER_SECOND, so that many connections of one address cannot burst at
 * once what one may. An explicit larger value is honoured (a NAT
 * or proxy may hide many devices behind one address) with a warning: past the budget the
 * gateway then holds by shedding. In debug mode (a developer's machine) no per-address limit
 * applies, so that `bun start` takes the load generator's thousand devices from one
 * address.
 */
export function perAddressLimits(o: {
  /** IM_MAX_CONNECTIONS_PER_IP; 0 = derived from the budget. */
  readonly maxConnectionsPerIp: number;
  readonly maxConnectsPerIpPerSecond: number;
  /** IM_MAX_BYTES_PER_IP_PER_SECOND; 0 = none. */
  readonly maxBytesPerIpPerSecond: number;
  /** One connection's inbound limits. */
  readonly inbound: InboundLimits;
  readonly budgetBytes: number;
  readonly debug: boolean;
}): PerAddressLimits {
  if (o.debug) return { maxConnectionsPerIp: UNLIMITED, maxConnectsPerIpPerSecond: UNLIMITED };
  const burstBytes = inboundBurstBytes(o.inbound);
  const bytesPerIp =
    o.maxBytesPerIpPerSecond > 0
      ? { ratePerSecond: o.maxBytesPerIpPerSecond, burst: inboundBurstBytes({ ...o.inbound, maxBytesPerSecond: o.maxBytesPerIpPerSecond }) }
      : undefined;
  const derived = Math.max(1, Math.floor(o.budgetBytes / burstBytes));
  const base = { maxConnectsPerIpPerSecond: o.maxConnectsPerIpPerSecond, ...(bytesPerIp === undefined ? {} : { bytesPerIp }) };
  if (o.maxConnectionsPerIp === 0) return { maxConnectionsPerIp: derived, ...base };
  const worst = o.maxConnectionsPerIp * burstBytes;
  const warning =
    worst > o.budgetBytes
      ? `IM_MAX_CONNECTIONS_PER_IP ${o.maxConnectionsPerIp} x ${mib(burstBytes)} MiB inbound burst per connection = ${mib(worst)} MiB, ` +
        `over the ${mib(o.budgetBytes)} MiB memory budget: one address can reach the budget within its limits (the gateway then sheds). ` +
        `Leave it unset (derived: ${derived}) or raise IM_MEMORY_BUDGET_MB.`
      : undefined;
  return { maxConnectionsPerIp: o.maxConnectionsPerIp, ...base, ...(warning === undefined ? {} : { warning }) };
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
