import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { until } from "../helpers/until";
import { WorkerBox } from "../helpers/worker-box";

/** `serve --workers 2`: two gateway processes on one port behave as one gateway without Redis. */
const secret = "workers-test-secret";

/** A fleet on both workers: `prefix:00`, `prefix:01`... with their sessions open. */
async function spreadFleet(box: WorkerBox, prefix: string, min: number) {
  const fleet = await box.spread(min, async (k) => {
    const id = `${prefix}:${k.toString(16).padStart(2, "0")}`;
    return { id, dev: await box.wsDevice(id) };
  });
  return fleet.map((f) => ({ ...f.value, worker: f.worker }));
}

describe("serve --workers 2: one port, one gateway", () => {
  let box: WorkerBox;
  beforeAll(async () => {
    box = await WorkerBox.start(secret);
  }, 40_000);
  afterAll(() => box.kill());

  test("devices on one port land on both workers; /api/status and /metrics count them all, per worker", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:01", 6);
    const s = await box.status();
    expect(s.workers.map((w) => w.worker)).toEqual([1, 2]);
    expect(s.sessionCount).toBe(fleet.length);
    expect(s.cluster.instances).toHaveLength(2);
    for (const w of [1, 2]) expect(s.workers.find((x) => x.worker === w)?.sessionCount).toBe(fleet.filter((f) => f.worker === w).length);
    const metrics = await box.metrics();
    for (const w of [1, 2]) {
      const line = metrics.split("\n").find((l) => l.startsWith(`xiaozhi_sessions{worker="${w}"}`));
      expect(Number(line?.split(" ")[1])).toBe(fleet.filter((f) => f.worker === w).length);
    }
    await box.closeAll(fleet.map((f) => f.dev));
  }, 60_000);

  test("a broadcast reaches devices on every worker once; a push reaches its device wherever it is", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:02", 6);
    const res = await box.post("/api/message", { content: "to the whole box" });
    expect(res.status).toBe(200);
    const broadcast = (m: Readonly<Record<string, unknown>>) => m.type === "alert" && String(m.message).includes("to the whole box");
    for (const f of fleet) await f.dev.waitJson(broadcast);
    // Three pushes per device: the HTTP request lands on either worker, so many cross.
    for (let round = 0; round < 3; round++) {
      for (const f of fleet) {
        const push = await box.post(`/api/devices/${f.id}/messages`, { type: "alert", status: "info", message: `push ${round}`, emotion: "happy" });
        expect(push.status).toBe(200);
        await f.dev.waitJson((m) => m.type === "alert" && m.message === `push ${round}`);
      }
    }
    for (const f of fleet) expect(f.dev.received.filter((r) => r.kind === "json" && broadcast(r.msg))).toHaveLength(1);
    expect((await box.post("/api/devices/ee:00:00:00:02:ff/messages", { type: "alert", status: "x", message: "y", emotion: "z" })).status).toBe(404);
    await box.closeAll(fleet.map((f) => f.dev));
  }, 60_000);

  test("newest wins across workers: each reconnection closes the one before (4000), wherever either landed", async () => {
    const id = "ee:00:00:00:03:01";
    // With only this device connected, its worker is the one with a session.
    let current = { dev: await box.wsDevice(id), worker: await box.holder() };
    let crossed = 0;
    for (let k = 0; k < 40 && crossed < 2; k++) {
      const dev = await box.wsDevice(id);
      expect((await current.dev.closed).code).toBe(4000);
      const next = { dev, worker: await box.holder() };
      expect(next.dev.isOpen).toBe(true);
      if (next.worker !== current.worker) crossed++;
      current = next;
    }
    expect(crossed).toBe(2);
    current.dev.sendJson({ type: "ping" });
    await current.dev.waitJson((m) => m.type === "pong");
    await box.closeAll([current.dev]);
  }, 60_000);

  test("a killed worker is replaced; its devices reconnect to the box", async () => {
    const fleet = await spreadFleet(box, "ee:00:00:00:04", 2);
    const onTwo = fleet.filter((f) => f.worker === 2);
    const restarted = box.spawned.logLine("worker restarted", 30_000);
    process.kill(box.pids[1]!, "SIGKILL");
    for (const f of onTwo) expect((await f.dev.closed).code).not.toBe(4000);
    expect((await restarted).worker).toBe(2);
    await until(async () => (await box.status()).workers.length === 2, { what: "both workers to report" });
    const again = await spreadFleet(box, "ee:00:00:00:05", 2);
    expect(new Set(again.map((f) => f.worker))).toEqual(new Set([1, 2]));
    await box.closeAll([...fleet, ...again].filter((f) => !onTwo.includes(f)).map((f) => f.dev));
  }, 60_000);
});

describe("serve --workers 2: SIGTERM", () => {
  test("drains every worker (devices told 1001) and exits 0", async () => {
    const box = await WorkerBox.start(secret);
    try {
      const fleet = await spreadFleet(box, "ee:00:00:00:06", 2);
      box.spawned.proc.kill("SIGTERM");
      for (const f of fleet) expect((await f.dev.closed).code).toBe(1001);
      expect(await box.spawned.proc.exited).toBe(0);
      for (const pid of box.pids) expect(() => process.kill(pid, 0)).toThrow();
    } finally {
      await box.kill();
    }
  }, 60_000);
});
