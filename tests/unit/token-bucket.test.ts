import { describe, expect, test } from "bun:test";
import { TokenBucket } from "../../src/token-bucket";

describe("TokenBucket", () => {
  test("starts full: the whole burst can be spent at once, then nothing until it refills", () => {
    const b = new TokenBucket(10, 50, 0);
    for (let i = 0; i < 50; i++) expect(b.take(1, 0)).toBe(true);
    expect(b.take(1, 0)).toBe(false);
    expect(b.take(1, 99)).toBe(false); // 0.99 tokens
    expect(b.take(1, 100)).toBe(true); // 1 token after 100 ms at 10/s
  });

  test("refills at the rate, never past the capacity", () => {
    const b = new TokenBucket(100, 10, 0);
    expect(b.take(10, 0)).toBe(true);
    expect(b.available(50)).toBeCloseTo(5, 9);
    expect(b.available(10_000)).toBe(10);
    expect(b.take(11, 10_000)).toBe(false);
  });

  test("a refused take spends nothing", () => {
    const b = new TokenBucket(1, 5, 0);
    expect(b.take(6, 0)).toBe(false);
    expect(b.available(0)).toBe(5);
    expect(b.take(5, 0)).toBe(true);
  });

  test("a sustained rate at the limit is admitted indefinitely; above it is refused once the burst is gone", () => {
    const atRate = new TokenBucket(50, 250, 0);
    for (let t = 0; t < 600_000; t += 20) expect(atRate.take(1, t)).toBe(true);
    const above = new TokenBucket(50, 250, 0);
    let refusedAtMs = -1;
    for (let t = 0; t < 60_000 && refusedAtMs < 0; t += 10) if (!above.take(1, t)) refusedAtMs = t;
    // 100/s against 50/s with 250 in hand: the burst lasts 5 s.
    expect(refusedAtMs).toBeGreaterThanOrEqual(4900);
    expect(refusedAtMs).toBeLessThanOrEqual(5100);
  });

  test("msUntil says when a take would succeed", () => {
    const b = new TokenBucket(4, 4, 0);
    expect(b.msUntil(1, 0)).toBe(0);
    b.take(4, 0);
    expect(b.msUntil(1, 0)).toBe(250);
    expect(b.msUntil(2, 100)).toBeCloseTo(400, 9);
    expect(b.msUntil(5, 0)).toBe(Number.POSITIVE_INFINITY);
  });

  test("a clock that steps back neither refills nor drains", () => {
    const b = new TokenBucket(10, 10, 1000);
    b.take(10, 1000);
    expect(b.take(1, 500)).toBe(false);
    expect(b.available(1100)).toBeCloseTo(1, 9);
  });

  test("a zero or negative rate or capacity is refused", () => {
    expect(() => new TokenBucket(0, 1, 0)).toThrow(RangeError);
    expect(() => new TokenBucket(1, 0, 0)).toThrow(RangeError);
    expect(() => new TokenBucket(Number.NaN, 1, 0)).toThrow(RangeError);
  });
});
