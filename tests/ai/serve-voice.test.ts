import { afterEach, expect, test } from "bun:test";
import path from "node:path";
import { toneFrames } from "../../src/ai/opus-tone";
import { mintToken } from "../../src/auth/mint-token";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { type FakeOpenAi, startFakeOpenAi } from "../helpers/fake-openai";
import { spawnUntil } from "../helpers/spawn-until";
import { TEST_SECRET } from "../helpers/start-stack";

// What the README promises: point AI_BASE_URL at an OpenAI-compatible service (here a local
// one, so no key) and a device holds a spoken conversation through `serve`, the real process.

const MAIN = path.join(import.meta.dir, "../../src/main.ts");
let cleanup: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanup) c();
  cleanup = [];
});

test("serve with only AI_BASE_URL: a spoken turn is recognized, answered and spoken; the log says where each stage goes", async () => {
  const fake: FakeOpenAi = await startFakeOpenAi();
  cleanup.push(() => void fake.stop());
  const { proc, line, logLine } = await spawnUntil(
    ["bun", MAIN, "serve", "--port", "0"],
    { env: { ...process.env, JWT_SECRET: TEST_SECRET, IM_SERVER_HOST: "127.0.0.1", LOG_LEVEL: "info", AI_BASE_URL: fake.url, AI_API_KEY: "" } },
    "gateway listening",
  );
  cleanup.push(() => proc.kill("SIGKILL"));
  const providers = await logLine("AI providers");
  expect(providers).toMatchObject({ llm: `gpt-4o-mini at ${fake.url}`, asr: `whisper-1 at ${fake.url}`, tts: `tts-1 (alloy) at ${fake.url}` });

  const deviceId = "aa:00:00:00:a2:01";
  const dev = await SimulatedDevice.connect({
    url: `ws://127.0.0.1:${line.port}/ws`,
    token: await mintToken({ secret: TEST_SECRET, deviceId }),
    deviceId,
    protocolVersion: 3,
  });
  cleanup.push(() => dev.close());
  await dev.hello();
  dev.sendJson({ type: "listen", state: "start", mode: "manual" });
  for (const f of toneFrames({ frequencyHz: 400, durationMs: 900, sampleRateHz: 16000, frameDurationMs: 60 })) dev.sendAudio(f);
  dev.sendJson({ type: "listen", state: "stop" });
  expect((await dev.waitJson((m) => m.type === "stt")).text).toBe("tone 400 Hz");
  expect((await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start")).text).toBe("You said: tone 400 Hz.");
  await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
  expect(dev.audio().length).toBeGreaterThan(10);
  expect(fake.requests.map((r) => r.kind)).toEqual(["transcription", "chat", "speech", "speech"]);
});

test("`ai` run alone serves its voice turn timings on AI_METRICS_PORT", async () => {
  // A free port: bound, read, released.
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const metricsPort = probe.port;
  void probe.stop(true);
  const { proc } = await spawnUntil(
    ["bun", MAIN, "ai"],
    { env: { ...process.env, AI_SERVER_PORT: "0", AI_METRICS_PORT: String(metricsPort), LOG_LEVEL: "info" } },
    "reference AI service metrics on /metrics",
  );
  cleanup.push(() => proc.kill("SIGKILL"));
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  for (const name of ["xiaozhi_ai_asr_seconds", "xiaozhi_ai_llm_first_token_seconds", "xiaozhi_ai_tts_first_byte_seconds", "xiaozhi_ai_first_audio_seconds"]) {
    expect(text).toContain(`# TYPE ${name} histogram`);
    expect(text).toContain(`${name}_count 0`);
  }
  expect((await fetch(`http://127.0.0.1:${metricsPort}/other`)).status).toBe(404);
});
