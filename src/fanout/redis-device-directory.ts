import { describeError, ErrorCode, GatewayError } from "../errors";
import { type Logger, silentLogger } from "../log";
import type { FanoutPayload, Subscription } from "./broker";
import type { ClaimResult, ClusterView, DeviceDirectory, DeviceLocation, InstanceStatus, Lookup, Takeover, TakeoverListener } from "./device-directory";
import { formatEntry, parseEntry } from "./directory-entry";
import { CLAIM_SCRIPT, PRUNE_INSTANCES_SCRIPT, REFRESH_SCRIPT, RELEASE_SCRIPT } from "./directory-scripts";
import type { FanoutStats } from "./fanout-stats";
import type { RedisBroker } from "./redis-broker";
import { Topic } from "./topic";

/** Options of {@link RedisDeviceDirectory}. */
export interface RedisDeviceDirectoryOptions {
  /** Its command connection runs the directory's commands; takeover notices travel through it. */
  readonly broker: RedisBroker;
  /** Prefix of the directory's keys. Default `"xiaozhi:"`. */
  readonly keyPrefix?: string;
  /** How long an entry outlives its last refresh: the delay before a dead instance's devices
   * disappear. Default 30000. */
  readonly ttlMs?: number;
  /** How often entries and the instance heartbeat are refreshed. Default 10000; below `ttlMs`. */
  readonly refreshIntervalMs?: number;
  /** Open device connections, for `instances()`. Default: the number of claimed devices. */
  readonly connections?: () => number;
  readonly logger?: Logger;
  /** Default: the broker's. */
  readonly stats?: FanoutStats;
}

/** What one refresh did, for tests and logs. */
export interface RefreshReport {
  /** False when Redis could not be reached (nothing else is then meaningful). */
  readonly ok: boolean;
  /** Entries whose TTL was extended. */
  readonly refreshed: number;
  /** Entries Redis had lost, written again. */
  readonly reestablished: number;
  /** Deferred claims now registered. */
  readonly claimed: number;
  /** Sessions found displaced by another instance (reported to `onTakeover`). */
  readonly lost: number;
}

interface Held {
  readonly sessionId: string;
  /** The exact entry written to Redis, compared by the scripts. */
  readonly value: string;
  /** False until Redis confirmed the claim; such claims are retried by the refresh. */
  registered: boolean;
}

/** Devices per script call on refresh: bounds how long one script blocks Redis. */
const REFRESH_BATCH = 500;

/**
 * The cluster-wide directory in Redis.
 *
 * Keys (under `keyPrefix`): `device:<id>` = `"<sinceMs> <instanceId> <sessionId>"` with a TTL;
 * `instance:<id>` = this instance's {@link InstanceStatus} JSON with a TTL (its heartbeat);
 * `instances` = a set indexing the instance keys (members whose key expired are pruned when
 * read). Every `refreshIntervalMs`, and at once whenever the broker's link becomes ready (so
 * after a Redis restart), the instance rewrites its heartbeat, extends its entries, writes back
 * those Redis lost, retries deferred claims and releases, and detects sessions displaced while
 * a takeover notice could not reach it.
 *
 * Takeover: `claim` swaps the entry atomically and gets the previous one; if that was another
 * instance's, a notice goes to `Topic.takeover(thatInstance)`. The receiving instance drops the
 * entry from its own bookkeeping (not from Redis: it is the newcomer's now) and calls its
 * `onTakeover` listeners.
 *
 * A known gap: if a takeover notice is lost and the newcomer disconnects before the stale
 * instance's next refresh, that refresh writes the stale entry back (it cannot tell this from
 * a Redis restart); it then lasts until the stale session closes on its own (websocket idle
 * timeout).
 */
