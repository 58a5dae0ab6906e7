import { afterEach, expect, test } from "bun:test";
import path from "node:path";
import { type Spawned, spawnUntil } from "../helpers/spawn-until";
import { FirmwareDevice } from "./firmware-device";

/**
 * The real `serve` process with the MQTT + UDP transport on: a device provisioned by
 * /xiaozhi/ota/ with an `mqtt` section connects with exactly what it was handed and talks.
 */

const ROOT = path.join(import.meta.dir, "../..");
let running: Spawned[] = [];
let devices: FirmwareDevice[] = [];
afterEach(async () => {
  for (const d of devices) d.close();
  for (const s of running) s.proc.kill("SIGKILL");
  await Promise.all(running.map((s) => s.proc.exited));
  running = [];
  devices = [];
});

test("OTA hands out an mqtt section; the device connects with it, says hello and its audio comes back", async () => {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI_CONFIG|PORT$)/.test(k)) env[k] = v;
  const gw = await spawnUntil(
    ["bun", path.join(ROOT, "src/main.ts"), "serve", "--port", "0"],
    {
      cwd: ROOT,
      env: {
        ...env,
        IM_SERVER_HOST: "127.0.0.1",
        JWT_SECRET: "serve-mqtt-udp-secret-0123456789abcdef",
        IM_OTA_POLICY: "open",
        IM_MQTT_ENABLED: "true",
        IM_MQTT_HOST: "127.0.0.1",
        IM_MQTT_PORT: "0",
        IM_UDP_PORT: "0",
        IM_DEVICE_TRANSPORT: "mqtt",
      },
    },
    "gateway listening",
  );
  running.push(gw);
  const res = await fetch(`http://127.0.0.1:${gw.line.port}/xiaozhi/ota/`, {
    method: "POST",
    headers: { "Device-Id": "aa:bb:cc:00:01:01", "Client-Id": crypto.randomUUID(), "Content-Type": "application/json" },
    body: JSON.stringify({ application: { version: "1.9.0" } }),
  });
  const answer = (await res.json()) as { mqtt?: Record<string, string | number>; websocket?: unknown };
  expect(res.status).toBe(200);
  // MQTT instead of WebSocket: the firmware would use MQTT anyway when both are present.
  expect(answer.websocket).toBeUndefined();
  const m = answer.mqtt!;
  expect(m).toMatchObject({ publish_topic: "device-server", subscribe_topic: "devices/p2p/aa_bb_cc_00_01_01", keepalive: 240 });
  expect(String(m.endpoint)).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(String(m.client_id)).toStartWith("GID_xiaozhi@@@aa_bb_cc_00_01_01@@@");

  const port = Number(String(m.endpoint).split(":")[1]);
  const d = await FirmwareDevice.connect(port, "aa:bb:cc:00:01:01", String(m.password), String(m.client_id));
  devices.push(d);
  const hello = await d.hello();
  expect(hello).toMatchObject({ transport: "udp", udp: { server: "127.0.0.1" } });
  d.publish({ session_id: d.sessionId, type: "listen", state: "start", mode: "realtime" });
  const frames = Array.from({ length: 10 }, (_, i) => new Uint8Array(80).fill(i + 1));
  for (const f of frames) d.sendAudio(f);
  expect(await d.waitForAudio(10)).toEqual(frames);
}, 30_000);
