import OpenAI, { toFile } from "openai";
import { NO_API_KEY } from "../openai-answerer";
import { wavFromPcm16 } from "./wav";

/** Speech recognition: one utterance's PCM to its text. Rejects when the provider fails. */
export interface SpeechToText {
  transcribe(pcm: Int16Array, sampleRateHz: number, signal: AbortSignal): Promise<string>;
}

/** Speech synthesis: a sentence to 16-bit mono PCM at `sampleRateHz`, streamed as it comes. */
export interface TextToSpeech {
  readonly sampleRateHz: number;
  synthesize(text: string, signal: AbortSignal): AsyncIterable<Int16Array>;
}

/** Where one stage's OpenAI-compatible endpoint is. */
export interface StageEndpoint {
  /** Empty: OpenAI's. */
  readonly baseUrl: string;
  /** Empty: none (a local server). Never logged. */
  readonly apiKey: string;
  readonly model: string;
}

/** An OpenAI client as every stage makes it: our own retries (none) and timeouts. */
export function stageClient(e: StageEndpoint): OpenAI {
  return new OpenAI({ apiKey: e.apiKey || NO_API_KEY, baseURL: e.baseUrl || undefined, maxRetries: 0, timeout: 60_000 });
}

/** `audio.transcriptions` of any OpenAI-compatible server (OpenAI, a local Whisper server):
 * the utterance as a WAV file. */
export function openAiSpeechToText(e: StageEndpoint & { readonly language: string }): SpeechToText {
  const client = stageClient(e);
  return {
    async transcribe(pcm, sampleRateHz, signal) {
      const file = await toFile(wavFromPcm16(pcm, sampleRateHz), "utterance.wav", { type: "audio/wav" });
      const result = await client.audio.transcriptions.create(
        { file, model: e.model, response_format: "json", ...(e.language === "" ? {} : { language: e.language }) },
        { signal },
      );
      return result.text.trim();
    },
  };
}

/** `audio.speech` with `response_format: pcm` (raw 16-bit little-endian mono at
 * `sampleRateHz`, 24 kHz at OpenAI), read as it streams so that playback starts on the first
 * bytes, not the last. */
export function openAiTextToSpeech(e: StageEndpoint & { readonly voice: string; readonly sampleRateHz: number }): TextToSpeech {
  const client = stageClient(e);
  return {
    sampleRateHz: e.sampleRateHz,
    async *synthesize(text, signal) {
      const response = await client.audio.speech.create({ model: e.model, voice: e.voice, input: text, response_format: "pcm" }, { signal });
      const body = response.body;
      if (body === null) return;
      let odd: number | undefined;
      for await (const chunk of body as AsyncIterable<Uint8Array>) {
        // Samples may straddle chunks: keep an odd byte for the next one.
        let bytes = chunk;
        if (odd !== undefined) {
          bytes = new Uint8Array(chunk.length + 1);
          bytes[0] = odd;
          bytes.set(chunk, 1);
          odd = undefined;
        }
        if (bytes.length % 2 === 1) {
          odd = bytes[bytes.length - 1];
          bytes = bytes.subarray(0, bytes.length - 1);
        }
        if (bytes.length === 0) continue;
        const samples = new Int16Array(bytes.length / 2);
        const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
        for (let i = 0; i < samples.length; i++) samples[i] = view.getInt16(i * 2, true);
        yield samples;
      }
    },
  };
}
