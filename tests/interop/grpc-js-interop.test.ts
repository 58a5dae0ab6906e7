import { describe, expect, test } from "bun:test";
import path from "node:path";
import { packets, startStack } from "../helpers/start-stack";

/** Starts the grpc-js echo server under Node (not Bun) and resolves its port. */
async function startForeignAi(env: Record<string, string> = {}): Promise<{ port: number; proc: ReturnType<typeof Bun.spawn> }> {
  const proc = Bun.spawn(["node", path.join(import.meta.dir, "grpc-js-echo-server.cjs")], {
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, ...env },
  });
  const reader = proc.stdout.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`grpc-js server exited: ${text}`);
    text += new TextDecoder().decode(value);
    const m = /PORT (\d+)/.exec(text);
    if (m) {
      reader.releaseLock();
      return { port: Number(m[1]), proc };
    }
  }
}

describe("interop: the gateway against an AI service that is not ours (@grpc/grpc-js on Node)", () => {
  for (const transport of ["relay", "converse"] as const) {
    test(`${transport}: a device converses through a grpc-js server loading proto/`, async () => {
      const foreign = await startForeignAi();
      try {
        await using stack = await startStack({ transport, ai: false, targets: [{ host: "127.0.0.1", port: foreign.port }] });
        const dev = await stack.device("ff:00:00:00:00:01", 3);
        await dev.hello();
        const llm = await dev.waitJson((m) => m.type === "llm");
        expect(llm.emotion).toBe("happy");
        const sent = packets(20);
        for (const p of sent) dev.sendAudio(p);
        await dev.waitFor((r) => r.kind === "audio" && r.payload[2] === 19);
        expect(dev.audio().map((a) => Array.from(a.payload))).toEqual(sent.map((p) => Array.from(p)));
        dev.sendJson({ type: "chat", text: "hello from bun" });
        const sub = await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start");
        // The token's subject travelled in Hello to the foreign server.
        expect(sub.text).toBe("grpc-js heard: hello from bun from ff:00:00:00:00:01");
        await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      } finally {
        foreign.proc.kill();
        await foreign.proc.exited;
      }
    });
  }

  test("relay: when one AI service dies, its sessions move to the other stream and resume; devices keep their sockets", async () => {
    const a = await startForeignAi();
    const b = await startForeignAi();
    try {
      await using stack = await startStack({
        ai: false,
        targets: [
          { host: "127.0.0.1", port: a.port },
          { host: "127.0.0.1", port: b.port },
        ],
        upstream: { maxConnections: 2, reconnectBaseMs: 200 },
      });
      const devices = await Promise.all(Array.from({ length: 10 }, (_, i) => stack.device(`fd:00:00:00:00:0${i}`, 3)));
      await Promise.all(devices.map((d) => d.hello()));
      await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "llm" && String(m.text).startsWith("hi from"))));
      a.proc.kill("SIGKILL");
      await a.proc.exited;
      // The sessions that were on the dead service hear of it, then resume on the other one.
      const moved = await Promise.all(
        devices.map(async (d) => {
          const r = await Promise.race([d.waitJson((m) => m.type === "alert", 5000).then(() => true), Bun.sleep(1500).then(() => false)]);
          if (r) await d.waitJson((m) => m.type === "llm" && m.text === `resumed on ${b.proc.pid}`);
          return r;
        }),
      );
      expect(moved.filter(Boolean).length).toBeGreaterThan(0);
      expect(moved.filter((x) => !x).length).toBeGreaterThan(0);
      // Every device, moved or not, still converses.
      for (const [i, d] of devices.entries()) d.sendAudio(new Uint8Array([100 + i]));
      await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === 100 + i)));
      expect(devices.every((d) => d.isOpen)).toBe(true);
      expect(stack.gateway.registry.size).toBe(10);
    } finally {
      for (const p of [a.proc, b.proc]) p.kill();
      await Promise.all([a.proc.exited, b.proc.exited]);
    }
  });

  test("converse: against a server allowing 100 streams per connection, 300 devices at once all converse (the excess queue for slots)", async () => {
    const foreign = await startForeignAi({ MAX_CONCURRENT_STREAMS: "100" });
    try {
      // Two connections: 200 slots for 300 sessions, so 100 must wait for a slot, not hang.
      await using stack = await startStack({
        transport: "converse",
        ai: false,
        targets: [{ host: "127.0.0.1", port: foreign.port }],
        upstream: { maxConnections: 2 },
      });
      const id = (i: number) => `fe:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 0xff).toString(16).padStart(2, "0")}`;
      const devices = await Promise.all(Array.from({ length: 300 }, (_, i) => stack.device(id(i))));
      await Promise.all(devices.map((d) => d.hello()));
      for (const [i, d] of devices.entries()) d.sendAudio(new Uint8Array([i & 0xff, i >> 8]));
      const echoed = (d: (typeof devices)[number], i: number) => d.audio().some((a) => a.payload[0] === (i & 0xff) && a.payload[1] === i >> 8);
      // 200 sessions get a stream at once: resolve when the 200th echo is in.
      const twoHundred = Promise.withResolvers<void>();
      let echoes = 0;
      const echo = devices.map((d) => d.waitFor((r) => r.kind === "audio", 30_000));
      for (const e of echo)
        void e.then(
          () => ++echoes === 200 && twoHundred.resolve(),
          () => {},
        );
      await twoHundred.promise;
      const served = devices.filter(echoed);
      expect(served.length).toBe(200);
      // Devices leave; the queued sessions take their slots and converse, audio included.
      for (const d of served.slice(0, 100)) d.close();
      const waiting = devices.filter((d, i) => !echoed(d, i));
      await Promise.all(devices.flatMap((d, i) => (echoed(d, i) ? [] : [echo[i]!])));
      expect(waiting.every((d) => d.isOpen)).toBe(true);
      expect(stack.metrics.upstreamStreamFailures).toBe(0);
      expect(devices.some((d) => d.received.some((r) => r.kind === "json" && r.msg.type === "alert"))).toBe(false);
    } finally {
      foreign.proc.kill();
      await foreign.proc.exited;
    }
  });

  test("converse: an AI service that shuts down gracefully (GOAWAY) keeps its live streams; new sessions go to a fresh connection", async () => {
    const a = await startForeignAi();
    let b: Awaited<ReturnType<typeof startForeignAi>> | undefined;
    try {
      await using stack = await startStack({
        transport: "converse",
        ai: false,
        targets: [{ host: "127.0.0.1", port: a.port }],
        upstream: { maxConnections: 1 },
      });
      const live = await stack.device("fc:00:00:00:00:01", 3);
      await live.hello();
      await live.waitJson((m) => m.type === "llm" && m.text === `hi from ${a.proc.pid}`);
      a.proc.kill("SIGUSR2"); // GOAWAY: A stops listening but serves its live call
      b = await startForeignAi({ PORT: String(a.port) });
      const fresh = await stack.device("fc:00:00:00:00:02", 3);
      await fresh.hello();
      await fresh.waitJson((m) => m.type === "llm" && m.text === `hi from ${b!.proc.pid}`);
      // The live stream still flows through A, untouched by the drain.
      live.sendAudio(new Uint8Array([7, 7]));
      await live.waitFor((r) => r.kind === "audio" && r.payload[0] === 7);
      expect(live.received.some((r) => r.kind === "json" && r.msg.type === "alert")).toBe(false);
      expect(stack.metrics.upstreamStreamFailures).toBe(0);
    } finally {
      for (const p of [a.proc, b?.proc]) p?.kill();
      await Promise.all([a.proc.exited, b?.proc.exited]);
    }
  });
});
