import { describe, expect, test } from "bun:test";
import { createServer } from "node:http2";
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AiService, type DeviceEvent, type RelayRequest, RelayResponseSchema, type ServerEvent, ServerEventSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { startStack } from "../helpers/start-stack";

/**
 * An AI service that answers heartbeats until frozen; frozen, it stops reading its streams
 * without closing them (HTTP/2 pings still answered): the stuck-process failure mode.
 */
async function freezableAi() {
  const state = { frozen: false };
  const never = new Promise<void>(() => {});
  const answer = (ev: DeviceEvent): ServerEvent | undefined =>
    ev.event.case === "heartbeat" ? create(ServerEventSchema, { sessionKey: ev.sessionKey, event: ev.event }) : undefined;
  const impl: Partial<ServiceImpl<typeof AiService>> = {
    async *converse(requests) {
      for await (const ev of requests) {
        if (state.frozen) await never;
        const out = answer(ev);
        if (out) yield out;
      }
    },
    async *relay(requests: AsyncIterable<RelayRequest>) {
      for await (const req of requests) {
        if (state.frozen) await never;
        const events = req.events.flatMap((e) => answer(e) ?? []);
        if (events.length) yield create(RelayResponseSchema, { events });
      }
    },
  };
  const server = createServer(connectNodeAdapter({ routes: (r) => r.service(AiService, impl) }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      state.frozen = true;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())).then(() => undefined),
    server,
  };
}

const HEARTBEAT_MS = 1000;

for (const transport of ["relay", "converse"] as const)
  describe(`${transport}: heartbeats`, () => {
    test("an AI service that stops reading (without closing) is detected within two heartbeat intervals", async () => {
      const ai = await freezableAi();
      try {
        await using stack = await startStack({
          transport,
          ai: false,
          targets: [{ host: "127.0.0.1", port: ai.port }],
          upstream: { heartbeatMs: HEARTBEAT_MS, maxConnections: 1, reconnectBaseMs: 60_000, reconnectMaxMs: 60_000 },
        });
        const dev = await stack.device("ad:00:00:00:00:01", 3);
        await dev.hello();
        dev.sendJson({ type: "ping" });
        await dev.waitJson((m) => m.type === "pong");
        // Let one heartbeat round pass while healthy: no alert.
        expect(stack.upstream.ready()).toBe(true);
        const frozenAt = performance.now();
        ai.freeze();
        const alert = await dev.waitJson((m) => m.type === "alert", 5 * HEARTBEAT_MS);
        const detectedMs = performance.now() - frozenAt;
        expect(alert.status).toBe("error");
        expect(detectedMs).toBeLessThanOrEqual(2 * HEARTBEAT_MS + 300);
        expect(dev.isOpen).toBe(true);
        expect(stack.metrics.upstreamStreamFailures).toBeGreaterThan(0);
      } finally {
        ai.server.close();
      }
    }, 20_000);
  });

describe("relay: an AI service that does not keep up", () => {
  test("the stream's backlog stays bounded: the oldest audio is dropped and counted, control events kept, the device unaffected", async () => {
    const ai = await freezableAi();
    try {
      await using stack = await startStack({
        ai: false,
        targets: [{ host: "127.0.0.1", port: ai.port }],
        // Heartbeats far away: this is the slow AI, not the dead one.
        upstream: { heartbeatMs: 60_000, maxConnections: 1, maxPendingEvents: 1000 },
      });
      const dev = await stack.device("ad:00:00:00:00:02", 3);
      await dev.hello();
      ai.freeze();
      // 5,000 frames of 1 KiB: far more than HTTP/2's flow-control window lets through to a
      // service that has stopped reading.
      const frame = new Uint8Array(1024);
      for (let i = 0; i < 5000; i++) dev.sendAudio(frame);
      dev.sendJson({ type: "ping" });
      await dev.waitJson((m) => m.type === "pong", 10_000);
      expect(stack.metrics.dropped["upstream-backlog"]).toBeGreaterThan(3000);
      expect(stack.metrics.framesIn).toBe(5000);
      expect(dev.isOpen).toBe(true);
    } finally {
      ai.server.close();
    }
  }, 20_000);
});

describe("audio the device cannot take", () => {
  test("an AI packet over the device's frame limit (v3: 65535 bytes) is dropped and counted; the next one plays", async () => {
    const impl: Partial<ServiceImpl<typeof AiService>> = {
      async *converse(requests) {
        for await (const ev of requests) {
          if (ev.event.case === "heartbeat") yield create(ServerEventSchema, { event: ev.event });
          if (ev.event.case === "chat") {
            yield create(ServerEventSchema, { event: { case: "audio", value: { opus: new Uint8Array(70_000) } } });
            yield create(ServerEventSchema, { event: { case: "audio", value: { opus: new Uint8Array([1, 2, 3]) } } });
          }
        }
      },
    };
    const server = createServer(connectNodeAdapter({ routes: (r) => r.service(AiService, impl) }));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      await using stack = await startStack({ transport: "converse", ai: false, targets: [{ host: "127.0.0.1", port: (server.address() as { port: number }).port }], gateway: { maxFrameBytes: 128 * 1024 } });
      const dev = await stack.device("ad:00:00:00:00:03", 3);
      await dev.hello();
      dev.sendJson({ type: "chat", text: "send me something big" });
      const a = await dev.waitFor((r) => r.kind === "audio");
      expect(a.kind === "audio" && [...a.payload]).toEqual([1, 2, 3]);
      expect(stack.metrics.dropped["upstream-bad-event"]).toBe(1);
      expect(dev.isOpen).toBe(true);
    } finally {
      server.close();
    }
  });
});
