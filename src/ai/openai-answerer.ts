import OpenAI from "openai";
import type { ChatCompletionContentPart } from "openai/resources/chat/completions";
import type { Logger } from "../log";
import type { Answerer, Question } from "./answerer";
import { PROVIDER_FAILED_ANSWER, streamChatTurn } from "./voice/chat-turn";
import type { ConversationMemory } from "./voice/conversation-memory";

export { PROVIDER_FAILED_ANSWER } from "./voice/chat-turn";

export interface OpenAiAnswererOptions {
  /** The provider's API key (never logged); empty for a local server that needs none. */
  readonly apiKey: string;
  /** Any OpenAI-compatible endpoint (Doubao, Ollama, a local server...). Default: OpenAI's. */
  readonly baseUrl?: string;
  /** The model; must accept images for image questions. */
  readonly model: string;
  /** Longest wait for the first or the next chunk before giving up. Default 30,000. */
  readonly idleTimeoutMs?: number;
  /** The system prompt. Default: a short voice-assistant prompt. */
  readonly systemPrompt?: string;
  /** What the model remembers of each device's conversation. Default: nothing. */
  readonly memory?: ConversationMemory;
  readonly logger: Logger;
}

const DEFAULT_SYSTEM_PROMPT =
  "You are Xiaozhi, a friendly voice assistant on a small device. Answer briefly, in plain sentences that read well aloud, in the user's language. " +
  "When the user asks the device to do something (volume, lights, a photo...), call the matching tool instead of describing it.";

/** The API key to send when none is configured: the SDK insists on one, local servers ignore it. */
export const NO_API_KEY = "none";

/**
 * An {@link Answerer} backed by any OpenAI-compatible chat completions endpoint, streaming,
 * with the question's tools and the device's remembered conversation. Images travel as data
 * URLs to a vision-capable model. The answer stops when the caller's signal aborts (a device's
 * abort, a closed request) and when the provider goes quiet (see {@link streamChatTurn}); any
 * provider failure becomes a friendly sentence for the user and one log line with the cause.
 */
export function createOpenAiAnswerer(o: OpenAiAnswererOptions): Answerer {
  // Retries are ours to decide (a voice turn cannot wait for three), timeouts are per chunk.
  const client = new OpenAI({ apiKey: o.apiKey || NO_API_KEY, baseURL: o.baseUrl, maxRetries: 0, timeout: 10 * 60_000 });
  const idleTimeoutMs = o.idleTimeoutMs ?? 30_000;
  const system = o.systemPrompt || DEFAULT_SYSTEM_PROMPT;
  return {
    async *answer(question: Question, signal: AbortSignal): AsyncGenerator<string> {
      let said = "";
      for await (const text of streamChatTurn({
        client,
        model: o.model,
        messages: [{ role: "system", content: system }, ...(o.memory?.history(question.deviceId) ?? []), { role: "user", content: userContent(question) }],
        tools: question.tools ?? [],
        signal,
        idleTimeoutMs,
        logger: o.logger,
      })) {
        said += text;
        yield text;
      }
      // What was said is remembered, cut short by a barge-in or not (the user heard that
      // much); an apology is not part of the conversation.
      if (said.trim() !== "" && question.text.trim() !== "" && !said.includes(PROVIDER_FAILED_ANSWER))
        o.memory?.remember(question.deviceId, question.text.trim(), said.trim());
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
