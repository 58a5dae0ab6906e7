import { afterEach, describe, expect, test } from "bun:test";
import OpusScript from "opusscript";
import { OpusFrameDecoder, type OpusSampleRateHz } from "../../../src/ai/voice/opus-frame-decoder";
import { concatPcm } from "../../../src/ai/voice/concat-pcm";
import { frequencyOf } from "./pcm-measures";

const RATE = 16000;
const FRAME = 960; // 60 ms at 16 kHz, what devices send

function sine(frequencyHz: number, samples: number, peak: number, rate = RATE): Int16Array {
  const pcm = new Int16Array(samples);
  for (let i = 0; i < samples; i++) pcm[i] = Math.round(peak * Math.sin((2 * Math.PI * frequencyHz * i) / rate));
  return pcm;
}

function encodeFrames(pcm: Int16Array, frameSamples: number, rate: OpusSampleRateHz = RATE): Uint8Array[] {
  const encoder = new OpusScript(rate, 1, OpusScript.Application.AUDIO);
  try {
    const packets: Uint8Array[] = [];
    for (let at = 0; at + frameSamples <= pcm.length; at += frameSamples) {
      const frame = pcm.subarray(at, at + frameSamples);
      packets.push(new Uint8Array(encoder.encode(Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength), frameSamples)));
    }
    return packets;
  } finally {
    encoder.delete();
  }
}

function rms(pcm: Int16Array): number {
  let sum = 0;
  for (const s of pcm) sum += s * s;
  return Math.sqrt(sum / pcm.length);
}

let decoder: OpusFrameDecoder;
afterEach(() => decoder.delete());

describe("OpusFrameDecoder", () => {
  test("a 16 kHz 60 ms sine decodes to 960 samples per packet with its level and pitch", () => {
    decoder = new OpusFrameDecoder(RATE);
    const original = sine(440, FRAME * 6, 10000);
    const decoded = encodeFrames(original, FRAME).map((p) => decoder.decode(p));
    for (const pcm of decoded) expect(pcm?.length).toBe(FRAME);
    // Skip the first frame: the codec's look-ahead delays and fades in the start.
    const steady = concatPcm(decoded.slice(1).map((p) => p!));
    expect(20 * Math.log10(rms(steady) / rms(original))).toBeCloseTo(0, 0); // within 0.5 dB
    expect(Math.abs(frequencyOf(steady, RATE) - 440)).toBeLessThan(440 * 0.02);
    expect(decoder.rejected).toBe(0);
  });

  test("decodes at another rate than the packet was encoded at, as libopus allows", () => {
    decoder = new OpusFrameDecoder(24000);
    const decoded = encodeFrames(sine(1000, FRAME * 3, 8000), FRAME).map((p) => decoder.decode(p)!);
    expect(decoded.map((p) => p.length)).toEqual([1440, 1440, 1440]);
    expect(Math.abs(frequencyOf(concatPcm(decoded.slice(1)), 24000) - 1000)).toBeLessThan(20);
  });

  test("stereo output is interleaved: twice the samples", () => {
    decoder = new OpusFrameDecoder(RATE, 2);
    const [packet] = encodeFrames(sine(440, FRAME, 8000), FRAME);
    expect(decoder.decode(packet!)?.length).toBe(FRAME * 2);
  });

  test("garbage, empty and oversized packets give undefined, are counted, and do not stop valid ones", () => {
    decoder = new OpusFrameDecoder(RATE);
    const packets = encodeFrames(sine(440, FRAME * 3, 10000), FRAME);
    expect(decoder.decode(packets[0]!)?.length).toBe(FRAME);
    const garbage = [new Uint8Array([0xff, 0xff, 0xff]), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), new Uint8Array(0), new Uint8Array(5000)];
    for (const g of garbage) expect(decoder.decode(g)).toBeUndefined();
    expect(decoder.rejected).toBe(garbage.length);
    const after = decoder.decode(packets[1]!);
    expect(after?.length).toBe(FRAME);
    expect(rms(after!)).toBeGreaterThan(3000);
    expect(decoder.rejected).toBe(garbage.length);
  });

  test("a packet that is a view into a larger buffer decodes only its own bytes", () => {
    decoder = new OpusFrameDecoder(RATE);
    const [packet] = encodeFrames(sine(440, FRAME, 10000), FRAME);
    const big = new Uint8Array(packet!.length + 7).fill(0xff);
    big.set(packet!, 3);
    expect(decoder.decode(big.subarray(3, 3 + packet!.length))?.length).toBe(FRAME);
    expect(decoder.rejected).toBe(0);
  });

  test("decode after delete throws instead of touching freed wasm memory; delete is idempotent", () => {
    decoder = new OpusFrameDecoder(RATE);
    const [packet] = encodeFrames(sine(440, FRAME, 10000), FRAME);
    decoder.delete();
    expect(() => decoder.decode(packet!)).toThrow(/after delete/);
    decoder.delete();
  });
});
