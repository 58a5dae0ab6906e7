import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { type Spawned, spawnUntil } from "../helpers/spawn-until";
import { until } from "../helpers/until";

/**
 * `serve --workers 2`: two gateway processes on one port behave as one gateway without Redis.
 * Which worker the kernel gives a connection is chance, so the tests find out from
 * /api/status (each worker's session count) and open connections until both are used.
 */
const MAIN = path.join(import.meta.dir, "../../src/main.ts");
const secret = "workers-test-secret";

interface Box {
  readonly spawned: Spawned;
  readonly port: number;
  readonly pids: readonly number[];
}

async function startBox(): Promise<Box> {
  const spawned = await spawnUntil(
    ["bun", MAIN, "serve", "--workers", "2", "--port", "0"],
    {
      env: {
        ...process.env,
        JWT_SECRET: secret,
        IM_SERVER_HOST: "127.0.0.1",
        LOG_LEVEL: "info",
        IM_BROADCAST_INTERVAL_MS: "0",
        IM_API_REQUESTS_PER_SECOND: "100000",
        IM_API_REQUESTS_PER_IP_PER_SECOND: "100000",
      },
      timeoutMs: 30_000,
    },
    "workers listening",
  );
  return { spawned, port: spawned.line.port as number, pids: spawned.line.pids as number[] };
}

interface WorkerStatus {
  readonly worker: number;
  readonly sessionCount: number;
  readonly connectionCount: number;
}
interface BoxStatus {
  readonly sessionCount: number;
  readonly connectionCount: number;
  readonly workers: readonly WorkerStatus[];
  readonly cluster: { readonly instances: readonly unknown[] };
}

const operator = () => mintToken({ secret, subject: "ops", claims: { scope: "api" } });

async function status(box: Box): Promise<BoxStatus> {
  const res = await fetch(`http://127.0.0.1:${box.port}/api/status`, { headers: { authorization: `Bearer ${await operator()}` } });
  return (await res.json()) as BoxStatus;
}

/** Sessions per worker, by worker number. */
async function sessions(box: Box): Promise<Map<number, number>> {
  return new Map((await status(box)).workers.map((w) => [w.worker, w.sessionCount]));
}

async function connect(box: Box, deviceId: string): Promise<SimulatedDevice> {
  const dev = await SimulatedDevice.connect({
    url: `ws://127.0.0.1:${box.port}/ws`,
    token: await mintToken({ secret, deviceId }),
    deviceId,
    protocolVersion: 3,
  });
  await dev.hello();
  return dev;
}

/** Opens `deviceId` and says which worker took it (the one whose session count rose). */
async function connectAndLocate(box: Box, deviceId: string): Promise<{ dev: SimulatedDevice; worker: number }> {
  const before = await sessions(box);
  const dev = await connect(box, deviceId);
  const after = await sessions(box);
  const worker = [...after].find(([w, n]) => n > (before.get(w) ?? 0))?.[0];
  if (worker === undefined) throw new Error(`no worker's session count rose for ${deviceId}: ${JSON.stringify([...before])} -> ${JSON.stringify([...after])}`);
  return { dev, worker };
}

/** At least `min` devices, and on both workers: the kernel spreads connections by hash. */
async function spreadFleet(box: Box, prefix: string, min: number): Promise<{ dev: SimulatedDevice; worker: number; id: string }[]> {
  const fleet: { dev: SimulatedDevice; worker: number; id: string }[] = [];
  for (let k = 0; k < 40 && (fleet.length < min || new Set(fleet.map((f) => f.worker)).size < 2); k++) {
    const id = `${prefix}:${k.toString(16).padStart(2, "0")}`;
    fleet.push({ id, ...(await connectAndLocate(box, id)) });
  }
  return fleet;
}

