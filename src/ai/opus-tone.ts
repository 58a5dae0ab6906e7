import OpusScript from "opusscript";
import { encodeFrame } from "../opus-wasm";

/** The sample rates libopus accepts, in Hz. */
export type OpusSampleRateHz = 8000 | 12000 | 16000 | 24000 | 48000;

/** Opus frame durations this module encodes, in ms (libopus also has 2.5 and 5). */
export type OpusFrameDurationMs = 10 | 20 | 40 | 60;

/** What tone to encode. Every field has a default; equal options share one cached encoding. */
export interface ToneOptions {
  /** Pitch of the sine, Hz. Default 440. */
  frequencyHz?: number;
  /** Length of the tone, ms, rounded up to whole frames. Default 720 (12 frames of 60 ms). */
  durationMs?: number;
  /** Default 24000: what the gateway announces to devices for the server's audio. */
  sampleRateHz?: OpusSampleRateHz;
  /** Default 60: what the gateway announces to devices. */
  frameDurationMs?: OpusFrameDurationMs;
  /** Peak level, 0..1 of full scale. Default 0.3 (a polite beep, not a shriek). */
  amplitude?: number;
}

/** What silence to encode. */
export interface SilenceOptions {
  /** Default 16000: what devices send. */
  sampleRateHz?: OpusSampleRateHz;
  /** Default 60: what devices send. */
  frameDurationMs?: OpusFrameDurationMs;
}

const toneCache = new Map<string, readonly Uint8Array[]>();

/**
 * Valid mono Opus packets of a sine tone, one per frame: the "speech" of the reference AI
 * service. Encoded once per distinct options (libopus in wasm costs milliseconds per frame) and
 * cached; the returned array and its packets are shared, so callers must not mutate them.
 */
export function toneFrames(options: ToneOptions = {}): readonly Uint8Array[] {
  const frequencyHz = options.frequencyHz ?? 440;
  const durationMs = options.durationMs ?? 720;
  const sampleRateHz = options.sampleRateHz ?? 24000;
  const frameDurationMs = options.frameDurationMs ?? 60;
  const amplitude = Math.min(1, Math.max(0, options.amplitude ?? 0.3));
  const key = `${frequencyHz}/${durationMs}/${sampleRateHz}/${frameDurationMs}/${amplitude}`;
  const cached = toneCache.get(key);
  if (cached !== undefined) return cached;

  const frameSamples = (sampleRateHz * frameDurationMs) / 1000;
  const frameCount = Math.max(1, Math.ceil(durationMs / frameDurationMs));
  const totalSamples = frameSamples * frameCount;
  // A 10 ms fade at each end: a sine switched on or off abruptly clicks.
  const fadeSamples = Math.min(Math.floor(sampleRateHz / 100), Math.floor(totalSamples / 2));
  const peak = amplitude * 32767;
  const encoder = new OpusScript(sampleRateHz, 1, OpusScript.Application.AUDIO);
  try {
    const frames: Uint8Array[] = [];
    const pcm = new Int16Array(frameSamples);
    for (let f = 0; f < frameCount; f++) {
      for (let i = 0; i < frameSamples; i++) {
        const n = f * frameSamples + i;
        const fade = Math.min(1, n / fadeSamples, (totalSamples - 1 - n) / fadeSamples);
        pcm[i] = Math.round(peak * fade * Math.sin((2 * Math.PI * frequencyHz * n) / sampleRateHz));
      }
      frames.push(encodeOne(encoder, pcm));
    }
    const result = Object.freeze(frames);
    toneCache.set(key, result);
    return result;
  } finally {
    encoder.delete();
  }
}

/**
 * `count` Opus packets of digital silence encoded with DTX on, as a device with DTX sends them:
 * after a few normal frames most are 1 byte, with a ~20-byte comfort-noise refresh every
 * 400 ms. Not cached (tests ask for varying counts); costs ~1 ms per frame.
 */
export function silenceFrames(count: number, options: SilenceOptions = {}): Uint8Array[] {
  const sampleRateHz = options.sampleRateHz ?? 16000;
  const frameDurationMs = options.frameDurationMs ?? 60;
  const frameSamples = (sampleRateHz * frameDurationMs) / 1000;
  const encoder = new OpusScript(sampleRateHz, 1, OpusScript.Application.VOIP);
  try {
    encoder.encoderCTL(OPUS_SET_DTX_REQUEST, 1);
    const pcm = new Int16Array(frameSamples);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < count; i++) frames.push(encodeOne(encoder, pcm));
    return frames;
  } finally {
    encoder.delete();
  }
}

/** libopus' `OPUS_SET_DTX_REQUEST` ctl number (opus_defines.h). */
const OPUS_SET_DTX_REQUEST = 4016;

function encodeOne(encoder: OpusScript, pcm: Int16Array): Uint8Array {
  return encodeFrame(encoder, pcm, pcm.length);
}
