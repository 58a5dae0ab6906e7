import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { mintToken } from "../../src/auth/mint-token";
import type { TokenVerifier } from "../../src/auth/token-verifier";
import { createVerifierFromConfig, verifierFromConfig } from "../../src/auth/verifier-from-config";
import type { HandshakeOptions } from "../../src/http/handshake-guard";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { handshake, type Stack, type StackOptions, startStack, TEST_SECRET } from "../helpers/start-stack";
import { type CapturedLogs, captureLogs } from "../security/capture-logs";
import { verifierSettings } from "../security/verifier-settings";

/**
 * Every refusal of the device handshake is an HTTP error before any upgrade, with a JSON
 * `{"error":{"code","reason","message"}}` and never the token, in the body or in any log line
 * (all levels captured), whether the token came in the Authorization header or the query.
 */

const DEVICE = "aa:bb:cc:00:00:01";
const ISSUER = "https://issuer.example.com";
const AUDIENCE = "xiaozhi-im";
const secret = new TextEncoder().encode(TEST_SECRET);
const now = () => Math.floor(Date.now() / 1000);

let rsa: { privateKey: CryptoKey; pem: string; jwk: Record<string, unknown> };
let rsaOther: { privateKey: CryptoKey };
let dir: string;

beforeAll(async () => {
  const a = await generateKeyPair("RS256", { extractable: true });
  const b = await generateKeyPair("RS256", { extractable: true });
  rsa = { privateKey: a.privateKey, pem: await exportSPKI(a.publicKey), jwk: { ...(await exportJWK(a.publicKey)) } };
  rsaOther = { privateKey: b.privateKey };
  dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-security-"));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const settings = verifierSettings;

interface SignOpts {
  readonly alg?: string;
  readonly key?: CryptoKey | Uint8Array;
  readonly claims?: JWTPayload;
  /** Seconds from now; null: no exp. Default 600. */
  readonly expIn?: number | null;
  readonly kid?: string;
}

/** A token as the HS256 gateway below expects it (issuer, audience, device), unless told. */
function sign(o: SignOpts = {}): Promise<string> {
  const jwt = new SignJWT({ sub: "user-1", device_id: DEVICE, iss: ISSUER, aud: AUDIENCE, ...o.claims }).setProtectedHeader({
    alg: o.alg ?? "HS256",
    typ: "JWT",
    ...(o.kid ? { kid: o.kid } : {}),
  });
  if (o.expIn !== null) jwt.setExpirationTime(now() + (o.expIn ?? 600));
  return jwt.sign(o.key ?? secret);
}

interface Stacked {
  readonly stack: Stack;
  readonly logs: CapturedLogs;
}

async function gateway(o: { verifier?: TokenVerifier; handshake?: HandshakeOptions; stack?: StackOptions } = {}): Promise<Stacked> {
  const logs = captureLogs();
  const stack = await startStack({
    ...o.stack,
    gateway: {
      logger: logs.logger,
      ...(o.verifier ? { verifier: o.verifier } : {}),
      ...(o.handshake ? { handshake: o.handshake } : {}),
      ...o.stack?.gateway,
    },
  });
  return { stack, logs };
}

type Refusal = { status: number; code: string; reason: string };

/** Headers (or query) carrying `token` for `deviceId`. */
function carry(via: "header" | "query", token: string | undefined, deviceId = DEVICE): { path: string; headers: Record<string, string> } {
  if (via === "header") {
    return { path: "", headers: { ...(token !== undefined ? { Authorization: `Bearer ${token}` } : {}), "Device-Id": deviceId, "Protocol-Version": "3" } };
  }
  const q = new URLSearchParams({ ...(token !== undefined ? { token } : {}), "device-id": deviceId, "protocol-version": "3" });
  return { path: `?${q}`, headers: {} };
}

/** The handshake's answer: the refusal (status, code, reason) or 101; the token never in the answer. */
async function attempt(s: Stacked, via: "header" | "query", token: string | undefined, deviceId = DEVICE): Promise<Refusal | 101> {
  const { path: query, headers } = carry(via, token, deviceId);
  const res = await handshake(`${s.stack.wsUrl}${query}`, headers);
  if (token !== undefined) expectNoToken(res.raw, token);
  if (res.status === 101) return 101;
  const body = res.body as { error: { code: string; reason: string; message: string } };
  expect(res.raw.toLowerCase()).toContain("content-type: application/json");
  return { status: res.status, code: body.error.code, reason: body.error.reason };
}

/** Neither the token nor any of its parts long enough to matter shows up in `text`. */
function expectNoToken(text: string, token: string): void {
  const pieces = [token, ...token.split(".")].filter((p) => p.length >= 8);
  for (const piece of pieces) expect(text.includes(piece)).toBe(false);
}

describe("token refusals: HTTP 401/403/503 before upgrade, a reason code, no token in the body or the logs", () => {
  test("shared secret with issuer and audience: every negative case, by header and by query", async () => {
    const s = await gateway({ verifier: verifierFromConfig(settings({ jwtSecret: TEST_SECRET, jwtIssuer: ISSUER, jwtAudience: AUDIENCE })) });
    await using _ = s.stack;
    const valid = await sign();
    const goodHeader = valid.split(".")[0]!;
    const cases: [string, string | undefined, Refusal | 101, string?][] = [
      ["valid", valid, 101],
      ["missing", undefined, { status: 401, code: "ERR_TOKEN_MISSING", reason: "missing" }],
      [
        "alg none",
        new UnsecuredJWT({ device_id: DEVICE, iss: ISSUER, aud: AUDIENCE }).setExpirationTime("1h").encode(),
        { status: 401, code: "ERR_TOKEN_INVALID", reason: "alg_not_allowed" },
      ],
      [
        "wrong signature",
        await sign({ key: new TextEncoder().encode("another-secret-another-secret-another") }),
        { status: 401, code: "ERR_TOKEN_INVALID", reason: "signature_mismatch" },
      ],
      ["expired", await sign({ expIn: -3600 }), { status: 401, code: "ERR_TOKEN_EXPIRED", reason: "expired" }],
      ["nbf in the future", await sign({ claims: { nbf: now() + 3600 } }), { status: 401, code: "ERR_TOKEN_INVALID", reason: "not_yet_valid" }],
      ["missing exp", await sign({ expIn: null }), { status: 401, code: "ERR_TOKEN_INVALID", reason: "exp_missing" }],
      ["wrong iss", await sign({ claims: { iss: "https://evil.example.com" } }), { status: 401, code: "ERR_TOKEN_INVALID", reason: "issuer_mismatch" }],
      ["wrong aud", await sign({ claims: { aud: "someone-else" } }), { status: 401, code: "ERR_TOKEN_INVALID", reason: "audience_mismatch" }],
      ["device mismatch", await sign({ claims: { device_id: "aa:bb:cc:00:00:99" } }), { status: 403, code: "ERR_FORBIDDEN", reason: "device_mismatch" }],
      [
        "malformed base64 (a character outside base64url)",
        `${goodHeader}.e30*.${"A".repeat(43)}`,
        { status: 401, code: "ERR_TOKEN_INVALID", reason: "malformed" },
      ],
      [
        "malformed base64 (a header that decodes to no JSON)",
        `${goodHeader.slice(0, -3)}.${valid.split(".")[1]}.${valid.split(".")[2]}`,
        { status: 401, code: "ERR_TOKEN_INVALID", reason: "malformed" },
      ],
      ["oversized", `${goodHeader}.${"A".repeat(9000)}.${"B".repeat(43)}`, { status: 401, code: "ERR_TOKEN_INVALID", reason: "too_large" }, "header"],
      // In the query, the same token makes the URL too long: refused before it is even read.
      [
        "oversized, in the query",
        `${goodHeader}.${"A".repeat(9000)}.${"B".repeat(43)}`,
        { status: 431, code: "ERR_REQUEST_TOO_LARGE", reason: "url_too_long" },
        "query",
      ],
    ];
    const tokens: string[] = [];
    for (const [name, token, expected, only] of cases) {
      if (token !== undefined) tokens.push(token);
      for (const via of ["header", "query"] as const) {
        if (only !== undefined && only !== via) continue;
        expect({ name, via, got: await attempt(s, via, token) }).toEqual({ name, via, got: expected });
      }
    }
    const logText = s.logs.text();
    for (const token of tokens) expectNoToken(logText, token);
    // Refusals are logged, with their reason, never with a token.
    const reasons = new Set(
      s.logs
        .lines()
        .filter((l) => l.msg === "handshake refused")
        .map((l) => l.reason),
    );
    for (const r of ["missing", "alg_not_allowed", "signature_mismatch", "expired", "device_mismatch", "malformed", "too_large"])
      expect(reasons.has(r)).toBe(true);
  });

  test("an RS256 public key file: algorithm confusion (HS256 signed with the public key) and a foreign key are refused", async () => {
    const keyFile = path.join(dir, "device-tokens.pem");
    writeFileSync(keyFile, rsa.pem);
    const s = await gateway({ verifier: verifierFromConfig(settings({ jwtPublicKey: keyFile })) });
    await using _ = s.stack;
    const confused = await sign({ alg: "HS256", key: new TextEncoder().encode(rsa.pem) });
    const cases: [string, string, Refusal | 101][] = [
      ["valid RS256", await sign({ alg: "RS256", key: rsa.privateKey }), 101],
      ["HS256 signed with the RSA public key", confused, { status: 401, code: "ERR_TOKEN_INVALID", reason: "alg_not_allowed" }],
      [
        "RS256 signed by another key",
        await sign({ alg: "RS256", key: rsaOther.privateKey }),
        { status: 401, code: "ERR_TOKEN_INVALID", reason: "signature_mismatch" },
      ],
    ];
    for (const [name, token, expected] of cases) {
      for (const via of ["header", "query"] as const) expect({ name, via, got: await attempt(s, via, token) }).toEqual({ name, via, got: expected });
    }
    for (const [, token] of cases) expectNoToken(s.logs.text(), token);
  });

  describe("JWKS", () => {
    function serveJwks() {
      let requests = 0;
      const server = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch() {
          requests++;
          return Response.json({ keys: [{ ...rsa.jwk, kid: "k1", alg: "RS256", use: "sig" }] });
        },
      });
      return { url: `http://127.0.0.1:${server.port}/.well-known/jwks.json`, requests: () => requests, stop: () => server.stop(true) };
    }

    test("a known kid upgrades; an unknown kid is refused (401 unknown_kid); start-up logs that the JWKS is reachable", async () => {
      const jwks = serveJwks();
      try {
        const logs = captureLogs();
        const verifier = createVerifierFromConfig(settings({ jwtJwksUrl: jwks.url }), logs.logger);
        expect((await logs.waitFor((l) => l.msg === "JWKS reachable: token keys loaded")).jwksHost).toBe(new URL(jwks.url).host);
        const s = await gateway({ verifier });
        await using _ = s.stack;
        const known = await sign({ alg: "RS256", key: rsa.privateKey, kid: "k1" });
        const unknown = await sign({ alg: "RS256", key: rsa.privateKey, kid: "k-rotated-away" });
        expect(await attempt(s, "header", known)).toBe(101);
        expect(await attempt(s, "query", unknown)).toEqual({ status: 401, code: "ERR_TOKEN_INVALID", reason: "unknown_kid" });
        expect(await attempt(s, "header", unknown)).toEqual({ status: 401, code: "ERR_TOKEN_INVALID", reason: "unknown_kid" });
        for (const t of [known, unknown]) expectNoToken(s.logs.text() + logs.text(), t);
      } finally {
        jwks.stop();
      }
    });

    test("the JWKS endpoint down: fails closed with 503 ERR_TOKEN_KEYS_UNAVAILABLE, Retry-After, and a clear log", async () => {
      const jwks = serveJwks();
      const url = jwks.url;
      jwks.stop();
      const startup = captureLogs();
      const verifier = createVerifierFromConfig(settings({ jwtJwksUrl: url }), startup.logger);
      const atStart = await startup.waitFor((l) => l.msg?.startsWith("JWKS unreachable at start-up") === true);
      expect(atStart).toMatchObject({ level: 50, code: "ERR_TOKEN_KEYS_UNAVAILABLE", jwksHost: new URL(url).host });
      const s = await gateway({ verifier });
      await using _ = s.stack;
      const token = await sign({ alg: "RS256", key: rsa.privateKey, kid: "k1" });
      for (const via of ["header", "query"] as const) {
        expect(await attempt(s, via, token)).toEqual({ status: 503, code: "ERR_TOKEN_KEYS_UNAVAILABLE", reason: "jwks_unavailable" });
      }
      const res = await handshake(s.stack.wsUrl, { Authorization: `Bearer ${token}`, "Device-Id": DEVICE });
      expect(Number(/retry-after: (\d+)/i.exec(res.raw)?.[1])).toBeGreaterThan(0);
      const warned = await s.logs.waitFor((l) => l.reason === "jwks_unavailable" && l.level === 40);
      expect(warned.msg).toContain("token keys unavailable");
      // The HTTP API fails closed the same way: 503 + Retry-After, not 401 (found before: 401).
      const api = await fetch(`${s.stack.gateway.url}/api/message`, {
        method: "POST",
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ content: "x" }),
      });
      expect(api.status).toBe(503);
      expect(Number(api.headers.get("retry-after"))).toBeGreaterThan(0);
      expect(((await api.json()) as { error: { code: string } }).error.code).toBe("ERR_TOKEN_KEYS_UNAVAILABLE");
      expect(s.stack.metrics.connectionsOpened).toBe(0);
      expectNoToken(s.logs.text() + startup.text(), token);
      expect(s.logs.text() + startup.text()).not.toContain(".well-known");
    });
  });

  test("a valid token in the query string upgrades, and no log line at any level carries it", async () => {
    const s = await gateway();
    await using _ = s.stack;
    const token = await s.stack.token(DEVICE);
    const dev = await SimulatedDevice.connect({ url: s.stack.wsUrl, token, deviceId: DEVICE, protocolVersion: 3, identityInQuery: true });
    await dev.hello();
    dev.sendJson({ type: "ping" });
    await dev.waitJson((m) => m.type === "pong");
    dev.close();
    await dev.closed;
    await s.stack.gateway.registry.whenEmpty();
    expect(s.logs.lines().length).toBeGreaterThan(0);
    expectNoToken(s.logs.text(), token);
  });
});