export class RedisDeviceDirectory implements DeviceDirectory {
  readonly instanceId: string;
  private readonly broker: RedisBroker;
  private readonly stats: FanoutStats;
  private readonly logger: Logger;
  private readonly keyPrefix: string;
  private readonly instancesKey: string;
  private readonly ttlMs: number;
  private readonly connections: () => number;
  private readonly startedAtMs = Date.now();
  private readonly held = new Map<string, Held>();
  /** Releases Redis did not confirm: device id -> the entry to compare-and-delete. */
  private readonly pendingReleases = new Map<string, string>();
  private takeoverListeners: TakeoverListener[] = [];
  private refreshListeners: ((report: RefreshReport) => void)[] = [];
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly takeoverSubscription: Subscription;
  private readonly stateSubscription: Subscription;
  private readonly onCommandsReady: () => void;
  private refreshing: Promise<RefreshReport> | undefined;
  private queuedRefresh: Promise<RefreshReport> | undefined;
  private failureLogged = false;
  private closed = false;

  constructor(options: RedisDeviceDirectoryOptions) {
    const ttlMs = options.ttlMs ?? 30_000;
    const refreshIntervalMs = options.refreshIntervalMs ?? 10_000;
    if (!Number.isInteger(ttlMs) || ttlMs < 1) {
      throw new GatewayError(ErrorCode.ConfigInvalid, `directory ttlMs must be a positive integer, got ${ttlMs}`);
    }
    if (!Number.isInteger(refreshIntervalMs) || refreshIntervalMs < 1 || refreshIntervalMs >= ttlMs) {
      throw new GatewayError(
        ErrorCode.ConfigInvalid,
        `directory refreshIntervalMs must be a positive integer below ttlMs (${ttlMs}), got ${refreshIntervalMs}`,
      );
    }
    this.broker = options.broker;
    this.instanceId = options.broker.instanceId;
    this.stats = options.stats ?? options.broker.stats;
    this.logger = (options.logger ?? silentLogger).child({ component: "device-directory" });
    this.keyPrefix = options.keyPrefix ?? "xiaozhi:";
    this.instancesKey = `${this.keyPrefix}instances`;
    this.ttlMs = ttlMs;
    this.connections = options.connections ?? (() => this.held.size);

    this.takeoverSubscription = this.broker.subscribe(Topic.takeover(this.instanceId), (payload) => this.onTakeoverNotice(payload));
    // Refresh as soon as Redis is (back) up: after a restart the entries are gone until then.
    // Twice: when the command connection is back, which is all the directory needs, so claims
    // made elsewhere during the outage meet ours at once; and when the whole link is ready,
    // because a takeover notice sent to us before our subscriber was back was lost, and only a
    // refresh finds what it said.
    this.stateSubscription = this.broker.onStateChange((state) => {
      if (state === "ready") void this.refresh();
    });
    this.onCommandsReady = () => void this.refresh();
    this.broker.commands.on("ready", this.onCommandsReady);
    this.timer = setInterval(() => void this.refresh(), refreshIntervalMs);
    // The gateway's server keeps the process alive; a directory alone should not.
    this.timer.unref();
    if (this.broker.state === "ready") void this.refresh();
  }

  get size(): number {
    return this.held.size;
  }

  async claim(deviceId: string, sessionId: string): Promise<ClaimResult> {
    const value = formatEntry({ sinceMs: Date.now(), instanceId: this.instanceId, sessionId });
    const held: Held = { sessionId, value, registered: false };
    this.held.set(deviceId, held);
    this.pendingReleases.delete(deviceId);
    this.stats.claims++;
    try {
      const reply = await this.broker.commands.eval(CLAIM_SCRIPT, 1, this.deviceKey(deviceId), value, this.ttlMs, "0");
      held.registered = true;
      const previous = this.afterClaim(deviceId, held, reply);
      return { t: "claimed", previous };
    } catch (err) {
      return { t: "deferred", reason: this.failed("claim", err) };
    }
  }

  async release(deviceId: string, sessionId: string): Promise<boolean> {
    const held = this.held.get(deviceId);
    // Not ours (any more): the entry in Redis, if any, belongs to a newer session.
    if (held === undefined || held.sessionId !== sessionId) return false;
    this.held.delete(deviceId);
    try {
      const deleted = await this.broker.commands.eval(RELEASE_SCRIPT, 1, this.deviceKey(deviceId), held.value);
      return deleted === 1;
    } catch (err) {
      this.pendingReleases.set(deviceId, held.value);
      this.failed("release", err);
      return false;
    }
  }

