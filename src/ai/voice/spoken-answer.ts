import { describeError } from "../../errors";
import type { Logger } from "../../log";
import { AsyncQueue } from "../async-queue";
import { type OpusFrameDurationMs, type OpusSampleRateHz, type ToneOptions, toneFrames } from "../opus-tone";
import { OpusFrameEncoder } from "./opus-frame-encoder";
import { PcmResampler } from "./pcm-resampler";
import { EncodeAhead } from "./encode-ahead";
import { SentenceSplitter } from "./sentence-splitter";
import type { TextToSpeech } from "./speech-stages";
import type { StreamingPlayback } from "./streaming-playback";

export interface SpokenAnswerOptions {
  /** Speech synthesis; undefined: each sentence is heard as the reference tone. */
  readonly tts: TextToSpeech | undefined;
  /** What the device was told the server's audio is. */
  readonly sampleRateHz: OpusSampleRateHz;
  readonly frameDurationMs: OpusFrameDurationMs;
  readonly tone: ToneOptions;
  readonly playback: StreamingPlayback;
  /** Frames the playback sends at once: the encoding keeps one more ready. */
  readonly prebufferFrames: number;
  /** The turn's: aborting it (barge-in) cancels the synthesis in flight. */
  readonly signal: AbortSignal;
  /** Longest wait for the speech endpoint's first or next bytes. */
  readonly idleTimeoutMs: number;
  /** Told how long each sentence's synthesis took to its first bytes, ms. */
  ttsFirstByte?(ms: number): void;
  /** Runs when playback reaches a sentence (the device's subtitle: `tts sentence_start`). */
  sentenceStarts(text: string, first: boolean): void;
  readonly logger: Logger;
}

/**
 * Speaks an answer while it is still being written: the text is cut into sentences as it
 * streams, each sentence is synthesized and its audio encoded into Opus frames of the
 * announced duration and queued on the playback as the bytes arrive, so the first sentence
 * plays while the LLM writes the next. Ends the playback when the text is done (the caller
 * hears of it through the playback's end). A sentence whose synthesis fails is heard as the
 * tone and logged; an aborted turn stops at once, queuing nothing more. Resolves with what
 * was said.
 */
export async function speakAnswer(text: AsyncIterable<string>, o: SpokenAnswerOptions): Promise<string> {
  const splitter = new SentenceSplitter();
  const encoder = o.tts === undefined ? undefined : new OpusFrameEncoder(o.sampleRateHz, o.frameDurationMs);
  // A frame beyond what the playback sends at once is kept ready.
  const feed = new EncodeAhead(o.playback, encoder, o.prebufferFrames + 1);
  const tone = () => toneFrames({ ...o.tone, sampleRateHz: o.sampleRateHz, frameDurationMs: o.frameDurationMs });
  let said = "";
  let sentences = 0;
  const speak = async (sentence: string) => {
    const first = sentences++ === 0;
    said += said === "" ? sentence : ` ${sentence}`;
    feed.mark(() => o.sentenceStarts(sentence, first));
    if (o.tts === undefined) {
      feed.frames(tone());
      return;
    }
    const ok = await synthesize(o.tts, feed, sentence, o);
    if (o.signal.aborted) return;
    feed.sentenceEnd();
    if (!ok) feed.frames(tone());
  };
  // The answer is read as fast as the LLM writes it, apart from the speaking: a slow
  // synthesis must not look to the LLM's idle timeout like a provider gone quiet.
  const written = new AsyncQueue<string>();
  const reading = (async () => {
    try {
      for await (const chunk of text) written.push(chunk);
    } finally {
      written.close();
    }
  })();
  // Awaited below when the answer is spoken to its end; an aborted turn does not wait for it.
  reading.catch(() => {});
  try {
    for await (const chunk of written) {
      if (o.signal.aborted) return said;
      for (const sentence of splitter.push(chunk)) {
        await speak(sentence);
        if (o.signal.aborted) return said;
      }
    }
    for (const sentence of splitter.flush()) {
      await speak(sentence);
      if (o.signal.aborted) return said;
    }
    await reading;
    feed.finish();
    return said;
  } catch (err) {
    feed.close();
    throw err;
  } finally {
    written.close();
    // Cut short (aborted): nothing more will be played, the encoder is freed now. Else the
    // feed frees it once it has encoded the last frame.
    if (o.signal.aborted) feed.close();
  }
}

/** One sentence through the speech endpoint into the playback; false when it failed. */
async function synthesize(tts: TextToSpeech, feed: EncodeAhead, sentence: string, o: SpokenAnswerOptions): Promise<boolean> {
  const idle = new AbortController();
  let timer = setTimeout(() => idle.abort(), o.idleTimeoutMs);
  const signal = AbortSignal.any([o.signal, idle.signal]);
  const resampler = new PcmResampler(tts.sampleRateHz, o.sampleRateHz);
  const startMs = performance.now();
  let first = true;
  try {
    for await (const pcm of tts.synthesize(sentence, signal)) {
      if (first) {
        first = false;
        o.ttsFirstByte?.(performance.now() - startMs);
      }
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), o.idleTimeoutMs);
      if (o.signal.aborted) return false;
      feed.pcm(resampler.push(pcm));
    }
    if (idle.signal.aborted) throw new Error(`no speech within ${o.idleTimeoutMs} ms`);
    feed.pcm(resampler.flush());
    return true;
  } catch (err) {
    if (o.signal.aborted) return false;
    const cause = idle.signal.aborted ? `no speech within ${o.idleTimeoutMs} ms` : describeError(err).slice(0, 300);
    o.logger.warn({ cause }, "speech synthesis failed; the sentence is heard as a tone");
    return false;
  } finally {
    clearTimeout(timer);
  }
}
