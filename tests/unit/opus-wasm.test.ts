import { expect, test } from "bun:test";
import { toneFrames } from "../../src/ai/opus-tone";
import { OpusFrameDecoder } from "../../src/ai/voice/opus-frame-decoder";
import { OpusFrameEncoder } from "../../src/ai/voice/opus-frame-encoder";
import { packetSamples } from "../../src/opus-wasm";

// opusscript's own encode/decode use memory at twice the address they allocated: with many
// instances that is another instance's, and at 100 concurrent conversations every answer
// failed. These calls keep within what was allocated.
test("400 encoders and decoders at once, used interleaved, each encode and decode correctly", () => {
  const pairs = Array.from({ length: 400 }, () => ({ enc: new OpusFrameEncoder(24000, 60), dec: new OpusFrameDecoder(16000) }));
  const speech = toneFrames({ frequencyHz: 400, durationMs: 180, sampleRateHz: 16000, frameDurationMs: 60 });
  const tone = new Int16Array(1440).map((_, i) => Math.round(8000 * Math.sin(i / 5)));
  try {
    for (let round = 0; round < 3; round++) {
      for (const { enc, dec } of pairs) {
        const [packet] = enc.push(tone);
        expect(packet!.length).toBeGreaterThan(10);
        expect(dec.decode(speech[round]!)?.length).toBe(960);
      }
    }
    // What an encoder made decodes back to the tone's length at its rate.
    const check = new OpusFrameDecoder(24000);
    expect(check.decode(pairs[0]!.enc.push(tone)[0]!)?.length).toBe(1440);
    check.delete();
    expect(pairs.every((p) => p.dec.rejected === 0)).toBe(true);
  } finally {
    for (const p of pairs) {
      p.enc.delete();
      p.dec.delete();
    }
  }
});

test("a packet longer than the decoder's buffer is refused, not written past it; the decoder goes on", () => {
  const dec = new OpusFrameDecoder(24000);
  const encoder120 = toneFrames({ frequencyHz: 300, durationMs: 120, sampleRateHz: 24000, frameDurationMs: 60 });
  // A code-3 packet of 6 CELT 20 ms frames: 120 ms, 2,880 samples at 24 kHz.
  const long = new Uint8Array([(31 << 3) | 3, 6, 0, 0, 0, 0, 0, 0]);
  expect(packetSamples(long, 24000)).toBe(2880);
  expect(dec.decode(long)).toBeUndefined();
  expect(dec.rejected).toBe(1);
  expect(dec.decode(encoder120[0]!)?.length).toBe(1440);
  dec.delete();
});

test("packet durations from the TOC byte (RFC 6716 3.1)", () => {
  expect(packetSamples(new Uint8Array([3 << 3]), 16000)).toBe(960); // SILK 60 ms, one frame
  expect(packetSamples(new Uint8Array([(1 << 3) | 1]), 16000)).toBe(640); // SILK 20 ms, two frames
  expect(packetSamples(new Uint8Array([(16 << 3) | 0]), 48000)).toBe(120); // CELT 2.5 ms
  expect(packetSamples(new Uint8Array([(13 << 3) | 3, 3]), 16000)).toBe(960); // hybrid 20 ms x 3
  expect(packetSamples(new Uint8Array([(3 << 3) | 3, 3]), 16000)).toBeUndefined(); // 180 ms: past 120
  expect(packetSamples(new Uint8Array([3]), 16000)).toBeUndefined(); // code 3 without its count
  expect(packetSamples(new Uint8Array([]), 16000)).toBeUndefined();
});
