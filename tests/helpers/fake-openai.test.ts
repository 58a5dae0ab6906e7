import { describe, expect, test } from "bun:test";
import OpenAI, { toFile } from "openai";
import type { ChatCompletionChunk, ChatCompletionTool } from "openai/resources/chat/completions";
import {
  defaultChatScript,
  estimateToneHz,
  type RecordedChat,
  type RecordedSpeech,
  type RecordedTranscription,
  SPEECH_SAMPLE_RATE_HZ,
  sinePcm,
  startFakeOpenAi,
} from "./fake-openai";

/** A mono 16-bit PCM WAV, its 44-byte header written by hand, so the fake's parser is checked
 * against an independent writer. */
function wav(pcm: Int16Array, sampleRateHz: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(44 + pcm.length * 2);
  const v = new DataView(bytes.buffer);
  const tag = (at: number, s: string) => {
    for (let i = 0; i < 4; i++) bytes[at + i] = s.charCodeAt(i);
  };
  tag(0, "RIFF");
  v.setUint32(4, 36 + pcm.length * 2, true);
  tag(8, "WAVE");
  tag(12, "fmt ");
  v.setUint32(16, 16, true); // fmt chunk size
  v.setUint16(20, 1, true); // PCM
  v.setUint16(22, 1, true); // mono
  v.setUint32(24, sampleRateHz, true);
  v.setUint32(28, sampleRateHz * 2, true); // byte rate
  v.setUint16(32, 2, true); // block align
  v.setUint16(34, 16, true); // bits per sample
  tag(36, "data");
  v.setUint32(40, pcm.length * 2, true);
  for (let i = 0; i < pcm.length; i++) v.setInt16(44 + 2 * i, pcm[i]!, true);
  return bytes;
}

/** Silence, then the tone, then silence: the tone is measured on the non-silent part only. */
function withSilence(tone: Int16Array, sampleRateHz: number, silenceMs: number): Int16Array {
  const pad = Math.round((sampleRateHz * silenceMs) / 1000);
  const out = new Int16Array(pad + tone.length + pad);
  out.set(tone, pad);
  return out;
}

/** What `p` rejects with. The SDK's promises are thenables of their own, which `expect().rejects`
 * does not recognise as promises. */
