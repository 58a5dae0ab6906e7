import { describe, expect, test } from "bun:test";
import { OpusFrameDecoder, type OpusSampleRateHz } from "../../../src/ai/voice/opus-frame-decoder";
import { OpusFrameEncoder } from "../../../src/ai/voice/opus-frame-encoder";

function sine(frequencyHz: number, samples: number, peak: number, rate: number): Int16Array {
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) pcm[i] = Math.round(peak * Math.sin((2 * Math.PI * frequencyHz * i) / rate));
  return pcm;
}

function rms(pcm: Int16Array): number {
  let sum = 0;
  for (const s of pcm) sum += s * s;
  return pcm.length === 0 ? 0 : Math.sqrt(sum / pcm.length);
}

/** Pushes `pcm` in chunks of the given sizes, cycling, and collects the packets. */
function pushInChunks(encoder: OpusFrameEncoder, pcm: Int16Array, sizes: number[]): Uint8Array[][] {
  const results: Uint8Array[][] = [];
  for (let at = 0, i = 0; at < pcm.length; i++) {
    const size = sizes[i % sizes.length]!;
    results.push(encoder.push(pcm.subarray(at, at + size)));
    at += size;
  }
  return results;
}

function decodeAll(packets: Uint8Array[], rate: OpusSampleRateHz): Int16Array[] {
  const decoder = new OpusFrameDecoder(rate);
  try {
    return packets.map((p) => {
      const pcm = decoder.decode(p);
      if (pcm === undefined) throw new Error("the encoder produced a packet libopus rejects");
      return pcm;
    });
  } finally {
    decoder.delete();
  }
}

describe("OpusFrameEncoder", () => {
  test("2.5 frames pushed in odd-sized chunks give 2 packets, then flush gives the padded third", () => {
    const encoder = new OpusFrameEncoder(16000, 60);
    expect(encoder.frameSamples).toBe(960);
    const pcm = sine(440, 960 * 2.5, 10000, 16000);
    const perPush = pushInChunks(encoder, pcm, [7, 333, 101, 1001]);
    // Cumulative samples after each push: 7, 340, 441, 1442, 1449, 1782, 1883, 2400. A packet
    // appears exactly with the push that crosses 960 and the one that crosses 1920.
    expect(perPush.map((p) => p.length)).toEqual([0, 0, 0, 1, 0, 0, 0, 1]);
    expect(encoder.pendingSamples).toBe(480);
    const flushed = encoder.flush();
    expect(flushed).toHaveLength(1);
    expect(encoder.pendingSamples).toBe(0);
    expect(encoder.flush()).toEqual([]);

    const decoded = decodeAll([...perPush.flat(), ...flushed], 16000);
    expect(decoded.map((d) => d.length)).toEqual([960, 960, 960]);
    expect(rms(decoded[1]!)).toBeGreaterThan(5000);
    // The last frame is half sine, half padding: loud at the start, near silent at the end
    // (the codec delays its output by a few ms, so compare the outer quarters).
    const last = decoded[2]!;
    expect(rms(last.subarray(0, 240))).toBeGreaterThan(5000);
    expect(rms(last.subarray(720))).toBeLessThan(500);
    encoder.delete();
  });

  test("one push spanning several frames returns all of them; a whole-frame push keeps nothing", () => {
    const encoder = new OpusFrameEncoder(24000, 20);
    expect(encoder.frameSamples).toBe(480);
    const packets = encoder.push(sine(300, 480 * 4, 8000, 24000));
    expect(packets).toHaveLength(4);
    expect(encoder.pendingSamples).toBe(0);
    expect(encoder.flush()).toEqual([]);
    expect(decodeAll(packets, 24000).map((d) => d.length)).toEqual([480, 480, 480, 480]);
    encoder.delete();
  });

  test("the kept remainder is a copy: the caller may reuse its buffer", () => {
    const encoder = new OpusFrameEncoder(16000, 20);
    const chunk = sine(440, 160, 12000, 16000);
    expect(encoder.push(chunk)).toEqual([]);
    chunk.fill(0);
    const [packet] = encoder.push(chunk);
    const [pcm] = decodeAll([packet!], 16000);
    // Had the first half been kept by reference, the whole frame would be silence.
    expect(rms(pcm!)).toBeGreaterThan(2000);
    encoder.delete();
  });

  test("flush pads to a whole frame and silence stays silent", () => {
    const encoder = new OpusFrameEncoder(8000, 10);
    expect(encoder.push(new Int16Array(3))).toEqual([]);
    const flushed = encoder.flush();
    expect(flushed).toHaveLength(1);
    const [pcm] = decodeAll(flushed, 8000);
    expect(pcm!.length).toBe(80);
    expect(rms(pcm!)).toBeLessThan(10);
    encoder.delete();
  });

  test("use after delete throws; delete is idempotent", () => {
    const encoder = new OpusFrameEncoder(16000, 60);
    encoder.delete();
    encoder.delete();
    expect(() => encoder.push(new Int16Array(960))).toThrow(/after delete/);
    expect(() => encoder.flush()).toThrow(/after delete/);
  });
});
