import { afterEach, describe, expect, test } from "bun:test";
import { silentLogger } from "../../src/log";
import { ASR_FAILED_ANSWER, NOT_UNDERSTOOD_ANSWER, type VoiceOptions } from "../../src/ai/ai-session";
import { createOpenAiAnswerer, PROVIDER_FAILED_ANSWER } from "../../src/ai/openai-answerer";
import { silenceFrames, toneFrames } from "../../src/ai/opus-tone";
import { ConversationMemory } from "../../src/ai/voice/conversation-memory";
import { OpusFrameDecoder } from "../../src/ai/voice/opus-frame-decoder";
import type { ProtocolVersion } from "../../src/device/frame-codec";
import type { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { VoiceTurnMetrics } from "../../src/metrics";
import { type FakeOpenAi, type FakeOpenAiOptions, type RecordedChat, type RecordedSpeech, startFakeOpenAi } from "../helpers/fake-openai";
import { voiceAiOptions } from "../helpers/fake-voice-ai";
import { type Stack, startStack } from "../helpers/start-stack";
import { capturedLogger } from "../helpers/captured-logger";

// The voice pipeline end to end: a device speaks through the gateway, the reference AI service
// recognizes it, asks the LLM (which may call the device's tools) and speaks the answer back,
// against a local OpenAI-compatible server that stands in for the providers.

let fakes: FakeOpenAi[] = [];
afterEach(async () => {
  for (const f of fakes) await f.stop();
  fakes = [];
});

/** A gateway whose reference AI runs every stage against a fresh fake provider. */
async function voiceStack(
  providers: FakeOpenAiOptions = {},
  o: { voice?: Partial<VoiceOptions>; memory?: ConversationMemory; idleTimeoutMs?: number } = {},
): Promise<{ stack: Stack; fake: FakeOpenAi; lines: Record<string, unknown>[] }> {
  const fake = await startFakeOpenAi(providers);
  fakes.push(fake);
  const { logger, lines } = capturedLogger();
  const idleTimeoutMs = o.idleTimeoutMs ?? 2000;
  const stack = await startStack({
    ai: voiceAiOptions(fake.url, { logger, memory: o.memory, idleTimeoutMs, voice: { toolTimeoutMs: 2000, idleTimeoutMs, ...o.voice } }),
  });
  return { stack, fake, lines };
}

/** What a device sends when someone speaks: a 400 Hz tone (the fake hears "tone 400 Hz"). */
const speech = (ms = 1200) => toneFrames({ frequencyHz: 400, durationMs: ms, sampleRateHz: 16000, frameDurationMs: 60, amplitude: 0.3 });

async function speak(dev: SimulatedDevice, frames: readonly Uint8Array[] = speech()): Promise<void> {
  dev.sendJson({ type: "listen", state: "start", mode: "manual" });
  for (const f of frames) dev.sendAudio(f);
  dev.sendJson({ type: "listen", state: "stop" });
}

const sentences = (dev: SimulatedDevice) =>
  dev.received.flatMap((r) => (r.kind === "json" && r.msg.type === "tts" && r.msg.state === "sentence_start" ? [String(r.msg.text)] : []));

/** Every answer frame is real Opus of 60 ms at the 24 kHz the gateway announces. */
function expectRealSpeechFrames(dev: SimulatedDevice): void {
  const decoder = new OpusFrameDecoder(24000);
  try {
    const frames = dev.audio();
    expect(frames.length).toBeGreaterThan(0);
    for (const f of frames) expect(decoder.decode(f.payload)?.length).toBe(1440);
  } finally {
    decoder.delete();
  }
}

describe("a spoken turn, end to end", () => {
  for (const version of [1, 3] as ProtocolVersion[]) {
    test(`protocol v${version}: speech is recognized, answered by the LLM and spoken back sentence by sentence`, async () => {
      const metrics = new VoiceTurnMetrics();
      const { stack, fake } = await voiceStack({}, { voice: { metrics } });
      await using _ = stack;
      const dev = await stack.device("aa:00:00:00:a1:01", version);
      await dev.hello();
      await speak(dev);
      expect((await dev.waitJson((m) => m.type === "stt")).text).toBe("tone 400 Hz");
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      expect(sentences(dev)).toEqual(["You said: tone 400 Hz.", "That is all."]);
      expectRealSpeechFrames(dev);
      // 40 ms of speech per character from the fake: the whole answer was played, not a part.
      const ms = dev.audio().length * 60;
      expect(ms).toBeGreaterThanOrEqual(("You said: tone 400 Hz.".length + "That is all.".length) * 40);

      // What the providers were asked: the utterance as 16 kHz WAV, the text to the LLM, each
      // sentence to the speech endpoint as PCM, and no key (a local server needs none).
      const asr = fake.requests.find((r) => r.kind === "transcription");
      expect(asr?.kind === "transcription" && asr.audio.sampleRateHz).toBe(16000);
      expect(asr?.kind === "transcription" && asr.audio.pcm.length).toBe(speech().length * 960);
      const chat = fake.requests.find((r): r is RecordedChat => r.kind === "chat");
      expect(chat?.body.messages.at(-1)).toEqual({ role: "user", content: "tone 400 Hz" });
      const tts = fake.requests.filter((r): r is RecordedSpeech => r.kind === "speech");
      expect(tts.map((r) => r.body.input)).toEqual(["You said: tone 400 Hz.", "That is all."]);
      expect(tts.every((r) => r.body.response_format === "pcm")).toBe(true);
      expect(fake.requests.every((r) => r.hasAuthorization)).toBe(true);
      // Each stage's time of the turn was recorded once (TTS once a sentence).
      expect([metrics.asrSeconds.count, metrics.llmFirstTokenSeconds.count, metrics.ttsFirstByteSeconds.count, metrics.firstAudioSeconds.count]).toEqual([
        1, 1, 2, 1,
      ]);
      expect(metrics.firstAudioSeconds.sum).toBeGreaterThan(metrics.asrSeconds.sum);
    });
  }

  test("the first sentence plays while the LLM is still writing; abort stops it all and cancels the request", async () => {
    const { stack, fake } = await voiceStack({ chat: () => [{ text: "Here is the first sentence. " }, { stall: true }] });
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:02", 3);
    await dev.hello();
    await speak(dev);
    await dev.waitFor((r) => r.kind === "audio");
    expect(sentences(dev)).toEqual(["Here is the first sentence."]);
    const chat = fake.requests.find((r) => r.kind === "chat");
    expect(chat?.endedAt).toBeUndefined(); // the LLM has not finished its answer

    dev.sendJson({ type: "abort", reason: "wake_word_detected" });
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    await fake.waitFor((r) => r.kind === "chat" && r.aborted);
    const framesAtStop = dev.audio().length;
    dev.sendJson({ type: "ping" });
    await dev.waitJson((m) => m.type === "pong");
    await Bun.sleep(400); // a window in which paced frames would keep coming had abort not stopped them
    expect(dev.audio().length).toBe(framesAtStop);
  });

  test("a new listen start mid-sentence cancels the speech being synthesized", async () => {
    // Speech that streams in real time (4 s): the request is still open when the user speaks again.
    const { stack, fake } = await voiceStack({
      chat: () => [{ text: `${"Talking on and on ".repeat(6)}.` }],
      speech: () => ({ pcm: new Int16Array(24000 * 4).fill(1000), chunkBytes: 4800, chunkIntervalMs: 100 }),
    });
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:03", 3);
    await dev.hello();
    await speak(dev);
    await dev.waitFor((r) => r.kind === "audio");
    dev.sendJson({ type: "listen", state: "start", mode: "manual" });
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    // Cancelled by us before it had sent its 4 s (the fake marks only a request cut short).
    await fake.waitFor((r) => r.kind === "speech" && r.aborted);
  });
});

describe("device tools", () => {
  const VOLUME_TOOL = {
    name: "self.audio_speaker.set_volume",
    description: "Set the speaker volume, 0 to 100.",
    inputSchema: { type: "object", properties: { volume: { type: "integer" } }, required: ["volume"] },
  };

  /** Says hello with MCP and answers the AI's initialize and tools/list like the firmware. */
  async function mcpDevice(stack: Stack, mac: string): Promise<SimulatedDevice> {
    const dev = await stack.device(mac, 3);
    await dev.hello({ features: { mcp: true } });
    const init = (await dev.waitJson((m) => m.type === "mcp")).payload as { id: number };
    dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: init.id, result: { protocolVersion: "2024-11-05", capabilities: { tools: {} } } } });
    const list = (await dev.waitJson((m) => m.type === "mcp" && (m.payload as { method?: string }).method === "tools/list")).payload as { id: number };
    dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: list.id, result: { tools: [VOLUME_TOOL] } } });
    return dev;
  }

  const callsVolume: FakeOpenAiOptions["chat"] = (body) => {
    if (body.messages.at(-1)?.role === "tool") return [{ text: `tool said: ${String(body.messages.at(-1)?.content)}` }];
    const offered = (body.tools ?? []).map((t) => (t.type === "function" ? t.function.name : ""));
    return offered.includes("self_audio_speaker_set_volume")
      ? [{ toolCall: { id: "call_1", name: "self_audio_speaker_set_volume", arguments: '{"volume":30}' } }]
      : [{ text: "I have no tools." }];
  };

  test("'turn the volume down': the LLM's tool call reaches the device's MCP, and its answer the LLM", async () => {
    const { stack, fake } = await voiceStack({ chat: callsVolume });
    await using _ = stack;
    const dev = await mcpDevice(stack, "aa:00:00:00:a1:04");
    await speak(dev);
    const call = (await dev.waitJson((m) => m.type === "mcp" && (m.payload as { method?: string }).method === "tools/call")).payload as {
      id: number;
      params: unknown;
    };
    expect(call.params).toEqual({ name: "self.audio_speaker.set_volume", arguments: { volume: 30 } });
    dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: call.id, result: { content: [{ type: "text", text: "volume is 30" }], isError: false } } });
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    expect(sentences(dev)).toEqual(["tool said: volume is 30"]);
    // The model was offered the tool with the device's description and schema.
    const first = fake.requests.find((r): r is RecordedChat => r.kind === "chat");
    expect(first?.body.tools).toEqual([
      { type: "function", function: { name: "self_audio_speaker_set_volume", description: VOLUME_TOOL.description, parameters: VOLUME_TOOL.inputSchema } },
    ]);
  });

  test("Ask for a device (the HTTP API) uses the same LLM and that device's tools", async () => {
    const { stack } = await voiceStack({ chat: callsVolume });
    await using _ = stack;
    const dev = await mcpDevice(stack, "aa:00:00:00:a1:0b");
    // The tools are listed once the device has answered tools/list: a ping behind that answer
    // has come back when the AI service has read it.
    dev.sendJson({ type: "ping" });
    await dev.waitJson((m) => m.type === "pong");
    const answer = (async () => {
      let text = "";
      for await (const c of stack.upstream.ask({ text: "turn it down", deviceId: "aa:00:00:00:a1:0b" }, AbortSignal.timeout(10_000))) text += c;
      return text;
    })();
    const call = (await dev.waitJson((m) => m.type === "mcp" && (m.payload as { method?: string }).method === "tools/call")).payload as { id: number };
    dev.sendJson({ type: "mcp", payload: { jsonrpc: "2.0", id: call.id, result: { content: [{ type: "text", text: "volume is 20" }] } } });
    expect(await answer).toBe("tool said: volume is 20");
    // A device with no session here has no tools to offer.
    let other = "";
    for await (const c of stack.upstream.ask({ text: "turn it down", deviceId: "aa:00:00:00:ff:ff" }, AbortSignal.timeout(10_000))) other += c;
    expect(other).toBe("I have no tools.");
  });

  test("a device that does not answer a tool call: the LLM is told it timed out, and the user hears an answer", async () => {
    const { stack } = await voiceStack({ chat: callsVolume }, { voice: { toolTimeoutMs: 300 } });
    await using _ = stack;
    const dev = await mcpDevice(stack, "aa:00:00:00:a1:05");
    await speak(dev);
    await dev.waitJson((m) => m.type === "mcp" && (m.payload as { method?: string }).method === "tools/call");
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    expect(sentences(dev)).toEqual(["tool said: error: the device did not answer within 300 ms"]);
  });
});

