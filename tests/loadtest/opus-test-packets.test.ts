import { describe, expect, test } from "bun:test";
import OpusScript from "opusscript";
import { FRAME_SEQ_BYTES, readFrameSeq, writeFrameSeq } from "../../src/loadtest/frame-seq";
import { opusTestPackets } from "../../src/loadtest/opus-test-packets";

describe("opusTestPackets and the sequence stamp", () => {
  test("real 60 ms Opus packets of the target size that still decode once stamped", () => {
    const packets = opusTestPackets({ frameMs: 60, targetBytes: 120 });
    expect(packets).toHaveLength(8);
    const decoder = new OpusScript(16000, 1);
    try {
      for (const [i, original] of packets.entries()) {
        expect(original.length).toBe(120);
        const p = original.slice();
        writeFrameSeq(p, 0xdead_0000 + i);
        expect(p[0]).toBe(original[0]!); // TOC byte kept
        expect(p.length).toBe(original.length);
        expect(readFrameSeq(p)).toBe(0xdead_0000 + i);
        // 60 ms of 16 kHz mono, 16-bit samples.
        expect(decoder.decode(Buffer.from(p)).length).toBe(960 * 2);
      }
    } finally {
      decoder.delete();
    }
  });

  test("other durations and sizes", () => {
    for (const [frameMs, targetBytes] of [
      [20, 40],
      [40, 200],
      [120, 300],
    ] as const) {
      const packets = opusTestPackets({ frameMs, targetBytes, count: 2 });
      expect(packets).toHaveLength(2);
      for (const p of packets) expect(Math.abs(p.length - targetBytes)).toBeLessThanOrEqual(2);
    }
  });

  test("the stamp round-trips the whole u32 range; short payloads read as -1", () => {
    const p = new Uint8Array(10);
    for (const seq of [0, 1, 255, 256, 65_535, 1_000_000, 2 ** 31, 2 ** 32 - 1]) {
      writeFrameSeq(p, seq);
      expect(readFrameSeq(p)).toBe(seq);
    }
    expect(readFrameSeq(new Uint8Array(FRAME_SEQ_BYTES))).toBe(-1);
  });
});