async function rejection(p: PromiseLike<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

/** A keyless client, as for a local server; no retries, so each failure is seen once. */
function client(url: string, apiKey = "none"): OpenAI {
  return new OpenAI({ apiKey, baseURL: url, maxRetries: 0 });
}

const weatherTool: ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The weather in a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

describe("the fake OpenAI provider, through the official client", () => {
  test("transcribes an uploaded WAV of a 440 Hz sine as the tone rounded to 50 Hz, and silence as nothing", async () => {
    await using fake = await startFakeOpenAi();
    const pcm = withSilence(sinePcm({ hz: 440, ms: 600, sampleRateHz: 16_000, dbfs: -12 }), 16_000, 200);
    const openai = client(fake.url);
    const heard = await openai.audio.transcriptions.create({
      file: await toFile(wav(pcm, 16_000), "speech.wav", { type: "audio/wav" }),
      model: "whisper-1",
      language: "en",
    });
    expect(heard.text).toBe("tone 450 Hz");
    const rec = await fake.waitFor((r): r is RecordedTranscription => r.kind === "transcription");
    expect(rec).toMatchObject({
      path: "/v1/audio/transcriptions",
      model: "whisper-1",
      fileName: "speech.wav",
      hasAuthorization: true,
      aborted: false,
      status: 200,
    });
    expect(rec.body).toMatchObject({ model: "whisper-1", language: "en" });
    expect(rec.audio.sampleRateHz).toBe(16_000);
    expect(rec.audio.channels).toBe(1);
    expect(rec.audio.pcm).toEqual(pcm);

    const silence = await openai.audio.transcriptions.create({
      file: await toFile(wav(new Int16Array(8000), 16_000), "s.wav"),
      model: "whisper-1",
      response_format: "text",
    });
    expect(silence.trim()).toBe("");
  });

  test("the tone estimate is the sine's pitch: 300 Hz at 24 kHz, 1 kHz at 8 kHz", () => {
    expect(estimateToneHz(sinePcm({ hz: 300, ms: 500 }), SPEECH_SAMPLE_RATE_HZ)).toBeCloseTo(300, 0);
    expect(estimateToneHz(sinePcm({ hz: 1000, ms: 500, sampleRateHz: 8000 }), 8000)).toBeCloseTo(1000, 0);
    expect(estimateToneHz(sinePcm({ hz: 440, ms: 500, dbfs: -60 }), SPEECH_SAMPLE_RATE_HZ)).toBeUndefined();
  });

  test("streams a chat answer in small deltas, OpenAI's chunk format, and the same text unstreamed", async () => {
    await using fake = await startFakeOpenAi();
    const openai = client(fake.url);
    const messages = [
      { role: "system" as const, content: "Be brief." },
      { role: "user" as const, content: "hello there" },
    ];
    const stream = await openai.chat.completions.create({
      model: "gpt-test",
      messages,
      stream: true,
      max_completion_tokens: 64,
      stream_options: { include_usage: true },
    });
    const chunks: ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? "").join("");
    expect(text).toBe("You said: hello there. That is all.");
    expect(chunks.filter((c) => c.choices[0]?.delta.content).length).toBeGreaterThan(5);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "", refusal: null });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.at(-1)!.usage?.completion_tokens).toBeGreaterThan(0);

    const whole = await openai.chat.completions.create({ model: "gpt-test", messages, max_tokens: 64 });
    expect(whole.choices[0]!.message.content).toBe("You said: hello there. That is all.");
    expect(whole.choices[0]!.finish_reason).toBe("stop");
    const recs = fake.requests.filter((r): r is RecordedChat => r.kind === "chat");
    expect(recs.map((r) => r.body.stream)).toEqual([true, undefined]);
    expect(recs[1]!.body.max_tokens).toBe(64);
  });

  test("streams a tool call that the SDK assembles into tool_calls, then answers with the tool's result", async () => {
    const args = JSON.stringify({ city: "Paris", unit: "celsius" });
    await using fake = await startFakeOpenAi({
      chat: (body) =>
        body.messages.at(-1)?.role === "tool"
          ? defaultChatScript(body)
          : [{ text: "Let me look." }, { toolCall: { id: "call_1", name: "get_weather", arguments: args } }],
    });
    const openai = client(fake.url);
    const messages: OpenAI.ChatCompletionMessageParam[] = [{ role: "user", content: "weather in Paris?" }];
    const stream = openai.chat.completions.stream({ model: "gpt-test", messages, tools: [weatherTool], tool_choice: "auto" });
    const argumentPieces: string[] = [];
    for await (const chunk of stream) for (const call of chunk.choices[0]?.delta.tool_calls ?? []) argumentPieces.push(call.function?.arguments ?? "");
    const completion = await stream.finalChatCompletion();
    const choice = completion.choices[0]!;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message.content).toBe("Let me look.");
    expect(choice.message.tool_calls).toEqual([{ id: "call_1", type: "function", function: { name: "get_weather", arguments: args } }]);
    expect(argumentPieces).toEqual(["", args.slice(0, Math.ceil(args.length / 2)), args.slice(Math.ceil(args.length / 2))]);
    const first = await fake.waitFor((r): r is RecordedChat => r.kind === "chat");
    expect(first.body.tools).toEqual([weatherTool]);
    expect(first.body.tool_choice).toBe("auto");

    messages.push(choice.message as OpenAI.ChatCompletionAssistantMessageParam, { role: "tool", tool_call_id: "call_1", content: "sunny, 21 °C" });
    const answer = await openai.chat.completions.create({ model: "gpt-test", messages, tools: [weatherTool] });
    expect(answer.choices[0]!.message.content).toBe("tool said: sunny, 21 °C");
  });

  test("speaks 40 ms of 24 kHz PCM a character (at least 200 ms), in several chunks, a 300 Hz tone", async () => {
    await using fake = await startFakeOpenAi();
    const openai = client(fake.url);
    const short = await openai.audio.speech.create({ model: "tts-1", voice: "alloy", input: "hello", response_format: "pcm" });
    expect((await short.arrayBuffer()).byteLength).toBe(2 * 4800); // 5 characters: the 200 ms minimum

    const input = "x".repeat(50); // 2 s
    const long = await openai.audio.speech.create({ model: "tts-1", voice: "alloy", input, response_format: "pcm" });
    const reader = long.body!.getReader();
    const parts: Uint8Array[] = [];
    for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
    const bytes = Buffer.concat(parts);
    expect(bytes.length).toBe(2 * 48_000);
    expect(parts.length).toBeGreaterThan(1);
    const pcm = new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2);
    expect(estimateToneHz(pcm, SPEECH_SAMPLE_RATE_HZ)).toBeCloseTo(300, 0);
    expect(Math.max(...pcm)).toBe(3277); // -20 dBFS peak
    const rec = await fake.waitFor((r): r is RecordedSpeech => r.kind === "speech" && r.body.input === input);
    expect(rec.body).toMatchObject({ model: "tts-1", voice: "alloy", response_format: "pcm" });
    expect(rec.endedAt).toBeGreaterThan(rec.startedAt);

    {
      // Odd chunks split samples across reads, as a network may; a custom voice is recorded as its id.
      await using odd = await startFakeOpenAi({ speech: () => ({ pcm: new Int16Array(5000), chunkBytes: 1001 }) });
      const split = await client(odd.url).audio.speech.create({ model: "tts-1", voice: { id: "voice_1" }, input: "hi", response_format: "pcm" });
      expect((await split.arrayBuffer()).byteLength).toBe(10_000);
      expect((await odd.waitFor((r): r is RecordedSpeech => r.kind === "speech")).body.voice).toBe("voice_1");
    }

    // OpenAI's default format is mp3, which the fake does not produce: the client must ask for pcm.
    const mp3 = openai.audio.speech.create({ model: "tts-1", voice: "alloy", input: "hi" });
    expect(await rejection(mp3)).toBeInstanceOf(OpenAI.BadRequestError);
  });

  test("a scripted HTTP error reaches the client as an APIError with its status and OpenAI's body", async () => {
    let calls = 0;
    await using fake = await startFakeOpenAi({
      chat: () =>
        ++calls === 1 ? { status: 503, message: "The engine is currently overloaded" } : { delayMs: 20, outcome: { status: 429, message: "slow down" } },
      transcribe: () => ({ status: 500 }),
    });
    const openai = client(fake.url);
    const err = await rejection(openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }] }));
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(503);
    expect((err as InstanceType<typeof OpenAI.APIError>).message).toContain("The engine is currently overloaded");
    expect((err as InstanceType<typeof OpenAI.APIError>).type).toBe("server_error");

    const limited = await rejection(openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true }));
    expect(limited).toBeInstanceOf(OpenAI.RateLimitError);

    const asr = await rejection(openai.audio.transcriptions.create({ file: await toFile(wav(new Int16Array(160), 16_000), "a.wav"), model: "whisper-1" }));
    expect((asr as InstanceType<typeof OpenAI.APIError>).status).toBe(500);
    expect(fake.requests.map((r) => r.status)).toEqual([503, 429, 500]);
  });

  test("a stall before the answer, or mid-stream, lasts until the client aborts, and the request is marked aborted", async () => {
    await using fake = await startFakeOpenAi({
      speech: () => ({ stall: true }),
      chat: () => [{ text: "Hel" }, { stall: true }],
    });
    const openai = client(fake.url);

    const ac = new AbortController();
    const speaking = openai.audio.speech.create({ model: "tts-1", voice: "alloy", input: "hi", response_format: "pcm" }, { signal: ac.signal });
    const waiting = await fake.waitFor((r) => r.kind === "speech");
    expect(waiting.aborted).toBe(false);
    expect(waiting.status).toBeUndefined();
    ac.abort();
    expect(await rejection(speaking)).toBeInstanceOf(OpenAI.APIUserAbortError);
    expect(await fake.waitFor((r) => r.kind === "speech" && r.aborted)).toBe(waiting);

    const ac2 = new AbortController();
    const stream = await openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true }, { signal: ac2.signal });
    const it = stream[Symbol.asyncIterator]();
    expect((await it.next()).value?.choices[0]?.delta.role).toBe("assistant");
    expect((await it.next()).value?.choices[0]?.delta.content).toBe("Hel");
    ac2.abort();
    expect((await it.next()).done).toBe(true); // the SDK ends an aborted stream rather than throwing
    const chat = await fake.waitFor((r) => r.kind === "chat" && r.aborted);
    expect(chat.status).toBe(200);
    expect(chat.endedAt).toBeGreaterThanOrEqual(chat.startedAt);
  });

  test("a completed request is not marked aborted, and waitFor also sees requests still to come", async () => {
    await using fake = await startFakeOpenAi();
    const openai = client(fake.url);
    const seen = fake.waitFor((r): r is RecordedChat => r.kind === "chat" && r.model === "later");
    await openai.chat.completions.create({ model: "later", messages: [{ role: "user", content: "hi" }] });
    const rec = await seen;
    expect(rec.aborted).toBe(false);
    expect(rec.endedAt).toBeDefined();
  });

  test("latencies: transcription, first token and first speech byte come no sooner than set", async () => {
    await using fake = await startFakeOpenAi({ delays: { transcribeMs: 150 } });
    fake.setDelays({ firstTokenMs: 200, speechFirstByteMs: 100 });
    const openai = client(fake.url);

    let t0 = performance.now();
    await openai.audio.transcriptions.create({ file: await toFile(wav(new Int16Array(160), 16_000), "a.wav"), model: "whisper-1" });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(149);

    t0 = performance.now();
    const stream = await openai.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true });
    let firstToken: number | undefined;
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) firstToken ??= performance.now() - t0;
    expect(firstToken).toBeGreaterThanOrEqual(199);

    t0 = performance.now();
    const speech = await openai.audio.speech.create({ model: "tts-1", voice: "alloy", input: "hi", response_format: "pcm" });
    await speech.body!.getReader().read();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(99);
  });

  test("requireKey: a request without the key gets a 401; the key's value is never recorded", async () => {
    await using fake = await startFakeOpenAi({ requireKey: "sk-right-key" });
    const body = { model: "m", messages: [{ role: "user" as const, content: "hi" }] };
    expect(await rejection(client(fake.url, "none").chat.completions.create(body))).toBeInstanceOf(OpenAI.AuthenticationError);
    await fake.waitFor((r) => r.status === 401);
    const ok = await client(fake.url, "sk-right-key").chat.completions.create(body);
    expect(ok.choices[0]!.message.content).toBe("You said: hi. That is all.");
    expect(fake.requests.map((r) => [r.hasAuthorization, r.status])).toEqual([
      [true, 401],
      [true, 200],
    ]);
    expect(JSON.stringify(fake.requests)).not.toContain("sk-right-key");
  });

  test("an unknown path is a 404 with OpenAI's error body, and stop rejects pending waits", async () => {
    const fake = await startFakeOpenAi();
    const res = await fetch(`${fake.url}/embeddings`, { method: "POST", body: "{}" });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe("invalid_request_error");
    const never = fake.waitFor((r) => r.kind === "speech");
    await fake.stop();
    await expect(never).rejects.toThrow("stopped");
  });
});
