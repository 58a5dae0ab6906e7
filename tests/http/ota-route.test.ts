import { describe, expect, test } from "bun:test";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { isGatewayError } from "../../src/errors";
import { createOtaRoute, OTA_PATHS, type OtaRouteOptions } from "../../src/http/ota-route";
import { LogCapture, serveRoutes } from "./helpers";

const SECRET = "ota-test-secret-that-is-long-enough-0123456789";
const PROVISION_SECRET = "provision-me-please";
const DEVICE = "aa:bb:cc:dd:ee:01";
const verifier = createTokenVerifier({ secret: SECRET });

/** The firmware's system-info body (trimmed), as devices POST it. */
const SYSTEM_INFO = {
  version: 2,
  language: "zh-CN",
  flash_size: 16777216,
  mac_address: DEVICE,
  uuid: "98e0d91c-7f4b-4ee8-bbd4-917a26e76586",
  chip_model_name: "esp32s3",
  application: { name: "xiaozhi", version: "1.6.2", compile_time: "Apr 24 2025T16:11:20Z", idf_version: "v5.3.2" },
  board: { type: "bread-compact-wifi", name: "bread-compact-wifi", ssid: "home", rssi: -50, mac: DEVICE },
};

function firmwareHeaders(deviceId = DEVICE, extra: Record<string, string> = {}): Record<string, string> {
  return {
    "device-id": deviceId,
    "client-id": "98e0d91c-7f4b-4ee8-bbd4-917a26e76586",
    "user-agent": "bread-compact-wifi/1.6.0",
    "activation-version": "2",
    "accept-language": "zh-CN",
    "content-type": "application/json",
    ...extra,
  };
}

interface OtaAnswer {
  server_time: { timestamp: number; timezone_offset: number };
  firmware?: { version: string; url: string };
  websocket: { url: string; token?: string; version: number };
}

function setup(overrides: Partial<OtaRouteOptions> = {}) {
  const log = new LogCapture("debug");
  const route = createOtaRoute({
    jwtSecret: SECRET,
    policy: "open",
    tokenTtlSeconds: 3600,
    protocolVersion: 3,
    issuesPerMinute: 1000,
    debug: false,
    logger: log.logger,
    ...overrides,
  });
  const server = serveRoutes(Object.fromEntries(OTA_PATHS.map((p) => [p, route])));
  const url = `http://127.0.0.1:${server.port}/xiaozhi/ota/`;
  return { log, route, server, url };
}

async function post(url: string, headers: Record<string, string>, body: string | undefined = JSON.stringify(SYSTEM_INFO)) {
  const res = await fetch(url, { method: "POST", headers, body });
  return { res, text: await res.text() };
}

