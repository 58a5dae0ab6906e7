import { describe, expect, test } from "bun:test";
import type { LatencySummary } from "../../src/loadtest/latency-histogram";
import { formatReport, type LoadtestReport } from "../../src/loadtest/run-loadtest";

const EMPTY: LatencySummary = { count: 0, minMs: null, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, p999Ms: null, maxMs: null };

function summary(count: number, p50Ms: number, p99Ms: number, maxMs: number): LatencySummary {
  return { count, minMs: 0.05, meanMs: p50Ms, p50Ms, p90Ms: p50Ms * 2, p99Ms, p999Ms: maxMs, maxMs };
}

const stream: LoadtestReport = {
  scenario: "stream",
  url: "ws://127.0.0.1:8081/ws",
  transport: "websocket",
  protocolVersion: 3,
  devices: 20,
  workers: 1,
  rampS: 1,
  durationS: 10,
  frameMs: 60,
  frameBytes: 120,
  startedAt: "2026-01-01T00:00:00.000Z",
  elapsedS: 12.3,
  connections: { attempts: 20, connected: 19, failed: 1, held: 19, reconnections: 0, unexpectedCloses: 0 },
  frames: { sent: 3167, received: 3165, lost: 2, unexpected: 0 },
  conversation: null,
  latency: {
    connect: summary(19, 0.8, 8.7, 8.7),
    hello: summary(19, 0.6, 3.0, 3.0),
    roundTrip: summary(3165, 0.191, 2.719, 8.945),
    firstAnswer: EMPTY,
    speechRecognized: EMPTY,
    jitter: EMPTY,
    sendLag: summary(3167, 0.5, 2.1, 5.5),
  },
  waves: null,
  errors: { "http 401": 1 },
  slo: { p99Ms: 2, metric: "roundTrip", observedP99Ms: 2.719, breached: true, reasons: ["p99 2.719 ms > 2 ms", "2 frames lost"] },
  sloBreached: true,
  warnings: ["the load generator sent frames late"],
};

describe("formatReport", () => {
  test("states the run, the counts, the latency table, errors, the SLO verdict and warnings", () => {
    const text = formatReport(stream);
    expect(text).toContain("stream, 20 devices, protocol v3, 60 ms frames of 120 B -> ws://127.0.0.1:8081/ws");
    expect(text).toContain("connected 19/20");
    expect(text).toContain("failed 1");
    expect(text).toContain("held 19");
    expect(text).toContain("sent 3167  received 3165  lost 2 (0.063%)");
    expect(text).toMatch(/round trip\s+3165\s+0\.050\s+0\.191\s+0\.382\s+2\.719\s+8\.945\s+8\.945\s+0\.191/);
    expect(text).toMatch(/latency \(ms\)\s+count\s+min\s+p50\s+p90\s+p99\s+p99\.9\s+max\s+mean/);
    // Nothing measured, not the headline: no row.
    expect(text).not.toContain("first answer");
    expect(text).not.toContain("jitter");
    expect(text).toContain("errors       http 401: 1");
    expect(text).toContain("BREACHED (p99 2.719 ms > 2 ms; 2 frames lost)");
    expect(text).toContain("warning      the load generator sent frames late");
    expect(text.endsWith("\n")).toBe(true);
  });

  test("the headline row stays even when nothing was measured; a held SLO says so", () => {
    const text = formatReport({
      ...stream,
      connections: { ...stream.connections, connected: 0, failed: 20 },
      frames: { sent: 0, received: 0, lost: 0, unexpected: 0 },
      latency: { ...stream.latency, roundTrip: EMPTY, connect: EMPTY, hello: EMPTY, sendLag: EMPTY },
      errors: {},
      slo: { p99Ms: 5, metric: "roundTrip", observedP99Ms: 1.5, breached: false, reasons: [] },
      sloBreached: false,
      warnings: [],
    });
    expect(text).toMatch(/round trip\s+0\s+-\s+-/);
    expect(text).toContain("errors       none");
    expect(text).toContain("held (p99 1.500 ms)");
    expect(text).not.toContain("warning");
  });

  test("conversation turns and churn waves", () => {
    const conversation = formatReport({
      ...stream,
      scenario: "conversation",
      conversation: { utterances: 80, answers: 79, answersTimedOut: 1, devicesAnswered: 20 },
      latency: { ...stream.latency, firstAnswer: summary(79, 0.6, 9.7, 9.8), jitter: summary(200, 0.25, 7.4, 7.5) },
      slo: null,
      sloBreached: false,
    });
    expect(conversation).toContain("utterances 80  answers 79  timed out 1  devices answered 20/20");
    expect(conversation).toMatch(/first answer\s+79/);
    expect(conversation).toMatch(/answer jitter\s+200/);

    const churn = formatReport({
      ...stream,
      scenario: "churn",
      connections: { ...stream.connections, reconnections: 40 },
      waves: [
        { wave: 1, attempts: 20, failed: 0, connect: summary(20, 0.7, 3.5, 3.5), hello: summary(20, 0.6, 4.9, 4.9) },
        { wave: 2, attempts: 20, failed: 1, connect: summary(19, 0.6, 2.2, 2.2), hello: summary(19, 0.4, 1.2, 1.2) },
      ],
      slo: null,
      sloBreached: false,
    });
    expect(churn).toContain("reconnections 40");
    expect(churn).toMatch(/churn wave\s+attempts\s+failed\s+connect p50\s+p99\s+hello p50\s+p99/);
    expect(churn).toMatch(/\n\s+2\s+20\s+1\s+0\.600\s+2\.200\s+0\.400\s+1\.200\n/);
  });

  test("the report round-trips through JSON", () => {
    expect(JSON.parse(JSON.stringify(stream))).toEqual(stream);
  });
});
