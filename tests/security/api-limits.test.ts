import { describe, expect, test } from "bun:test";
import { startStack } from "../helpers/start-stack";

/**
 * Found before: 5,000 POST /api/message broadcasts (200 at once) were all answered 200 in
 * 4.9 s, the gateway's RSS went from 112 to 608 MB, and every device got 5,000 alerts.
 */

async function post(url: string, token: string, body: unknown): Promise<{ status: number; retryAfter: string | null; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/api/message`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: JSON.stringify(body) });
  return { status: res.status, retryAfter: res.headers.get("retry-after"), json: (await res.json()) as Record<string, unknown> };
}

describe("the HTTP API's budgets", () => {
  test("a burst of different broadcasts: one goes out per interval, the rest get 429 with Retry-After; devices get one alert", async () => {
    await using stack = await startStack({ gateway: { apiLimits: { perTokenPerSecond: 1e6, perIpPerSecond: 1e6, broadcastIntervalMs: 60_000 } } });
    const dev = await stack.device("a1:00:00:00:00:01", 3);
    await dev.hello();
    const token = await stack.apiToken();
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => post(stack.gateway.url, token, { content: `news ${i}` })));
    const ok = results.filter((r) => r.status === 200);
    expect(ok.length).toBe(1);
    const refused = results.filter((r) => r.status === 429);
    expect(refused.length).toBe(299);
    expect(refused.every((r) => Number(r.retryAfter) >= 1 && (r.json.error as { code: string }).code === "ERR_RATE_LIMITED")).toBe(true);
    await dev.waitJson((m) => m.type === "alert" && m.status === "message");
    // The same content again joins the broadcast under way: 200, the same id, no new alert.
    const sent = results.findIndex((r) => r.status === 200);
    const same = await Promise.all(Array.from({ length: 50 }, () => post(stack.gateway.url, token, { content: `news ${sent}` })));
    for (const r of same) expect({ status: r.status, ...r.json }).toMatchObject({ status: 200, id: ok[0]!.json.id, coalesced: true });
    expect(dev.received.filter((r) => r.kind === "json" && r.msg.type === "alert").length).toBe(1);
  });

  test("per token and per address: past the burst 429 with Retry-After; another client is not held back", async () => {
    await using stack = await startStack({ gateway: { apiLimits: { perTokenPerSecond: 5, perIpPerSecond: 1000, broadcastIntervalMs: 0 } } });
    const dev = await stack.device("a1:00:00:00:00:02", 3);
    await dev.hello();
    const busy = await stack.apiToken();
    const calm = await stack.apiToken(["a1:00:00:00:00:02"]);
    const statuses = [];
    for (let i = 0; i < 30; i++) statuses.push((await post(stack.gateway.url, busy, { content: `to you ${i}`, device_id: "a1:00:00:00:00:02" })).status);
    // The burst is twice the rate: 10 pass, then the bucket refills 5 per second.
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
    expect(statuses.filter((s) => s === 200).length).toBeLessThan(15);
    expect(statuses.at(-1)).toBe(429);
    expect((await post(stack.gateway.url, calm, { content: "hello", device_id: "a1:00:00:00:00:02" })).status).toBe(200);
    expect(stack.metrics.apiRateLimited).toBeGreaterThan(10);
  });

  test("per address: a client cycling through tokens is held by its address's limit", async () => {
    await using stack = await startStack({ gateway: { apiLimits: { perTokenPerSecond: 1000, perIpPerSecond: 5, broadcastIntervalMs: 0 } } });
    const statuses = [];
    for (let i = 0; i < 30; i++) {
      const res = await fetch(`${stack.gateway.url}/api/status`, { headers: { authorization: `Bearer not-a-token-${i}` } });
      statuses.push(res.status);
    }
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(10);
  });
});
