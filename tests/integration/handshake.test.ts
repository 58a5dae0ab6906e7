import { describe, expect, test } from "bun:test";
import { SignJWT, UnsecuredJWT } from "jose";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { handshake, startStack, TEST_SECRET } from "../helpers/start-stack";

const key = new TextEncoder().encode(TEST_SECRET);

describe("the handshake is authenticated before any upgrade", () => {
  test("a valid token in the header upgrades; claims and identity are accepted", async () => {
    await using stack = await startStack();
    const token = await stack.token("aa:bb:cc:dd:ee:01");
    const res = await handshake(stack.wsUrl, { Authorization: `Bearer ${token}`, "Device-Id": "aa:bb:cc:dd:ee:01", "Protocol-Version": "1" });
    expect(res.status).toBe(101);
  });

  test("refusals are HTTP errors with a JSON reason and never echo the token", async () => {
    await using stack = await startStack();
    const expired = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
      .sign(key);
    const wrongKey = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode("other"));
    const none = new UnsecuredJWT({ sub: "x" }).setExpirationTime("1h").encode();
    const cases: [string, Record<string, string>, number, string][] = [
      ["missing", { "Device-Id": "aa:bb:cc:dd:ee:02" }, 401, "ERR_TOKEN_MISSING"],
      ["expired", { Authorization: `Bearer ${expired}` }, 401, "ERR_TOKEN_EXPIRED"],
      ["wrong signature", { Authorization: `Bearer ${wrongKey}` }, 401, "ERR_TOKEN_INVALID"],
      ["alg none", { Authorization: `Bearer ${none}` }, 401, "ERR_TOKEN_INVALID"],
      ["garbage", { Authorization: "Bearer not.a.jwt" }, 401, "ERR_TOKEN_INVALID"],
      ["bad protocol version", { Authorization: `Bearer ${expired}`, "Protocol-Version": "7" }, 400, "ERR_PROTOCOL_VERSION_INVALID"],
    ];
    for (const [name, headers, status, code] of cases) {
      const res = await handshake(stack.wsUrl, headers);
      expect({ name, status: res.status }).toEqual({ name, status });
      expect({ name, code: (res.body as { error: { code: string } }).error.code }).toEqual({ name, code });
      for (const v of Object.values(headers)) if (v.startsWith("Bearer ")) expect(res.raw).not.toContain(v.slice(7));
    }
    expect(stack.metrics.connectionsOpened).toBe(0);
  });

  test("a token bound to another device is refused with 403", async () => {
    await using stack = await startStack();
    const token = await stack.token("aa:bb:cc:dd:ee:03");
    const res = await handshake(stack.wsUrl, { Authorization: `Bearer ${token}`, "Device-Id": "aa:bb:cc:dd:ee:04" });
    expect(res.status).toBe(403);
  });

  test("browser clients pass identity in the query string, on every endpoint path", async () => {
    await using stack = await startStack();
    const token = await stack.token("aa:bb:cc:dd:ee:05");
    for (const path of ["/ws", "/", "/xiaozhi/v1/"]) {
      const dev = await SimulatedDevice.connect({
        url: `ws://127.0.0.1:${stack.gateway.port}${path}`,
        token,
        deviceId: "aa:bb:cc:dd:ee:05",
        protocolVersion: 3,
        identityInQuery: true,
      });
      await dev.hello();
      dev.close();
      await dev.closed;
    }
    const res = await handshake(`${stack.wsUrl}?authorization=${encodeURIComponent(`Bearer ${token}`)}&device-id=aa:bb:cc:dd:ee:05`);
    expect(res.status).toBe(101);
  });

  test("with IM_AUTH_REQUIRED=false a device is admitted by Device-Id alone, but a bad token is still refused", async () => {
    await using stack = await startStack({ gateway: { authRequired: false } });
    const dev = await SimulatedDevice.connect({ url: stack.wsUrl, deviceId: "aa:bb:cc:dd:ee:06" });
    await dev.hello();
    dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
    dev.sendAudio(new Uint8Array([1, 2, 3]));
    await dev.waitFor((r) => r.kind === "audio");
    // Neither a token nor a Device-Id: nothing to admit it by (ERR_DEVICE_ID_MISSING, 400).
    expect((await handshake(stack.wsUrl, {})).status).toBe(400);
    expect((await handshake(stack.wsUrl, { "Device-Id": "x", Authorization: "Bearer bad" })).status).toBe(401);
  });
});
