import { createOpenAiAnswerer } from "../../src/ai/openai-answerer";
import type { AiServerOptions } from "../../src/ai/start-ai-server";
import type { ConversationMemory } from "../../src/ai/voice/conversation-memory";
import { openAiSpeechToText, openAiTextToSpeech } from "../../src/ai/voice/speech-stages";
import { type Logger, silentLogger } from "../../src/log";

/**
 * The reference AI's options with all three stages (recognition, LLM, speech) on one
 * OpenAI-compatible server at `baseUrl` (a fake one in tests), keyless, as a local server is.
 */
export function voiceAiOptions(
  baseUrl: string,
  o: { logger?: Logger; memory?: ConversationMemory; idleTimeoutMs?: number; voice?: AiServerOptions["voice"] } = {},
): AiServerOptions {
  const endpoint = { baseUrl, apiKey: "" };
  const logger = o.logger ?? silentLogger;
  return {
    logger,
    answerer: createOpenAiAnswerer({
      ...endpoint,
      model: "test-llm",
      memory: o.memory,
      logger,
      ...(o.idleTimeoutMs === undefined ? {} : { idleTimeoutMs: o.idleTimeoutMs }),
    }),
    voice: {
      stt: openAiSpeechToText({ ...endpoint, model: "test-asr", language: "" }),
      tts: openAiTextToSpeech({ ...endpoint, model: "test-tts", voice: "alloy", sampleRateHz: 24000 }),
      endOfSpeech: { thresholdDbfs: -45, minSpeechMs: 200, hangoverMs: 700 },
      ...o.voice,
    },
  };
}
