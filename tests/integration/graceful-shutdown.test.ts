import { describe, expect, test } from "bun:test";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { spawnUntil } from "../helpers/spawn-until";
import { handshake, packets, startStack, TEST_SECRET } from "../helpers/start-stack";

const MAIN = path.join(import.meta.dir, "../../src/main.ts");

/** Starts an answer: a manual-mode utterance of `frames` 60 ms frames, parroted back paced
 * at real time; resolves at its tts start. */
async function startAnswer(dev: SimulatedDevice, frames: number): Promise<void> {
  dev.sendJson({ type: "listen", state: "start", mode: "manual" });
  for (const p of packets(frames)) dev.sendAudio(p);
  dev.sendJson({ type: "listen", state: "stop" });
  await dev.waitJson((m) => m.type === "tts" && m.state === "start");
}

/** The last JSON message a device received, and how many audio frames it got after tts start. */
function tail(dev: SimulatedDevice): { lastJson: Readonly<Record<string, unknown>> | undefined; audioAfterStart: number } {
  const start = dev.received.findIndex((r) => r.kind === "json" && r.msg.type === "tts" && r.msg.state === "start");
  const json = dev.received.filter((r) => r.kind === "json");
  const last = json.at(-1);
  return {
    lastJson: last?.kind === "json" ? last.msg : undefined,
    audioAfterStart: dev.received.slice(start + 1).filter((r) => r.kind === "audio").length,
  };
}

describe("drain (in-process)", () => {
  test("idle devices are told 1001 at once, a device mid-answer right after its tts stop; /ready and new upgrades say 503 meanwhile", async () => {
    await using stack = await startStack();
    const idle = await stack.device("d2:00:00:00:00:01", 3);
    await idle.hello();
    const noHello = await stack.device("d2:00:00:00:00:02", 3);
    const speaking = await stack.device("d2:00:00:00:00:03", 3);
    await speaking.hello();
    await startAnswer(speaking, 30);

    const drained = stack.gateway.drain(10_000);
    expect((await idle.closed).code).toBe(1001);
    expect((await noHello.closed).code).toBe(1001);
    expect(stack.gateway.draining).toBe(true);
    // The answer takes ~1.8 s: the gateway is visibly draining meanwhile.
    expect(speaking.isOpen).toBe(true);
    const ready = await fetch(`${stack.gateway.url}/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "not-ready", reason: "draining" });
    const refused = await handshake(stack.wsUrl, { Authorization: `Bearer ${await stack.token("d2:00:00:00:00:04")}`, "Device-Id": "d2:00:00:00:00:04" });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ error: { code: "ERR_SHUTTING_DOWN" } });
    expect(refused.raw).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(stack.metrics.upgradesRefused.draining).toBe(1);

    expect((await speaking.closed).code).toBe(1001);
    await drained;
    const t = tail(speaking);
    expect(t.lastJson).toMatchObject({ type: "tts", state: "stop" });
    expect(t.audioAfterStart).toBe(30);
    expect(stack.gateway.registry.all().size).toBe(0);
  });

  test("an answer still playing at the timeout is cut: the device is closed (1001) then", async () => {
    await using stack = await startStack();
    const speaking = await stack.device("d2:00:00:00:00:05", 3);
    await speaking.hello();
    await startAnswer(speaking, 200); // 12 s of answer
    const t0 = performance.now();
    await stack.gateway.drain(300);
    expect((await speaking.closed).code).toBe(1001);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(speaking.received.some((r) => r.kind === "json" && r.msg.type === "tts" && r.msg.state === "stop")).toBe(false);
  });
});

/** The real process: `bun src/main.ts serve --port 0`, its log lines kept for `logLine`. */
async function spawnGateway(env: Record<string, string> = {}) {
  const { proc, line, logLine } = await spawnUntil(
    ["bun", MAIN, "serve", "--port", "0"],
    { env: { ...process.env, JWT_SECRET: TEST_SECRET, IM_SERVER_HOST: "127.0.0.1", LOG_LEVEL: "info", ...env } },
    "gateway listening",
  );
  const port = Number(line.port);
  return {
    proc,
    port,
    logLine,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    async device(deviceId: string): Promise<SimulatedDevice> {
      const token = await mintToken({ secret: TEST_SECRET, deviceId });
      return SimulatedDevice.connect({ url: `ws://127.0.0.1:${port}/ws`, token, deviceId, protocolVersion: 3 });
    },
    [Symbol.dispose]() {
      if (proc.exitCode === null) proc.kill("SIGKILL");
    },
  };
}

/** Resolves with the exit code, or rejects after `timeoutMs`. */
async function exitWithin(proc: ReturnType<typeof Bun.spawn>, timeoutMs: number): Promise<number> {
  const timer = Promise.withResolvers<never>();
  const t = setTimeout(() => timer.reject(new Error(`the process did not exit within ${timeoutMs} ms`)), timeoutMs);
  try {
    return await Promise.race([proc.exited, timer.promise]);
  } finally {
    clearTimeout(t);
  }
}

describe("SIGTERM (the real process)", () => {
  test("50 connected devices are all closed with 1001, one mid-answer only after its tts stop; /ready says draining; exit 0 within the timeout", async () => {
    using gw = await spawnGateway({ IM_SHUTDOWN_TIMEOUT_SECONDS: "10" });
    const devices: SimulatedDevice[] = [];
    for (let i = 0; i < 50; i++) devices.push(await gw.device(`e0:00:00:00:00:${i.toString(16).padStart(2, "0")}`));
    await Promise.all(devices.map((d) => d.hello()));
    const speaking = devices[49]!;
    await startAnswer(speaking, 30);

    const t0 = performance.now();
    gw.proc.kill("SIGTERM");
    const idleCodes = await Promise.all(devices.slice(0, 49).map(async (d) => (await d.closed).code));
    expect(idleCodes).toEqual(new Array(49).fill(1001));
    // The answer (~1.8 s) is still playing: the gateway is draining and says so.
    if (speaking.isOpen) {
      const ready = await fetch(`http://127.0.0.1:${gw.port}/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: "not-ready", reason: "draining" });
      const refused = await handshake(gw.wsUrl, { Authorization: `Bearer ${await mintToken({ secret: TEST_SECRET, deviceId: "e0:00:00:00:01:00" })}` });
      expect(refused.status).toBe(503);
    }
    expect((await speaking.closed).code).toBe(1001);
    const t = tail(speaking);
    expect(t.lastJson).toMatchObject({ type: "tts", state: "stop" });
    expect(t.audioAfterStart).toBe(30);

    expect(await exitWithin(gw.proc, 15_000)).toBe(0);
    expect(performance.now() - t0).toBeLessThan(10_000 + 5000);
    await gw.logLine("shut down", 1000);
  }, 60_000);

  test("a second signal exits at once, non-zero", async () => {
    using gw = await spawnGateway({ IM_SHUTDOWN_TIMEOUT_SECONDS: "60" });
    const speaking = await gw.device("e0:00:00:00:02:00");
    await speaking.hello();
    await startAnswer(speaking, 200); // 12 s of answer: the drain would wait for it
    gw.proc.kill("SIGTERM");
    await gw.logLine("shutting down: draining devices");
    gw.proc.kill("SIGTERM");
    expect(await exitWithin(gw.proc, 5000)).not.toBe(0);
  }, 30_000);
});
