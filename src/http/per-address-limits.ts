/** What `serve` enforces per client address, resolved from the settings and the budget. */
export interface PerAddressLimits {
  /** Open device connections per address. */
  readonly maxConnectionsPerIp: number;
  /** New device connections per second per address. */
  readonly maxConnectsPerIpPerSecond: number;
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
 * cannot fill the budget within its own limits. An explicit larger value is honoured (a NAT
 * or proxy may hide many devices behind one address) with a warning: past the budget the
 * gateway then holds by shedding. In debug mode (a developer's machine) neither per-address
 * limit applies, so that `bun start` takes the load generator's thousand devices from one
 * address.
 */
export function perAddressLimits(o: {
  /** IM_MAX_CONNECTIONS_PER_IP; 0 = derived from the budget. */
  readonly maxConnectionsPerIp: number;
  readonly maxConnectsPerIpPerSecond: number;
  /** One connection's inbound byte burst. */
  readonly inboundBurstBytes: number;
  readonly budgetBytes: number;
  readonly debug: boolean;
}): PerAddressLimits {
  if (o.debug) return { maxConnectionsPerIp: UNLIMITED, maxConnectsPerIpPerSecond: UNLIMITED };
  const derived = Math.max(1, Math.floor(o.budgetBytes / o.inboundBurstBytes));
  if (o.maxConnectionsPerIp === 0) return { maxConnectionsPerIp: derived, maxConnectsPerIpPerSecond: o.maxConnectsPerIpPerSecond };
  const worst = o.maxConnectionsPerIp * o.inboundBurstBytes;
  const warning =
    worst > o.budgetBytes
      ? `IM_MAX_CONNECTIONS_PER_IP ${o.maxConnectionsPerIp} x ${mib(o.inboundBurstBytes)} MiB inbound burst per connection = ${mib(worst)} MiB, ` +
        `over the ${mib(o.budgetBytes)} MiB memory budget: one address can reach the budget within its limits (the gateway then sheds). ` +
        `Leave it unset (derived: ${derived}) or raise IM_MEMORY_BUDGET_MB.`
      : undefined;
  return { maxConnectionsPerIp: o.maxConnectionsPerIp, maxConnectsPerIpPerSecond: o.maxConnectsPerIpPerSecond, warning };
}

function mib(bytes: number): number {
  return Math.round(bytes / (1024 * 1024));
}
