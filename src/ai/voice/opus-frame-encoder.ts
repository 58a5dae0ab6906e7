import OpusScript from "opusscript";
import { encodeFrame } from "../../opus-wasm";
import type { OpusSampleRateHz } from "./opus-frame-decoder";

/** libopus ctl requests (opus_defines.h). */
const OPUS_SET_COMPLEXITY_REQUEST = 4010;
const OPUS_SET_BITRATE_REQUEST = 4002;

/** Opus frame durations this encoder produces, in ms (libopus also has 2.5, 5, 80, 100, 120). */
export type OpusFrameDurationMs = 10 | 20 | 40 | 60;

/**
 * Encodes a stream of mono 16-bit PCM, arriving in chunks of any size (TTS output), to one Opus
 * packet per whole frame, as devices expect. The samples of an incomplete frame wait for the next
 * `push` or are padded with silence by `flush`.
 */
export class OpusFrameEncoder {
  readonly sampleRateHz: OpusSampleRateHz;
  readonly frameDurationMs: OpusFrameDurationMs;
  /** Samples per frame: 960 for 16 kHz and 60 ms. */
  readonly frameSamples: number;
  #opus: OpusScript | undefined;
  /** The frame being filled; `#filled` samples of it are valid. */
  readonly #frame: Int16Array;
  #filled = 0;

  constructor(sampleRateHz: OpusSampleRateHz, frameDurationMs: OpusFrameDurationMs) {
    this.sampleRateHz = sampleRateHz;
    this.frameDurationMs = frameDurationMs;
    this.frameSamples = (sampleRateHz * frameDurationMs) / 1000;
    this.#frame = new Int16Array(this.frameSamples);
    // AUDIO, like the gateway's other encoders: TTS voices carry music-like detail that VOIP's
    // speech tuning would thin out.
    this.#opus = new OpusScript(sampleRateHz, 1, OpusScript.Application.AUDIO);
    // libopus' defaults (complexity 10, bitrate by rate) cost 2.3-3.3 ms of this thread per
    // 60 ms frame in wasm: at 100 answers at once the encoding alone held the event loop
    // ~30% of the time and the first audio came 1.6 s late. Complexity 3 at 24 kbit/s costs
    // 0.2-0.7 ms (measured on the development VM), ample for a voice on a small speaker.
    this.#opus.encoderCTL(OPUS_SET_COMPLEXITY_REQUEST, 3);
    this.#opus.encoderCTL(OPUS_SET_BITRATE_REQUEST, 24_000);
  }

  /** Samples waiting for a whole frame. */
  get pendingSamples(): number {
    return this.#filled;
  }

  /** The packets of the frames this chunk completes, in order; the rest of the chunk is kept. */
  push(pcm: Int16Array): Uint8Array[] {
    const opus = this.#live();
    const packets: Uint8Array[] = [];
    let at = 0;
    while (at < pcm.length) {
      const take = Math.min(this.frameSamples - this.#filled, pcm.length - at);
      this.#frame.set(pcm.subarray(at, at + take), this.#filled);
      this.#filled += take;
      at += take;
      if (this.#filled === this.frameSamples) {
        packets.push(this.#encode(opus));
        this.#filled = 0;
      }
    }
    return packets;
  }

  /** The kept samples padded with silence to one packet, or [] if none are kept. */
  flush(): Uint8Array[] {
    const opus = this.#live();
    if (this.#filled === 0) return [];
    this.#frame.fill(0, this.#filled);
    const packet = this.#encode(opus);
    this.#filled = 0;
    return [packet];
  }

  /** Frees the wasm encoder and drops kept samples. Idempotent. */
  delete(): void {
    this.#opus?.delete();
    this.#opus = undefined;
    this.#filled = 0;
  }

  #live(): OpusScript {
    // After delete() the wasm buffers are freed; writing into them could corrupt another coder.
    if (this.#opus === undefined) throw new Error("OpusFrameEncoder used after delete()");
    return this.#opus;
  }

  #encode(opus: OpusScript): Uint8Array {
    const frame = this.#frame;
    return encodeFrame(opus, frame, this.frameSamples);
  }
}
