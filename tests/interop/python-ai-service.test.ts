import { describe, expect, test } from "bun:test";
import path from "node:path";
import type { Logger } from "../../src/log";
import type { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { packets, startStack } from "../helpers/start-stack";
import { capturedLogger } from "../helpers/captured-logger";

/** The system Python: Debian's python3-grpcio and python3-grpc-tools are installed for it. */
const PYTHON = "/usr/bin/python3";
const SERVER = path.join(import.meta.dir, "../../examples/python-ai-service/server.py");

interface PythonAi {
  readonly port: number;
  readonly proc: ReturnType<typeof Bun.spawn>;
}

let grpcioChecked = false;

/** Never skips: a machine without grpcio fails here, saying what to install (CI has it). */
function requireGrpcio(): void {
  if (grpcioChecked) return;
  const r = Bun.spawnSync([PYTHON, "-c", "import grpc, grpc_tools"], { stderr: "pipe" });
  if (r.exitCode !== 0) {
    throw new Error(`${PYTHON} cannot import grpc and grpc_tools: install python3-grpcio and python3-grpc-tools (apt). ${r.stderr.toString().trim()}`);
  }
  grpcioChecked = true;
}

/** Starts examples/python-ai-service/server.py and resolves once it printed its port. */
async function startPythonAi(port = 0): Promise<PythonAi> {
  requireGrpcio();
  const proc = Bun.spawn([PYTHON, SERVER, "--port", String(port)], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, LOG_LEVEL: "WARNING" },
  });
  const reader = proc.stdout.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the Python AI service exited (${await proc.exited}) before listening: ${text}`);
    text += new TextDecoder().decode(value);
    const m = /PORT (\d+)/.exec(text);
    if (m) {
      reader.releaseLock();
      return { port: Number(m[1]), proc };
    }
  }
}

async function stopAll(...servers: (PythonAi | undefined)[]): Promise<void> {
  for (const s of servers) s?.proc.kill("SIGKILL");
  await Promise.all(servers.map((s) => s?.proc.exited));
}

/** The gateway's upstream log lines, parsed, for what it saw of the AI service. */

/** A gateway on `ai`, quick to reconnect (the outage tests restart it on its port). */
function stackAgainst(ai: PythonAi, transport: "relay" | "converse", logger?: Logger) {
  return startStack({
    transport,
    ai: false,
    targets: [{ host: "127.0.0.1", port: ai.port }],
    upstream: { reconnectBaseMs: 100, reconnectMaxMs: 1000, maxConnections: 2, ...(logger ? { logger } : {}) },
  });
}

/** Audio packet `n` of device `i`: the echo says whose and which it is. */
const frame = (i: number, n: number) => new Uint8Array([i, n, 0x78, 0x78]);
const echoed = (d: SimulatedDevice, i: number) =>
  d
    .audio()
    .filter((a) => a.payload[0] === i)
    .map((a) => a.payload[1]!);

describe("interop: the gateway against an AI service that is not ours (Python, grpcio)", () => {
  for (const transport of ["relay", "converse"] as const) {
    test(`${transport}: a device converses (audio echo, wake word, chat, Close) and Ask streams its answer`, async () => {
      const ai = await startPythonAi();
      try {
        await using stack = await startStack({ transport, ai: false, targets: [{ host: "127.0.0.1", port: ai.port }] });
        const dev = await stack.device("fb:00:00:00:00:01", 3);
        await dev.hello();
        const llm = await dev.waitJson((m) => m.type === "llm");
        expect(llm).toMatchObject({ text: `hi from ${ai.proc.pid}`, emotion: "happy" });

        const sent = packets(20);
        for (const [n, p] of sent.entries()) dev.sendAudio(p, n * 60);
        await dev.waitFor((r) => r.kind === "audio" && r.payload[2] === 19);
        expect(dev.audio().map((a) => Array.from(a.payload))).toEqual(sent.map((p) => Array.from(p)));

        dev.sendJson({ type: "listen", state: "detect", text: "你好小智" });
        expect((await dev.waitJson((m) => m.type === "stt")).text).toBe("你好小智");
        await dev.waitJson((m) => m.type === "tts" && m.state === "start");
        expect((await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start")).text).toBe("python heard: 你好小智");
        await dev.waitJson((m) => m.type === "tts" && m.state === "stop");

        const chunks: string[] = [];
        for await (const c of stack.upstream.ask({ text: "what time" }, AbortSignal.timeout(10_000))) chunks.push(c);
        expect(chunks.length).toBeGreaterThanOrEqual(2);
        expect(chunks.join("")).toBe("python: what time");

        // The AI side ends the session: Close, and the device's socket closes normally.
        dev.sendJson({ type: "chat", text: "bye" });
        expect((await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start")).text).toBe("python heard: bye");
        expect((await dev.closed).code).toBe(1000);
        expect(stack.metrics.upstreamStreamFailures).toBe(0);
      } finally {
        await stopAll(ai);
      }
    });

    test(`${transport}: the service is killed (-9) mid-stream and restarted on its port: every session resumes, no device reconnects`, async () => {
      const first = await startPythonAi();
      let second: PythonAi | undefined;
      try {
        await using stack = await stackAgainst(first, transport);
        const devices = await Promise.all(Array.from({ length: 5 }, (_, i) => stack.device(`fb:00:00:00:01:0${i}`, 3)));
        await Promise.all(devices.map((d) => d.hello()));
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "llm" && m.text === `hi from ${first.proc.pid}`)));
        for (const [i, d] of devices.entries()) for (let n = 0; n < 5; n++) d.sendAudio(frame(i, n));
        await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === i && r.payload[1] === 4)));
        const connected = stack.gateway.registry.size;
        expect(connected).toBe(5);

        first.proc.kill("SIGKILL");
        await first.proc.exited;
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "error")));
        // The devices go on talking during the outage (the gateway buffers a little of it).
        for (const [i, d] of devices.entries()) for (let n = 10; n < 15; n++) d.sendAudio(frame(i, n));

        second = await startPythonAi(first.port);
        const pid = second.proc.pid;
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "llm" && m.text === `resumed on ${pid}`, 15_000)));
        // The session's answered Heartbeat tells the device its AI is back.
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "info")));
        for (const [i, d] of devices.entries()) for (let n = 20; n < 25; n++) d.sendAudio(frame(i, n));
        await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === i && r.payload[1] === 24)));

        for (const [i, d] of devices.entries()) {
          const got = echoed(d, i);
          // In order, none twice; before and after the outage complete (what was sent during
          // it may be lost, within the gateway's buffer).
          expect(got).toEqual([...got].sort((a, b) => a - b));
          expect(new Set(got).size).toBe(got.length);
          expect(got.filter((n) => n < 5 || n >= 20)).toEqual([0, 1, 2, 3, 4, 20, 21, 22, 23, 24]);
        }
        expect(devices.every((d) => d.isOpen)).toBe(true);
        expect(devices.every((d) => d.received.filter((r) => r.kind === "json" && r.msg.type === "hello").length === 1)).toBe(true);
        expect(stack.gateway.registry.size).toBe(connected);
      } finally {
        await stopAll(first, second);
      }
    });

    test(`${transport}: SIGTERM ends every stream with UNAVAILABLE and exits 0; the sessions resume on the next service`, async () => {
      const { logger, lines } = capturedLogger();
      const first = await startPythonAi();
      let second: PythonAi | undefined;
      try {
        await using stack = await stackAgainst(first, transport, logger);
        const devices = await Promise.all(Array.from({ length: 3 }, (_, i) => stack.device(`fb:00:00:00:02:0${i}`, 3)));
        await Promise.all(devices.map((d) => d.hello()));
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "llm" && m.text === `hi from ${first.proc.pid}`)));

        first.proc.kill("SIGTERM");
        expect(await first.proc.exited).toBe(0);
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "error")));
        // What the gateway saw end its streams: the service's own status, not a reset.
        const failures = lines.filter((l) => typeof l.code === "string" && (l.sessionId !== undefined || Number(l.sessions) > 0));
        expect(failures.length).toBeGreaterThan(0);
        for (const f of failures) expect(f).toMatchObject({ code: "Unavailable", reason: expect.stringContaining("shutting down") });

        second = await startPythonAi(first.port);
        const pid = second.proc.pid;
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "llm" && m.text === `resumed on ${pid}`, 15_000)));
        await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "info")));
        for (const [i, d] of devices.entries()) d.sendAudio(frame(i, 50));
        await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === i && r.payload[1] === 50)));
        expect(devices.every((d) => d.isOpen)).toBe(true);
      } finally {
        await stopAll(first, second);
      }
    });
  }
});
