import { describe, expect, test } from "bun:test";
import { GatewayError } from "../../src/errors";
import { TrustedProxies } from "../../src/http/trusted-proxies";
import { handshake, startStack } from "../helpers/start-stack";

const h = (entries: Record<string, string>) => new Headers(entries);

describe("IM_TRUSTED_PROXIES", () => {
  const proxies = TrustedProxies.parse("10.0.0.0/8, 127.0.0.1, fd00::/8");

  test("forwarded headers count only from a trusted peer", () => {
    expect(proxies.clientAddress(h({ "x-forwarded-for": "203.0.113.9" }), "10.1.2.3")).toBe("203.0.113.9");
    expect(proxies.clientAddress(h({ "x-forwarded-for": "203.0.113.9" }), "198.51.100.7")).toBe("198.51.100.7");
    expect(proxies.clientAddress(h({ "x-real-ip": "203.0.113.9" }), "fd12::1")).toBe("203.0.113.9");
    expect(proxies.clientAddress(h({ "x-real-ip": "not an ip" }), "10.0.0.1")).toBe("10.0.0.1");
  });

  test("X-Forwarded-For is read from the right, past further trusted proxies; what a client wrote on the left is not believed", () => {
    // The client claimed 1.1.1.1; the edge proxy appended the real client, then an inner one.
    expect(proxies.clientAddress(h({ "x-forwarded-for": "1.1.1.1, 203.0.113.9, 10.9.9.9" }), "10.0.0.1")).toBe("203.0.113.9");
    expect(proxies.clientAddress(h({ "x-forwarded-for": "203.0.113.9:4711" }), "10.0.0.1")).toBe("203.0.113.9");
    expect(proxies.clientAddress(h({ "x-forwarded-for": "[2001:db8::1]:4711" }), "10.0.0.1")).toBe("2001:db8::1");
    expect(proxies.clientAddress(h({ "x-forwarded-for": "garbage, 10.0.0.2" }), "10.0.0.1")).toBe("10.0.0.2");
  });

  test("entries that are neither addresses nor CIDRs are configuration errors", () => {
    for (const bad of ["10.0.0.0/33", "proxy.example.com", "10.0.0.0/", "fd00::/129", "10.0.0.0/x"]) {
      expect(() => TrustedProxies.parse(bad)).toThrow(GatewayError);
    }
    expect(TrustedProxies.parse("").trusts("127.0.0.1")).toBe(false);
  });

  test("the per-address limits apply to the forwarded client behind a trusted proxy, to the peer otherwise", async () => {
    await using stack = await startStack({ gateway: { trustedProxies: TrustedProxies.parse("127.0.0.1"), handshake: { maxConnectsPerIpPerSecond: 1 } } });
    const as = (token: string, ip: string, xff?: string) =>
      handshake(
        stack.wsUrl,
        { Authorization: `Bearer ${token}`, "Device-Id": "1d:00:00:00:00:01", ...(xff ? { "X-Forwarded-For": xff } : {}) },
        { localAddress: ip },
      );
    const token = await stack.token("1d:00:00:00:00:01");
    // Through the trusted proxy (127.0.0.1): two clients, one burst of 2 each.
    const viaProxy = [await as(token, "127.0.0.1", "203.0.113.1"), await as(token, "127.0.0.1", "203.0.113.1"), await as(token, "127.0.0.1", "203.0.113.1")];
    expect(viaProxy.map((r) => r.status)).toEqual([101, 101, 429]);
    expect((await as(token, "127.0.0.1", "203.0.113.2")).status).toBe(101);
    // An untrusted peer (127.0.0.3) cannot claim another address: its own is counted.
    const spoofed = [await as(token, "127.0.0.3", "203.0.113.3"), await as(token, "127.0.0.3", "203.0.113.4"), await as(token, "127.0.0.3", "203.0.113.5")];
    expect(spoofed.map((r) => r.status)).toEqual([101, 101, 429]);
  });
});
