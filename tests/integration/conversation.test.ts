import { describe, expect, test } from "bun:test";
import type { ProtocolVersion } from "../../src/device/frame-codec";
import { packets, startStack } from "../helpers/start-stack";

const FRAME_MS = 20;

for (const transport of ["relay", "converse"] as const)
  describe(`${transport}: a device converses with the AI service through the gateway`, () => {
    for (const version of [1, 2, 3] as ProtocolVersion[]) {
      test(`protocol v${version}: hello, listen, 30 frames, stop -> stt, tts, the 30 frames paced, tts stop`, async () => {
        await using stack = await startStack({ transport });
        const dev = await stack.device(`aa:00:00:00:00:0${version}`, version);
        const hello = await dev.hello({ audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: FRAME_MS } });
        expect(hello).toMatchObject({
          type: "hello",
          transport: "websocket",
          audio_params: { format: "opus", sample_rate: 24000, channels: 1, frame_duration: 60 },
        });
        expect(typeof hello.session_id).toBe("string");

        dev.sendJson({ type: "listen", state: "start", mode: "manual" });
        const sent = packets(30);
        for (const [i, p] of sent.entries()) dev.sendAudio(p, 1000 + i * FRAME_MS);
        // Playback starts after the AI service hears this: no frame can be due before it.
        const stoppedAt = performance.now();
        dev.sendJson({ type: "listen", state: "stop" });

        const stt = await dev.waitJson((m) => m.type === "stt");
        expect(String(stt.text)).toContain("30 frames");
        expect(stt.session_id).toBe(hello.session_id);
        await dev.waitJson((m) => m.type === "tts" && m.state === "start");
        await dev.waitJson((m) => m.type === "tts" && m.state === "stop");

        const audio = dev.audio();
        expect(audio.map((a) => Array.from(a.payload))).toEqual(sent.map((p) => Array.from(p)));
        // Pacing: the AI service sends a 2-frame pre-buffer, then frame i at (i - 1) frame
        // durations after the start, never earlier (a late timer only delays the schedule).
        // Load can delay any frame, and so bunch two on arrival, but never make one early: so
        // each frame arrives no sooner than its slot after the stop, and a burst would not.
        const early = audio.flatMap((a, i) => (a.atMs - stoppedAt < Math.max(0, i - 1) * FRAME_MS ? [{ frame: i, atMs: a.atMs - stoppedAt }] : []));
        expect(early).toEqual([]);
        // Every frame came back in the tts start..stop window, in the device's own framing.
        const start = dev.received.findIndex((r) => r.kind === "json" && r.msg.type === "tts" && r.msg.state === "start");
        const stop = dev.received.findIndex((r) => r.kind === "json" && r.msg.type === "tts" && r.msg.state === "stop");
        const audioIdx = dev.received.flatMap((r, i) => (r.kind === "audio" ? [i] : []));
        expect(audioIdx[0]!).toBeGreaterThan(start);
        expect(audioIdx.at(-1)!).toBeLessThan(stop);
        if (version === 2) for (const a of audio) expect(a.timestampMs).toBeGreaterThanOrEqual(0);
        expect(stack.metrics.framesIn).toBe(30);
        expect(stack.metrics.framesOut).toBe(30);
        dev.close();
      });
    }

    test("realtime mode echoes every frame at once, in order", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:10", 3);
      await dev.hello();
      dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
      const sent = packets(50, 120);
      for (const p of sent) dev.sendAudio(p);
      await dev.waitFor((r) => r.kind === "audio" && r.payload[2] === 49);
      expect(dev.audio().map((a) => a.payload[2])).toEqual(sent.map((_, i) => i));
    });

    test("text chat is answered with llm, subtitles and real Opus audio", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:11", 2);
      await dev.hello();
      dev.sendJson({ type: "chat", text: "what is the weather" });
      const llm = await dev.waitJson((m) => m.type === "llm");
      expect(typeof llm.emotion).toBe("string");
      const sub = await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start");
      expect(String(sub.text)).toContain("what is the weather");
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      const audio = dev.audio();
      expect(audio.length).toBeGreaterThan(3);
      const OpusScript = (await import("opusscript")).default;
      const decoder = new OpusScript(24000, 1);
      const pcm = decoder.decode(Buffer.from(audio[3]!.payload));
      expect(pcm.length).toBe(24000 * 0.06 * 2); // 60 ms of 16-bit mono
      decoder.delete();
    });

    test("a typed query via listen detect is answered; a bare wake word is not", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:12");
      await dev.hello();
      dev.sendJson({ type: "listen", state: "detect", text: "你好小智" });
      dev.sendJson({ type: "listen", state: "detect", text: "tell me a joke" });
      const stt = await dev.waitJson((m) => m.type === "stt");
      expect(stt.text).toBe("tell me a joke");
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      expect(dev.received.filter((r) => r.kind === "json" && r.msg.type === "stt")).toHaveLength(1);
    });

    test("abort stops the answer at once: tts stop, then no more audio", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:13");
      await dev.hello();
      dev.sendJson({ type: "chat", text: "say something long" });
      await dev.waitFor((r) => r.kind === "audio");
      await dev.waitFor((r) => r.kind === "audio");
      await dev.waitFor((r) => r.kind === "audio");
      dev.sendJson({ type: "abort", reason: "wake_word_detected" });
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      const framesAtStop = dev.audio().length;
      // The tone lasts 720 ms: had abort not stopped it, frames would keep coming in this window.
      dev.sendJson({ type: "ping" });
      await dev.waitJson((m) => m.type === "pong");
      await new Promise((r) => setTimeout(r, 400));
      expect(dev.audio().length).toBe(framesAtStop);
      expect(framesAtStop).toBeLessThan(12);
    });

    test("a zero-length binary frame ends the recording like listen stop", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:14", 1);
      await dev.hello({ audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: FRAME_MS } });
      dev.sendJson({ type: "listen", state: "start", mode: "manual" });
      for (const p of packets(5)) dev.sendAudio(p);
      dev.sendRaw(new Uint8Array(0));
      const stt = await dev.waitJson((m) => m.type === "stt");
      expect(String(stt.text)).toContain("5 frames");
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      expect(dev.audio()).toHaveLength(5);
    });

    test("the envelope dialect, camelCase hello, ping and base64 audio in JSON all work", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:15");
      dev.sendJson({ type: "ping" });
      const pong = await dev.waitJson((m) => m.type === "pong");
      expect(typeof pong.timestamp).toBe("number");
      dev.sendJson({ type: "hello", data: { audioParams: { format: "pcm", sampleRate: 16000, channels: 1, frameDuration: FRAME_MS } }, timestamp: 1 });
      await dev.waitJson((m) => m.type === "hello");
      dev.sendJson({ type: "listen", data: { state: "start", mode: "manual" }, timestamp: 2 });
      const p = packets(3);
      for (const x of p) dev.sendJson({ type: "audio", data: Buffer.from(x).toString("base64") });
      dev.sendJson({ type: "listen", data: { state: "stop" }, timestamp: 3 });
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      expect(dev.audio().map((a) => Array.from(a.payload))).toEqual(p.map((x) => Array.from(x)));
    });

    test("MCP flows both ways untouched", async () => {
      await using stack = await startStack({ transport });
      const dev = await stack.device("aa:00:00:00:00:16");
      await dev.hello({ features: { mcp: true } });
      const init = await dev.waitJson((m) => m.type === "mcp");
      const payload = init.payload as { id: number; method: string };
      expect(payload.method).toBe("initialize");
      dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: payload.id, result: { protocolVersion: "2024-11-05", capabilities: {} } } });
      const list = await dev.waitJson((m) => m.type === "mcp" && (m.payload as { method?: string }).method === "tools/list");
      expect((list.payload as { jsonrpc: string }).jsonrpc).toBe("2.0");
    });

    test("many devices converse at once, each getting only its own answers", async () => {
      await using stack = await startStack({ transport });
      const devices = await Promise.all(
        Array.from({ length: 20 }, (_, i) => stack.device(`bb:00:00:00:00:${i.toString(16).padStart(2, "0")}`, ((i % 3) + 1) as ProtocolVersion)),
      );
      await Promise.all(devices.map((d) => d.hello()));
      devices.forEach((d, i) => {
        d.sendJson({ type: "listen", state: "start", mode: "realtime" });
        for (let k = 0; k < 10; k++) {
          const p = new Uint8Array(16).fill(i);
          p[1] = k;
          d.sendAudio(p);
        }
      });
      await Promise.all(devices.map((d) => d.waitFor((r) => r.kind === "audio" && r.payload[1] === 9)));
      devices.forEach((d, i) => {
        const got = d.audio();
        expect(got).toHaveLength(10);
        for (const [k, a] of got.entries()) {
          expect(a.payload[0]).toBe(i);
          expect(a.payload[1]).toBe(k);
        }
      });
    });
  });
