import { describe, expect, test } from "bun:test";
import { startAiServer } from "../../src/ai/start-ai-server";
import { startStack } from "../helpers/start-stack";

async function readyStatus(url: string): Promise<number> {
  return (await fetch(`${url}/ready`)).status;
}

for (const transport of ["relay", "converse"] as const)
  describe(`${transport}: the AI service goes away and comes back`, () => {
  test("the device keeps its socket, hears an alert, and its session resumes on the restarted AI service", async () => {
    await using stack = await startStack({ transport, upstream: { heartbeatMs: 200 } });
    const port = stack.ai!.port;
    const dev = await stack.device("ee:00:00:00:00:01", 2);
    await dev.hello();
    dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
    dev.sendAudio(new Uint8Array([1]));
    await dev.waitFor((r) => r.kind === "audio");
    expect(await readyStatus(stack.gateway.url)).toBe(200);

    await stack.ai!.close();
    const down = await dev.waitJson((m) => m.type === "alert");
    expect(down).toMatchObject({ status: "error", emotion: "sad" });
    expect(typeof down.message).toBe("string");
    // Readiness follows the AI service: a load balancer steers new devices elsewhere.
    for (let i = 0; i < 100 && (await readyStatus(stack.gateway.url)) === 200; i++) await Bun.sleep(20);
    expect(await readyStatus(stack.gateway.url)).toBe(503);

    await using revived = await startAiServer({ port });
    const back = await dev.waitJson((m) => m.type === "alert" && m.status === "info");
    expect(back.emotion).toBe("happy");
    // The resumed session was opened with its listen state lost: the device re-sends it, as
    // the firmware does after an alert.
    dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
    dev.sendAudio(new Uint8Array([2]));
    await dev.waitFor((r) => r.kind === "audio" && r.payload[0] === 2);
    expect(stack.metrics.upstreamReconnects).toBeGreaterThan(0);
    for (let i = 0; i < 100 && (await readyStatus(stack.gateway.url)) !== 200; i++) await Bun.sleep(20);
    expect(await readyStatus(stack.gateway.url)).toBe(200);
    expect(revived.port).toBe(port);
  });

  test("with no AI service at all the gateway still answers hello, alerts, and is not ready", async () => {
    await using stack = await startStack({ transport, ai: false, targets: [{ host: "127.0.0.1", port: 1 }], waitReady: false });
    expect(await readyStatus(stack.gateway.url)).toBe(503);
    const dev = await stack.device("ee:00:00:00:00:02");
    await dev.hello();
    const alert = await dev.waitJson((m) => m.type === "alert");
    expect(alert.status).toBe("error");
    // Audio sent meanwhile is bounded (the last 2 s at most), counted when dropped.
    dev.sendJson({ type: "listen", state: "start", mode: "manual" });
    for (let i = 0; i < 100; i++) dev.sendAudio(new Uint8Array([i]));
    dev.sendJson({ type: "ping" });
    await dev.waitJson((m) => m.type === "pong");
    expect(stack.metrics.dropped["upstream-backlog"]).toBe(100 - Math.ceil(2000 / 60));
  });
});
