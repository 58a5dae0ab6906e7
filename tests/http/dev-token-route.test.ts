import { describe, expect, test } from "bun:test";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { DEFAULT_JWT_SECRET } from "../../src/config/config-schema";
import { createDevTokenRoute, DEV_TOKEN_PATH, type DevTokenRouteOptions } from "../../src/http/dev-token-route";
import { LogCapture, serveRoutes } from "./helpers";

const verifier = createTokenVerifier({ secret: DEFAULT_JWT_SECRET });

function serveDevToken(overrides: Partial<DevTokenRouteOptions> = {}) {
  const log = new LogCapture("debug");
  const route = createDevTokenRoute({ enabled: true, secret: DEFAULT_JWT_SECRET, logger: log.logger, ...overrides });
  const server = serveRoutes({ [DEV_TOKEN_PATH]: (req) => route(req) });
  return { log, server, url: `http://127.0.0.1:${server.port}${DEV_TOKEN_PATH}` };
}

describe("GET /api/dev-token", () => {
  test("enabled: a token that verifies with the secret, for a random 02:xx device id", async () => {
    const { server, url, log } = serveDevToken();
    using _ = server;
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const body = (await res.json()) as { token: string; device_id: string };
    expect(Object.keys(body).sort()).toEqual(["device_id", "token"]);
    expect(body.device_id).toMatch(/^02(:[0-9a-f]{2}){5}$/);
    const verified = await verifier.verify(body.token, { deviceId: body.device_id });
    expect(verified.deviceId).toBe(body.device_id);
    expect(verified.subject).toBe(body.device_id);
    // Fresh ids: two calls, two devices.
    const again = (await (await fetch(url)).json()) as { device_id: string };
    expect(again.device_id).not.toBe(body.device_id);

    const issued = log.find("dev-token: development token issued");
    expect(issued).toHaveLength(2);
    expect(issued[0]).toMatchObject({ level: 30, deviceId: body.device_id, ttlSeconds: 3600 });
    expect(log.text).not.toContain(body.token);
  });

  test("the asked device id is bound (lower-cased); the ttl is honoured; a bad id gets 400", async () => {
    const { server, url } = serveDevToken({ ttlSeconds: 120 });
    using _ = server;
    const body = (await (await fetch(`${url}?device_id=AA:BB:CC:00:11:22`)).json()) as { token: string; device_id: string };
    expect(body.device_id).toBe("aa:bb:cc:00:11:22");
    expect((await verifier.verify(body.token, { deviceId: "aa:bb:cc:00:11:22" })).deviceId).toBe("aa:bb:cc:00:11:22");
    const payload = JSON.parse(Buffer.from(body.token.split(".")[1]!, "base64url").toString()) as { iat: number; exp: number };
    expect(payload.exp - payload.iat).toBe(120);

    const bad = await fetch(`${url}?device_id=${encodeURIComponent("<script>")}`);
    expect(bad.status).toBe(400);
    expect((await fetch(url, { method: "POST" })).status).toBe(405);
  });

  test("disabled: 404, nothing issued", async () => {
    const { server, url, log } = serveDevToken({ enabled: false });
    using _ = server;
    const res = await fetch(url);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("ERR_NOT_FOUND");
    expect(log.lines()).toHaveLength(0);
  });
});
