import { describe, expect, test } from "bun:test";
import { startAiServer } from "../../src/ai/start-ai-server";
import { startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";

async function readyStatus(url: string): Promise<number> {
  return (await fetch(`${url}/ready`)).status;
}

/** Polls /ready as a load balancer would, until it reports `want`. */
async function pollReady(url: string, want: number): Promise<void> {
  let last: number | undefined;
  await until(
    async () => {
      last = await readyStatus(url);
      return last === want;
    },
    { what: () => `/ready to answer ${want} (last: ${last})`, timeoutMs: 5000, intervalMs: 20 },
  );
}

for (const transport of ["relay", "converse"] as const)
  describe(`${transport}: the AI service goes away and comes back`, () => {
    test("every device keeps its socket, hears the alerts, and its session resumes on the restarted AI service", async () => {
      await using stack = await startStack({ transport, upstream: { heartbeatMs: 200 } });
      const port = stack.ai!.port;
      const devices = await Promise.all(
        Array.from({ length: 12 }, (_, i) => stack.device(`ee:00:00:00:00:${(i + 16).toString(16)}`, ((i % 3) + 1) as 1 | 2 | 3)),
      );
      await Promise.all(devices.map((d) => d.hello()));
      for (const [i, d] of devices.entries()) {
        d.sendJson({ type: "listen", state: "start", mode: "realtime" });
        d.sendAudio(new Uint8Array([1, i]));
      }
      await Promise.all(devices.map((d) => d.waitFor((r) => r.kind === "audio")));
      expect(await readyStatus(stack.gateway.url)).toBe(200);

      await stack.ai!.close();
      for (const down of await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert")))) {
        expect(down).toMatchObject({ status: "error", emotion: "sad" });
        expect(typeof down.message).toBe("string");
      }
      // Readiness follows the AI service: a load balancer polling /ready steers new devices away.
      await pollReady(stack.gateway.url, 503);

      await using revived = await startAiServer({ port });
      for (const back of await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "info")))) {
        expect(back.emotion).toBe("happy");
      }
      // A resumed session starts with its listen state lost: the device re-sends it, as the
      // firmware does after an alert.
      for (const [i, d] of devices.entries()) {
        d.sendJson({ type: "listen", state: "start", mode: "realtime" });
        d.sendAudio(new Uint8Array([2, i]));
      }
      await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === 2 && r.payload[1] === i)));
      expect(devices.every((d) => d.isOpen)).toBe(true);
      expect(stack.metrics.connectionsOpened).toBe(12);
      expect(stack.metrics.upstreamReconnects).toBeGreaterThan(0);
      await pollReady(stack.gateway.url, 200);
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