describe("listening", () => {
  test("auto mode: the utterance ends on the decoded audio's silence, without a listen stop", async () => {
    const { stack, fake } = await voiceStack();
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:06", 3);
    await dev.hello();
    dev.sendJson({ type: "listen", state: "start", mode: "auto" });
    const quiet = silenceFrames(20, { sampleRateHz: 16000, frameDurationMs: 60 });
    // Silence before speech, 600 ms of speech, then silence past the 700 ms hangover.
    for (const f of [...quiet.slice(0, 10), ...speech(600), ...quiet]) dev.sendAudio(f);
    expect((await dev.waitJson((m) => m.type === "stt")).text).toBe("tone 400 Hz");
    const asr = fake.requests.find((r) => r.kind === "transcription");
    // The speech and a short pre-roll were heard, not the 10 silent frames before it all.
    const samples = asr?.kind === "transcription" ? asr.audio.pcm.length : 0;
    expect(samples).toBeGreaterThanOrEqual(10 * 960);
    expect(samples).toBeLessThan(30 * 960);
  });

  test("auto mode: a click shorter than the minimum speech does not start an utterance", async () => {
    const { stack, fake } = await voiceStack();
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:07", 3);
    await dev.hello();
    dev.sendJson({ type: "listen", state: "start", mode: "auto" });
    const quiet = silenceFrames(20, { sampleRateHz: 16000, frameDurationMs: 60 });
    for (const f of [...speech(60), ...quiet]) dev.sendAudio(f);
    dev.sendJson({ type: "ping" });
    await dev.waitJson((m) => m.type === "pong");
    expect(fake.requests).toHaveLength(0);
    expect(dev.received.some((r) => r.kind === "json" && r.msg.type === "stt")).toBe(false);
  });

  test("silence alone is answered with a spoken 'did not catch that'", async () => {
    const { stack } = await voiceStack();
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:08", 3);
    await dev.hello();
    await speak(dev, silenceFrames(10, { sampleRateHz: 16000, frameDurationMs: 60 }));
    expect((await dev.waitJson((m) => m.type === "stt")).text).toBe("");
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    expect(sentences(dev).join(" ")).toBe(NOT_UNDERSTOOD_ANSWER);
    expectRealSpeechFrames(dev);
  });
});

