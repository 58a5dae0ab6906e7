import type { Subscription } from "./broker";
import type { ClaimResult, ClusterView, DeviceDirectory, DeviceLocation, Lookup, TakeoverListener } from "./device-directory";
import { FanoutStats } from "./fanout-stats";
import { checkInstanceId, newInstanceId } from "./instance-id";

/** Options of {@link LocalDeviceDirectory}. */
export interface LocalDeviceDirectoryOptions {
  /** Use the broker's, so that both report the same id. Default: a fresh one. */
  readonly instanceId?: string;
  /** Open device connections, for `instances()`. Default: the number of claimed devices. */
  readonly connections?: () => number;
  readonly stats?: FanoutStats;
}

/**
 * The single-instance directory (no `REDIS_URL`): a map, so the gateway uses one API either
 * way. There is no other instance to take a device over, so `onTakeover` never fires.
 */
export class LocalDeviceDirectory implements DeviceDirectory {
  readonly instanceId: string;
  private readonly devices = new Map<string, DeviceLocation>();
  private readonly connections: () => number;
  private readonly stats: FanoutStats;
  private readonly startedAtMs = Date.now();

  constructor(options: LocalDeviceDirectoryOptions = {}) {
    this.instanceId = options.instanceId === undefined ? newInstanceId() : checkInstanceId(options.instanceId);
    this.connections = options.connections ?? (() => this.devices.size);
    this.stats = options.stats ?? new FanoutStats();
  }

  get size(): number {
    return this.devices.size;
  }

  claim(deviceId: string, sessionId: string): Promise<ClaimResult> {
    const previous = this.devices.get(deviceId);
    this.devices.set(deviceId, { instanceId: this.instanceId, sessionId, sinceMs: Date.now() });
    this.stats.claims++;
    return Promise.resolve({ t: "claimed", previous });
  }

  release(deviceId: string, sessionId: string): Promise<boolean> {
    if (this.devices.get(deviceId)?.sessionId !== sessionId) return Promise.resolve(false);
    this.devices.delete(deviceId);
    return Promise.resolve(true);
  }

  lookup(deviceId: string): Promise<Lookup> {
    const location = this.devices.get(deviceId);
    return Promise.resolve(location === undefined ? { t: "absent" } : { t: "connected", location });
  }

  instances(): Promise<ClusterView> {
    const now = Date.now();
    const self = { instanceId: this.instanceId, connections: this.connections(), startedAtMs: this.startedAtMs, heartbeatAtMs: now };
    return Promise.resolve({ t: "cluster", instances: [self] });
  }

  onTakeover(_listener: TakeoverListener): Subscription {
    return { unsubscribe: () => {} };
  }

  close(): Promise<void> {
    this.devices.clear();
    return Promise.resolve();
  }
}
