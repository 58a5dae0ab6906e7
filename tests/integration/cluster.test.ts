import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { OwnRedis } from "../fanout/fanout-test-kit";
import { spawnUntil } from "../helpers/spawn-until";
import { until } from "../helpers/until";

const root = path.join(import.meta.dir, "../..");
const secret = "cluster-test-secret";
const procs: ReturnType<typeof Bun.spawn>[] = [];

/** Spawns `bun src/main.ts <args>` and resolves the JSON log line whose msg matches. */
async function spawnMain(args: string[], env: Record<string, string>, msg: string): Promise<Record<string, unknown>> {
  const { proc, line } = await spawnUntil(["bun", path.join(root, "src/main.ts"), ...args], { cwd: root, env: { ...process.env, ...env } }, msg);
  procs.push(proc);
  return line;
}

let redis: OwnRedis;
const gw: { name: string; port: number }[] = [];

beforeAll(async () => {
  redis = await OwnRedis.start();
  const ai = await spawnMain(["ai"], { AI_SERVER_PORT: "0", AI_METRICS_PORT: "0" }, "reference AI service listening");
  for (const name of ["gw-a", "gw-b"]) {
    const rec = await spawnMain(
      ["serve", "--port", "0"],
      {
        JWT_SECRET: secret,
        REDIS_URL: redis.url,
        IM_INSTANCE_ID: name,
        AI_SERVICE_GRPC_ADDR: `127.0.0.1:${ai.port as number}`,
        GRPC_MAX_CONNECTIONS: "2",
        IM_SERVER_HOST: "127.0.0.1",
        IM_BROADCAST_INTERVAL_MS: "0",
      },
      "gateway listening",
    );
    gw.push({ name, port: rec.port as number });
  }
  // Both instances see each other before the tests start, or setup fails saying so.
  await bothReady("before the tests");
}, 60_000);

/** Waits until each instance reports a ready link and both instances; fails naming `when`
 * and the last status seen. */
async function bothReady(when: string, timeoutMs?: number): Promise<void> {
  for (const i of [0, 1]) {
    let last: ClusterStatus | undefined;
    await until(
      async () => {
        last = await clusterStatus(i);
        return last.link === "ready" && last.instances.length === 2;
      },
      {
        what: () => `${gw[i]!.name} to see both instances over a ready link ${when} (its last /api/status cluster: ${JSON.stringify(last)})`,
        ...(timeoutMs === undefined ? {} : { timeoutMs }),
        intervalMs: 50,
      },
    );
  }
}

afterAll(async () => {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  await redis.stop();
});

const url = (i: number) => `ws://127.0.0.1:${gw[i]!.port}/ws`;
const http = (i: number) => `http://127.0.0.1:${gw[i]!.port}`;

interface ClusterStatus {
  readonly instanceId: string;
  readonly link: string;
  readonly instances: readonly { instanceId: string }[];
}

/** The `cluster` part of instance `i`'s /api/status. */
async function clusterStatus(i: number): Promise<ClusterStatus> {
  const res = await fetch(`${http(i)}/api/status`, { headers: { authorization: `Bearer ${await mintToken({ secret, claims: { scope: "api" } })}` } });
  return ((await res.json()) as { cluster: ClusterStatus }).cluster;
}

async function device(i: number, deviceId: string, dialect?: "text"): Promise<SimulatedDevice> {
  return SimulatedDevice.connect({
    url: dialect ? `${url(i)}?dialect=text` : url(i),
    token: await mintToken({ secret, deviceId }),
    deviceId,
    protocolVersion: 3,
    identityInQuery: dialect === "text",
  });
}

