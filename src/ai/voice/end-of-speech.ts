/** What `levelDbfs` reports for digital silence, instead of -Infinity. */
export const DBFS_FLOOR = -120;

/** RMS level of 16-bit PCM relative to full scale, in dB; DBFS_FLOOR for silence or no samples. */
export function levelDbfs(pcm: Int16Array): number {
  if (pcm.length === 0) return DBFS_FLOOR;
  let sum = 0;
  for (const s of pcm) sum += s * s;
  const rms = Math.sqrt(sum / pcm.length) / 32768;
  return rms === 0 ? DBFS_FLOOR : Math.max(DBFS_FLOOR, 20 * Math.log10(rms));
}

export interface EndOfSpeechOptions {
  /** Frames at or above this RMS level are speech, e.g. -45. */
  thresholdDbfs: number;
  /** Loud audio must last this long, without a quiet frame, to start speech, e.g. 200. */
  minSpeechMs: number;
  /** Quiet after speech that ends the utterance, e.g. 700. */
  hangoverMs: number;
}

export type EndOfSpeechState = "waiting" | "speech" | "ended";

/**
 * Decides, from the loudness of decoded mono frames, when a speaker in "auto" listening mode has
 * finished: loud for at least minSpeechMs, then quiet for hangoverMs. A click or a cough shorter
 * than minSpeechMs is not speech, so it cannot end anything; quiet before speech never ends
 * anything (the user may still be thinking). "ended" sticks until `reset()`.
 */
export class EndOfSpeechDetector {
  readonly #options: EndOfSpeechOptions;
  #state: EndOfSpeechState = "waiting";
  /** Unbroken loud time while waiting. */
  #loudMs = 0;
  /** Unbroken quiet time since speech started. */
  #quietMs = 0;

  constructor(options: EndOfSpeechOptions) {
    if (!Number.isFinite(options.thresholdDbfs)) throw new RangeError(`thresholdDbfs must be finite, got ${options.thresholdDbfs}`);
    if (!(options.minSpeechMs >= 0)) throw new RangeError(`minSpeechMs must be >= 0, got ${options.minSpeechMs}`);
    if (!(options.hangoverMs > 0)) throw new RangeError(`hangoverMs must be > 0, got ${options.hangoverMs}`);
    this.#options = { ...options };
  }

  /** True once loud audio has lasted minSpeechMs; stays true until `reset()`. */
  get speechStarted(): boolean {
    return this.#state !== "waiting";
  }

  /** Feeds one frame (any length) and returns the state after it. */
  push(pcm: Int16Array, sampleRateHz: number): EndOfSpeechState {
    if (this.#state === "ended" || pcm.length === 0) return this.#state;
    if (!(sampleRateHz > 0)) throw new RangeError(`sampleRateHz must be > 0, got ${sampleRateHz}`);
    const ms = (pcm.length * 1000) / sampleRateHz;
    const loud = levelDbfs(pcm) >= this.#options.thresholdDbfs;
    if (this.#state === "waiting") {
      this.#loudMs = loud ? this.#loudMs + ms : 0;
      if (loud && this.#loudMs >= this.#options.minSpeechMs) this.#state = "speech";
    } else {
      this.#quietMs = loud ? 0 : this.#quietMs + ms;
      if (this.#quietMs >= this.#options.hangoverMs) this.#state = "ended";
    }
    return this.#state;
  }

  /** Back to "waiting", for the next utterance. */
  reset(): void {
    this.#state = "waiting";
    this.#loudMs = 0;
    this.#quietMs = 0;
  }
}
