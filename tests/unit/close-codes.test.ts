import { describe, expect, test } from "bun:test";
import { CloseCode, shouldRetry } from "../../src/device/close-codes";

describe("shouldRetry", () => {
  test("no retry after policy violation, message too big and replaced", () => {
    expect(shouldRetry(1008)).toBe(false);
    expect(shouldRetry(1009)).toBe(false);
    expect(shouldRetry(4000)).toBe(false);
  });

  test("retry after going away, a dropped connection, an internal error, a hello timeout", () => {
    expect(shouldRetry(1001)).toBe(true);
    expect(shouldRetry(1006)).toBe(true);
    expect(shouldRetry(1011)).toBe(true);
    expect(shouldRetry(4001)).toBe(true);
    expect(shouldRetry(1013)).toBe(true);
    expect(shouldRetry(1000)).toBe(true);
  });

  test("retry (with backoff) after a slow-consumer or a flood close", () => {
    expect(shouldRetry(CloseCode.SlowConsumer)).toBe(true);
    expect(shouldRetry(CloseCode.Flood)).toBe(true);
  });

  test("the named codes have the documented numbers", () => {
    expect(CloseCode).toEqual({
      Normal: 1000,
      GoingAway: 1001,
      PolicyViolation: 1008,
      MessageTooBig: 1009,
      InternalError: 1011,
      TryAgainLater: 1013,
      Replaced: 4000,
      HelloTimeout: 4001,
      SlowConsumer: 4002,
      Flood: 4003,
    });
  });
});
