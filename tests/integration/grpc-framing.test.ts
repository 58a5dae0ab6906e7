import { afterEach, describe, expect, test } from "bun:test";
import { createLogger } from "../../src/log";
import type { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { type Stack, startStack } from "../helpers/start-stack";
import { type HostileAi, type Refusal, type StreamEnd, startHostileAi } from "../security/hostile-ai";

/**
 * The gRPC status half of the link, against a raw node:http2 AI service that answers what no
 * gRPC library would: every way a stream can end (PROTOCOL-HTTP2.md) and every way a stream
 * can be refused when it opens. In each case the gateway process lives (these run in the test
 * process: a throw in an HTTP/2 listener would kill it), the device gets the documented alert
 * or nothing, and the code the spec gives is logged.
 */

const DEV = "fa:00:00:00:00:01";
const OTHER = "fa:00:00:00:00:02";

let ais: HostileAi[] = [];
afterEach(async () => {
  for (const ai of ais) await ai.close();
  ais = [];
});

interface LogLine {
  readonly msg: string;
  readonly code?: string;
  readonly reason?: string;
}

interface Fixture {
  readonly ai: HostileAi;
  readonly stack: Stack;
  readonly dev: SimulatedDevice;
  readonly logs: () => LogLine[];
}

async function fixture(transport: "relay" | "converse", maxConnections: number, openTimeoutMs?: number): Promise<Fixture> {
  const ai = await startHostileAi();
  ais.push(ai);
  const lines: string[] = [];
  const logger = createLogger("debug", "test", { write: (line: string) => void lines.push(line) });
  const stack = await startStack({
    transport,
    ai: false,
    targets: [{ host: "127.0.0.1", port: ai.port }],
    upstream: { logger, maxConnections, reconnectBaseMs: 50, reconnectMaxMs: 200, openTimeoutMs },
    gateway: { logger },
  });
  if (transport === "relay") await ai.until(() => ai.relayStreams() >= maxConnections);
  const dev = await stack.device(DEV, 3);
  await dev.hello();
  await ai.helloOf(DEV, false);
  await echoes(dev, 1);
  return { ai, stack, dev, logs: () => lines.map((l) => JSON.parse(l) as LogLine) };
}

async function echoes(dev: SimulatedDevice, marker: number): Promise<void> {
  dev.sendAudio(new Uint8Array([marker, 0xaa]));
  await dev.waitFor((r) => r.kind === "audio" && r.payload[0] === marker);
}

function alerts(dev: SimulatedDevice): string[] {
  return dev.received.flatMap((r) => (r.kind === "json" && r.msg.type === "alert" ? [String(r.msg.status)] : []));
}

/** The log line of the failed stream (Relay: the stream; Converse: the session's stream). */
function failure(f: Fixture): LogLine | undefined {
  return f.logs().find((l) => /^relay stream failed|^upstream stream failed/.test(l.msg));
}

async function endStream(f: Fixture, how: StreamEnd): Promise<void> {
  f.dev.sendJson({ type: "chat", text: how });
  await f.ai.until(() => f.ai.acts.includes(how));
}

/** After a second refused attempt the AI serves again: the session resumes, the device
 * heard of the outage once and of the return once, and its audio echoes. */
async function servesAgainAfterRefusals(f: Fixture): Promise<void> {
  await f.ai.until(() => f.ai.refused() >= 2);
  f.ai.refuse(undefined);
  await f.ai.helloOf(DEV, true);
  await f.dev.waitJson((m) => m.type === "alert" && m.status === "info");
  await echoes(f.dev, 2);
  expect(alerts(f.dev)).toEqual(["error", "info"]);
}

const FAILED_ENDS: { how: StreamEnd; code: string; reason: RegExp }[] = [
  { how: "end-50%", code: "Unavailable", reason: /load at 50%/ },
  { how: "end-%ZZ", code: "Unavailable", reason: /bad %ZZ escape/ },
  { how: "end-utf8", code: "Unavailable", reason: /%FF%FE/ },
  { how: "end-no-status", code: "Internal", reason: /missing status/ },
  { how: "end-cut", code: "Internal", reason: /middle of a message/ },
  { how: "end-cut-reset", code: "Internal", reason: /RST_STREAM 2/ },
];

for (const transport of ["relay", "converse"] as const) {
  describe(`${transport}: every way an AI service can end a stream`, () => {
    for (const { how, code, reason } of FAILED_ENDS) {
      test(`${how} (trailers, no RST_STREAM): seen at once as ${code}; the session resumes`, async () => {
        const f = await fixture(transport, 2);
        await using _stack = f.stack;
        await endStream(f, how);
        // Seen at END_STREAM: the heartbeat (30 s here) plays no part.
        await f.ai.helloOf(DEV, true);
        await f.dev.waitJson((m) => m.type === "alert" && m.status === "info");
        await echoes(f.dev, 2);
        expect(alerts(f.dev)).toEqual(["error", "info"]);
        expect(f.stack.metrics.upstreamStreamFailures).toBe(1);
        expect(failure(f)?.code).toBe(code);
        expect(failure(f)?.reason).toMatch(reason);
      });
    }
  });
}

describe("a clean end (grpc-status 0, no RST_STREAM)", () => {
  test("relay: a rotation. The session moves to another stream with Hello resumed=true; the device hears nothing", async () => {
    const f = await fixture("relay", 2);
    await using _stack = f.stack;
    await endStream(f, "end-ok");
    await f.ai.helloOf(DEV, true);
    await echoes(f.dev, 2);
    expect(alerts(f.dev)).toEqual([]);
    expect(f.stack.metrics.upstreamStreamFailures).toBe(0);
    expect(f.stack.metrics.upstreamStreamRotations).toBe(1);
    expect(f.logs().some((l) => l.msg === "the AI service rotated a relay stream; moving its sessions")).toBe(true);
    // The rotated stream is re-opened at once: both streams serve again.
    await f.ai.until(() => f.ai.relayStreams() >= 3);
  });

  test("relay, one stream: the sessions wait for the re-opened stream, silently", async () => {
    const f = await fixture("relay", 1);
    await using _stack = f.stack;
    const other = await f.stack.device(OTHER, 3);
    await other.hello();
    await f.ai.helloOf(OTHER, false);
    await endStream(f, "end-ok");
    await Promise.all([f.ai.helloOf(DEV, true), f.ai.helloOf(OTHER, true)]);
    await echoes(f.dev, 2);
    await echoes(other, 3);
    expect(alerts(f.dev)).toEqual([]);
    expect(alerts(other)).toEqual([]);
    expect(f.stack.metrics.upstreamStreamFailures).toBe(0);
  });

  test("converse: the AI service ended the session. The device is closed normally", async () => {
    const f = await fixture("converse", 2);
    await using _stack = f.stack;
    await endStream(f, "end-ok");
    const closed = await f.dev.closed;
    expect(closed.code).toBe(1000);
    expect(alerts(f.dev)).toEqual([]);
    expect(f.stack.metrics.upstreamStreamFailures).toBe(0);
  });
});

const REFUSALS: { name: string; how: Refusal; code: string; reason: RegExp; final: boolean }[] = [
  { name: "HTTP 401", how: { http: 401 }, code: "Unauthenticated", reason: /HTTP 401/, final: true },
  { name: "HTTP 403", how: { http: 403 }, code: "PermissionDenied", reason: /HTTP 403/, final: true },
  { name: "HTTP 404", how: { http: 404 }, code: "Unimplemented", reason: /HTTP 404/, final: true },
  { name: "HTTP 503", how: { http: 503 }, code: "Unavailable", reason: /HTTP 503/, final: false },
  { name: "content-type text/html", how: { contentType: "text/html" }, code: "Unknown", reason: /unsupported content type text\/html/, final: false },
  { name: "trailers-only UNAVAILABLE", how: { trailersOnly: 14 }, code: "Unavailable", reason: /refused at once/, final: false },
];

for (const transport of ["relay", "converse"] as const) {
  describe(`${transport}: a stream refused when it opens`, () => {
    for (const { name, how, code, reason, final } of REFUSALS) {
      test(`${name}: ${code}, ${final ? "final: the device is told and closed" : "retried until the AI service serves again"}`, async () => {
        const f = await fixture(transport, 1);
        await using _stack = f.stack;
        f.ai.refuse(how);
        // Make the session's stream fail: it is re-opened, and refused.
        await endStream(f, "end-50%");
        await f.ai.until(() => f.ai.refused() >= 1);
        const refusedLine = () => f.logs().find((l) => l.code === code && reason.test(l.reason ?? ""));
        if (final) {
          const closed = await f.dev.closed;
          expect(closed.code).toBe(1011);
          const last = f.dev.received.findLast((r) => r.kind === "json" && r.msg.type === "alert");
          expect(last?.kind === "json" && String(last.msg.message)).toContain(`(${code})`);
        } else {
          await servesAgainAfterRefusals(f);
        }
        expect(refusedLine()).toBeDefined();
      });
    }
  });
}

for (const transport of ["relay", "converse"] as const) {
  test(`${transport}: a stream accepted but never answered fails after the open timeout (heartbeat 30 s); the device hears of it, and the session resumes`, async () => {
    const f = await fixture(transport, 1, 300);
    await using _stack = f.stack;
    f.ai.refuse({ silent: true });
    await endStream(f, "end-50%");
    await servesAgainAfterRefusals(f);
    expect(f.logs().some((l) => l.code === "DeadlineExceeded" && /not answered within 300 ms of opening/.test(l.reason ?? ""))).toBe(true);
  });
}
