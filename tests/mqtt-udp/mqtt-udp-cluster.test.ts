import { afterAll, beforeAll, expect, test } from "bun:test";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { OwnRedis } from "../fanout/fanout-test-kit";
import { type Spawned, spawnUntil } from "../helpers/spawn-until";
import { until } from "../helpers/until";
import { FirmwareDevice } from "./firmware-device";

/** Two gateway processes with the MQTT + UDP transport on, one Redis: one fleet. */

const root = path.join(import.meta.dir, "../..");
const secret = "mqtt-udp-cluster-secret-0123456789abcdef";
const spawned: Spawned[] = [];
const devices: FirmwareDevice[] = [];
let redis: OwnRedis;
const gw: { http: string; ws: string; mqttPort: number }[] = [];

beforeAll(async () => {
  redis = await OwnRedis.start();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI_CONFIG|PORT$)/.test(k)) env[k] = v;
  const ai = await spawnUntil(
    ["bun", path.join(root, "src/main.ts"), "ai"],
    { cwd: root, env: { ...env, AI_SERVER_PORT: "0", AI_METRICS_PORT: "0" } },
    "reference AI service listening",
  );
  spawned.push(ai);
  for (const name of ["mq-a", "mq-b"]) {
    const s = await spawnUntil(
      ["bun", path.join(root, "src/main.ts"), "serve", "--port", "0"],
      {
        cwd: root,
        env: {
          ...env,
          JWT_SECRET: secret,
          REDIS_URL: redis.url,
          IM_INSTANCE_ID: name,
          AI_SERVICE_GRPC_ADDR: `127.0.0.1:${ai.line.port as number}`,
          GRPC_MAX_CONNECTIONS: "2",
          IM_SERVER_HOST: "127.0.0.1",
          IM_MQTT_ENABLED: "true",
          IM_MQTT_HOST: "127.0.0.1",
          IM_MQTT_PORT: "0",
          IM_UDP_PORT: "0",
        },
      },
      "gateway listening",
    );
    spawned.push(s);
    gw.push({ http: `http://127.0.0.1:${s.line.port}`, ws: `ws://127.0.0.1:${s.line.port}/ws`, mqttPort: Number(s.line.mqttPort) });
  }
  // Both instances in the directory before the tests start; failing here says so.
  const api = await mintToken({ secret, claims: { scope: "api" } });
  await until(
    async () => {
      const s = (await (await fetch(`${gw[0]!.http}/api/status`, { headers: { authorization: `Bearer ${api}` } })).json()) as {
        cluster: { instances: unknown[] };
      };
      return s.cluster.instances.length === 2;
    },
    { what: "the two instances to see each other", intervalMs: 50 },
  );
}, 60_000);

afterAll(async () => {
  for (const d of devices) d.close();
  for (const s of spawned) s.proc.kill();
  await Promise.all(spawned.map((s) => s.proc.exited));
  await redis.stop();
});

async function firmware(i: number, mac: string): Promise<FirmwareDevice> {
  const d = await FirmwareDevice.connect(gw[i]!.mqttPort, mac, await mintToken({ secret, deviceId: mac }));
  devices.push(d);
  return d;
}

async function push(i: number, deviceId: string, body: unknown): Promise<Response> {
  return fetch(`${gw[i]!.http}/api/devices/${deviceId}/messages`, {
    method: "POST",
    headers: { authorization: `Bearer ${await mintToken({ secret, claims: { scope: "api" } })}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

test("a push through one instance reaches an idle MQTT device connected to the other", async () => {
  const d = await firmware(0, "dd:00:00:00:00:01");
  // Its presence is in the directory once the claim went through: retried until then.
  const res = await until(
    async () => {
      const r = await push(1, "dd:00:00:00:00:01", { type: "alert", status: "info", message: "from the other instance", emotion: "neutral" });
      return r.status !== 404 && r;
    },
    { what: "the device's presence to reach the other instance (a push answered other than 404)", intervalMs: 50 },
  );
  expect(res.status).toBe(200);
  expect(await d.waitFor((m) => m.type === "alert")).toMatchObject({ message: "from the other instance" });
});

test("newest wins across instances and transports: a WebSocket on the other instance ends the MQTT audio session", async () => {
  const d = await firmware(0, "dd:00:00:00:00:02");
  await d.hello();
  const from = d.messages.length;
  const ws = await SimulatedDevice.connect({
    url: gw[1]!.ws,
    token: await mintToken({ secret, deviceId: "dd:00:00:00:00:02" }),
    deviceId: "dd:00:00:00:00:02",
    protocolVersion: 3,
  });
  await ws.hello();
  expect(await d.waitFor((m) => m.type === "goodbye", from, 10_000)).toMatchObject({ session_id: d.sessionId });
  expect(d.mqtt.connected).toBe(true);
  ws.close();
});
