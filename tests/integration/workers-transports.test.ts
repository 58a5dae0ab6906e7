import { expect, test } from "bun:test";
import { Redis } from "ioredis";
import { mintToken } from "../../src/auth/mint-token";
import type { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { OwnRedis } from "../fanout/fanout-test-kit";
import { until } from "../helpers/until";
import { type ClusterView, WorkerBox } from "../helpers/worker-box";
import { FirmwareDevice, type UdpParams } from "../mqtt-udp/firmware-device";

/**
 * `serve --workers 2` with the other ways a box is run: over Redis (each worker an instance of
 * the cluster, the hub only gathering status), and with the MQTT + UDP transport (one shared
 * MQTT port, a UDP port per worker). Which worker the kernel gives a connection is chance, so
 * the tests find out from /api/status and open connections until both workers are used.
 */
const secret = "workers-transports-secret-0123456789abcdef";

/** Audio frames received from devices, summed over the workers' /metrics samples. */
async function framesIn(box: WorkerBox): Promise<number> {
  const samples = (await box.metrics()).split("\n").filter((l) => l.startsWith("xiaozhi_frames_in_total{"));
  expect(samples.length).toBe(2);
  return samples.reduce((n, l) => n + Number(l.split(" ")[1]), 0);
}

test("with REDIS_URL, each worker joins the cluster as an instance", async () => {
  // The gateway has no setting for its Redis key prefix, so a Redis of the test's own keeps
  // other gateways (and their instances) out of the cluster this test counts.
  const redis = await OwnRedis.start();
  const name = `wt-${crypto.randomUUID().slice(0, 8)}`;
  const probe = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  let box: WorkerBox | undefined;
  const devs: SimulatedDevice[] = [];
  try {
    await probe.connect();
    box = await WorkerBox.start(secret, { REDIS_URL: redis.url, IM_INSTANCE_ID: name });
    const b = box;
    // Each worker's own view (the answer names its instance): a ready link, both instances.
    const views = new Map<string, ClusterView>();
    await until(
      async () => {
        const c = (await b.status(true)).cluster;
        views.set(c.instanceId, c);
        return views.size === 2 && [...views.values()].every((v) => v.link === "ready" && v.instances.length === 2);
      },
      { what: () => `both workers to report a ready link and two instances (seen: ${JSON.stringify([...views.values()])})`, timeoutMs: 20_000, intervalMs: 50 },
    );
    expect([...views.keys()].sort()).toEqual([`${name}-w1`, `${name}-w2`]);
    for (const v of views.values()) expect(v.instances.map((i) => i.instanceId).sort()).toEqual([`${name}-w1`, `${name}-w2`]);
    // In Redis itself, not only in the hub's gathered view (which looks the same without Redis).
    expect((await probe.smembers("xiaozhi:instances")).sort()).toEqual([`${name}-w1`, `${name}-w2`]);

    // A broadcast reaches the devices of both workers, each once.
    const fleet = await b.spread(4, (k) => b.wsDevice(`ee:00:00:01:01:${k.toString(16).padStart(2, "0")}`));
    devs.push(...fleet.map((f) => f.value));
    const first = await b.post("/api/message", { content: "over redis, first" });
    expect(first.status).toBe(200);
    const isFirst = (m: Readonly<Record<string, unknown>>) => m.type === "alert" && String(m.message).includes("over redis, first");
    for (const f of fleet) await f.value.waitJson(isFirst);
    // A second broadcast, and a round trip on each socket: a duplicate of the first would be in.
    const second = await b.post("/api/message", { content: "over redis, second" });
    expect(second.status).toBe(200);
    for (const f of fleet) {
      await f.value.waitJson((m) => m.type === "alert" && String(m.message).includes("over redis, second"));
      f.value.sendJson({ type: "ping" });
      await f.value.waitJson((m) => m.type === "pong");
      expect(f.value.received.filter((r) => r.kind === "json" && isFirst(r.msg))).toHaveLength(1);
    }
    for (const d of devs.splice(0)) d.close();
    await b.closeAll([]);

    // Newest wins across workers (over Redis): each reconnection closes the one before, 4000.
    const id = "ee:00:00:01:02:01";
    let current = { dev: await b.wsDevice(id), worker: await b.holder() };
    devs.push(current.dev);
    let crossed = 0;
    for (let k = 0; k < 40 && crossed < 2; k++) {
      const dev = await b.wsDevice(id);
      devs.push(dev);
      expect((await current.dev.closed).code).toBe(4000);
      const next = { dev, worker: await b.holder() };
      expect(next.dev.isOpen).toBe(true);
      // The cluster's directory in Redis names the worker that holds the device now.
      let entry: string | null = null;
      await until(
        async () => {
          entry = await probe.get(`xiaozhi:device:${id}`);
          return entry?.split(" ")[1] === `${name}-w${next.worker}`;
        },
        { what: () => `Redis to name ${name}-w${next.worker} as the device's instance (it holds ${JSON.stringify(entry)})` },
      );
      if (next.worker !== current.worker) crossed++;
      current = next;
    }
    expect(crossed).toBe(2);
    current.dev.sendJson({ type: "ping" });
    await current.dev.waitJson((m) => m.type === "pong");
  } finally {
    for (const d of devs) d.close();
    if (box !== undefined) await box.kill();
    probe.disconnect();
    await redis.stop();
  }
}, 60_000);

/** An Opus-sized packet, loud enough for the reference AI to keep it (over 32 bytes). */
const frame = (device: number, i: number) => new Uint8Array(120).fill((device * 16 + i) & 0xff).map((v, j) => (j === 0 ? 0x58 : v));

test("MQTT + UDP devices on a 2-worker box", async () => {
  let box: WorkerBox | undefined;
  const devs: FirmwareDevice[] = [];
  try {
    box = await WorkerBox.start(secret, { IM_MQTT_ENABLED: "true", IM_MQTT_HOST: "127.0.0.1", IM_MQTT_PORT: "0", IM_UDP_PORT: "0" });
    const b = box;
    const mqttPort = b.mqttPort;
    expect(mqttPort).toBeGreaterThan(0);
    // Devices on the shared MQTT port until both workers hold a session.
    const fleet = await b.spread(4, async (k) => {
      const mac = `ee:00:00:02:01:${k.toString(16).padStart(2, "0")}`;
      const d = await FirmwareDevice.connect(mqttPort!, mac, await mintToken({ secret, deviceId: mac }));
      devs.push(d);
      const hello = await d.hello();
      expect(hello).toMatchObject({ type: "hello", transport: "udp", udp: { server: "127.0.0.1" } });
      const udp = hello.udp as UdpParams;
      expect(udp.port).toBeGreaterThan(0);
      expect(udp.port).not.toBe(mqttPort);
      return { d, udpPort: udp.port };
    });
    // Each worker hands out its own UDP port, the same to all its devices.
    const portOf = new Map<number, Set<number>>();
    for (const f of fleet) portOf.set(f.worker, (portOf.get(f.worker) ?? new Set()).add(f.value.udpPort));
    expect([...portOf.values()].map((s) => s.size)).toEqual([1, 1]);
    expect(new Set(fleet.map((f) => f.value.udpPort)).size).toBe(2);

    // Each device talks over its worker's UDP port: an utterance, and the reference AI's answer
    // (the utterance played back) with tts start and stop over MQTT.
    for (const [n, { value }] of fleet.entries()) {
      const d = value.d;
      const from = d.messages.length;
      d.publish({ session_id: d.sessionId, type: "listen", state: "start", mode: "manual" });
      // The ping is answered after the listen start was taken (one MQTT connection, in order).
      d.publish({ session_id: d.sessionId, type: "ping" });
      await d.waitFor((m) => m.type === "pong", from);
      const before = await framesIn(b);
      const utterance = Array.from({ length: 6 }, (_, i) => frame(n, i));
      for (const f of utterance) d.sendAudio(f);
      await until(async () => (await framesIn(b)) >= before + utterance.length, { what: `device ${n}'s utterance to reach its worker` });
      d.publish({ session_id: d.sessionId, type: "listen", state: "stop" });
      await d.waitFor((m) => m.type === "tts" && m.state === "start", from, 10_000);
      await d.waitFor((m) => m.type === "tts" && m.state === "stop", from, 10_000);
      expect(d.audio).toEqual(utterance);
    }
  } finally {
    for (const d of devs) d.close();
    if (box !== undefined) await box.kill();
  }
}, 60_000);