describe("origin policy: checked before any work", () => {
  /** A verifier that counts its calls: an origin refusal must cost none. */
  function counting(): TokenVerifier & { calls: number } {
    const inner = verifierFromConfig(settings({ jwtSecret: TEST_SECRET }));
    const v = {
      calls: 0,
      verify(token: string, expect?: { deviceId?: string }) {
        v.calls++;
        return inner.verify(token, expect);
      },
    };
    return v;
  }

  test("none, own, listed: allowed; any other (also null, another scheme or port, a look-alike host): 403", async () => {
    const verifier = counting();
    const s = await gateway({ verifier, handshake: { allowedOrigins: "https://app.example.com, http://localhost:3000" } });
    await using _ = s.stack;
    const port = s.stack.gateway.port;
    const token = await s.stack.token(DEVICE);
    const go = async (origin: string | undefined) => {
      const res = await handshake(s.stack.wsUrl, {
        Authorization: `Bearer ${token}`,
        "Device-Id": DEVICE,
        ...(origin !== undefined ? { Origin: origin } : {}),
      });
      return res.status === 101 ? 101 : { status: res.status, ...(res.body as { error: { code: string; reason: string } }).error };
    };
    for (const origin of [undefined, `http://127.0.0.1:${port}`, "https://app.example.com", "https://APP.example.com", "http://localhost:3000"]) {
      expect({ origin, got: await go(origin) }).toEqual({ origin, got: 101 });
    }
    const allowedCalls = verifier.calls;
    for (const origin of [
      "https://evil.example.com",
      "null",
      "http://app.example.com",
      "https://app.example.com:8443",
      `http://127.0.0.1.evil.example.com:${port}`,
      `http://127.0.0.1:${port + 1}`,
      "not an origin",
    ]) {
      expect({ origin, got: await go(origin) }).toMatchObject({ origin, got: { status: 403, code: "ERR_ORIGIN_NOT_ALLOWED", reason: "origin_not_allowed" } });
    }
    expect(verifier.calls).toBe(allowedCalls);
  });
});

