import { describeError } from "../errors";
import type { Subscription } from "./broker";
import type { ClaimResult, ClusterView, DeviceDirectory, InstanceStatus, Lookup, TakeoverListener } from "./device-directory";
import type { FanoutStats } from "./fanout-stats";
import type { HubLink } from "./hub-link";
import type { ClaimReply, LookupReply } from "./hub-protocol";

/** Options of {@link HubDeviceDirectory}. */
export interface HubDeviceDirectoryOptions {
  readonly link: HubLink;
  readonly instanceId: string;
  readonly stats: FanoutStats;
  /** Open device connections on this worker, for `instances()`. Default: claimed devices. */
  readonly connections?: () => number;
}

/**
 * The device directory of a worker of `serve --workers N` without Redis: the hub in the
 * supervisor holds the box's directory and handles claims one at a time, so the newest
 * connection of a device wins across workers; the worker that held it before gets a takeover
 * notice and closes its stale session. `instances()` gathers every worker's own report.
 */
export class HubDeviceDirectory implements DeviceDirectory {
  readonly instanceId: string;
  private readonly link: HubLink;
  private readonly stats: FanoutStats;
  private readonly held = new Map<string, string>();
  private readonly listeners = new Set<TakeoverListener>();
  private readonly connections: () => number;
  private readonly startedAtMs = Date.now();

  constructor(o: HubDeviceDirectoryOptions) {
    this.instanceId = o.instanceId;
    this.link = o.link;
    this.stats = o.stats;
    this.connections = o.connections ?? (() => this.held.size);
    this.link.answer("instance", () => this.self());
    this.link.onTakeover = (t) => {
      if (this.held.get(t.deviceId) !== t.staleSessionId) return;
      this.held.delete(t.deviceId);
      this.stats.takeoversReceived++;
      for (const l of this.listeners) l(t);
    };
  }

  get size(): number {
    return this.held.size;
  }

  async claim(deviceId: string, sessionId: string): Promise<ClaimResult> {
    this.held.set(deviceId, sessionId);
    this.stats.claims++;
    try {
      const location = { instanceId: this.instanceId, sessionId, sinceMs: Date.now() };
      const reply = await this.link.request<ClaimReply>((id) => ({ t: "claim", id, deviceId, location }));
      if (reply.previous !== undefined && reply.previous.instanceId !== this.instanceId) this.stats.takeoversSent++;
      return { t: "claimed", previous: reply.previous };
    } catch (err) {
      this.stats.directoryFailures++;
      return { t: "deferred", reason: describeError(err) };
    }
  }

  async release(deviceId: string, sessionId: string): Promise<boolean> {
    if (this.held.get(deviceId) === sessionId) this.held.delete(deviceId);
    try {
      return await this.link.request<boolean>((id) => ({ t: "release", id, deviceId, sessionId }));
    } catch {
      this.stats.directoryFailures++;
      return false;
    }
  }

  async lookup(deviceId: string): Promise<Lookup> {
    try {
      const location = await this.link.request<LookupReply>((id) => ({ t: "lookup", id, deviceId }));
      return location === undefined ? { t: "absent" } : { t: "connected", location };
    } catch (err) {
      return { t: "unknown", reason: describeError(err) };
    }
  }

  async instances(): Promise<ClusterView> {
    try {
      const all = await this.link.gather("instance");
      return { t: "cluster", instances: all.flatMap((g) => (g.value === null ? [] : [g.value as InstanceStatus])) };
    } catch (err) {
      return { t: "partial", instances: [this.self()], reason: describeError(err) };
    }
  }

  onTakeover(listener: TakeoverListener): Subscription {
    this.listeners.add(listener);
    return { unsubscribe: () => void this.listeners.delete(listener) };
  }

  close(): Promise<void> {
    this.held.clear();
    this.listeners.clear();
    return Promise.resolve();
  }

  private self(): InstanceStatus {
    return { instanceId: this.instanceId, connections: this.connections(), startedAtMs: this.startedAtMs, heartbeatAtMs: Date.now() };
  }
}
