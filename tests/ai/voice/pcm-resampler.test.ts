import { describe, expect, test } from "bun:test";
import { PcmResampler, resamplePcm16 } from "../../../src/ai/voice/pcm-resampler";
import { concatPcm } from "../../../src/ai/voice/concat-pcm";
import { frequencyOf } from "./pcm-measures";

function sine(frequencyHz: number, samples: number, peak: number, rate: number): Int16Array {
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) pcm[i] = Math.round(peak * Math.sin((2 * Math.PI * frequencyHz * i) / rate));
  return pcm;
}

/** Deterministic chunk sizes 0..max (xorshift32): the same sequence every run. */
function chunkSizes(seed: number, max: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state % (max + 1);
  };
}

function resampleInChunks(pcm: Int16Array, fromHz: number, toHz: number, seed: number, maxChunk: number): Int16Array {
  const resampler = new PcmResampler(fromHz, toHz);
  const next = chunkSizes(seed, maxChunk);
  const parts: Int16Array[] = [];
  for (let at = 0; at < pcm.length; ) {
    const size = next();
    parts.push(resampler.push(pcm.subarray(at, at + size)));
    at += size;
  }
  parts.push(resampler.flush());
  return concatPcm(parts);
}

describe("resamplePcm16", () => {
  test("24 kHz to 16 kHz and back: lengths scale by the rate ratio", () => {
    expect(resamplePcm16(new Int16Array(2400), 24000, 16000).length).toBe(1600);
    expect(resamplePcm16(new Int16Array(1600), 16000, 24000).length).toBe(2400);
    expect(resamplePcm16(new Int16Array(1), 16000, 24000).length).toBe(2);
    expect(resamplePcm16(new Int16Array(0), 24000, 16000).length).toBe(0);
    // Not a whole number of output samples: the last position still inside the input counts.
    expect(resamplePcm16(new Int16Array(1000), 44100, 16000).length).toBe(Math.ceil((1000 * 16000) / 44100));
  });

  test("a sine keeps its frequency and level", () => {
    for (const [from, to] of [
      [24000, 16000],
      [16000, 24000],
      [16000, 48000],
      [44100, 16000],
    ] as const) {
      const out = resamplePcm16(sine(440, from, 10000, from), from, to);
      expect(Math.abs(frequencyOf(out, to) - 440)).toBeLessThan(2);
      let peak = 0;
      for (const s of out) peak = Math.max(peak, Math.abs(s));
      expect(peak).toBeGreaterThan(9800);
      expect(peak).toBeLessThanOrEqual(10000);
    }
  });

  test("upsampled samples lie on the ideal sine (linear interpolation error only)", () => {
    const out = resamplePcm16(sine(440, 16000, 10000, 16000), 16000, 24000);
    const ideal = sine(440, out.length, 10000, 24000);
    let worst = 0;
    for (let i = 0; i < out.length - 2; i++) worst = Math.max(worst, Math.abs(out[i]! - ideal[i]!));
    // Chord error of a 440 Hz sine sampled at 16 kHz: 10000 * (1 - cos(pi * 440 / 16000)) ~ 37.
    expect(worst).toBeLessThan(45);
  });

  test("equal rates pass through as a copy", () => {
    const pcm = sine(300, 500, 5000, 16000);
    const out = resamplePcm16(pcm, 16000, 16000);
    expect(out).toEqual(pcm);
    expect(out.buffer).not.toBe(pcm.buffer);
    const resampler = new PcmResampler(8000, 8000);
    expect(resampler.push(pcm)).toEqual(pcm);
    expect(resampler.flush().length).toBe(0);
  });

  test("rejects rates that are not positive integers", () => {
    expect(() => new PcmResampler(0, 16000)).toThrow(RangeError);
    expect(() => new PcmResampler(16000, 22050.5)).toThrow(RangeError);
  });
});

describe("PcmResampler", () => {
  test("resampling in chunks of any size, empty and 1-sample ones included, equals resampling at once", () => {
    const pcm = sine(523, 24000, 12000, 24000);
    for (const [from, to] of [
      [24000, 16000],
      [16000, 24000],
      [48000, 16000],
      [44100, 16000],
      [16000, 44100],
      [8000, 48000],
    ] as const) {
      const whole = resamplePcm16(pcm, from, to);
      for (const [seed, maxChunk] of [
        [1, 3],
        [7, 200],
        [42, 4000],
      ] as const) {
        expect(resampleInChunks(pcm, from, to, seed, maxChunk)).toEqual(whole);
      }
    }
  });

  test("push returns what is computable now; flush the rest, then the next stream starts fresh", () => {
    const resampler = new PcmResampler(16000, 24000);
    // 4 inputs: positions 0, 2/3, 4/3, 2, 8/3 are computable (8/3 needs input 3, which is here),
    // position 10/3 needs input 4, which is not.
    expect(Array.from(resampler.push(new Int16Array([0, 300, 600, 900])))).toEqual([0, 200, 400, 600, 800]);
    expect(Array.from(resampler.flush())).toEqual([900]);
    expect(Array.from(resampler.push(new Int16Array([30, 0])))).toEqual([30, 10]);
    expect(Array.from(resampler.flush())).toEqual([0]);
  });

  test("a long stream does not drift: a million samples in 60 ms chunks give exactly the ratio", () => {
    const resampler = new PcmResampler(24000, 16000);
    const chunk = new Int16Array(1440);
    let total = 0;
    for (let i = 0; i < 700; i++) total += resampler.push(chunk).length;
    total += resampler.flush().length;
    expect(total).toBe((700 * 1440 * 2) / 3);
  });
});
