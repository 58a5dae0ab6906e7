import { type Logger, silentLogger } from "../log";
import type { Broker } from "./broker";
import type { DeviceDirectory } from "./device-directory";
import { FanoutStats } from "./fanout-stats";
import { HubBroker } from "./hub-broker";
import { HubDeviceDirectory } from "./hub-device-directory";
import type { HubLink } from "./hub-link";
import { checkInstanceId, newInstanceId } from "./instance-id";
import { LocalBroker } from "./local-broker";
import { LocalDeviceDirectory } from "./local-device-directory";
import type { ReconnectBackoff } from "./reconnect-backoff";
import { RedisBroker } from "./redis-broker";
import { RedisDeviceDirectory } from "./redis-device-directory";

/** Options of {@link createFanout}. */
export interface FanoutOptions {
  /** `REDIS_URL`: empty or absent = single instance, everything in-process. */
  readonly redisUrl?: string;
  /** Default: a fresh id per process. */
  readonly instanceId?: string;
  /** Prefix of Redis keys and channels. Default `"xiaozhi:"`. */
  readonly keyPrefix?: string;
  /** Open device connections on this instance, for the cluster status. Default: claimed devices. */
  readonly connections?: () => number;
  /** Directory entry TTL in ms. Default 30000. */
  readonly directoryTtlMs?: number;
  /** Directory refresh period in ms. Default 10000. */
  readonly directoryRefreshIntervalMs?: number;
  /** Redis reconnect delays. Default 100 ms doubling to 5 s, jittered. */
  readonly reconnect?: Partial<ReconnectBackoff>;
  /** Redis command timeout in ms. Default 2000. */
  readonly commandTimeoutMs?: number;
  readonly logger?: Logger;
  /**
   * Set in a worker of `serve --workers N`: its link to the supervisor. Without Redis the
   * workers of the box are one gateway through it; with Redis each worker is an instance of the
   * cluster, and the link still gathers the box's status and metrics.
   */
  readonly hub?: HubLink;
}

/** The fan-out module as the gateway uses it: one shape with or without Redis. */
export interface Fanout {
  readonly instanceId: string;
  readonly broker: Broker;
  readonly directory: DeviceDirectory;
  /** Counters and the link state, for `/metrics`. */
  readonly stats: FanoutStats;
  /** The other workers of this box (`serve --workers N`), for box-wide status and metrics. */
  readonly workers: HubLink | undefined;
  /** Removes this instance's registrations and closes connections. Call after sessions drained. */
  close(): Promise<void>;
}

/**
 * Builds the broker and the device directory: on Redis when `redisUrl` is set (they share the
 * broker's connections), in-process otherwise. Never waits for Redis: the result is usable at
 * once and connects (and reconnects) in the background.
 */
export function createFanout(options: FanoutOptions = {}): Fanout {
  const instanceId = options.instanceId === undefined ? newInstanceId() : checkInstanceId(options.instanceId);
  const logger = options.logger ?? silentLogger;
  const stats = new FanoutStats();
  const workers = options.hub;
  if ((options.redisUrl === undefined || options.redisUrl === "") && workers !== undefined) {
    const broker = new HubBroker({ link: workers, instanceId, stats, logger });
    const directory = new HubDeviceDirectory({ link: workers, instanceId, stats, connections: options.connections });
    return { instanceId, broker, directory, stats, workers, close: () => closeBoth(directory, broker) };
  }
  if (options.redisUrl === undefined || options.redisUrl === "") {
    const broker = new LocalBroker({ instanceId, logger, stats });
    const directory = new LocalDeviceDirectory({ instanceId, stats, connections: options.connections });
    return { instanceId, broker, directory, stats, workers, close: () => closeBoth(directory, broker) };
  }
  const keyPrefix = options.keyPrefix ?? "xiaozhi:";
  const broker = new RedisBroker({
    url: options.redisUrl,
    instanceId,
    keyPrefix,
    logger,
    stats,
    reconnect: options.reconnect,
    commandTimeoutMs: options.commandTimeoutMs,
  });
  const directory = new RedisDeviceDirectory({
    broker,
    keyPrefix,
    logger,
    stats,
    connections: options.connections,
    ttlMs: options.directoryTtlMs,
    refreshIntervalMs: options.directoryRefreshIntervalMs,
  });
  return { instanceId, broker, directory, stats, workers, close: () => closeBoth(directory, broker) };
}

async function closeBoth(directory: DeviceDirectory, broker: Broker): Promise<void> {
  // The directory first: it needs the broker's connection to remove its entries.
  await directory.close();
  await broker.close();
}
