import { afterEach, expect, test } from "bun:test";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { perAddressLimits } from "../../src/http/per-address-limits";
import { type Spawned, spawnUntil } from "../helpers/spawn-until";
import { handshake, startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";

/**
 * Found before: the per-address limit (1,000) times one connection's inbound burst (2 MiB)
 * let one address fill the gateway many times over within its own limits. Now the default
 * per-address limit is derived from the memory budget; and a developer's `--debug` gateway,
 * which the README points the load generator at, has no per-address limits at all.
 */

const ROOT = path.join(import.meta.dir, "../..");
const SECRET = "per-address-budget-secret-0123456789abcdef";
const MiB = 1024 * 1024;

let running: Spawned[] = [];
afterEach(async () => {
  for (const s of running) s.proc.kill("SIGKILL");
  await Promise.all(running.map((s) => s.proc.exited));
  running = [];
});

function serve(args: string[], env: Record<string, string>): Promise<Spawned> {
  const clean: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI_CONFIG|PORT$)/.test(k)) clean[k] = v;
  const started = spawnUntil(
    ["bun", path.join(ROOT, "src/main.ts"), "serve", "--port", "0", ...args],
    { cwd: ROOT, env: { ...clean, IM_SERVER_HOST: "127.0.0.1", JWT_SECRET: SECRET, ...env } },
    "gateway listening",
  );
  return started.then((s) => {
    running.push(s);
    return s;
  });
}

async function openDevice(port: number, deviceId: string): Promise<WebSocket> {
  const token = await mintToken({ secret: SECRET, deviceId });
  const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { Authorization: `Bearer ${token}`, "Device-Id": deviceId } });
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onclose = (e) => reject(new Error(`${deviceId} closed ${e.code}`));
  });
  return ws;
}

test("the derived limit: budget / one connection's burst, at least one, and a warning for an explicit value past it", () => {
  // The defaults: 64 KiB/s for 5 s, but two 1 MiB messages: a 2 MiB burst per connection.
  const inbound = { maxFramesPerSecond: 200, maxBytesPerSecond: 64 * 1024, burstSeconds: 5, maxMessageBytes: MiB };
  const base = { maxConnectsPerIpPerSecond: 50, maxBytesPerIpPerSecond: MiB, inbound, budgetBytes: 256 * MiB, debug: false };
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 0 })).toEqual({
    maxConnectionsPerIp: 128,
    maxConnectsPerIpPerSecond: 50,
    bytesPerIp: { ratePerSecond: MiB, burst: 5 * MiB },
  });
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 0, maxBytesPerIpPerSecond: 0 }).bytesPerIp).toBeUndefined();
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 0, budgetBytes: MiB }).maxConnectionsPerIp).toBe(1);
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 100 }).warning).toBeUndefined();
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 1000 }).warning).toContain("2000 MiB, over the 256 MiB memory budget");
  expect(perAddressLimits({ ...base, maxConnectionsPerIp: 5, debug: true })).toEqual({ maxConnectionsPerIp: 1_000_000, maxConnectsPerIpPerSecond: 1_000_000 });
});

test("the bytes of all connections of one address are held to one rate: the one that goes over is closed 4003", async () => {
  // Each connection may send 512 KiB at once; the address 256 KiB in all.
  await using stack = await startStack({
    gateway: { maxBytesPerSecond: 64 * 1024, inboundBurstSeconds: 8, handshake: { bytesPerIp: { ratePerSecond: 16 * 1024, burst: 256 * 1024 } } },
  });
  const devices = await Promise.all([1, 2, 3].map((i) => stack.device(`5a:00:00:00:02:0${i}`, 3)));
  await Promise.all(devices.map((d) => d.hello()));
  const [a, b, c] = devices as [(typeof devices)[0], (typeof devices)[0], (typeof devices)[0]];
  // 96 KiB each, one device after the other (each once the gateway took the previous one's
  // frames): the third goes over the address's 256 KiB, though within its own 512 KiB.
  const chunk = new Uint8Array(48 * 1024).fill(0x55);
  const base = stack.metrics.framesIn;
  for (const [i, d] of [a, b].entries()) {
    d.sendAudio(chunk);
    d.sendAudio(chunk);
    await until(() => stack.metrics.framesIn >= base + 2 * (i + 1), { what: `the gateway to take device ${i + 1}'s frames`, intervalMs: 5 });
  }
  c.sendAudio(chunk);
  c.sendAudio(chunk);
  expect((await c.closed).code).toBe(4003);
  expect(stack.metrics.floodCloses).toBe(1);
  // The ones that sent before it are still served.
  expect(a.isOpen && b.isOpen).toBe(true);
});

test("serve: one address holds at most budget / burst connections; another address is not affected", async () => {
  // 8 MiB of budget, 2 MiB of burst per connection (two 1 MiB JSON messages): 4.
  const gw = await serve([], { IM_MEMORY_BUDGET_MB: "8" });
  expect(gw.line.maxConnectionsPerIp).toBe(4);
  const port = Number(gw.line.port);
  const held = await Promise.all([1, 2, 3, 4].map((i) => openDevice(port, `5a:00:00:00:00:0${i}`)));
  const fifth = await handshake(`ws://127.0.0.1:${port}/ws`, {
    Authorization: `Bearer ${await mintToken({ secret: SECRET, deviceId: "5a:00:00:00:00:05" })}`,
    "Device-Id": "5a:00:00:00:00:05",
  });
  expect(fifth.status).toBe(429);
  expect(fifth.body).toMatchObject({ error: { code: "ERR_TOO_MANY_CONNECTIONS" } });
  const elsewhere = await handshake(
    `ws://127.0.0.1:${port}/ws`,
    { Authorization: `Bearer ${await mintToken({ secret: SECRET, deviceId: "5a:00:00:00:00:06" })}`, "Device-Id": "5a:00:00:00:00:06" },
    { localAddress: "127.0.0.2" },
  );
  expect(elsewhere.status).toBe(101);
  for (const ws of held) ws.close();
}, 30_000);

test("serve --debug: no per-address limits, so a load test from one machine is not refused", async () => {
  const gw = await serve(["--debug"], {});
  expect(gw.line.maxConnectionsPerIp).toBe(1_000_000);
  const port = Number(gw.line.port);
  // 150 connects at once: over the production per-address rate's burst (100).
  const statuses = await Promise.all(
    Array.from({ length: 150 }, async (_, i) => {
      const id = `5a:00:00:00:${(1 + (i >> 8)).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
      const token = await mintToken({ secret: SECRET, deviceId: id });
      return (await handshake(`ws://127.0.0.1:${port}/ws`, { Authorization: `Bearer ${token}`, "Device-Id": id })).status;
    }),
  );
  expect(statuses.filter((s) => s === 101).length).toBe(150);
}, 30_000);
