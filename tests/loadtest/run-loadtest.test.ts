import { describe, expect, test } from "bun:test";
import { mintToken } from "../../src/auth/mint-token";
import { formatReport, type LoadtestReport, parseLoadtestArgs, runLoadtest } from "../../src/loadtest/run-loadtest";
import { startFakeOpenAi } from "../helpers/fake-openai";
import { voiceAiOptions } from "../helpers/fake-voice-ai";
import { type Stack, startStack, TEST_SECRET } from "../helpers/start-stack";

const DEVICES = 20;
/** Each run is a few seconds of real traffic; the deadline is generous for shared machines. */
const RUN_TIMEOUT_MS = 30_000;

interface Run {
  readonly report: LoadtestReport;
  /** What the run wrote as progress. */
  readonly output: string;
}

async function run(stack: Stack, flags: string[], isTty = false): Promise<Run> {
  let output = "";
  const options = parseLoadtestArgs(["--url", stack.wsUrl, "--devices", String(DEVICES), "--ramp", "0.5", "--duration", "2", ...flags]);
  const report = await runLoadtest(options, { out: (s) => (output += s), isTty });
  // Plain data: the --json output parses back to the same report.
  expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  return { report, output };
}

function expectOrdered(s: { minMs: number | null; p50Ms: number | null; p99Ms: number | null; maxMs: number | null }): void {
  expect(s.minMs!).toBeLessThanOrEqual(s.p50Ms!);
  expect(s.p50Ms!).toBeLessThanOrEqual(s.p99Ms!);
  expect(s.p99Ms!).toBeLessThanOrEqual(s.maxMs!);
}

