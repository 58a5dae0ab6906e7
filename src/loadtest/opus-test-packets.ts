import OpusScript from "opusscript";
import { encodeFrame } from "../opus-wasm";

/** Frame durations libopus encodes that a load test may pace at, ms (2.5 and 5 left out). */
export const OPUS_FRAME_DURATIONS_MS = [10, 20, 40, 60, 80, 100, 120] as const;
export type OpusFrameDurationMs = (typeof OPUS_FRAME_DURATIONS_MS)[number];

/** Opus packets carry at most this many bytes per frame (RFC 6716 §3.2.1). */
export const OPUS_MAX_PACKET_BYTES = 1275;

/** What packets to encode. */
export interface OpusTestPacketsOptions {
  /** Duration of each packet, ms. */
  readonly frameMs: OpusFrameDurationMs;
  /**
   * Wanted size of each packet, bytes: the encoder runs constant-bitrate at
   * `targetBytes * 8 / frameMs` kbit/s. Short durations cannot reach large sizes (10 ms tops
   * out near 375 bytes): the packets then are the largest libopus makes.
   */
  readonly targetBytes: number;
  /** How many distinct packets. Default 8. */
  readonly count?: number;
}

const SAMPLE_RATE_HZ = 16000;
/** The longest frame `encodeFrame` takes (its buffer: 4 bytes a sample, 5,760 bytes). */
const MAX_SAFE_SAMPLES = 1440;
/** libopus ctl requests (opus_defines.h). */
const OPUS_SET_BITRATE_REQUEST = 4002;
const OPUS_SET_VBR_REQUEST = 4006;

/**
 * Real mono 16 kHz Opus packets of a voice-like signal (a gliding tone with a little noise),
 * as a device's microphone produces them: TOC byte, framing and size are what libopus
 * writes. Encoded once per run (libopus in wasm costs about a millisecond per frame) and
 * deterministic; callers stamp sequence numbers into copies or just before each send.
 */
export function opusTestPackets(options: OpusTestPacketsOptions): Uint8Array[] {
  const count = Math.max(1, Math.floor(options.count ?? 8));
  const samples = (SAMPLE_RATE_HZ * options.frameMs) / 1000;
  const bitrate = Math.min(512_000, Math.max(500, Math.round((options.targetBytes * 8 * 1000) / options.frameMs)));
  const encoder = new OpusScript(SAMPLE_RATE_HZ, 1, OpusScript.Application.VOIP);
  try {
    encoder.encoderCTL(OPUS_SET_BITRATE_REQUEST, bitrate);
    // Constant bitrate: every packet has the target size, so the load is the same each frame.
    encoder.encoderCTL(OPUS_SET_VBR_REQUEST, 0);
    const pcm = new Int16Array(samples);
    let noise = 0x2545f491;
    let phase = 0;
    const packets: Uint8Array[] = [];
    for (let f = 0; f < count; f++) {
      for (let i = 0; i < samples; i++) {
        // A pitch gliding between 150 and 350 Hz, like a voice's fundamental, so the encoder
        // codes speech rather than silence (which DTX-like paths would shrink).
        const hz = 250 + 100 * Math.sin((2 * Math.PI * (f * samples + i)) / (SAMPLE_RATE_HZ * 0.7));
        phase += (2 * Math.PI * hz) / SAMPLE_RATE_HZ;
        noise ^= noise << 13;
        noise ^= noise >>> 17;
        noise ^= noise << 5;
        pcm[i] = Math.round(9000 * Math.sin(phase) + (noise % 1500));
      }
      // Frames past 90 ms do not fit the handler's buffers as we call it: opusscript's own
      // encode (which writes past them, harmless with this one short-lived instance).
      packets.push(samples <= MAX_SAFE_SAMPLES ? encodeFrame(encoder, pcm, samples) : new Uint8Array(encoder.encode(Buffer.from(pcm.buffer), samples)));
    }
    return packets;
  } finally {
    encoder.delete();
  }
}
