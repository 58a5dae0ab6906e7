import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { spawnUntil } from "../helpers/spawn-until";
import { packets } from "../helpers/start-stack";

const root = path.join(import.meta.dir, "../..");
const secret = "binary-smoke-secret";
let dir: string;
let binary: string;
const procs: ReturnType<typeof Bun.spawn>[] = [];

/** Spawns the binary from an empty temp dir (nothing from the source tree helps) and
 * resolves the JSON log line whose msg matches. */
async function spawnBinary(args: string[], env: Record<string, string>, msg: string): Promise<Record<string, unknown>> {
  const { proc, line } = await spawnUntil([binary, ...args], { cwd: dir, env: { PATH: process.env.PATH ?? "", ...env } }, msg);
  procs.push(proc);
  return line;
}

async function converse(port: number): Promise<void> {
  const deviceId = "0a:0b:0c:0d:0e:0f";
  const dev = await SimulatedDevice.connect({
    url: `ws://127.0.0.1:${port}/xiaozhi/v1/`,
    token: await mintToken({ secret, deviceId }),
    deviceId,
    protocolVersion: 2,
  });
  await dev.hello({ audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 20 } });
  dev.sendJson({ type: "listen", state: "start", mode: "manual" });
  const sent = packets(10);
  for (const p of sent) dev.sendAudio(p);
  dev.sendJson({ type: "listen", state: "stop" });
  await dev.waitJson((m) => m.type === "stt");
  await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
  expect(dev.audio().map((a) => Array.from(a.payload))).toEqual(sent.map((p) => Array.from(p)));
  dev.close();
}

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-bin-"));
  binary = path.join(dir, "xiaozhi-im");
  const build = Bun.spawnSync(["bun", "build", "--compile", path.join(root, "src/main.ts"), "--outfile", binary], { cwd: root, stderr: "pipe" });
  if (build.exitCode !== 0) throw new Error(`build failed: ${build.stderr.toString()}`);
});

afterAll(async () => {
  for (const p of procs) p.kill();
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

describe("the single binary", () => {
  test("serve with the embedded AI service: /health, /ready and a device conversation", async () => {
    const rec = await spawnBinary(["serve", "--port", "0"], { JWT_SECRET: secret }, "gateway listening");
    const port = rec.port as number;
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    // The test page travels inside the binary.
    const page = await fetch(`http://127.0.0.1:${port}/test-websocket.html`);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain("window.__xiaozhi");
    const ready = await fetch(`http://127.0.0.1:${port}/ready`);
    expect([200, 503]).toContain(ready.status);
    await converse(port);
    const metrics = await (
      await fetch(`http://127.0.0.1:${port}/metrics`, { headers: { authorization: `Bearer ${await mintToken({ secret, claims: { scope: "api" } })}` } })
    ).text();
    expect(metrics).toMatch(/^xiaozhi_frames_in_total [1-9]/m);
  });

  test("`ai` and `serve` as separate processes, linked by AI_SERVICE_GRPC_ADDR", async () => {
    const ai = await spawnBinary(["ai"], { AI_SERVER_PORT: "0", AI_METRICS_PORT: "0" }, "reference AI service listening");
    const gw = await spawnBinary(
      ["serve", "--port", "0"],
      { JWT_SECRET: secret, AI_SERVICE_GRPC_ADDR: `127.0.0.1:${ai.port as number}`, GRPC_MAX_CONNECTIONS: "2" },
      "gateway listening",
    );
    await converse(gw.port as number);
  });

  test("serve --workers 2: the binary starts itself as its workers, and they answer on one port", async () => {
    const rec = await spawnBinary(["serve", "--workers", "2", "--port", "0"], { JWT_SECRET: secret }, "workers listening");
    expect(rec.pids as number[]).toHaveLength(2);
    await converse(rec.port as number);
    const status = (await (
      await fetch(`http://127.0.0.1:${rec.port as number}/api/status`, {
        headers: { authorization: `Bearer ${await mintToken({ secret, claims: { scope: "api" } })}` },
      })
    ).json()) as { workers: { worker: number }[] };
    expect(status.workers.map((w) => w.worker)).toEqual([1, 2]);
  });

  test("a bad setting stops start-up with one line naming it", async () => {
    const proc = Bun.spawn([binary, "serve"], { cwd: dir, env: { IM_SERVER_PORT: "99999" }, stdout: "pipe", stderr: "pipe" });
    expect(await proc.exited).toBe(2);
    const err = (await new Response(proc.stderr).text()).trim();
    expect(err.split("\n")).toHaveLength(1);
    expect(err).toContain("IM_SERVER_PORT");
    expect(err).toContain("99999");
  });
});