async function post(i: number, p: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${http(i)}${p}`, {
    method: "POST",
    headers: { authorization: `Bearer ${await mintToken({ secret, subject: "ops", claims: { scope: "api" } })}` },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("two gateway processes and one Redis behave like one gateway", () => {
  test("/api/status reports the cluster", async () => {
    const cluster = await clusterStatus(1);
    expect(cluster.instanceId).toBe("gw-b");
    expect(cluster.link).toBe("ready");
    expect(cluster.instances.map((i) => i.instanceId).sort()).toEqual(["gw-a", "gw-b"]);
  });

  test("a broadcast reaches the text clients of every instance exactly once", async () => {
    const onA = await device(0, "cc:00:00:00:00:0a", "text");
    const onB = await device(1, "cc:00:00:00:00:0b", "text");
    const res = await post(0, "/api/message", { content: "hello cluster" });
    expect(res.status).toBe(200);
    const id = String(res.json.id);
    for (const c of [onA, onB]) await c.waitJson((m) => m.type === "text_end" && m.id === id);
    // One more round trip on each socket: any duplicate of the first answer would be in by now.
    for (const c of [onA, onB]) {
      c.sendJson({ type: "text", content: "ping" });
      await c.waitJson((m) => m.type === "text_end" && m.id !== id);
      expect(c.received.filter((r) => r.kind === "json" && r.msg.type === "text_end" && r.msg.id === id)).toHaveLength(1);
      const text = c.received.flatMap((r) => (r.kind === "json" && r.msg.type === "text" && r.msg.id === id ? [String(r.msg.content)] : [])).join("");
      expect(text).toContain("You asked: hello cluster");
    }
  });

  test("a push to a device connected to the other instance reaches it, and an MCP reply comes back", async () => {
    const dev = await device(1, "cc:00:00:00:00:10");
    await dev.hello({ features: { mcp: false } });
    expect((await post(0, "/api/devices/cc:00:00:00:00:10/messages", { type: "alert", status: "info", message: "from A", emotion: "happy" })).status).toBe(200);
    expect((await dev.waitJson((m) => m.type === "alert")).message).toBe("from A");
    // The device answers the pushed MCP request; the reply travels back to instance A.
    const replying = (async () => {
      const req = await dev.waitJson((m) => m.type === "mcp");
      const payload = req.payload as { id: string; method: string };
      expect(payload.method).toBe("tools/list");
      dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: payload.id, result: { tools: [{ name: "self.light.set" }] } } });
    })();
    const res = await post(0, "/api/devices/cc:00:00:00:00:10/messages", {
      type: "mcp",
      payload: { jsonrpc: "2.0", id: 42, method: "tools/list", params: {} },
    });
    await replying;
    expect(res.status).toBe(200);
    expect(res.json.reply).toEqual({ jsonrpc: "2.0", id: 42, result: { tools: [{ name: "self.light.set" }] } });
    expect((await post(0, "/api/devices/cc:00:00:00:00:99/messages", { type: "alert", status: "x", message: "y", emotion: "z" })).status).toBe(404);
  });

  test("newest wins across instances: a device reconnecting on B closes its stale session on A", async () => {
    const first = await device(0, "cc:00:00:00:00:20");
    await first.hello();
    const second = await device(1, "cc:00:00:00:00:20");
    await second.hello();
    expect((await first.closed).code).toBe(4000);
    second.sendJson({ type: "ping" });
    await second.waitJson((m) => m.type === "pong");
  });

  test("Redis restarts: local service goes on, and cross-instance delivery resumes with no duplicates", async () => {
    const onA = await device(0, "cc:00:00:00:00:30", "text");
    const onB = await device(1, "cc:00:00:00:00:31", "text");
    await redis.stop();
    // Local service goes on without Redis.
    onA.sendJson({ type: "text", content: "still here?" });
    await onA.waitJson((m) => m.type === "text_end");
    await redis.start();
    await bothReady("after the restart", 15_000);
    const res = await post(0, "/api/message", { content: "after the restart" });
    const id = String(res.json.id);
    for (const c of [onA, onB]) await c.waitJson((m) => m.type === "text_end" && m.id === id, 15_000);
    for (const c of [onA, onB]) {
      c.sendJson({ type: "text", content: "ping" });
      await c.waitJson((m) => m.type === "text_end" && m.id !== id && !String(m.id).startsWith("broadcast"));
      expect(c.received.filter((r) => r.kind === "json" && r.msg.type === "text_end" && r.msg.id === id)).toHaveLength(1);
    }
  }, 60_000);

  // Found before: after a Redis restart one instance resubscribed 2.3 s after the other; pushes
  // got 503/404 meanwhile and 11 of 50 broadcasts answered 200 never arrived.
  test("right after a Redis restart: a push waits for the device's instance instead of 404; no broadcast is answered 200 and lost", async () => {
    const onB = await device(1, "cc:00:00:00:00:40");
    await onB.hello();
    await redis.stop();
    await redis.start();
    // At once, not waiting for either instance to report its link ready.
    const [push, ...broadcasts] = await Promise.all([
      post(0, "/api/devices/cc:00:00:00:00:40/messages", { type: "alert", status: "info", message: "after the restart", emotion: "neutral" }),
      ...Array.from({ length: 10 }, (_, k) => post(0, "/api/message", { content: `restart news ${k}` })),
    ]);
    expect(push.status).toBe(200);
    await onB.waitJson((m) => m.type === "alert" && m.message === "after the restart");
    // Each broadcast is either refused (503, retry) or delivered to the device on B.
    for (const b of broadcasts) expect([200, 503]).toContain(b.status);
    const accepted = broadcasts.filter((b) => b.status === 200).length;
    for (let k = 0; k < accepted; k++) await onB.waitJson((m) => m.type === "alert" && m.status === "message");
    onB.close();
  }, 60_000);
});
