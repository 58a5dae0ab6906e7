import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { type Spawned, spawnUntil } from "./spawn-until";
import { until } from "./until";

const MAIN = path.join(import.meta.dir, "../../src/main.ts");
const ROOT = path.join(import.meta.dir, "../..");

/** The test's environment without settings of the gateway's own (an AI provider, a Redis). */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI|PORT$)/.test(k)) env[k] = v;
  return env;
}

/** One worker's part of /api/status. */
export interface WorkerStatus {
  readonly worker: number;
  readonly status: string;
  readonly sessionCount: number;
  readonly connectionCount: number;
}

/** The cluster part of /api/status, as the worker that answered sees it. */
export interface ClusterView {
  readonly instanceId: string;
  readonly link: string;
  readonly instances: readonly { readonly instanceId: string; readonly connections: number }[];
}

/** /api/status of a box (with an operator token). */
export interface BoxStatus {
  readonly sessionCount: number;
  readonly connectionCount: number;
  readonly workers: readonly WorkerStatus[];
  readonly cluster: ClusterView;
}

/** A device the box took, and which worker took it. */
export interface Located<T> {
  readonly value: T;
  readonly worker: number;
}

/**
 * `xiaozhi-im serve --workers 2 --port 0` for a test: the supervisor (its "workers listening"
 * line gives the shared port, the workers' pids and the MQTT port) and what tests ask of it.
 * Which worker the kernel gives a connection is chance, so `located` finds out from
 * /api/status (the worker whose session count rose) and `spread` opens devices until both
 * workers hold one.
 */
export class WorkerBox {
  private constructor(
    readonly spawned: Spawned,
    readonly secret: string,
    readonly port: number,
    readonly pids: readonly number[],
    readonly mqttPort: number | undefined,
  ) {}

  static async start(secret: string, env: Record<string, string> = {}): Promise<WorkerBox> {
    const spawned = await spawnUntil(
      ["bun", MAIN, "serve", "--workers", "2", "--port", "0"],
      {
        cwd: ROOT,
        env: {
          ...cleanEnv(),
          JWT_SECRET: secret,
          IM_SERVER_HOST: "127.0.0.1",
          LOG_LEVEL: "info",
          IM_BROADCAST_INTERVAL_MS: "0",
          // Tests poll /api/status between steps.
          IM_API_REQUESTS_PER_SECOND: "100000",
          IM_API_REQUESTS_PER_IP_PER_SECOND: "100000",
          ...env,
        },
        timeoutMs: 30_000,
      },
      "workers listening",
    );
    const mqttPort = spawned.line.mqttPort;
    return new WorkerBox(spawned, secret, spawned.line.port as number, spawned.line.pids as number[], typeof mqttPort === "number" ? mqttPort : undefined);
  }

  operatorToken(): Promise<string> {
    return mintToken({ secret: this.secret, subject: "ops", claims: { scope: "api" } });
  }

  /** /api/status; `fresh` opens a new connection, so the answer may come from either worker. */
  async status(fresh = false): Promise<BoxStatus> {
    const res = await fetch(`http://127.0.0.1:${this.port}/api/status`, {
      headers: { authorization: `Bearer ${await this.operatorToken()}`, ...(fresh ? { connection: "close" } : {}) },
      ...(fresh ? { keepalive: false } : {}),
    });
    if (res.status !== 200) throw new Error(`/api/status answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as BoxStatus;
  }

  /** Sessions per worker, by worker number. */
  async sessions(): Promise<Map<number, number>> {
    return new Map((await this.status()).workers.map((w) => [w.worker, w.sessionCount]));
  }

  /** Runs `open` (which ends once the device has its session) and says which worker took it. */
  async located<T>(what: string, open: () => Promise<T>): Promise<Located<T>> {
    const before = await this.sessions();
    const value = await open();
    const after = await this.sessions();
    const worker = [...after].find(([w, n]) => n > (before.get(w) ?? 0))?.[0];
    if (worker === undefined) throw new Error(`no worker's session count rose for ${what}: ${JSON.stringify([...before])} -> ${JSON.stringify([...after])}`);
    return { value, worker };
  }

  /** Opens devices with `open(k)` until there are at least `min` and both workers hold one
   * (each new connection lands on either: 40 tries leave one chance in 2^39 of failing). */
  async spread<T>(min: number, open: (k: number) => Promise<T>): Promise<Located<T>[]> {
    const fleet: Located<T>[] = [];
    for (let k = 0; k < 40 && (fleet.length < min || new Set(fleet.map((f) => f.worker)).size < 2); k++) {
      fleet.push(await this.located(`device ${k}`, () => open(k)));
    }
    if (new Set(fleet.map((f) => f.worker)).size < 2) throw new Error(`40 devices all landed on one worker: ${JSON.stringify(fleet.map((f) => f.worker))}`);
    return fleet;
  }

  /** The worker holding the box's only session (poll until there is exactly one). */
  holder(): Promise<number> {
    return until(
      async () => {
        const s = await this.status();
        return s.sessionCount === 1 && s.workers.find((w) => w.sessionCount === 1)?.worker;
      },
      { what: "exactly one session on the box" },
    );
  }

  /** A v3 WebSocket device with its session open. */
  async wsDevice(deviceId: string): Promise<SimulatedDevice> {
    const dev = await SimulatedDevice.connect({
      url: `ws://127.0.0.1:${this.port}/ws`,
      token: await mintToken({ secret: this.secret, deviceId }),
      deviceId,
      protocolVersion: 3,
    });
    await dev.hello();
    return dev;
  }

  /** POSTs JSON with an operator token. */
  async post(p: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`http://127.0.0.1:${this.port}${p}`, {
      method: "POST",
      headers: { authorization: `Bearer ${await this.operatorToken()}` },
      body: JSON.stringify(body),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  /** GET /metrics with an operator token. */
  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.port}/metrics`, { headers: { authorization: `Bearer ${await this.operatorToken()}` } })).text();
  }

  /** Closes `devs` and waits until the box holds no connection. */
  async closeAll(devs: readonly { close(): void }[]): Promise<void> {
    for (const d of devs) d.close();
    await until(async () => (await this.status()).connectionCount === 0, { what: "every connection to be gone" });
  }

  /** Kills the supervisor and every worker it reported (one already gone is fine). */
  async kill(): Promise<void> {
    this.spawned.proc.kill("SIGKILL");
    await this.spawned.proc.exited;
    for (const pid of this.pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
      }
    }
  }
}