  async lookup(deviceId: string): Promise<Lookup> {
    try {
      const value = await this.broker.commands.get(this.deviceKey(deviceId));
      const location = value === null ? undefined : parseEntry(value);
      return location === undefined ? { t: "absent" } : { t: "connected", location };
    } catch (err) {
      const reason = this.failed("lookup", err);
      const held = this.held.get(deviceId);
      if (held === undefined) return { t: "unknown", reason };
      const location = parseEntry(held.value);
      return location === undefined ? { t: "unknown", reason } : { t: "connected", location };
    }
  }

  async instances(): Promise<ClusterView> {
    try {
      const ids = await this.broker.commands.smembers(this.instancesKey);
      const values = ids.length === 0 ? [] : await this.broker.commands.mget(ids.map((id) => this.instanceKey(id)));
      // This instance is alive by definition, and its own numbers are fresher than its heartbeat.
      const live: InstanceStatus[] = [this.selfStatus()];
      const dead: string[] = [];
      ids.forEach((id, i) => {
        if (id === this.instanceId) return;
        const status = parseInstanceStatus(values[i] ?? null);
        if (status === undefined) dead.push(id);
        else live.push(status);
      });
      // The set is only an index; the instance key's TTL is what says alive. The script
      // re-checks each key, so an instance heartbeating right now is not pruned.
      if (dead.length > 0) {
        const keys = dead.map((id) => this.instanceKey(id));
        this.broker.commands.eval(PRUNE_INSTANCES_SCRIPT, keys.length + 1, this.instancesKey, ...keys, ...dead).catch(() => {});
      }
      live.sort((a, b) => (a.instanceId < b.instanceId ? -1 : a.instanceId > b.instanceId ? 1 : 0));
      return { t: "cluster", instances: live };
    } catch (err) {
      return { t: "partial", instances: [this.selfStatus()], reason: this.failed("instances", err) };
    }
  }

  onTakeover(listener: TakeoverListener): Subscription {
    this.takeoverListeners = [...this.takeoverListeners, listener];
    return {
      unsubscribe: () => {
        this.takeoverListeners = this.takeoverListeners.filter((l) => l !== listener);
      },
    };
  }

  /** Calls `listener` after every refresh (the periodic one and the one after a reconnect). */
  onRefresh(listener: (report: RefreshReport) => void): Subscription {
    this.refreshListeners = [...this.refreshListeners, listener];
    return {
      unsubscribe: () => {
        this.refreshListeners = this.refreshListeners.filter((l) => l !== listener);
      },
    };
  }

  /**
   * Heartbeat, extend, repair (see the class doc). Runs on its own every `refreshIntervalMs`
   * and on reconnect. Calling it while one runs queues one more (shared by all such callers), so
   * the result always reflects changes made before the call. Never rejects.
   */
  refresh(): Promise<RefreshReport> {
    if (this.refreshing === undefined) {
      this.refreshing = this.runRefresh().finally(() => {
        this.refreshing = undefined;
      });
      return this.refreshing;
    }
    // One in progress may have read the state before the caller's change: queue one more
    // (only one: every waiter's change is older than its start).
    this.queuedRefresh ??= this.refreshing.then(() => {
      this.queuedRefresh = undefined;
      return this.refresh();
    });
    return this.queuedRefresh;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.takeoverSubscription.unsubscribe();
    this.stateSubscription.unsubscribe();
    this.broker.commands.off("ready", this.onCommandsReady);
    await this.queuedRefresh;
    await this.refreshing;
    const commands = this.broker.commands;
    if (commands.status === "ready") {
      // A graceful stop frees the devices at once instead of after the TTL.
      const pipeline = commands.pipeline().del(this.instanceKey(this.instanceId)).srem(this.instancesKey, this.instanceId);
      for (const [deviceId, held] of this.held) pipeline.eval(RELEASE_SCRIPT, 1, this.deviceKey(deviceId), held.value);
      await pipeline.exec().catch(() => {});
    }
    this.held.clear();
    this.pendingReleases.clear();
  }

