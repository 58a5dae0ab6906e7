import { describe, expect, test } from "bun:test";
import { ErrorCode } from "../../src/errors";
import { HTTP_STATUS } from "../../src/http/error-response";
import { startStack } from "../helpers/start-stack";

const CODES = new Set<string>(Object.values(ErrorCode));

describe("one error model at the HTTP edge", () => {
  test("every code has one HTTP status, an error status", () => {
    for (const code of Object.values(ErrorCode)) expect(HTTP_STATUS[code]).toBeGreaterThanOrEqual(400);
  });

  test("every refusal of every route is {error:{code,message}} from the closed set, with its code's status", async () => {
    await using stack = await startStack({
      gateway: { maxJsonBytes: 1024, apiLimits: { perTokenPerSecond: 1e6, perIpPerSecond: 1e6, broadcastIntervalMs: 60_000 } },
    });
    const api = await stack.apiToken();
    const device = await stack.token("e0:00:00:00:00:01");
    const idle = await stack.device("e0:00:00:00:00:02", 3);
    const auth = (t: string) => ({ authorization: `Bearer ${t}` });
    const post = (path: string, headers: Record<string, string>, body: string | FormData) =>
      fetch(`${stack.gateway.url}${path}`, { method: "POST", headers, body });
    const png = new Blob([new Uint8Array([1, 2, 3])], { type: "text/plain" });
    const notImage = new FormData();
    notImage.set("image", png, "x.txt");
    const cases: [string, Promise<Response>, string][] = [
      ["unknown route", fetch(`${stack.gateway.url}/nope`), ErrorCode.NotFound],
      ["wrong method", fetch(`${stack.gateway.url}/api/message`), ErrorCode.MethodNotAllowed],
      ["no token", post("/api/message", {}, "{}"), ErrorCode.TokenMissing],
      ["a bad token", post("/api/message", auth("nope"), "{}"), ErrorCode.TokenInvalid],
      ["a device token on the API", post("/api/message", auth(device), '{"content":"x"}'), ErrorCode.Forbidden],
      ["bad JSON", post("/api/message", auth(api), "{"), ErrorCode.MessageMalformed],
      ["a body too large", post("/api/message", auth(api), JSON.stringify({ content: "x".repeat(5000) })), ErrorCode.MessageTooLarge],
      ["not an image", post("/api/image", auth(api), notImage), ErrorCode.UnsupportedMediaType],
      ["a device connected nowhere", post("/api/message", auth(api), '{"content":"x","device_id":"e0:00:00:00:00:99"}'), ErrorCode.DeviceNotConnected],
      ["a device without a session yet", post("/api/message", auth(api), '{"content":"x","device_id":"e0:00:00:00:00:02"}'), ErrorCode.DeviceNotReady],
      ["an unknown push type", post("/api/devices/e0:00:00:00:00:02/messages", auth(api), '{"type":"nope"}'), ErrorCode.MessageUnknownType],
      [
        "a push to a device connected nowhere",
        post("/api/devices/e0:00:00:00:00:99/messages", auth(api), '{"type":"alert","status":"a","message":"b","emotion":"c"}'),
        ErrorCode.DeviceNotConnected,
      ],
      ["provisioning without a Device-Id", post("/xiaozhi/ota/", {}, "{}"), ErrorCode.DeviceIdMissing],
    ];
    for (const [name, pending, code] of cases) {
      const res = await pending;
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      expect({ name, status: res.status, code: body.error?.code, message: typeof body.error?.message }).toEqual({
        name,
        status: HTTP_STATUS[code as ErrorCode],
        code,
        message: "string",
      });
      expect(CODES.has(body.error!.code!)).toBe(true);
    }
    // A second broadcast within the interval.
    await post("/api/message", auth(api), '{"content":"one"}');
    const again = await post("/api/message", auth(api), '{"content":"two"}');
    expect(again.status).toBe(HTTP_STATUS[ErrorCode.RateLimited]);
    expect(((await again.json()) as { error: { code: string } }).error.code).toBe(ErrorCode.RateLimited);
    idle.close();
  });
});
