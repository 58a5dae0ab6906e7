import OpenAI from "openai";
import type { ChatCompletionContentPart } from "openai/resources/chat/completions";
import { describeError } from "../errors";
import type { Logger } from "../log";
import type { Answerer, Question } from "./answerer";

export interface OpenAiAnswererOptions {
  /** The provider's API key (never logged). */
  readonly apiKey: string;
  /** Any OpenAI-compatible endpoint (Doubao, a local server...). Default: OpenAI's. */
  readonly baseUrl?: string;
  /** The model; must accept images for image questions. */
  readonly model: string;
  /** Longest wait for the first or the next chunk before giving up. Default 30,000. */
  readonly idleTimeoutMs?: number;
  /** The system prompt. Default: a short voice-assistant prompt. */
  readonly systemPrompt?: string;
  readonly logger: Logger;
}

/** What the user hears when the provider fails: the cause goes to the log, not to them. */
export const PROVIDER_FAILED_ANSWER = "Sorry, I cannot reach my language model right now. Please try again in a moment.";

const DEFAULT_SYSTEM_PROMPT =
  "You are Xiaozhi, a friendly voice assistant on a small device. Answer briefly, in plain sentences that read well aloud, in the user's language.";

/**
 * An {@link Answerer} backed by any OpenAI-compatible chat completions endpoint, streaming.
 * Images travel as data URLs to a vision-capable model. The answer stops when the caller's
 * signal aborts (a device's abort, a closed request) and when the provider goes quiet for
 * `idleTimeoutMs`, whether before its first chunk or mid-stream, so a stuck provider never
 * hangs a stream. Any provider failure becomes a friendly sentence for the user and one log
 * line with the cause.
 */
export function createOpenAiAnswerer(o: OpenAiAnswererOptions): Answerer {
  // Retries are ours to decide (a voice turn cannot wait for three), timeouts are per chunk.
  const client = new OpenAI({ apiKey: o.apiKey, baseURL: o.baseUrl, maxRetries: 0, timeout: 10 * 60_000 });
  const idleTimeoutMs = o.idleTimeoutMs ?? 30_000;
  const system = o.systemPrompt ?? DEFAULT_SYSTEM_PROMPT;
  return {
    async *answer(question: Question, signal: AbortSignal): AsyncGenerator<string> {
      const idle = new AbortController();
      let timer = setTimeout(() => idle.abort(), idleTimeoutMs);
      const both = AbortSignal.any([signal, idle.signal]);
      let produced = false;
      try {
        const stream = await client.chat.completions.create(
          {
            model: o.model,
            stream: true,
            messages: [
              { role: "system", content: system },
              { role: "user", content: userContent(question) },
            ],
          },
          { signal: both },
        );
        for await (const chunk of stream) {
          clearTimeout(timer);
          timer = setTimeout(() => idle.abort(), idleTimeoutMs);
          const delta = chunk.choices[0]?.delta?.content;
          if (delta) {
            produced = true;
            yield delta;
          }
        }
        // An abort can end the SDK's stream quietly instead of throwing: a cut-off answer
        // must still be reported as one.
        if (idle.signal.aborted && !signal.aborted) throw new Error("idle");
        if (!produced) throw new Error("the provider returned an empty answer");
      } catch (err) {
        if (signal.aborted) return;
        const cause = idle.signal.aborted ? `no answer within ${idleTimeoutMs} ms` : providerError(err);
        o.logger.warn({ model: o.model, baseUrl: o.baseUrl, cause }, "AI provider failed; answering with an apology");
        yield produced ? ` ${PROVIDER_FAILED_ANSWER}` : PROVIDER_FAILED_ANSWER;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

function userContent(q: Question): string | ChatCompletionContentPart[] {
  if (q.image === undefined) return q.text;
  const url = `data:${q.image.mimeType || "image/jpeg"};base64,${Buffer.from(q.image.data).toString("base64")}`;
  return [
    { type: "text", text: q.text.trim() || "What is in this picture?" },
    { type: "image_url", image_url: { url } },
  ];
}

/** The provider's status and message, without anything from our request (the key). */
function providerError(err: unknown): string {
  if (err instanceof OpenAI.APIError) return `HTTP ${err.status ?? "?"}: ${err.message}`.slice(0, 300);
  return describeError(err).slice(0, 300);
}
