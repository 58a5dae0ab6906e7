import { TokenBucket } from "../token-bucket";

/** Open connections allowed per client address and per Device-Id (IM_MAX_CONNECTIONS_PER_*). */
export interface ConnectionLimitSettings {
  readonly maxConnectionsPerIp: number;
  readonly maxConnectionsPerDevice: number;
  /** IM_MAX_BYTES_PER_IP_PER_SECOND: bytes all connections of one address may send per
   * second together, with `bytesPerIpBurst`. Absent: no such limit. */
  readonly bytesPerIp?: { readonly ratePerSecond: number; readonly burst: number };
}

/**
 * Counts open device connections (and upgrades being verified) per client address and per
 * Device-Id. A connection holds a {@link ConnectionLease}; counts go down when the lease is
 * released, exactly once, whatever path ends the connection.
 */
export class ConnectionLimits {
  private readonly byIp = new Map<string, number>();
  private readonly byDevice = new Map<string, number>();
  /** One inbound byte bucket per address with open connections, shared by them all: an
   * address cannot multiply its byte burst by opening more connections. */
  private readonly bytesByIp = new Map<string, TokenBucket>();

  constructor(readonly settings: ConnectionLimitSettings) {}

  /** A lease on one connection from `ip`, or undefined when that address is at its limit. */
  lease(ip: string): ConnectionLease | undefined {
    if (!take(this.byIp, ip, this.settings.maxConnectionsPerIp)) return undefined;
    const rate = this.settings.bytesPerIp;
    let bytes = this.bytesByIp.get(ip);
    if (bytes === undefined && rate !== undefined) {
      bytes = new TokenBucket(rate.ratePerSecond, rate.burst, performance.now());
      this.bytesByIp.set(ip, bytes);
    }
    return new ConnectionLease(this, ip, bytes);
  }

  /** Open connections (and upgrades in flight) from `ip`. */
  connectionsFrom(ip: string): number {
    return this.byIp.get(ip) ?? 0;
  }

  /** Open connections (and upgrades in flight) of `deviceId`. */
  connectionsOf(deviceId: string): number {
    return this.byDevice.get(deviceId) ?? 0;
  }

  /** @internal for ConnectionLease */
  takeDevice(deviceId: string): boolean {
    return take(this.byDevice, deviceId, this.settings.maxConnectionsPerDevice);
  }

  /** @internal for ConnectionLease */
  give(ip: string, deviceId: string | undefined): void {
    give(this.byIp, ip);
    if (!this.byIp.has(ip)) this.bytesByIp.delete(ip);
    if (deviceId !== undefined) give(this.byDevice, deviceId);
  }
}

/** One connection's place in the counts. */
export class ConnectionLease {
  private deviceId: string | undefined;
  private released = false;

  constructor(
    private readonly limits: ConnectionLimits,
    readonly ip: string,
    /** The address's inbound byte bucket, shared by its connections (none: no such limit). */
    readonly addressBytes?: TokenBucket,
  ) {}

  /** Counts this connection against `deviceId` too; false when that device is at its limit. */
  bindDevice(deviceId: string): boolean {
    if (this.released || this.deviceId !== undefined) return true;
    if (!this.limits.takeDevice(deviceId)) return false;
    this.deviceId = deviceId;
    return true;
  }

  /** Gives the place back. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.limits.give(this.ip, this.deviceId);
  }
}

function take(counts: Map<string, number>, key: string, max: number): boolean {
  const n = counts.get(key) ?? 0;
  if (n >= max) return false;
  counts.set(key, n + 1);
  return true;
}

function give(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 0) - 1;
  // Deleted at zero: a scan from a million addresses must not leave a million entries.
  if (n <= 0) counts.delete(key);
  else counts.set(key, n);
}