describe("POST/GET /xiaozhi/ota/", () => {
  test("the firmware's request gets the provisioning answer: ws url from Host, a token bound to the device, no mqtt", async () => {
    const { server, url, log } = setup();
    using _ = server;
    const before = Date.now();
    const { res, text } = await post(url, firmwareHeaders());
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(text).not.toContain("mqtt");
    const body = JSON.parse(text) as OtaAnswer;
    expect(Object.keys(body).sort()).toEqual(["firmware", "server_time", "websocket"]);
    expect(body.websocket.url).toBe(`ws://127.0.0.1:${server.port}/xiaozhi/v1/`);
    expect(body.websocket.version).toBe(3);
    // The body's application.version wins over the User-Agent's: no update is offered.
    expect(body.firmware).toEqual({ version: "1.6.2", url: "" });
    expect(body.server_time.timestamp).toBeGreaterThanOrEqual(before);
    expect(body.server_time.timestamp).toBeLessThanOrEqual(Date.now());
    expect(body.server_time.timezone_offset).toBe(0 - new Date().getTimezoneOffset());

    const token = body.websocket.token!;
    const verified = await verifier.verify(token, { deviceId: DEVICE });
    expect(verified.deviceId).toBe(DEVICE);
    expect(verified.subject).toBe(DEVICE);
    // Bound: another device cannot use it.
    const err = await verifier.verify(token, { deviceId: "aa:bb:cc:dd:ee:02" }).catch((e: unknown) => e);
    expect(isGatewayError(err, "ERR_TOKEN_INVALID")).toBe(true);

    const issued = log.find("ota: token issued");
    expect(issued).toHaveLength(1);
    expect(issued[0]).toMatchObject({ level: 30, deviceId: DEVICE, policy: "open", clientAddress: "127.0.0.1" });
    expect(log.text).not.toContain(token);
  });

  test("publicWsUrl is handed out as configured; both paths answer", async () => {
    const { server } = setup({ publicWsUrl: "wss://im.example.com/xiaozhi/v1/" });
    using _ = server;
    for (const path of ["/xiaozhi/ota/", "/xiaozhi/ota"]) {
      const { res, text } = await post(`http://127.0.0.1:${server.port}${path}`, firmwareHeaders());
      expect(res.status).toBe(200);
      expect((JSON.parse(text) as OtaAnswer).websocket.url).toBe("wss://im.example.com/xiaozhi/v1/");
    }
  });

  test("behind a proxy the url follows X-Forwarded-Proto and X-Forwarded-Host", async () => {
    const { server, url } = setup();
    using _ = server;
    const { text } = await post(url, firmwareHeaders(DEVICE, { "x-forwarded-proto": "https", "x-forwarded-host": "im.example.com" }));
    expect((JSON.parse(text) as OtaAnswer).websocket.url).toBe("wss://im.example.com/xiaozhi/v1/");
  });

  test("GET without a body works; the version comes from the User-Agent", async () => {
    const { server, url } = setup();
    using _ = server;
    const headers = firmwareHeaders();
    delete headers["content-type"];
    const res = await fetch(url, { headers });
    expect(res.status).toBe(200);
    const body = (await res.json()) as OtaAnswer;
    expect(body.firmware).toEqual({ version: "1.6.0", url: "" });
    expect(typeof body.websocket.token).toBe("string");
  });

  test("a malformed JSON body is ignored, not fatal; no known version means no firmware key", async () => {
    const { server, url } = setup();
    using _ = server;
    const { res, text } = await post(url, firmwareHeaders(DEVICE, { "user-agent": "curl" }), "{not json");
    expect(res.status).toBe(200);
    const body = JSON.parse(text) as OtaAnswer;
    expect(body.firmware).toBeUndefined();
    expect(typeof body.websocket.token).toBe("string");
  });

  test("OPTIONS answers 204 with the CORS headers browsers need", async () => {
    const { server, url } = setup();
    using _ = server;
    const res = await fetch(url, { method: "OPTIONS", headers: { origin: "http://localhost:3000", "access-control-request-method": "POST" } });
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-methods")).toBe("GET, POST, OPTIONS");
    const allowed = (res.headers.get("access-control-allow-headers") ?? "").split(",").map((h) => h.trim());
    for (const h of ["client-id", "device-id", "authorization", "content-type", "activation-version", "x-provision-secret"]) expect(allowed).toContain(h);
  });

  test("a missing or non-MAC Device-Id gets 400", async () => {
    const { server, url, log } = setup();
    using _ = server;
    for (const id of ["", "not-a-mac", "aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:zz", "aa:bb-cc:dd:ee:ff"]) {
      const headers = firmwareHeaders(id);
      if (id === "") delete headers["device-id"];
      const { res, text } = await post(url, headers);
      expect(res.status).toBe(400);
      expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe("ERR_DEVICE_ID_MISSING");
    }
    expect(log.find("ota: request refused (400)")).toHaveLength(5);
    // Upper case is the same device: accepted and lower-cased.
    const { res, text } = await post(url, firmwareHeaders("AA:BB:CC:DD:EE:01"));
    expect(res.status).toBe(200);
    expect((await verifier.verify((JSON.parse(text) as OtaAnswer).websocket.token!)).deviceId).toBe(DEVICE);
  });

  test("other methods get 405", async () => {
    const { server, url } = setup();
    using _ = server;
    const res = await fetch(url, { method: "PUT", headers: firmwareHeaders(), body: "{}" });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, POST, OPTIONS");
  });
});

