import { expect, test } from "bun:test";
import path from "node:path";
import { FleetStats } from "../../src/loadtest/fleet-stats";
import { LatencyHistogram } from "../../src/loadtest/latency-histogram";
import { runLoadtestWorkers } from "../../src/loadtest/loadtest-workers";
import { parseLoadtestArgs } from "../../src/loadtest/run-loadtest";
import { startStack, TEST_SECRET } from "../helpers/start-stack";

const MAIN = path.join(import.meta.dir, "../../src/main.ts");

test("a histogram survives plain data, and merged ones give the percentiles of all their values", () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) (i % 2 === 0 ? a : b).record(i * 100);
  const back = LatencyHistogram.fromJSON(JSON.parse(JSON.stringify(a.toJSON())));
  expect(back.summary()).toEqual(a.summary());
  const all = new LatencyHistogram();
  for (let i = 1; i <= 1000; i++) all.record(i * 100);
  const merged = LatencyHistogram.fromJSON(a.toJSON());
  merged.merge(LatencyHistogram.fromJSON(b.toJSON()));
  expect(merged.summary()).toEqual(all.summary());
  expect(LatencyHistogram.fromJSON(new LatencyHistogram().toJSON()).count).toBe(0);
});

test("workers' figures add up: counters, errors, churn waves", () => {
  const one = new FleetStats("roundTrip", false);
  const two = new FleetStats("roundTrip", false);
  one.framesSent = 10;
  two.framesSent = 5;
  one.error("http 429");
  two.error("http 429");
  two.error("connect error");
  one.wave(0).attempts = 3;
  two.wave(1).attempts = 2;
  one.roundTrip.record(1000);
  two.roundTrip.record(3000);
  const merged = new FleetStats("roundTrip", false);
  merged.absorb(JSON.parse(JSON.stringify(one.snapshot())));
  merged.absorb(JSON.parse(JSON.stringify(two.snapshot())));
  expect(merged.framesSent).toBe(15);
  expect(Object.fromEntries(merged.errors)).toEqual({ "http 429": 2, "connect error": 1 });
  expect(merged.waves.map((w) => w.attempts)).toEqual([3, 2]);
  expect(merged.roundTrip.summary()).toMatchObject({ count: 2, minMs: 1, maxMs: 3 });
});

test("loadtest --workers 2: the fleet runs in two processes and one report adds them up", async () => {
  await using stack = await startStack();
  const options = parseLoadtestArgs([
    "--url",
    stack.wsUrl,
    "--devices",
    "21",
    "--workers",
    "2",
    "--ramp",
    "0.5",
    "--duration",
    "2",
    "--scenario",
    "stream",
    "--jwt-secret",
    TEST_SECRET,
  ]);
  const r = await runLoadtestWorkers(options, [process.execPath, MAIN], { out: () => {}, isTty: false });
  expect(r.devices).toBe(21);
  expect(r.workers).toBe(2);
  expect(r.connections).toMatchObject({ attempts: 21, connected: 21, failed: 0, held: 21 });
  expect(r.frames.sent).toBeGreaterThan(0);
  expect(r.frames.received).toBe(r.frames.sent);
  expect(r.frames.lost).toBe(0);
  expect(r.latency.roundTrip.count).toBe(r.frames.received);
  expect(r.latency.hello.count).toBe(21);
  // Two processes, two Device-Id prefixes: none replaced another's session.
  expect(r.connections.unexpectedCloses).toBe(0);
  expect(r.errors).toEqual({});
}, 30_000);
