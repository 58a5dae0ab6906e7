import { describe, expect, test } from "bun:test";
import { createServer } from "node:http2";
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AiService, type DeviceEvent, type RelayRequest, RelayResponseSchema, type ServerEvent, ServerEventSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { startStack } from "../helpers/start-stack";
import { within } from "../helpers/until";

/**
 * An AI service that answers heartbeats until frozen; frozen, it stops reading its streams
 * without closing them (HTTP/2 pings still answered): the stuck-process failure mode.
 *
 * It counts the heartbeats of the gateway's session streams (Relay's stream-level ones, and
 * those of Converse streams that opened with a Hello; not the pool's probes), and can freeze
 * right after answering one: the gateway's heartbeat clock then has a known phase.
 */
async function freezableAi() {
  const state = { frozen: false, streamHeartbeats: 0 };
  let freezeAfter: { heartbeat: number; frozen: (atMs: number) => void } | undefined;
  const never = new Promise<void>(() => {});
  /** A session stream's heartbeat arrived: count it, and freeze if told to after it. */
  const streamHeartbeat = () => {
    state.streamHeartbeats++;
    if (freezeAfter !== undefined && state.streamHeartbeats >= freezeAfter.heartbeat) {
      state.frozen = true;
      freezeAfter.frozen(performance.now());
      freezeAfter = undefined;
    }
  };
  const answer = (ev: DeviceEvent): ServerEvent | undefined =>
    ev.event.case === "heartbeat" ? create(ServerEventSchema, { sessionKey: ev.sessionKey, event: ev.event }) : undefined;
  const impl: Partial<ServiceImpl<typeof AiService>> = {
    async *converse(requests) {
      let session = false;
      for await (const ev of requests) {
        if (state.frozen) await never;
        if (ev.event.case === "hello") session = true;
        const out = answer(ev);
        if (out && session) streamHeartbeat();
        if (out) yield out;
      }
    },
    async *relay(requests: AsyncIterable<RelayRequest>) {
      for await (const req of requests) {
        if (state.frozen) await never;
        const events = req.events.flatMap((e) => answer(e) ?? []);
        for (const e of events) if (e.sessionKey === 0) streamHeartbeat();
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
    /** Session-stream heartbeats answered so far. */
    streamHeartbeats: () => state.streamHeartbeats,
    /** Freezes right after answering the `n`-th session-stream heartbeat; resolves with
     * `performance.now()` then. */
    freezeAfterHeartbeat(n: number): Promise<number> {
      const { promise, resolve } = Promise.withResolvers<number>();
      freezeAfter = { heartbeat: n, frozen: resolve };
      return promise;
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
        // One heartbeat round passes while healthy: the AI answers one heartbeat after this
        // point, and the next one arriving proves the gateway took that answer (it sends a new
        // heartbeat only once the last one was answered). Then the AI freezes, right after
        // answering: the gateway's next heartbeat, one interval later, goes unanswered.
        const healthyRound = ai.streamHeartbeats() + 2;
        const frozenAt = await within(ai.freezeAfterHeartbeat(healthyRound), 10 * HEARTBEAT_MS, "a heartbeat round while the AI is healthy");
        expect(dev.received.filter((r) => r.kind === "json" && r.msg.type === "alert")).toEqual([]);
        expect(stack.metrics.upstreamStreamFailures).toBe(0);
        expect(stack.upstream.ready()).toBe(true);

        const alert = await dev.waitJson((m) => m.type === "alert", 10 * HEARTBEAT_MS);
        const detectedMs = performance.now() - frozenAt;
        expect(alert.status).toBe("error");
        // Frozen right after an answer: the next heartbeat (one interval on) goes unanswered
        // and the one after that (two intervals on) finds it so. The slack is for timers late
        // under load; it stays below a third interval, so detection one round late still fails.
        expect(detectedMs).toBeLessThan(2.75 * HEARTBEAT_MS);
        expect(dev.isOpen).toBe(true);
        expect(stack.metrics.upstreamStreamFailures).toBeGreaterThan(0);
      } finally {
        ai.server.close();
      }
    }, 30_000);
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
      await using stack = await startStack({
        transport: "converse",
        ai: false,
        targets: [{ host: "127.0.0.1", port: (server.address() as { port: number }).port }],
        gateway: { maxFrameBytes: 128 * 1024 },
      });
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