  private async runRefresh(): Promise<RefreshReport> {
    const report = { ok: true, refreshed: 0, reestablished: 0, claimed: 0, lost: 0 };
    if (this.closed) return report;
    try {
      await this.heartbeat();
      await this.retryReleases();
      await this.retryClaims(report);
      await this.extendEntries(report);
      this.failureLogged = false;
    } catch (err) {
      this.failed("refresh", err);
      report.ok = false;
    }
    this.stats.reestablished += report.reestablished;
    if (report.reestablished > 0 || report.lost > 0) this.logger.info(report, "directory repaired");
    for (const listener of this.refreshListeners) listener(report);
    return report;
  }

  private async heartbeat(): Promise<void> {
    await this.broker.commands
      .multi()
      .set(this.instanceKey(this.instanceId), JSON.stringify(this.selfStatus()), "PX", this.ttlMs)
      .sadd(this.instancesKey, this.instanceId)
      .exec();
  }

  private async retryReleases(): Promise<void> {
    for (const [deviceId, value] of [...this.pendingReleases]) {
      await this.broker.commands.eval(RELEASE_SCRIPT, 1, this.deviceKey(deviceId), value);
      if (this.pendingReleases.get(deviceId) === value) this.pendingReleases.delete(deviceId);
    }
  }

  private async retryClaims(report: { claimed: number; lost: number }): Promise<void> {
    for (const [deviceId, held] of [...this.held]) {
      // Checked again at send time: a release during an earlier await must not be undone.
      if (held.registered || this.held.get(deviceId) !== held) continue;
      // "1": yield to a connection of this device made elsewhere while we could not register.
      const reply = await this.broker.commands.eval(CLAIM_SCRIPT, 1, this.deviceKey(deviceId), held.value, this.ttlMs, "1");
      if (this.held.get(deviceId) !== held) continue;
      if (replyWritten(reply)) {
        held.registered = true;
        report.claimed++;
        this.afterClaim(deviceId, held, reply);
      } else if (this.displaced(deviceId, held, replyEntry(reply))) {
        report.lost++;
      }
    }
  }

  private async extendEntries(report: { refreshed: number; reestablished: number; lost: number }): Promise<void> {
    const batch = [...this.held];
    for (let start = 0; start < batch.length; start += REFRESH_BATCH) {
      // Filtered at send time, not before the loop: the script writes back missing entries, so
      // an entry released during an earlier batch's await must not be sent.
      const part = batch.slice(start, start + REFRESH_BATCH).filter(([deviceId, held]) => held.registered && this.held.get(deviceId) === held);
      if (part.length === 0) continue;
      const keys = part.map(([deviceId]) => this.deviceKey(deviceId));
      const values = part.map(([, held]) => held.value);
      const reply = await this.broker.commands.eval(REFRESH_SCRIPT, keys.length, ...keys, this.ttlMs, ...values);
      if (!Array.isArray(reply)) continue;
      part.forEach(([deviceId, held], i) => {
        const outcome: unknown = reply[i];
        if (outcome === 0) report.refreshed++;
        else if (outcome === 1) report.reestablished++;
        // Only if the session is still the one we sent: a claim may have replaced it meanwhile.
        else if (this.held.get(deviceId) === held && this.displaced(deviceId, held, typeof outcome === "string" ? outcome : undefined)) {
          report.lost++;
        }
      });
    }
  }

  /** After our claim was written: tells the previous holder, if another instance, to let go. */
  private afterClaim(deviceId: string, held: Held, reply: unknown): DeviceLocation | undefined {
    const previousValue = replyEntry(reply);
    const previous = previousValue === undefined ? undefined : parseEntry(previousValue);
    if (previous !== undefined && previous.instanceId !== this.instanceId) {
      const notice: Takeover = {
        deviceId,
        staleSessionId: previous.sessionId,
        newSessionId: held.sessionId,
        newInstanceId: this.instanceId,
      };
      this.stats.takeoversSent++;
      // A lost notice is repaired by the old holder's next refresh (it finds the entry taken).
      void this.broker.publish(Topic.takeover(previous.instanceId), JSON.stringify(notice));
    }
    return previous;
  }

