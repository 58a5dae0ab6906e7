import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { TokenError, TokenRejectReason } from "../../src/auth/token-error";
import { ErrorCode, GatewayError } from "../../src/errors";
import { ConnectionLimits } from "../../src/http/connection-limits";
import { clientKey, handshakeFromConfig } from "../../src/http/handshake-guard";
import { HTTP_STATUS } from "../../src/http/error-response";
import { type HandshakeRefusal, tokenRefusal } from "../../src/http/handshake-refusal";
import { createOriginPolicy, parseAllowedOrigins } from "../../src/http/origin-policy";

describe("origin policy", () => {
  const policy = createOriginPolicy("https://app.example.com, http://localhost:3000/ ,chrome-extension://abcdef");
  const host = "gw.example.com:8081";

  test("no Origin (a device) passes", () => {
    expect(policy.allows(null, host)).toBe(true);
    expect(policy.allows(null, null)).toBe(true);
  });

  test("listed origins pass, exactly (scheme, host and port), in any case", () => {
    for (const o of [
      "https://app.example.com",
      "HTTPS://App.Example.com",
      "https://app.example.com:443",
      "http://localhost:3000",
      "chrome-extension://abcdef",
    ]) {
      expect({ o, ok: policy.allows(o, host) }).toEqual({ o, ok: true });
    }
    for (const o of [
      "http://app.example.com",
      "https://app.example.com:8443",
      "https://sub.app.example.com",
      "https://app.example.com.evil.com",
      "http://localhost:3001",
      "https://localhost:3000",
    ]) {
      expect({ o, ok: policy.allows(o, host) }).toEqual({ o, ok: false });
    }
  });

  test("the gateway's own origin (the request's Host) passes, whatever the scheme; a default port may be implied", () => {
    expect(policy.allows("http://gw.example.com:8081", host)).toBe(true);
    expect(policy.allows("https://gw.example.com:8081", host)).toBe(true);
    expect(policy.allows("https://gw.example.com", "gw.example.com")).toBe(true);
    expect(policy.allows("https://gw.example.com", "gw.example.com:443")).toBe(true);
    expect(policy.allows("http://[::1]:8081", "[::1]:8081")).toBe(true);
    expect(policy.allows("http://gw.example.com:8082", host)).toBe(false);
    expect(policy.allows("http://gw.example.com", host)).toBe(false);
    expect(policy.allows("http://gw.example.com:8081", null)).toBe(false);
  });

  test("null, wildcards, paths, credentials and garbage are refused", () => {
    for (const o of [
      "null",
      "*",
      "https://app.example.com/path",
      "https://user:pw@app.example.com",
      "app.example.com",
      "",
      " ",
      "https://",
      "x".repeat(5000),
    ]) {
      expect({ o, ok: policy.allows(o, host) }).toEqual({ o, ok: false });
    }
  });

  test("`*` lets every Origin in; `null` (pages opened from a file) only when listed; debug mode lets every Origin in", () => {
    expect(createOriginPolicy("*").allows("https://anywhere.example", host)).toBe(true);
    expect(createOriginPolicy("*").allows("null", host)).toBe(true);
    expect(createOriginPolicy("null").allows("null", host)).toBe(true);
    expect(createOriginPolicy("null").allows("https://anywhere.example", host)).toBe(false);
    expect(createOriginPolicy("", true).allows("http://localhost:5173", host)).toBe(true);
    expect(createOriginPolicy("", true).allows("null", host)).toBe(true);
  });

  test("IM_ALLOWED_ORIGINS entries that are not origins are configuration errors", () => {
    expect([...parseAllowedOrigins(" https://A.example.com:443/ , http://b.example.com:8080 ").origins]).toEqual([
      "https://a.example.com",
      "http://b.example.com:8080",
    ]);
    expect(parseAllowedOrigins("").origins.size).toBe(0);
    expect(parseAllowedOrigins("*, null")).toMatchObject({ any: true, opaque: true });
    for (const bad of ["https://*.example.com", "https://a.example.com/app", "a.example.com", "https://a.example.com?x=1"]) {
      expect(() => parseAllowedOrigins(bad)).toThrow(GatewayError);
    }
    let told = "";
    expect(() =>
      handshakeFromConfig(
        { allowedOrigins: "https://ok.example.com,https://*.example.com", maxConnectionsPerDevice: 2 },
        { maxConnectionsPerIp: 1, maxConnectsPerIpPerSecond: 50 },
        (m) => {
          told = m;
          throw new Error("exit");
        },
      ),
    ).toThrow("exit");
    expect(told).toContain("IM_ALLOWED_ORIGINS");
    expect(told).not.toContain("\n");
  });
});

