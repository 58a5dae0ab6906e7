import { createServer } from "node:net";
import type { Subprocess } from "bun";
import type { FanoutPayload } from "../../src/fanout/broker";
import type { ReconnectBackoff } from "../../src/fanout/reconnect-backoff";
import { RedisBroker } from "../../src/fanout/redis-broker";
import { RedisDeviceDirectory } from "../../src/fanout/redis-device-directory";
import { within } from "../helpers/until";

/** A port nobody listens on right now (bind to 0, read it, close). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

/** A redis-server of the test's own, which it can stop and start again on the same port. */
export class OwnRedis {
  private proc: Subprocess<"ignore", "pipe", "pipe"> | undefined;

  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort());
    await redis.start();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts the server (if stopped) and resolves once it says it accepts connections. */
  async start(): Promise<void> {
    if (this.proc !== undefined) return;
    const proc = Bun.spawn(["redis-server", "--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "/tmp"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    this.proc = proc;
    const reader = proc.stdout.getReader();
    const decoder = new TextDecoder();
    let seen = "";
    const ready = (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`redis-server on ${this.port} exited: ${seen.slice(-500)}`);
        seen += decoder.decode(value, { stream: true });
        if (seen.includes("Ready to accept connections")) return;
      }
    })();
    await within(ready, 10_000, `redis-server on port ${this.port} to start`);
    // Keep draining its log so the pipe never fills and blocks the server.
    void (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) {}
    })();
  }

  /** Stops the server (its data goes with it: no persistence). */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (proc === undefined) return;
    this.proc = undefined;
    proc.kill("SIGTERM");
    await within(proc.exited, 10_000, "redis-server to stop");
  }
}

/**
 * The Redis the shared tests use: `REDIS_URL` when set, else an own server. `stop` only stops
 * what this started.
 */
export async function testRedis(): Promise<{ url: string; stop: () => Promise<void> }> {
  const external = process.env.REDIS_URL;
  if (external !== undefined && external !== "") return { url: external, stop: async () => {} };
  const own = await OwnRedis.start();
  return { url: own.url, stop: () => own.stop() };
}

/** A key prefix of its own per test, so tests (and parallel runs) sharing a Redis never meet. */
export function uniquePrefix(): string {
  return `test-fanout:${crypto.randomUUID().slice(0, 8)}:`;
}

/** Collects what a handler receives, and resolves waits on a count. */
export class Inbox {
  readonly items: FanoutPayload[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];

  readonly handler = (payload: FanoutPayload): void => {
    this.items.push(payload);
    this.waiters = this.waiters.filter((w) => {
      if (this.items.length < w.n) return true;
      w.resolve();
      return false;
    });
  };

  /** Resolves once `n` messages arrived in all. */
  waitFor(n: number, ms = 5_000): Promise<void> {
    if (this.items.length >= n) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.waiters.push({ n, resolve });
    return within(promise, ms, `${n} messages (have ${this.items.length})`);
  }

  /** How often each text payload arrived. */
  counts(): Map<string, number> {
    const out = new Map<string, number>();
    for (const item of this.items) {
      const key = typeof item === "string" ? item : `<${item.byteLength} bytes>`;
      out.set(key, (out.get(key) ?? 0) + 1);
    }
    return out;
  }
}

/** One simulated gateway instance: its own broker (two connections) and directory. */
export interface TestInstance {
  readonly name: string;
  readonly broker: RedisBroker;
  readonly directory: RedisDeviceDirectory;
  close(): Promise<void>;
}

export interface TestInstanceOptions {
  readonly ttlMs?: number;
  readonly refreshIntervalMs?: number;
  readonly connections?: () => number;
  readonly reconnect?: Partial<ReconnectBackoff>;
  /** Resolve at once instead of waiting for the link to be ready. Default false. */
  readonly noWait?: boolean;
}

/** Starts an instance and resolves once its link is ready (unless `noWait`). */
export async function startInstance(url: string, keyPrefix: string, name: string, options: TestInstanceOptions = {}): Promise<TestInstance> {
  const broker = new RedisBroker({
    url,
    keyPrefix,
    instanceId: `${name}-${crypto.randomUUID().slice(0, 6)}`,
    // Quick reconnects keep the restart test short; production defaults are 100 ms..1 s.
    reconnect: options.reconnect ?? { minMs: 20, maxMs: 200 },
  });
  const directory = new RedisDeviceDirectory({
    broker,
    keyPrefix,
    ttlMs: options.ttlMs,
    refreshIntervalMs: options.refreshIntervalMs,
    connections: options.connections,
  });
  if (options.noWait !== true) await within(broker.whenState("ready"), 10_000, `${name} ready`);
  return {
    name,
    broker,
    directory,
    close: async () => {
      await directory.close();
      await broker.close();
    },
  };
}

/** Waits until every message published so far has been handled by every instance. */
export async function syncAll(instances: readonly TestInstance[]): Promise<void> {
  await within(Promise.all(instances.map((i) => i.broker.sync())), 5_000, "instances to sync");
}
