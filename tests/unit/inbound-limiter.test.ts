import { describe, expect, test } from "bun:test";
import { configSchema } from "../../src/config/config-schema";
import { InboundLimiter, type InboundLimits } from "../../src/session/inbound-limiter";

/** The production defaults, with the default largest message (a 1 MiB JSON image). */
const DEFAULTS: InboundLimits = {
  maxFramesPerSecond: configSchema.maxFramesPerSecond.default,
  maxBytesPerSecond: configSchema.maxBytesPerSecond.default,
  burstSeconds: configSchema.inboundBurstSeconds.default,
  maxMessageBytes: Math.max(configSchema.maxFrameBytes.default, configSchema.maxJsonBytes.default),
};

/** Sends `frames` messages of `bytes` spaced `gapMs` apart from `startMs`; the first refusal, if any. */
function stream(l: InboundLimiter, startMs: number, frames: number, gapMs: number, bytes: number): { refusedAt: number; limit: string | undefined } {
  for (let i = 0; i < frames; i++) {
    const limit = l.admit(bytes, startMs + i * gapMs);
    if (limit !== undefined) return { refusedAt: i, limit };
  }
  return { refusedAt: -1, limit: undefined };
}

describe("InboundLimiter with the defaults", () => {
  test("a real device: a 2 s wake-word burst of 60 ms frames at once, then an hour of real time, is never refused", () => {
    const l = new InboundLimiter(DEFAULTS, 0);
    expect(stream(l, 0, 34, 0, 240)).toEqual({ refusedAt: -1, limit: undefined });
    expect(stream(l, 0, 60_000, 60, 240)).toEqual({ refusedAt: -1, limit: undefined });
  });

  test("the load generator's densest stream (10 ms frames of 120 bytes) is never refused", () => {
    const l = new InboundLimiter(DEFAULTS, 0);
    expect(stream(l, 0, 60_000, 10, 120)).toEqual({ refusedAt: -1, limit: undefined });
  });

  test("a JSON image at the size limit is admitted, even twice in a row", () => {
    const l = new InboundLimiter(DEFAULTS, 0);
    expect(l.admit(DEFAULTS.maxMessageBytes, 0)).toBeUndefined();
    expect(l.admit(DEFAULTS.maxMessageBytes, 1)).toBeUndefined();
  });

  test("2,000 frames at once go over the frame limit", () => {
    const l = new InboundLimiter(DEFAULTS, 0);
    const r = stream(l, 0, 2000, 0, 120);
    expect(r.limit).toBe("frames");
    expect(r.refusedAt).toBe(DEFAULTS.maxFramesPerSecond * DEFAULTS.burstSeconds);
  });

  test("bytes far above the byte rate go over the byte limit", () => {
    const l = new InboundLimiter(DEFAULTS, 0);
    // 32 KiB every 100 ms = 320 KiB/s, 5x the default rate, at 10 frames/s.
    const r = stream(l, 0, 10_000, 100, 32 * 1024);
    expect(r.limit).toBe("bytes");
    expect(r.refusedAt).toBeGreaterThan(0);
  });
});

test("the byte burst covers the burst seconds when they are larger than two messages", () => {
  const l = new InboundLimiter({ maxFramesPerSecond: 1000, maxBytesPerSecond: 1000, burstSeconds: 10, maxMessageBytes: 100 }, 0);
  expect(l.admit(10_000, 0)).toBeUndefined();
  expect(l.admit(1, 0)).toBe("bytes");
});