async function post(box: Box, p: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`http://127.0.0.1:${box.port}${p}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await operator()}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Kills what is left of the box's workers (the test's clean-up). */
function killAll(box: Box): void {
  for (const pid of box.pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

async function closeAll(box: Box, devs: readonly SimulatedDevice[]): Promise<void> {
  for (const d of devs) d.close();
  await until(async () => (await status(box)).connectionCount === 0, { what: "every connection to be gone" });
}

describe("serve --workers 2: one port, one gateway", () => {
  let box: Box;
  beforeAll(async () => {
    box = await startBox();
  }, 40_000);
  afterAll(async () => {
    box.spawned.proc.kill("SIGKILL");
    await box.spawned.proc.exited;
    killAll(box);
  });

  test("devices on one port land on both workers; /api/status and /metrics count them all, per worker", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:01", 6);
    const s = await status(box);
    expect(s.workers.map((w) => w.worker)).toEqual([1, 2]);
    expect(s.sessionCount).toBe(fleet.length);
    expect(s.cluster.instances).toHaveLength(2);
    for (const w of [1, 2]) expect(s.workers.find((x) => x.worker === w)?.sessionCount).toBe(fleet.filter((f) => f.worker === w).length);
    const metrics = await (await fetch(`http://127.0.0.1:${box.port}/metrics`, { headers: { authorization: `Bearer ${await operator()}` } })).text();
    for (const w of [1, 2]) {
      const line = metrics.split("\n").find((l) => l.startsWith(`xiaozhi_sessions{worker="${w}"}`));
      expect(Number(line?.split(" ")[1])).toBe(fleet.filter((f) => f.worker === w).length);
    }
    await closeAll(
      box,
      fleet.map((f) => f.dev),
    );
  }, 60_000);

  test("a broadcast reaches devices on every worker once; a push reaches its device wherever it is", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:02", 6);
    const res = await post(box, "/api/message", { content: "to the whole box" });
    expect(res.status).toBe(200);
    const broadcast = (m: Readonly<Record<string, unknown>>) => m.type === "alert" && String(m.message).includes("to the whole box");
    for (const f of fleet) await f.dev.waitJson(broadcast);
    // Three pushes per device: the HTTP request lands on either worker, so many cross.
    for (let round = 0; round < 3; round++) {
      for (const f of fleet) {
        const push = await post(box, `/api/devices/${f.id}/messages`, { type: "alert", status: "info", message: `push ${round}`, emotion: "happy" });
        expect(push.status).toBe(200);
        await f.dev.waitJson((m) => m.type === "alert" && m.message === `push ${round}`);
      }
    }
    for (const f of fleet) expect(f.dev.received.filter((r) => r.kind === "json" && broadcast(r.msg))).toHaveLength(1);
    expect((await post(box, "/api/devices/ee:00:00:00:02:ff/messages", { type: "alert", status: "x", message: "y", emotion: "z" })).status).toBe(404);
    await closeAll(
      box,
      fleet.map((f) => f.dev),
    );
  }, 60_000);

  test("newest wins across workers: each reconnection closes the one before (4000), wherever either landed", async () => {
    const id = "ee:00:00:00:03:01";
    // With only this device connected, its worker is the one with a session.
    const holder = async () =>
      until(
        async () => {
          const s = await status(box);
          return s.sessionCount === 1 && s.workers.find((w) => w.sessionCount === 1)?.worker;
        },
        { what: "exactly one session for the device" },
      );
    let current = { dev: await connect(box, id), worker: await holder() };
    let crossed = 0;
    for (let k = 0; k < 40 && crossed < 2; k++) {
      const dev = await connect(box, id);
      expect((await current.dev.closed).code).toBe(4000);
      const next = { dev, worker: await holder() };
      expect(next.dev.isOpen).toBe(true);
      if (next.worker !== current.worker) crossed++;
      current = next;
    }
    expect(crossed).toBe(2);
    current.dev.sendJson({ type: "ping" });
    await current.dev.waitJson((m) => m.type === "pong");
    await closeAll(box, [current.dev]);
  }, 60_000);

  test("a killed worker is replaced; its devices reconnect to the box", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:04", 2);
    const onTwo = fleet.filter((f) => f.worker === 2);
    const restarted = box.spawned.logLine("worker restarted", 30_000);
    process.kill(box.pids[1]!, "SIGKILL");
    for (const f of onTwo) expect((await f.dev.closed).code).not.toBe(4000);
    expect((await restarted).worker).toBe(2);
    await until(async () => (await status(box)).workers.length === 2, { what: "both workers to report" });
    const again = await spreadFleet(box, "ee:00:00:00:05", 2);
    expect(new Set(again.map((f) => f.worker))).toEqual(new Set([1, 2]));
    await closeAll(
      box,
      [...fleet, ...again].filter((f) => !onTwo.includes(f)).map((f) => f.dev),
    );
  }, 60_000);
});

describe("serve --workers 2: SIGTERM", () => {
  test("drains every worker (devices told 1001) and exits 0", async () => {
    const box = await startBox();
    try {
      const fleet = await spreadFleet(box, "ee:00:00:00:06", 2);
      box.spawned.proc.kill("SIGTERM");
      for (const f of fleet) expect((await f.dev.closed).code).toBe(1001);
      expect(await box.spawned.proc.exited).toBe(0);
      for (const pid of box.pids) expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      box.spawned.proc.kill("SIGKILL");
      killAll(box);
    }
  }, 60_000);
});
