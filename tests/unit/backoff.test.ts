import { describe, expect, test } from "bun:test";
import { backoffDelayMs } from "../../src/backoff";

const mid = () => 0.5; // factor 1.0

describe("backoffDelayMs", () => {
  test("grows exponentially from the base", () => {
    expect([0, 1, 2, 3, 4].map((a) => backoffDelayMs(a, 100, 1_000_000, mid))).toEqual([100, 200, 400, 800, 1600]);
  });

  test("is capped at the maximum", () => {
    expect(backoffDelayMs(5, 1000, 8000, mid)).toBe(8000);
    expect(backoffDelayMs(50, 1000, 8000, mid)).toBe(8000);
    expect(backoffDelayMs(10_000, 5000, 60_000, mid)).toBe(60_000);
  });

  test("a huge attempt number stays finite and capped", () => {
    const d = backoffDelayMs(Number.MAX_SAFE_INTEGER, 5000, 60_000, mid);
    expect(Number.isFinite(d)).toBe(true);
    expect(d).toBe(60_000);
  });

  test("jitter: factor 0.8 + 0.4 * random, rounded to whole ms", () => {
    expect(backoffDelayMs(2, 1000, 60_000, () => 0)).toBe(3200);
    expect(backoffDelayMs(2, 1000, 60_000, () => 0.25)).toBe(3600);
    expect(backoffDelayMs(2, 1000, 60_000, () => 0.99)).toBe(4784);
    expect(backoffDelayMs(2, 1000, 60_000, () => 0.999999)).toBeLessThanOrEqual(4800);
  });

  test("jitter applies to the capped value too", () => {
    expect(backoffDelayMs(20, 1000, 10_000, () => 0)).toBe(8000);
    expect(backoffDelayMs(20, 1000, 10_000, () => 0.99)).toBe(11_960);
  });

  test("with Math.random every delay lies in [0.8, 1.2) of the nominal one", () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const nominal = Math.min(30_000, 250 * 2 ** attempt);
      for (let i = 0; i < 200; i++) {
        const d = backoffDelayMs(attempt, 250, 30_000);
        expect(d).toBeGreaterThanOrEqual(Math.round(nominal * 0.8));
        expect(d).toBeLessThanOrEqual(Math.round(nominal * 1.2));
        expect(Number.isInteger(d)).toBe(true);
      }
    }
  });

  test("delays are not all the same: a fleet spreads out", () => {
    let r = 0;
    const seq = () => {
      r = (r + 0.37) % 1;
      return r;
    };
    const delays = new Set(Array.from({ length: 10 }, () => backoffDelayMs(3, 1000, 60_000, seq)));
    expect(delays.size).toBeGreaterThan(5);
  });
});