describe("connection limits", () => {
  test("per address and per device, released once, entries dropped at zero", () => {
    const limits = new ConnectionLimits({ maxConnectionsPerIp: 2, maxConnectionsPerDevice: 1 });
    const a = limits.lease("1.2.3.4")!;
    const b = limits.lease("1.2.3.4")!;
    expect(limits.lease("1.2.3.4")).toBeUndefined();
    expect(limits.lease("5.6.7.8")).toBeDefined();
    expect(a.bindDevice("dev")).toBe(true);
    expect(b.bindDevice("dev")).toBe(false);
    expect(limits.connectionsOf("dev")).toBe(1);
    a.release();
    a.release();
    expect(limits.connectionsFrom("1.2.3.4")).toBe(1);
    expect(limits.connectionsOf("dev")).toBe(0);
    expect(b.bindDevice("dev")).toBe(true);
    b.release();
    expect(limits.connectionsFrom("1.2.3.4")).toBe(0);
    expect(limits.connectionsOf("dev")).toBe(0);
  });

  test("addresses: IPv4 as is (also IPv4-mapped), IPv6 by /64", () => {
    expect(clientKey("203.0.113.7")).toBe("203.0.113.7");
    expect(clientKey("::ffff:203.0.113.7")).toBe("203.0.113.7");
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:DB8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
    expect(clientKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
    expect(clientKey("not:an:address::x")).toBe("not:an:address::x");
  });
});

describe("token refusals map to statuses", () => {
  test("401 for the token's faults, 403 for another device's token, 503 when the keys cannot be loaded", () => {
    const status = (r: HandshakeRefusal) => ({ status: HTTP_STATUS[r.code], code: r.code, reason: r.reason });
    expect(status(tokenRefusal(new TokenError(TokenRejectReason.SignatureMismatch)))).toEqual({
      status: 401,
      code: ErrorCode.TokenInvalid,
      reason: "signature_mismatch",
    });
    expect(status(tokenRefusal(new TokenError(TokenRejectReason.Expired)))).toEqual({ status: 401, code: ErrorCode.TokenExpired, reason: "expired" });
    expect(status(tokenRefusal(new TokenError(TokenRejectReason.DeviceMismatch)))).toEqual({
      status: 403,
      code: ErrorCode.Forbidden,
      reason: "device_mismatch",
    });
    const keys = tokenRefusal(new TokenError(TokenRejectReason.KeySetUnavailable, "timed out"));
    expect(status(keys)).toEqual({ status: 503, code: ErrorCode.TokenKeysUnavailable, reason: "jwks_unavailable" });
    expect(keys.retryAfterSeconds).toBeGreaterThan(0);
    expect(status(tokenRefusal(new GatewayError(ErrorCode.TokenMissing, "no token")))).toMatchObject({ status: 401, reason: "missing" });
  });
});

describe("arbitrary input never throws", () => {
  const SEED = 0x5ec_0717;

  test("Origin and Host values of any shape: a boolean, and only an exact or own origin passes", () => {
    const policy = createOriginPolicy("https://app.example.com");
    fc.assert(
      fc.property(fc.option(fc.oneof(fc.string(), fc.webUrl(), fc.constantFrom("null", "https://app.example.com"))), fc.option(fc.string()), (origin, host) => {
        const ok = policy.allows(origin, host);
        expect(typeof ok).toBe("boolean");
        if (ok && origin !== null && origin.toLowerCase() !== "https://app.example.com") expect(host).not.toBeNull();
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test("client addresses of any shape give a key", () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string()), (address) => {
        expect(typeof clientKey(address)).toBe("string");
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  test("every IPv6 address of one /64 counts as one client", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (groups) => {
        const full = groups.map((g) => g.toString(16)).join(":");
        const sibling = [...groups.slice(0, 4), 1, 2, 3, 4].map((g) => g.toString(16)).join(":");
        expect(clientKey(full)).toBe(clientKey(sibling));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});
