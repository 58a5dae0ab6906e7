import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mintToken } from "../../src/auth/mint-token";
import { ROUTE_RULES, type RouteRule, type RouteScope } from "../../src/http/route-scopes";
import type { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { handshake, type Stack, startStack, TEST_SECRET } from "../helpers/start-stack";

/**
 * Every route of the scope table (src/http/route-scopes.ts), called with every kind of token.
 * Found before: a device token (the kind OTA hands every device) could broadcast, push an
 * alert or an MCP call to another device and start its conversation turns.
 */

const A = "5c:00:00:00:00:0a";
const B = "5c:00:00:00:00:0b";
const METRICS_TOKEN = "scrape-me-0123456789";

type Kind = "none" | "forged" | "device A" | "device B" | "client" | "api" | "api for A" | "api for B" | "metrics token";
const KINDS: readonly Kind[] = ["none", "forged", "device A", "device B", "client", "api", "api for A", "api for B", "metrics token"];

let stack: Stack;
let devA: SimulatedDevice;
const tokens = new Map<Kind, string | undefined>();

beforeAll(async () => {
  stack = await startStack({ gateway: { metricsAccess: { token: METRICS_TOKEN } } });
  devA = await stack.device(A, 3);
  await devA.hello();
  tokens.set("none", undefined);
  tokens.set("forged", await mintToken({ secret: "not-the-secret", claims: { scope: "api" } }));
  tokens.set("device A", await stack.token(A));
  tokens.set("device B", await stack.token(B));
  tokens.set("client", await mintToken({ secret: TEST_SECRET, subject: "a tool" }));
  tokens.set("api", await stack.apiToken());
  tokens.set("api for A", await stack.apiToken([A]));
  tokens.set("api for B", await stack.apiToken([B]));
  tokens.set("metrics token", METRICS_TOKEN);
});

afterAll(async () => {
  await stack[Symbol.asyncDispose]();
});

/** What each scope answers each kind of token, for a request about device A. */
const EXPECTED: Record<RouteScope, (k: Kind) => number> = {
  public: () => 200,
  // The summary for anyone; a token that is present must verify.
  "public-summary": (k) => (k === "forged" || k === "metrics token" ? 401 : 200),
  provisioning: () => 200,
  // The built-in development secret is not in use here.
  debug: () => 404,
  "device-socket": (k) => ({ none: 401, forged: 401, "metrics token": 401, "device B": 403 })[k as string] ?? 101,
  "device-or-api": (k) => ({ none: 401, forged: 401, "metrics token": 401, "device B": 401, "api for B": 403 })[k as string] ?? 200,
  api: (k) => ({ none: 401, forged: 401, "metrics token": 401, api: 200, "api for A": 200 })[k as string] ?? 403,
  metrics: (k) => ({ none: 401, forged: 401, api: 200, "metrics token": 200 })[k as string] ?? 403,
};

function auth(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

function png(): Blob {
  return new Blob([new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0])], { type: "image/png" });
}

/** Calls `rule` about device A with `token`; the status it answered. */
async function call(rule: RouteRule, token: string | undefined): Promise<number> {
  const base = stack.gateway.url;
  switch (rule.path) {
    case "/ws":
      return (await handshake(stack.wsUrl, { ...auth(token), "Device-Id": A, "Protocol-Version": "3" })).status;
    case "/api/message":
      return (await fetch(`${base}/api/message`, { method: "POST", headers: auth(token), body: JSON.stringify({ content: "hi", device_id: A }) })).status;
    case "/api/image": {
      const form = new FormData();
      form.set("image", png(), "x.png");
      form.set("device_id", A);
      return (await fetch(`${base}/api/image`, { method: "POST", headers: auth(token), body: form })).status;
    }
    case "/api/vision": {
      const form = new FormData();
      form.set("question", "what is this");
      form.set("file", png(), "x.png");
      return (await fetch(`${base}/api/vision`, { method: "POST", headers: { ...auth(token), "Device-Id": A }, body: form })).status;
    }
    case "/api/devices/{id}/messages":
      return (
        await fetch(`${base}/api/devices/${encodeURIComponent(A)}/messages`, {
          method: "POST",
          headers: auth(token),
          body: JSON.stringify({ type: "alert", status: "info", message: "hi", emotion: "happy" }),
        })
      ).status;
    case "/xiaozhi/ota/":
      return (await fetch(`${base}/xiaozhi/ota/`, { method: "POST", headers: { ...auth(token), "Device-Id": B, "Client-Id": "c" }, body: "{}" })).status;
    default:
      if (rule.method !== "GET") throw new Error(`no request for ${rule.method} ${rule.path}: teach this test how to call it`);
      return (await fetch(`${base}${rule.path}`, { headers: auth(token) })).status;
  }
}

describe("every route answers every kind of token as its scope says", () => {
  for (const rule of ROUTE_RULES) {
    test(`${rule.method} ${rule.path} (${rule.scope})`, async () => {
      const got: Record<string, number> = {};
      const want: Record<string, number> = {};
      for (const kind of KINDS) {
        got[kind] = await call(rule, tokens.get(kind));
        want[kind] = EXPECTED[rule.scope](kind);
      }
      expect(got).toEqual(want);
    });
  }
});

describe("what a broadcast and the status need", () => {
  test("a broadcast needs an operator token that is not limited to some devices", async () => {
    const post = async (token: string | undefined) =>
      (await fetch(`${stack.gateway.url}/api/message`, { method: "POST", headers: auth(token), body: JSON.stringify({ content: "to all" }) })).status;
    expect(await post(tokens.get("api"))).toBe(200);
    expect(await post(tokens.get("api for A"))).toBe(403);
    expect(await post(tokens.get("device A"))).toBe(403);
    expect(await post(tokens.get("client"))).toBe(403);
  });

  test("/api/status: a summary for anyone, instances and hosts only for an operator", async () => {
    const anon = (await (await fetch(`${stack.gateway.url}/api/status`)).json()) as Record<string, unknown>;
    expect(Object.keys(anon).sort()).toEqual(["connectionCount", "status"]);
    const device = (await (await fetch(`${stack.gateway.url}/api/status`, { headers: auth(tokens.get("device A")) })).json()) as Record<string, unknown>;
    expect(Object.keys(device).sort()).toEqual(["connectionCount", "status"]);
    const op = (await (await fetch(`${stack.gateway.url}/api/status`, { headers: auth(tokens.get("api")) })).json()) as Record<string, unknown>;
    expect(op.cluster).toBeDefined();
    expect(op.sessionsByProtocol).toBeDefined();
  });

  test("a device token cannot push to, or run an MCP call on, another device", async () => {
    const devB = await stack.device(B, 3);
    await devB.hello();
    const push = await fetch(`${stack.gateway.url}/api/devices/${B}/messages`, {
      method: "POST",
      headers: auth(tokens.get("device A")),
      body: JSON.stringify({
        type: "mcp",
        payload: { jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "self.audio_speaker.set_volume", arguments: { volume: 100 } } },
      }),
    });
    expect(push.status).toBe(403);
    expect(((await push.json()) as { error: { code: string } }).error.code).toBe("ERR_FORBIDDEN");
    expect(devB.received.some((r) => r.kind === "json" && r.msg.type === "mcp" && JSON.stringify(r.msg).includes("tools/call"))).toBe(false);
    devB.close();
  });
});
