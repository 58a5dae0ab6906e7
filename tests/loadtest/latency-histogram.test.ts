import { describe, expect, test } from "bun:test";
import { LatencyHistogram } from "../../src/loadtest/latency-histogram";

/** A deterministic PRNG (xorshift32) in [0, 1), so failures reproduce. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/** The nearest-rank percentile of sorted integer values. */
function exact(sorted: readonly number[], p: number): number {
  return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function expectWithinOnePercent(got: number, want: number): void {
  expect(Math.abs(got - want)).toBeLessThanOrEqual(want * 0.01);
}

const PERCENTILES = [1, 10, 25, 50, 75, 90, 99, 99.9, 99.99];

describe("LatencyHistogram", () => {
  test("uniform 1..1,000,000 us: every percentile within 1%, min and max exact", () => {
    const h = new LatencyHistogram();
    const values: number[] = [];
    for (let v = 1; v <= 1_000_000; v++) {
      h.record(v);
      values.push(v);
    }
    expect(h.count).toBe(1_000_000);
    for (const p of PERCENTILES) expectWithinOnePercent(h.valueAtPercentile(p), exact(values, p));
    expect(h.minUs).toBe(1);
    expect(h.maxUs).toBe(1_000_000);
    expect(h.valueAtPercentile(0)).toBe(1);
    expect(h.valueAtPercentile(100)).toBe(1_000_000);
    expect(h.meanUs).toBe(500_000.5);
  });

  test("log-normal latencies (a long tail over 6 decades): within 1% of the exact percentiles", () => {
    const random = rng(42);
    const h = new LatencyHistogram();
    const values: number[] = [];
    for (let i = 0; i < 200_000; i++) {
      // Box-Muller: median ~1 ms, tail into seconds.
      const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
      const us = Math.round(Math.exp(Math.log(1000) + 1.5 * z));
      h.record(us);
      values.push(us);
    }
    values.sort((a, b) => a - b);
    for (const p of PERCENTILES) expectWithinOnePercent(h.valueAtPercentile(p), exact(values, p));
    expect(h.minUs).toBe(values[0]!);
    expect(h.maxUs).toBe(values.at(-1)!);
  });

  test("a percentile is never below the true value and never above the max", () => {
    const random = rng(7);
    const h = new LatencyHistogram();
    const values: number[] = [];
    for (let i = 0; i < 10_000; i++) {
      const us = Math.floor(random() * 5_000_000);
      h.record(us);
      values.push(us);
    }
    values.sort((a, b) => a - b);
    for (const p of PERCENTILES) {
      expect(h.valueAtPercentile(p)).toBeGreaterThanOrEqual(exact(values, p));
      expect(h.valueAtPercentile(p)).toBeLessThanOrEqual(h.maxUs);
    }
  });

  test("values under 256 us are exact", () => {
    const h = new LatencyHistogram();
    for (let v = 0; v < 256; v++) h.record(v);
    for (let v = 1; v < 256; v++) expect(h.valueAtPercentile((100 * (v + 1)) / 256)).toBe(v);
  });

  test("merge equals recording everything into one", () => {
    const random = rng(99);
    const a = new LatencyHistogram();
    const b = new LatencyHistogram();
    const all = new LatencyHistogram();
    for (let i = 0; i < 50_000; i++) {
      const us = Math.floor(random() * random() * 2_000_000);
      (i % 3 === 0 ? a : b).record(us);
      all.record(us);
    }
    const bCount = b.count;
    a.merge(b);
    expect(a.count).toBe(all.count);
    expect(a.minUs).toBe(all.minUs);
    expect(a.maxUs).toBe(all.maxUs);
    expect(a.meanUs).toBeCloseTo(all.meanUs, 6);
    for (const p of PERCENTILES) expect(a.valueAtPercentile(p)).toBe(all.valueAtPercentile(p));
    expect(a.summary()).toEqual(all.summary());
    expect(b.count).toBe(bCount);
  });

  test("merging an empty histogram changes nothing; merging into an empty one copies", () => {
    const a = new LatencyHistogram();
    a.record(10);
    a.record(5000);
    a.merge(new LatencyHistogram());
    expect(a.summary()).toMatchObject({ count: 2, minMs: 0.01, maxMs: 5 });
    const empty = new LatencyHistogram();
    empty.merge(a);
    expect(empty.summary()).toEqual(a.summary());
  });

  test("values beyond the trackable range keep an exact max; negatives count as 0", () => {
    const h = new LatencyHistogram();
    h.record(-5);
    h.record(3);
    h.record(LatencyHistogram.maxTrackableUs * 4);
    expect(h.count).toBe(3);
    expect(h.minUs).toBe(0);
    expect(h.maxUs).toBe(LatencyHistogram.maxTrackableUs * 4);
    expect(h.valueAtPercentile(100)).toBe(LatencyHistogram.maxTrackableUs * 4);
    expect(h.valueAtPercentile(50)).toBe(3);
  });

  test("recordMs rounds to whole microseconds; summary is in ms", () => {
    const h = new LatencyHistogram();
    h.recordMs(1.2344);
    h.recordMs(0.0006);
    expect(h.minUs).toBe(1);
    expect(h.maxUs).toBe(1234);
    expect(h.summary()).toMatchObject({ count: 2, minMs: 0.001, maxMs: 1.234 });
  });

  test("an empty histogram summarises to nulls, never to zeros", () => {
    const h = new LatencyHistogram();
    expect(h.summary()).toEqual({ count: 0, minMs: null, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, p999Ms: null, maxMs: null });
    expect(Number.isNaN(h.valueAtPercentile(50))).toBe(true);
  });

  test("reset forgets everything", () => {
    const h = new LatencyHistogram();
    for (let i = 0; i < 100; i++) h.record(i * 1000);
    h.reset();
    expect(h.count).toBe(0);
    h.record(7);
    expect(h.summary()).toMatchObject({ count: 1, minMs: 0.007, p50Ms: 0.007, maxMs: 0.007 });
  });

  test("summary percentiles are ordered", () => {
    const random = rng(3);
    const h = new LatencyHistogram();
    for (let i = 0; i < 10_000; i++) h.record(random() * 100_000);
    const s = h.summary();
    expect(s.minMs!).toBeLessThanOrEqual(s.p50Ms!);
    expect(s.p50Ms!).toBeLessThanOrEqual(s.p90Ms!);
    expect(s.p90Ms!).toBeLessThanOrEqual(s.p99Ms!);
    expect(s.p99Ms!).toBeLessThanOrEqual(s.p999Ms!);
    expect(s.p999Ms!).toBeLessThanOrEqual(s.maxMs!);
  });
});