describe("runLoadtest against the real gateway and reference AI", () => {
  test(
    "stream: every frame echoed once, none lost, histogram count = frames received",
    async () => {
      await using stack = await startStack();
      const { report: r, output } = await run(stack, ["--scenario", "stream", "--jwt-secret", TEST_SECRET]);
      expect(output).toBe(""); // not a terminal: nothing but the report, which is the caller's
      expect(r.scenario).toBe("stream");
      expect(r.connections).toEqual({ attempts: DEVICES, connected: DEVICES, failed: 0, held: DEVICES, reconnections: 0, unexpectedCloses: 0 });
      expect(r.frames.sent).toBeGreaterThan(0);
      expect(r.frames.received).toBe(r.frames.sent);
      expect(r.frames.lost).toBe(0);
      expect(r.frames.unexpected).toBe(0);
      expect(r.latency.roundTrip.count).toBe(r.frames.received);
      expect(r.latency.sendLag.count).toBe(r.frames.sent);
      expectOrdered(r.latency.roundTrip);
      expect(r.latency.connect.count).toBe(DEVICES);
      expect(r.latency.hello.count).toBe(DEVICES);
      expect(r.latency.firstAnswer.count).toBe(0);
      expect(r.errors).toEqual({});
      expect(r.slo).toBeNull();
      expect(r.sloBreached).toBe(false);
      expect(r.frameBytes).toBe(120);
      // The gateway saw every frame we counted, and sent back every echo.
      expect(stack.metrics.framesIn).toBe(r.frames.sent);
      expect(stack.metrics.framesOut).toBe(r.frames.received);
    },
    RUN_TIMEOUT_MS,
  );

  for (const version of [1, 2] as const) {
    test(
      `stream over protocol v${version}`,
      async () => {
        await using stack = await startStack();
        const { report: r } = await run(stack, ["--protocol-version", String(version), "--jwt-secret", TEST_SECRET, "--duration", "1"]);
        expect(r.protocolVersion).toBe(version);
        expect(r.connections.connected).toBe(DEVICES);
        expect(r.frames.sent).toBeGreaterThan(0);
        expect(r.frames.received).toBe(r.frames.sent);
        expect(r.frames.lost).toBe(0);
        expect(r.frames.unexpected).toBe(0);
      },
      RUN_TIMEOUT_MS,
    );
  }

  test(
    "conversation: every device gets whole answers; first-answer and jitter measured",
    async () => {
      await using stack = await startStack();
      const { report: r } = await run(stack, ["--scenario", "conversation", "--jwt-secret", TEST_SECRET, "--utterance-frames", "5"]);
      const t = r.conversation!;
      expect(r.connections.connected).toBe(DEVICES);
      expect(t.devicesAnswered).toBe(DEVICES);
      expect(t.answers).toBeGreaterThanOrEqual(DEVICES);
      expect(t.answers + t.answersTimedOut).toBe(t.utterances);
      expect(t.answersTimedOut).toBe(0);
      expect(r.latency.firstAnswer.count).toBeGreaterThan(0);
      expect(r.latency.firstAnswer.count).toBe(t.answers);
      expectOrdered(r.latency.firstAnswer);
      // Up to 5 frames per answer (the last utterance is cut short at the end of the phase):
      // 2 pre-buffered, then at most 3 paced gaps each.
      expect(r.latency.jitter.count).toBeGreaterThan(0);
      expect(r.latency.jitter.count).toBeLessThanOrEqual(3 * t.answers);
      // The reference AI parrots each utterance back whole.
      expect(r.frames.lost).toBe(0);
      expect(r.frames.received).toBe(r.frames.sent);
      expect(r.frames.unexpected).toBe(0);
      expect(r.latency.roundTrip.count).toBe(0);
      expect(r.errors).toEqual({});
      expect(r.waves).toBeNull();
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "conversation against a voice pipeline: speech recognized and time to first audio measured, each past the providers' delays",
    async () => {
      // Fixed provider delays: recognition 150 ms, first token 200 ms, first speech byte 100 ms.
      await using fake = await startFakeOpenAi({ delays: { transcribeMs: 150, firstTokenMs: 200, speechFirstByteMs: 100 } });
      await using stack = await startStack({ ai: voiceAiOptions(fake.url) });
      const options = parseLoadtestArgs([
        "--url",
        stack.wsUrl,
        "--devices",
        "5",
        "--ramp",
        "0.5",
        "--duration",
        "2",
        "--scenario",
        "conversation",
        "--jwt-secret",
        TEST_SECRET,
      ]);
      const r = await runLoadtest(options, { out: () => {}, isTty: false });
      const t = r.conversation!;
      expect(t.devicesAnswered).toBe(5);
      expect(t.answersTimedOut).toBe(0);
      expect(r.latency.speechRecognized.count).toBe(t.answers);
      expect(r.latency.firstAnswer.count).toBe(t.answers);
      // The answers are speech of their own, not the utterance played back: nothing "lost".
      expect(r.frames.lost).toBe(0);
      expect(r.frames.unexpected).toBe(0);
      expect(r.latency.speechRecognized.minMs!).toBeGreaterThanOrEqual(150);
      expect(r.latency.firstAnswer.minMs!).toBeGreaterThanOrEqual(450);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "idle: every device connected and held to the end",
    async () => {
      await using stack = await startStack();
      const { report: r } = await run(stack, ["--scenario", "idle", "--jwt-secret", TEST_SECRET]);
      expect(r.connections).toEqual({ attempts: DEVICES, connected: DEVICES, failed: 0, held: DEVICES, reconnections: 0, unexpectedCloses: 0 });
      expect(r.latency.hello.count).toBe(DEVICES);
      expect(r.frames).toEqual({ sent: 0, received: 0, lost: 0, unexpected: 0 });
      expect(r.errors).toEqual({});
      expect(stack.metrics.connectionsOpened).toBe(DEVICES);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "one shared --token for every device",
    async () => {
      await using stack = await startStack();
      // No device_id claim, so it fits every Device-Id.
      const token = await mintToken({ secret: TEST_SECRET, subject: "fleet" });
      const { report: r } = await run(stack, ["--scenario", "idle", "--token", token, "--devices", "5", "--duration", "0.5"]);
      expect(r.connections).toMatchObject({ connected: 5, failed: 0, held: 5 });
      expect(JSON.stringify(r)).not.toContain(token);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "sessions the gateway closes are counted by close code",
    async () => {
      await using stack = await startStack();
      let stopping: Promise<void> | undefined;
      const options = parseLoadtestArgs(["--url", stack.wsUrl, "--devices", "10", "--ramp", "0.2", "--scenario", "idle", "--duration", "3"]);
      const report = await runLoadtest(
        { ...options, auth: { t: "jwt-secret", secret: TEST_SECRET } },
        {
          isTty: true,
          // The progress line is the run's own event: once all are connected, shut the gateway.
          out: (s) => {
            if (stopping === undefined && s.includes("connected 10/10")) stopping = stack.gateway.stop();
          },
        },
      );
      await stopping;
      expect(stopping).toBeDefined();
      expect(report.connections).toMatchObject({ connected: 10, held: 0, unexpectedCloses: 10 });
      expect(report.errors).toEqual({ "close 1001": 10 });
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "churn: devices reconnect in waves; connect and hello measured per wave",
    async () => {
      await using stack = await startStack();
      const { report: r } = await run(stack, ["--scenario", "churn", "--jwt-secret", TEST_SECRET, "--churn-hold-ms", "100-300"]);
      const c = r.connections;
      expect(c.connected).toBe(DEVICES);
      expect(c.failed).toBe(0);
      expect(c.reconnections).toBeGreaterThan(DEVICES);
      expect(c.connected + c.reconnections).toBe(c.attempts);
      expect(r.latency.hello.count).toBe(c.attempts);
      expect(r.latency.connect.count).toBe(c.attempts);
      const waves = r.waves!;
      expect(waves[0]!).toMatchObject({ wave: 1, attempts: DEVICES, failed: 0 });
      expect(waves[0]!.hello.count).toBe(DEVICES);
      expect(waves.reduce((n, w) => n + w.attempts, 0)).toBe(c.attempts);
      expect(waves.reduce((n, w) => n + w.connect.count, 0)).toBe(c.attempts);
      expect(r.errors).toEqual({});
      expect(stack.metrics.connectionsOpened).toBe(c.attempts);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "a wrong --jwt-secret: every handshake refused with 401, none connected",
    async () => {
      await using stack = await startStack();
      const { report: r } = await run(stack, ["--jwt-secret", "not-the-gateway-secret", "--duration", "0.5", "--slo-p99-ms", "1000"]);
      expect(r.connections).toMatchObject({ attempts: DEVICES, connected: 0, failed: DEVICES, held: 0 });
      expect(r.errors).toEqual({ "http 401": DEVICES });
      expect(r.frames.sent).toBe(0);
      expect(r.latency.connect.count).toBe(0);
      // Nothing measured cannot meet an SLO.
      expect(r.sloBreached).toBe(true);
      expect(r.slo!.observedP99Ms).toBeNull();
      expect(stack.metrics.connectionsOpened).toBe(0);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "--slo-p99-ms 0.000001 is breached; on a terminal a live progress line is drawn",
    async () => {
      await using stack = await startStack();
      const { report: r, output } = await run(stack, ["--jwt-secret", TEST_SECRET, "--devices", "5", "--duration", "1.5", "--slo-p99-ms", "0.000001"], true);
      expect(r.frames.lost).toBe(0);
      expect(r.slo).toMatchObject({ p99Ms: 0.000001, metric: "roundTrip", breached: true });
      expect(r.slo!.observedP99Ms).toBe(r.latency.roundTrip.p99Ms);
      expect(r.sloBreached).toBe(true);
      expect(formatReport(r)).toContain("BREACHED");
      expect(output).toMatch(/\r +\d+\.\d s {2}connected \d+\/5 {2}sent \d+ {2}received \d+ {2}lost 0 {2}p99 rtt /);
      // The line is cleared at the end, so the report starts on a clean line.
      expect(output.endsWith("\r\x1b[K")).toBe(true);
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "a generous SLO holds",
    async () => {
      await using stack = await startStack();
      const { report: r } = await run(stack, ["--jwt-secret", TEST_SECRET, "--devices", "5", "--duration", "1", "--slo-p99-ms", "60000"]);
      expect(r.slo).toMatchObject({ breached: false, reasons: [] });
      expect(r.sloBreached).toBe(false);
    },
    RUN_TIMEOUT_MS,
  );
});

describe("runLoadtest ends by itself whatever the server does", () => {
  test(
    "a server that never completes the handshake: every device fails, the run ends on schedule",
    async () => {
      // Accepts TCP and says nothing: handshakes neither succeed nor fail.
      const mute = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {}, open() {} } });
      try {
        const options = parseLoadtestArgs([
          "--url",
          `ws://127.0.0.1:${mute.port}/ws`,
          "--devices",
          "4",
          "--concurrency",
          "2",
          "--ramp",
          "0",
          "--duration",
          "0.5",
        ]);
        const r = await runLoadtest(options, { out: () => {}, isTty: false });
        // Two handshakes in flight, two queued behind them: all four unfinished.
        expect(r.connections).toMatchObject({ attempts: 4, connected: 0, failed: 4, held: 0 });
        expect(r.errors).toEqual({ "unfinished at end of run": 4 });
      } finally {
        mute.stop(true);
      }
    },
    RUN_TIMEOUT_MS,
  );

  test(
    "a server that never answers hello: hello timeout counted",
    async () => {
      using mute = Bun.serve({
        hostname: "127.0.0.1",
        port: 0,
        fetch: (req, srv) => (srv.upgrade(req) ? undefined : new Response("upgrade", { status: 426 })),
        websocket: { message() {} },
      });
      const options = parseLoadtestArgs(["--url", `ws://127.0.0.1:${mute.port}/ws`, "--devices", "3", "--ramp", "0", "--duration", "1", "--scenario", "idle"]);
      const r = await runLoadtest({ ...options, helloTimeoutMs: 200 }, { out: () => {}, isTty: false });
      expect(r.connections).toMatchObject({ attempts: 3, connected: 0, failed: 3 });
      expect(r.latency.connect.count).toBe(3);
      expect(r.errors).toEqual({ "hello timeout": 3 });
    },
    RUN_TIMEOUT_MS,
  );
});