describe("provider failures are heard as apologies, never as silence or a hang", () => {
  const cases: { stage: string; providers: FakeOpenAiOptions; heard: string; tone?: boolean }[] = [
    { stage: "ASR error", providers: { transcribe: () => ({ status: 500, message: "asr down" }) }, heard: ASR_FAILED_ANSWER },
    { stage: "ASR stall", providers: { transcribe: () => ({ stall: true }) }, heard: ASR_FAILED_ANSWER },
    { stage: "LLM error", providers: { chat: () => ({ status: 503, message: "overloaded" }) }, heard: PROVIDER_FAILED_ANSWER },
    { stage: "LLM stall", providers: { chat: () => [{ stall: true }] }, heard: PROVIDER_FAILED_ANSWER },
    { stage: "TTS error", providers: { speech: () => ({ status: 500, message: "tts down" }) }, heard: "You said: tone 400 Hz. That is all.", tone: true },
    { stage: "TTS stall", providers: { speech: () => ({ stall: true }) }, heard: "You said: tone 400 Hz. That is all.", tone: true },
  ];
  for (const c of cases) {
    test(c.stage, async () => {
      const { stack, lines } = await voiceStack(c.providers, { idleTimeoutMs: 500 });
      await using _ = stack;
      const dev = await stack.device("aa:00:00:00:a1:09", 3);
      await dev.hello();
      await speak(dev);
      await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
      expect(sentences(dev).join(" ")).toBe(c.heard);
      expect(dev.audio().length).toBeGreaterThan(0);
      if (c.tone) {
        // Each sentence the speech endpoint failed is heard as the reference tone, said in the log.
        expect(lines.some((l) => l.msg === "speech synthesis failed; the sentence is heard as a tone")).toBe(true);
      }
      expect(dev.isOpen).toBe(true);
      // No key or secret in what was logged.
      expect(JSON.stringify(lines)).not.toContain("Bearer");
    });
  }
});

