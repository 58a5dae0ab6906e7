import { describe, expect, test } from "bun:test";
import { createServer } from "node:http2";
import { create } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AiService, type RelayRequest, type RelayResponse, RelayResponseSchema, ServerEventSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { silentLogger } from "../../src/log";
import { Metrics } from "../../src/metrics";
import { createUpstream } from "../../src/upstream/create-upstream";
import type { SessionHello, UpstreamSink } from "../../src/upstream/upstream";

/** An AI service that records every Relay batch it receives and answers heartbeats. */
async function recordingAi() {
  const batches: number[] = [];
  const audioBySession = new Map<number, number[]>();
  const arrived = { notify: () => {} };
  const impl: Partial<ServiceImpl<typeof AiService>> = {
    async *converse(requests) {
      for await (const ev of requests) if (ev.event.case === "heartbeat") yield create(ServerEventSchema, { event: ev.event });
    },
    async *relay(requests: AsyncIterable<RelayRequest>): AsyncGenerator<RelayResponse> {
      for await (const req of requests) {
        batches.push(req.events.length);
        const out = [];
        for (const ev of req.events) {
          if (ev.event.case === "heartbeat") out.push(create(ServerEventSchema, { sessionKey: ev.sessionKey, event: ev.event }));
          if (ev.event.case === "audio") {
            const list = audioBySession.get(ev.sessionKey) ?? [];
            list.push(ev.event.value.seq);
            audioBySession.set(ev.sessionKey, list);
          }
        }
        arrived.notify();
        if (out.length) yield create(RelayResponseSchema, { events: out });
      }
    },
  };
  const server = createServer(connectNodeAdapter({ routes: (r) => r.service(AiService, impl) }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    batches,
    audioBySession,
    /** Resolves once `pred` holds, re-checked on every batch. */
    async until(pred: () => boolean, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (!pred()) {
        if (Date.now() > deadline) throw new Error(`timed out; batches: ${batches.join(",")}`);
        const { promise, resolve } = Promise.withResolvers<void>();
        arrived.notify = resolve;
        setTimeout(resolve, 100);
        await promise;
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        setTimeout(resolve, 500);
      }),
  };
}

const nullSink: UpstreamSink = { onAudio() {}, onMessage() {}, onClose() {}, onStatus() {}, onFatal() {} };

function hello(i: number): SessionHello {
  return {
    sessionId: `s${i}`,
    deviceId: `d${i}`,
    clientId: "",
    userId: "",
    claims: {},
    protocolVersion: 3,
    audioParams: { format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 },
    features: {},
    transport: "websocket",
  };
}

/** The gateway's Relay upstream on one connection to the AI service at `port`. */
function relayTo(port: number, metrics: Metrics) {
  return createUpstream({
    targets: [{ host: "127.0.0.1", port }],
    transport: "relay",
    maxConnections: 1,
    heartbeatMs: 30_000,
    reconnectBaseMs: 50,
    reconnectMaxMs: 500,
    bufferMs: 60_000,
    logger: silentLogger,
    metrics,
  });
}

describe("relay batching", () => {
  test("a lone frame leaves at once in its own batch; a busy turn shares one batch, capped at 256 events", async () => {
    const ai = await recordingAi();
    const upstream = relayTo(ai.port, new Metrics());
    try {
      expect(await upstream.waitReady(5000)).toBe(true);
      const sessions = Array.from({ length: 10 }, (_, i) => upstream.open(hello(i), nullSink));
      await ai.until(() => ai.batches.reduce((a, b) => a + b, 0) >= 11); // heartbeat + 10 hellos
      const before = ai.batches.length;

      sessions[0]!.audio(new Uint8Array([1]), 0);
      await ai.until(() => ai.batches.length === before + 1);
      expect(ai.batches.at(-1)).toBe(1);

      // 300 frames in one turn: 30 per session, all sent before the loop turns.
      for (let k = 0; k < 30; k++) for (const s of sessions) s.audio(new Uint8Array([k]), k);
      await ai.until(() => [...ai.audioBySession.values()].reduce((a, l) => a + l.length, 0) === 301);
      expect(ai.batches.slice(before + 1)).toEqual([256, 44]);
      // Order per session holds across batches.
      for (const seqs of ai.audioBySession.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    } finally {
      await upstream.close();
      await ai.close();
    }
  });
});

describe("relay: one unencodable event", () => {
  test("costs only itself: the rest of the batch, other sessions included, still reaches the AI service", async () => {
    const ai = await recordingAi();
    const metrics = new Metrics();
    const upstream = relayTo(ai.port, metrics);
    try {
      expect(await upstream.waitReady(5000)).toBe(true);
      const good = upstream.open(hello(1), nullSink);
      // A hello whose sample rate does not fit the contract's uint32 (what validation now
      // refuses at the device boundary): its Hello cannot be encoded.
      const bad = upstream.open({ ...hello(2), audioParams: { ...hello(2).audioParams, sampleRate: 2 ** 33 } }, nullSink);
      good.audio(new Uint8Array([1]), 0);
      bad.audio(new Uint8Array([2]), 0);
      await ai.until(() => (ai.audioBySession.get(1)?.length ?? 0) === 1);
      expect(metrics.dropped["upstream-bad-event"]).toBe(1);
    } finally {
      await upstream.close();
      await ai.close();
    }
  });
});
