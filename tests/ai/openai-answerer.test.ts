import { afterEach, describe, expect, test } from "bun:test";
import type { Answerer } from "../../src/ai/answerer";
import { createOpenAiAnswerer, PROVIDER_FAILED_ANSWER } from "../../src/ai/openai-answerer";
import { startStack } from "../helpers/start-stack";
import { capturedLogger } from "../helpers/captured-logger";

type Behaviour = "stream" | "error" | "stall-mid-stream";

interface SeenRequest {
  readonly authorization: string | null;
  readonly body: { model: string; stream: boolean; messages: { role: string; content: unknown }[] };
}

/** An OpenAI-compatible endpoint streaming SSE chat completion chunks, started per test. */
function fakeProvider(behaviour: Behaviour, words = ["Hello", " there", ", friend."]) {
  const seen: SeenRequest[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      if (new URL(req.url).pathname !== "/v1/chat/completions") return new Response("not found", { status: 404 });
      seen.push({ authorization: req.headers.get("authorization"), body: (await req.json()) as SeenRequest["body"] });
      if (behaviour === "error") return Response.json({ error: { message: "model overloaded", type: "server_error" } }, { status: 500 });
      const chunk = (content: string) =>
        `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          const enc = new TextEncoder();
          controller.enqueue(enc.encode(chunk(words[0]!)));
          if (behaviour === "stall-mid-stream") return; // never another byte, never closed
          for (const w of words.slice(1)) controller.enqueue(enc.encode(chunk(w)));
          controller.enqueue(enc.encode("data: [DONE]\n\n"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    },
  });
  return { server, seen, baseUrl: `http://127.0.0.1:${server.port}/v1` };
}

async function collect(answerer: Answerer, text: string, image?: { data: Uint8Array; mimeType: string }, signal = new AbortController().signal) {
  let out = "";
  for await (const c of answerer.answer({ text, image, deviceId: "d", userId: "u" }, signal)) out += c;
  return out;
}

const servers: { stop(force?: boolean): unknown }[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.stop(true);
});

describe("the OpenAI-compatible provider", () => {
  test("streams the model's answer; the key is sent as a bearer token and never logged", async () => {
    const p = fakeProvider("stream");
    servers.push(p.server);
    const { logger, lines } = capturedLogger();
    const answerer = createOpenAiAnswerer({ apiKey: "sk-test-secret", baseUrl: p.baseUrl, model: "doubao-lite", logger });
    expect(await collect(answerer, "hi")).toBe("Hello there, friend.");
    expect(p.seen[0]!.authorization).toBe("Bearer sk-test-secret");
    expect(p.seen[0]!.body).toMatchObject({ model: "doubao-lite", stream: true });
    expect(p.seen[0]!.body.messages.at(-1)).toEqual({ role: "user", content: "hi" });
    expect(JSON.stringify(lines)).not.toContain("sk-test-secret");
  });

  test("an image goes to the model as a data URL next to the question", async () => {
    const p = fakeProvider("stream", ["A cat."]);
    servers.push(p.server);
    const answerer = createOpenAiAnswerer({ apiKey: "k", baseUrl: p.baseUrl, model: "vision", logger: capturedLogger().logger });
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    expect(await collect(answerer, "what is this?", { data: png, mimeType: "image/png" })).toBe("A cat.");
    const content = p.seen[0]!.body.messages.at(-1)!.content as { type: string; text?: string; image_url?: { url: string } }[];
    expect(content[0]).toEqual({ type: "text", text: "what is this?" });
    expect(content[1]!.image_url!.url).toBe(`data:image/png;base64,${Buffer.from(png).toString("base64")}`);
  });

  test("a provider error becomes a friendly answer and one log line with the cause", async () => {
    const p = fakeProvider("error");
    servers.push(p.server);
    const { logger, lines } = capturedLogger();
    const answerer = createOpenAiAnswerer({ apiKey: "k", baseUrl: p.baseUrl, model: "m", logger });
    expect(await collect(answerer, "hi")).toBe(PROVIDER_FAILED_ANSWER);
    const warn = lines.find((l) => l.msg === "AI provider failed; answering with an apology");
    expect(String(warn?.cause)).toContain("500");
  });

  test("a provider that goes quiet mid-stream is cut off after the idle timeout: the answer never hangs", async () => {
    const p = fakeProvider("stall-mid-stream");
    servers.push(p.server);
    const { logger, lines } = capturedLogger();
    const answerer = createOpenAiAnswerer({ apiKey: "k", baseUrl: p.baseUrl, model: "m", logger, idleTimeoutMs: 300 });
    expect(await collect(answerer, "hi")).toBe(`Hello ${PROVIDER_FAILED_ANSWER}`);
    expect(String(lines.find((l) => l.cause !== undefined)?.cause)).toContain("no answer within 300 ms");
  });

  test("cancelling (the device aborted) stops the answer without an apology", async () => {
    const p = fakeProvider("stall-mid-stream");
    servers.push(p.server);
    const answerer = createOpenAiAnswerer({ apiKey: "k", baseUrl: p.baseUrl, model: "m", logger: capturedLogger().logger, idleTimeoutMs: 30_000 });
    const ac = new AbortController();
    const it = answerer.answer({ text: "hi", deviceId: "", userId: "" }, ac.signal)[Symbol.asyncIterator]();
    expect((await it.next()).value).toBe("Hello");
    ac.abort();
    expect((await it.next()).done).toBe(true);
  });

  test("end to end: a device's chat is answered by the provider, spoken with a subtitle", async () => {
    const p = fakeProvider("stream", ["It is", " sunny."]);
    servers.push(p.server);
    const answerer = createOpenAiAnswerer({ apiKey: "k", baseUrl: p.baseUrl, model: "m", logger: capturedLogger().logger });
    await using stack = await startStack({ ai: { port: 0, answerer } });
    const dev = await stack.device("ae:00:00:00:00:01", 3);
    await dev.hello();
    dev.sendJson({ type: "chat", text: "weather?" });
    const sub = await dev.waitJson((m) => m.type === "tts" && m.state === "sentence_start");
    expect(sub.text).toBe("It is sunny.");
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    expect(dev.audio().length).toBeGreaterThan(0);
    expect(p.seen[0]!.body.messages.at(-1)).toEqual({ role: "user", content: "weather?" });
  });
});