describe("conversation memory", () => {
  test("the next turn's LLM request carries the previous exchange", async () => {
    const memory = new ConversationMemory({ maxTurns: 5, maxTokens: 2000, idleMs: 60_000 });
    const { stack, fake } = await voiceStack({}, { memory });
    await using _ = stack;
    const dev = await stack.device("aa:00:00:00:a1:0a", 3);
    await dev.hello();
    dev.sendJson({ type: "chat", text: "my name is Ada" });
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    dev.sendJson({ type: "chat", text: "what is my name" });
    const second = await fake.waitFor((r) => r.kind === "chat" && JSON.stringify(r.body).includes("what is my name"));
    expect(second.kind === "chat" && second.body.messages.slice(1)).toEqual([
      { role: "user", content: "my name is Ada" },
      { role: "assistant", content: "You said: my name is Ada. That is all." },
      { role: "user", content: "what is my name" },
    ]);
  });

  test("over 100 turns the LLM is sent a bounded history", async () => {
    const fake = await startFakeOpenAi();
    fakes.push(fake);
    const memory = new ConversationMemory({ maxTurns: 3, maxTokens: 2000, idleMs: 60_000 });
    const answerer = createOpenAiAnswerer({ baseUrl: fake.url, apiKey: "", model: "m", memory, logger: silentLogger });
    for (let i = 0; i < 100; i++) {
      for await (const _ of answerer.answer({ text: `turn ${i}`, deviceId: "dev", userId: "" }, new AbortController().signal)) {
        // drained
      }
    }
    const last = fake.requests.at(-1);
    // The system prompt, 3 exchanges, the question.
    expect(last?.kind === "chat" && last.body.messages.length).toBe(1 + 6 + 1);
    expect(last?.kind === "chat" && last.body.messages[1]).toEqual({ role: "user", content: "turn 96" });
  });
});
