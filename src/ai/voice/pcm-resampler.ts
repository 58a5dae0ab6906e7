/**
 * Streaming resampler for mono 16-bit PCM by linear interpolation: TTS at 24 kHz to the device's
 * 16 kHz, device audio to what an ASR wants. Cheap and good enough for speech; it has no
 * anti-aliasing filter, so downsampling folds content above the new Nyquist back down.
 *
 * Output sample k sits at input position k * fromHz / toHz. The position is kept as an exact
 * fraction across chunks, so chunked output equals one-shot output sample for sample: no clicks
 * at chunk boundaries and no drift over a long stream.
 */
export class PcmResampler {
  readonly fromHz: number;
  readonly toHz: number;
  /** fromHz / toHz in lowest terms: output k is at input (k * #step) / #per. */
  readonly #step: number;
  readonly #per: number;
  /** Input samples not yet behind every future output; index 0 is #bufferStart. */
  #buffer: Int16Array = new Int16Array(0);
  /**
   * Output index modulo #per, and the input index (relative to #buffer) where that cycle
   * started. Rebasing each #per outputs keeps the numbers small however long the stream.
   */
  #phase = 0;
  #cycleStart = 0;

  constructor(fromHz: number, toHz: number) {
    if (!Number.isSafeInteger(fromHz) || fromHz <= 0) throw new RangeError(`fromHz must be a positive integer, got ${fromHz}`);
    if (!Number.isSafeInteger(toHz) || toHz <= 0) throw new RangeError(`toHz must be a positive integer, got ${toHz}`);
    this.fromHz = fromHz;
    this.toHz = toHz;
    const g = gcd(fromHz, toHz);
    this.#step = fromHz / g;
    this.#per = toHz / g;
  }

  /** The output samples this chunk makes computable; later ones wait for the next input. */
  push(chunk: Int16Array): Int16Array {
    if (this.#step === this.#per) return chunk.slice();
    return this.#run(chunk, false);
  }

  /**
   * The output samples still owed for the input so far (positions past the last input sample
   * repeat it), then a fresh start: the next push begins a new stream.
   */
  flush(): Int16Array {
    if (this.#step === this.#per) return new Int16Array(0);
    const out = this.#run(new Int16Array(0), true);
    this.#buffer = new Int16Array(0);
    this.#phase = 0;
    this.#cycleStart = 0;
    return out;
  }

  #run(chunk: Int16Array, final: boolean): Int16Array {
    const input = concat(this.#buffer, chunk);
    const step = this.#step;
    const per = this.#per;
    // An output needs its right-hand neighbour, except at the end of the stream, where outputs
    // past the last input sample repeat it.
    const limit = input.length;
    const out = new Int16Array(Math.max(0, Math.ceil(((limit - this.#cycleStart) * per) / step) + 1));
    let n = 0;
    let phase = this.#phase;
    let cycleStart = this.#cycleStart;
    for (;;) {
      const numerator = phase * step;
      const i = cycleStart + Math.floor(numerator / per);
      const frac = numerator % per;
      if (i >= limit) break;
      const left = input[i]!;
      let value: number;
      if (frac === 0) {
        value = left;
      } else if (i + 1 < limit) {
        value = Math.round(left + ((input[i + 1]! - left) * frac) / per);
      } else if (final) {
        value = left;
      } else {
        break;
      }
      out[n++] = value;
      phase++;
      if (phase === per) {
        phase = 0;
        cycleStart += step;
      }
    }
    // Keep input from the next output's left neighbour on; drop the rest.
    const keepFrom = Math.min(limit, cycleStart + Math.floor((phase * step) / per));
    this.#buffer = input.slice(keepFrom);
    this.#cycleStart = cycleStart - keepFrom;
    this.#phase = phase;
    return out.slice(0, n);
  }
}

/** Resamples a whole clip at once; the same samples as pushing it in chunks and flushing. */
export function resamplePcm16(pcm: Int16Array, fromHz: number, toHz: number): Int16Array {
  const resampler = new PcmResampler(fromHz, toHz);
  return concat(resampler.push(pcm), resampler.flush());
}

function concat(a: Int16Array, b: Int16Array): Int16Array {
  if (a.length === 0) return b;
  if (b.length === 0) return a;
  const out = new Int16Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}