describe("connection limits and request size", () => {
  test("per client address: over IM_MAX_CONNECTIONS_PER_IP -> 429 with Retry-After; refusals and closes give places back", async () => {
    const s = await gateway({ handshake: { maxConnectionsPerIp: 2 } });
    await using _ = s.stack;
    // Refused handshakes hold no place.
    for (let i = 0; i < 5; i++) expect(await attempt(s, "header", "not.a.token")).toMatchObject({ status: 401 });
    const a = await s.stack.device("aa:00:00:00:00:0a", 3);
    const b = await s.stack.device("aa:00:00:00:00:0b", 3);
    await a.hello();
    await b.hello();
    const third = await handshake(s.stack.wsUrl, { Authorization: `Bearer ${await s.stack.token("aa:00:00:00:00:0c")}`, "Device-Id": "aa:00:00:00:00:0c" });
    expect(third.status).toBe(429);
    expect((third.body as { error: unknown }).error).toMatchObject({ code: "ERR_TOO_MANY_CONNECTIONS", reason: "per_ip_limit" });
    const retryAfter = Number(/retry-after: (\d+)/i.exec(third.raw)?.[1]);
    expect(retryAfter).toBeGreaterThanOrEqual(10);
    expect(retryAfter).toBeLessThanOrEqual(15);
    a.close();
    await a.closed;
    expect(await attempt(s, "header", await s.stack.token("aa:00:00:00:00:0c"), "aa:00:00:00:00:0c")).toBe(101);
    b.close();
    await b.closed;
    // Also the socket of that last handshake, which the client closed right after the 101.
    await s.stack.gateway.registry.whenEmpty();
    const again = await Promise.all([s.stack.device("aa:00:00:00:00:0d", 3), s.stack.device("aa:00:00:00:00:0e", 3)]);
    for (const d of again) await d.hello();
  });

  test("per Device-Id: counted only once the token is verified, so forged tokens naming a device take none of its places; newest-wins reconnects are never refused", async () => {
    const inner = verifierFromConfig(settings({ jwtSecret: TEST_SECRET }));
    const { promise: gate, resolve: openGate } = Promise.withResolvers<void>();
    let held = 0;
    let onHeld: () => void = () => {};
    const token = await mintToken({ secret: TEST_SECRET, deviceId: DEVICE });
    // Forged tokens are held in verification (as a slow key set or a flood would hold them).
    const gated: TokenVerifier = {
      async verify(t, expect) {
        if (t !== token) {
          held++;
          onHeld();
          await gate;
        }
        return inner.verify(t, expect);
      },
    };
    const s = await gateway({ verifier: gated, handshake: { maxConnectionsPerDevice: 2 } });
    await using _ = s.stack;
    const forged = await mintToken({ secret: "forged", deviceId: DEVICE });
    const { promise: allHeld, resolve } = Promise.withResolvers<void>();
    onHeld = () => held === 5 && resolve();
    const floods = Array.from({ length: 5 }, () => handshake(s.stack.wsUrl, { Authorization: `Bearer ${forged}`, "Device-Id": DEVICE }));
    await allHeld;
    // The real device, meanwhile: admitted (before: 429 per_device_limit).
    expect(await attempt(s, "header", token, DEVICE)).toBe(101);
    openGate();
    for (const f of await Promise.all(floods)) expect(f.status).toBe(401);
    await s.stack.gateway.registry.whenEmpty();
    // A device reconnecting over and over: each new connection replaces (closes) the last one,
    // which gives its place back at once.
    let last: SimulatedDevice | undefined;
    for (let i = 0; i < 6; i++) {
      const dev = await s.stack.device(DEVICE, 3);
      await dev.hello();
      if (last !== undefined) expect((await last.closed).code).toBe(4000);
      last = dev;
    }
  });

  test("a URL over 8 KiB or headers over the limit -> 431 before any work; Bun itself answers 431 past 16 KiB of head", async () => {
    const s = await gateway({ handshake: { maxHeaderBytes: 4096 } });
    await using _ = s.stack;
    const token = await s.stack.token(DEVICE);
    const longUrl = await handshake(`${s.stack.wsUrl}?pad=${"x".repeat(8200)}`, { Authorization: `Bearer ${token}`, "Device-Id": DEVICE });
    expect(longUrl.status).toBe(431);
    expect((longUrl.body as { error: unknown }).error).toMatchObject({ code: "ERR_REQUEST_TOO_LARGE", reason: "url_too_long" });
    const bigHeaders = await handshake(s.stack.wsUrl, { Authorization: `Bearer ${token}`, "Device-Id": DEVICE, "X-Pad": "x".repeat(5000) });
    expect(bigHeaders.status).toBe(431);
    expect((bigHeaders.body as { error: unknown }).error).toMatchObject({ code: "ERR_REQUEST_TOO_LARGE", reason: "headers_too_large" });
    // Over Bun's own limit (16 KiB of request head) the request never reaches the gateway:
    // Bun answers a bare 431 and closes the connection.
    const huge = await handshake(s.stack.wsUrl, { Authorization: `Bearer ${token}`, "Device-Id": DEVICE, "X-Pad": "x".repeat(17 * 1024) });
    expect(huge.status).toBe(431);
    expect(s.stack.metrics.connectionsOpened).toBe(0);
    // Just under the limits: fine.
    expect(
      (await handshake(`${s.stack.wsUrl}?pad=${"x".repeat(7000)}`, { Authorization: `Bearer ${token}`, "Device-Id": DEVICE, "X-Pad": "x".repeat(3000) }))
        .status,
    ).toBe(101);
  });

  test("permessage-deflate stays off: an offer of it is answered without Sec-WebSocket-Extensions", async () => {
    const s = await gateway();
    await using _ = s.stack;
    const res = await handshake(s.stack.wsUrl, {
      Authorization: `Bearer ${await s.stack.token(DEVICE)}`,
      "Device-Id": DEVICE,
      "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    });
    expect(res.status).toBe(101);
    expect(res.raw.toLowerCase()).not.toContain("sec-websocket-extensions");
  });
});