  /**
   * `current` (the device's entry in Redis) is not ours: if another instance holds the device,
   * our session is stale; forget it and report it. True when reported.
   */
  private displaced(deviceId: string, held: Held, current: string | undefined): boolean {
    const owner = current === undefined ? undefined : parseEntry(current);
    if (owner === undefined || owner.instanceId === this.instanceId) return false;
    this.held.delete(deviceId);
    this.reportTakeover({ deviceId, staleSessionId: held.sessionId, newSessionId: owner.sessionId, newInstanceId: owner.instanceId });
    return true;
  }

  private onTakeoverNotice(payload: FanoutPayload): void {
    const notice = typeof payload === "string" ? parseTakeover(payload) : undefined;
    if (notice === undefined) {
      this.stats.malformed++;
      return;
    }
    const held = this.held.get(notice.deviceId);
    // Already gone, or replaced by a newer local session, which the notice is not about.
    if (held === undefined || held.sessionId !== notice.staleSessionId) return;
    this.held.delete(notice.deviceId);
    this.reportTakeover(notice);
  }

  private reportTakeover(takeover: Takeover): void {
    this.stats.takeoversReceived++;
    for (const listener of this.takeoverListeners) {
      try {
        listener(takeover);
      } catch (err) {
        this.stats.handlerErrors++;
        this.logger.error({ err, deviceId: takeover.deviceId }, "takeover listener threw");
      }
    }
  }

  private selfStatus(): InstanceStatus {
    return { instanceId: this.instanceId, connections: this.connections(), startedAtMs: this.startedAtMs, heartbeatAtMs: Date.now() };
  }

  /** Counts a failed operation, logs the first one of an outage; returns a safe reason. */
  private failed(operation: string, err: unknown): string {
    const reason = describeError(err);
    this.stats.directoryFailures++;
    if (!this.failureLogged) {
      this.failureLogged = true;
      this.logger.warn({ operation, reason }, "device directory cannot reach redis; local service continues, the next refresh repairs");
    }
    return reason;
  }

  private deviceKey(deviceId: string): string {
    return `${this.keyPrefix}device:${deviceId}`;
  }

  private instanceKey(instanceId: string): string {
    return `${this.keyPrefix}instance:${instanceId}`;
  }
}

/** The claim script's verdict: written (1) or yielded (0). */
function replyWritten(reply: unknown): boolean {
  return Array.isArray(reply) && reply[0] === 1;
}

/** The entry the claim script returned (previous or current), if any. */
function replyEntry(reply: unknown): string | undefined {
  if (!Array.isArray(reply)) return undefined;
  const entry: unknown = reply[1];
  return typeof entry === "string" ? entry : undefined;
}

function parseTakeover(text: string): Takeover | undefined {
  const v = parseJsonObject(text);
  if (v === undefined) return undefined;
  const { deviceId, staleSessionId, newSessionId, newInstanceId } = v;
  if (typeof deviceId !== "string" || typeof staleSessionId !== "string") return undefined;
  if (typeof newSessionId !== "string" || typeof newInstanceId !== "string") return undefined;
  return { deviceId, staleSessionId, newSessionId, newInstanceId };
}

function parseInstanceStatus(text: string | null): InstanceStatus | undefined {
  const v = text === null ? undefined : parseJsonObject(text);
  if (v === undefined) return undefined;
  const { instanceId, connections, startedAtMs, heartbeatAtMs } = v;
  if (typeof instanceId !== "string" || typeof connections !== "number") return undefined;
  if (typeof startedAtMs !== "number" || typeof heartbeatAtMs !== "number") return undefined;
  return { instanceId, connections, startedAtMs, heartbeatAtMs };
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