describe("issuance policy", () => {
  async function ask(overrides: Partial<OtaRouteOptions>, deviceId = DEVICE, extra: Record<string, string> = {}) {
    const { server, url, log } = setup(overrides);
    using _ = server;
    const { res, text } = await post(url, firmwareHeaders(deviceId, extra));
    return { status: res.status, body: JSON.parse(text) as OtaAnswer & { error?: { code: string; message: string } }, log };
  }

  test("debug-only: a token in debug mode, none (200) otherwise", async () => {
    const on = await ask({ policy: "debug-only", debug: true });
    expect(on.status).toBe(200);
    expect(typeof on.body.websocket.token).toBe("string");

    const off = await ask({ policy: "debug-only", debug: false });
    expect(off.status).toBe(200);
    expect(off.body.websocket.token).toBeUndefined();
    expect(off.body.websocket.url).toContain("/xiaozhi/v1/");
    expect(off.body.websocket.version).toBe(3);
    expect(off.log.find("ota: answered without a token")[0]).toMatchObject({
      deviceId: DEVICE,
      policy: "debug-only",
      reason: expect.stringContaining("not in debug mode"),
    });
    // The answer says why too, outside `websocket` (the firmware stores that object's keys).
    expect((off.body as unknown as { token_not_issued: string }).token_not_issued).toContain("not in debug mode");
    expect((on.body as unknown as { token_not_issued?: string }).token_not_issued).toBeUndefined();
  });

  test("MQTT + UDP: listed devices (or all, with transport mqtt) get an mqtt section with their token instead of websocket", async () => {
    const mqtt = { transport: "websocket" as const, devices: new Set([DEVICE]), publicHost: "gw.example.com", port: () => 1883, keepaliveSeconds: 240 };
    const listed = await ask({ policy: "open", mqtt });
    const body = listed.body as unknown as { mqtt: Record<string, string | number>; websocket?: unknown };
    expect(body.websocket).toBeUndefined();
    expect(body.mqtt).toMatchObject({ endpoint: "gw.example.com:1883", username: DEVICE, publish_topic: "device-server", keepalive: 240 });
    expect((await verifier.verify(String(body.mqtt.password))).deviceId).toBe(DEVICE);
    const other = await ask({ policy: "open", mqtt }, "aa:bb:cc:dd:ee:42");
    expect(other.body.websocket.token).toBeString();
    expect((other.body as unknown as { mqtt?: unknown }).mqtt).toBeUndefined();
    const all = await ask({ policy: "open", mqtt: { ...mqtt, transport: "mqtt", devices: new Set() } }, "aa:bb:cc:dd:ee:42");
    expect((all.body as unknown as { mqtt: { subscribe_topic: string } }).mqtt.subscribe_topic).toBe("devices/p2p/aa_bb_cc_dd_ee_42");
    // No token (policy): no credentials to hand out, so no mqtt section either.
    const none = await ask({ policy: "off", mqtt: { ...mqtt, transport: "mqtt" } });
    expect((none.body as unknown as { mqtt?: unknown }).mqtt).toBeUndefined();
  });

  test("open: always a token", async () => {
    const r = await ask({ policy: "open" });
    expect(r.status).toBe(200);
    expect((await verifier.verify(r.body.websocket.token!)).deviceId).toBe(DEVICE);
  });

  test("allowlist: a listed device (any case) gets a token, another 403", async () => {
    const list = "11:22:33:44:55:66, AA:BB:CC:DD:EE:01";
    const hit = await ask({ policy: "allowlist", allowedDevices: list });
    expect(hit.status).toBe(200);
    expect(typeof hit.body.websocket.token).toBe("string");

    const miss = await ask({ policy: "allowlist", allowedDevices: list }, "aa:bb:cc:dd:ee:99");
    expect(miss.status).toBe(403);
    expect(miss.body.error?.code).toBe("ERR_PROVISIONING_REFUSED");
    expect(miss.body.websocket).toBeUndefined();
    expect(miss.log.find("ota: provisioning refused (403)")[0]).toMatchObject({
      level: 40,
      deviceId: "aa:bb:cc:dd:ee:99",
      reason: "device not in the allow-list",
    });
  });

  test("secret: the right X-Provision-Secret gets a token; a wrong or missing one 403; the secret is never logged", async () => {
    const right = await ask({ policy: "secret", provisionSecret: PROVISION_SECRET }, DEVICE, { "x-provision-secret": PROVISION_SECRET });
    expect(right.status).toBe(200);
    expect(typeof right.body.websocket.token).toBe("string");
    expect(right.log.text).not.toContain(PROVISION_SECRET);

    for (const presented of ["provision-me-pleasE", "x", `${PROVISION_SECRET}x`]) {
      const wrong = await ask({ policy: "secret", provisionSecret: PROVISION_SECRET }, DEVICE, { "x-provision-secret": presented });
      expect(wrong.status).toBe(403);
      expect(wrong.body.error?.code).toBe("ERR_PROVISIONING_REFUSED");
      expect(wrong.log.find("ota: provisioning refused (403)")[0]?.reason).toBe("wrong provisioning secret");
      expect(wrong.log.text).not.toContain(presented);
    }

    const missing = await ask({ policy: "secret", provisionSecret: PROVISION_SECRET });
    expect(missing.status).toBe(403);
    expect(missing.log.find("ota: provisioning refused (403)")[0]?.reason).toBe("no provisioning secret presented");
  });

  test("off: the url and version, never a token", async () => {
    const r = await ask({ policy: "off", debug: true });
    expect(r.status).toBe(200);
    expect(r.body.websocket.token).toBeUndefined();
    expect(r.body.websocket.url).toContain("/xiaozhi/v1/");
    expect(r.log.find("ota: token issued")).toHaveLength(0);
  });

  test("policies that can never issue are refused at creation", () => {
    const base = { jwtSecret: SECRET, tokenTtlSeconds: 60, protocolVersion: 1, issuesPerMinute: 1, debug: false, logger: new LogCapture().logger } as const;
    const errOf = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const noSecret = errOf(() => createOtaRoute({ ...base, policy: "secret" }));
    expect(isGatewayError(noSecret, "ERR_CONFIG_INVALID")).toBe(true);
    const emptyList = errOf(() => createOtaRoute({ ...base, policy: "allowlist", allowedDevices: " , " }));
    expect(isGatewayError(emptyList, "ERR_CONFIG_INVALID")).toBe(true);
    const badId = errOf(() => createOtaRoute({ ...base, policy: "allowlist", allowedDevices: "aa:bb:cc:dd:ee:01,bogus" }));
    expect(isGatewayError(badId, "ERR_CONFIG_INVALID")).toBe(true);
    expect((badId as Error).message).toContain('"bogus"');
  });
});

