import { describe, expect, test } from "bun:test";
import { AdmissionControl } from "../../src/http/admission-control";

describe("AdmissionControl", () => {
  test("refuses at the connection limit, with Retry-After of 5-10 s; admits again below it", () => {
    const a = new AdmissionControl({ maxConnections: 3, maxConnectsPerSecond: 1000 }, 0, () => 0.999);
    expect(a.admit(2, 0)).toBeUndefined();
    const r = a.admit(3, 0);
    expect(r).toMatchObject({ reason: "max-connections", retryAfterSeconds: 10 });
    expect(a.admit(2, 0)).toBeUndefined();
  });

  test("refuses past the connect rate (burst: one second's worth) until the budget refills", () => {
    const a = new AdmissionControl({ maxConnections: 100, maxConnectsPerSecond: 4 }, 0, () => 0);
    for (let i = 0; i < 4; i++) expect(a.admit(i, 0)).toBeUndefined();
    expect(a.admit(4, 0)).toMatchObject({ reason: "connect-rate", retryAfterSeconds: 1 });
    expect(a.admit(4, 249)).toMatchObject({ reason: "connect-rate" });
    expect(a.admit(4, 250)).toBeUndefined();
  });

  test("a refusal at the connection limit spends no connect budget", () => {
    const a = new AdmissionControl({ maxConnections: 1, maxConnectsPerSecond: 1 }, 0, () => 0);
    for (let i = 0; i < 10; i++) expect(a.admit(1, 0)?.reason).toBe("max-connections");
    expect(a.admit(0, 0)).toBeUndefined();
  });

  test("Retry-After is whole seconds, at least 1, and jittered", () => {
    const seen = new Set<number>();
    let x = 0;
    const a = new AdmissionControl({ maxConnections: 1, maxConnectsPerSecond: 1 }, 0, () => (x = (x + 0.37) % 1));
    for (let i = 0; i < 20; i++) {
      const r = a.admit(1, 0);
      expect(Number.isInteger(r?.retryAfterSeconds)).toBe(true);
      expect(r!.retryAfterSeconds).toBeGreaterThanOrEqual(5);
      seen.add(r!.retryAfterSeconds);
    }
    expect(seen.size).toBeGreaterThan(1);
  });
});