describe("rate limit", () => {
  test("past the burst a client gets 429 with Retry-After; the token never reaches the log", async () => {
    const { server, url, log } = setup({ issuesPerMinute: 3 });
    using _ = server;
    const tokens: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { res, text } = await post(url, firmwareHeaders());
      expect(res.status).toBe(200);
      tokens.push((JSON.parse(text) as OtaAnswer).websocket.token!);
    }
    const { res, text } = await post(url, firmwareHeaders());
    expect(res.status).toBe(429);
    // 3 per minute: the next one is 20 s away.
    expect(res.headers.get("retry-after")).toBe("20");
    expect((JSON.parse(text) as { error: { code: string } }).error.code).toBe("ERR_RATE_LIMITED");
    expect(log.find("ota: provisioning rate limit reached (429)")).toHaveLength(1);
    expect(log.find("ota: token issued")).toHaveLength(3);
    for (const t of tokens) expect(log.text).not.toContain(t);
    // OPTIONS is not charged.
    expect((await fetch(url, { method: "OPTIONS" })).status).toBe(204);
  });

  test("buckets are per address and refill with time", async () => {
    let now = 1_000;
    const { route, server } = setup({ issuesPerMinute: 2, nowMs: () => now });
    server.stop(true);
    const call = (addr: string) => route(new Request("http://gw.local/xiaozhi/ota/", { headers: firmwareHeaders() }), addr).then((r) => r.status);
    expect([await call("10.0.0.1"), await call("10.0.0.1"), await call("10.0.0.1")]).toEqual([200, 200, 429]);
    expect(await call("10.0.0.2")).toBe(200);
    // 2 per minute: 30 s later the first address has one more.
    now += 30_000;
    expect([await call("10.0.0.1"), await call("10.0.0.1")]).toEqual([200, 429]);
  });

  test("the map of buckets is bounded: past maxTrackedClients the least recently used is dropped", async () => {
    const now = 1_000;
    const { route, server } = setup({ issuesPerMinute: 2, maxTrackedClients: 2, nowMs: () => now });
    server.stop(true);
    const call = (addr: string) => route(new Request("http://gw.local/xiaozhi/ota/", { headers: firmwareHeaders() }), addr).then((r) => r.status);
    expect([await call("10.0.0.1"), await call("10.0.0.1"), await call("10.0.0.1")]).toEqual([200, 200, 429]);
    expect(await call("10.0.0.2")).toBe(200);
    // A third address while two are tracked and none is idle: 10.0.0.1, the least recently
    // used, is forgotten, so it starts over with a full bucket (the price of a bounded map).
    expect(await call("10.0.0.3")).toBe(200);
    expect(await call("10.0.0.1")).toBe(200);
  });
});
