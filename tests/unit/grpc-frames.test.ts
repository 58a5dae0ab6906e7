import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { GrpcFrameReader, grpcFrame } from "../../src/grpc-frames";

/** Feeds `wire` to a reader in the given chunk sizes; returns the messages read. */
function readAll(wire: Buffer, cuts: number[], max = 1 << 20): { messages: number[][]; error: unknown } {
  const reader = new GrpcFrameReader(max);
  const messages: number[][] = [];
  let at = 0;
  let error: unknown;
  for (const size of [...cuts, wire.length]) {
    if (at >= wire.length) break;
    const chunk = wire.subarray(at, Math.min(wire.length, at + Math.max(1, size)));
    at += chunk.length;
    error = reader.push(Buffer.from(chunk), (body) => {
      messages.push([...body]);
      return true;
    });
    if (error) break;
  }
  return { messages, error };
}

describe("GrpcFrameReader", () => {
  test("any split of a stream of frames into chunks yields the same messages, in order", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 200 }),
        (bodies, cuts) => {
          const wire = Buffer.concat(bodies.map((b) => grpcFrame(b)));
          const { messages, error } = readAll(wire, cuts);
          expect(error).toBeUndefined();
          expect(messages).toEqual(bodies.map((b) => [...b]));
        },
      ),
      { seed: 4242, numRuns: 2000 },
    );
  });

  test("a message split into thousands of 1-byte chunks is read once complete", () => {
    const body = new Uint8Array(20_000).map((_, i) => i & 0xff);
    const { messages } = readAll(grpcFrame(body), new Array(30_000).fill(1));
    expect(messages).toHaveLength(1);
    expect(messages[0]!.length).toBe(20_000);
  });

  test("a length over the bound and a compressed flag are errors, not buffering", () => {
    const big = Buffer.from([0, 0, 0x10, 0, 0]); // announces 1 MiB
    expect(readAll(big, [], 1000).error).toEqual({ t: "too-large", bytes: 0x100000 });
    expect(readAll(Buffer.from([1, 0, 0, 0, 1, 7]), []).error).toEqual({ t: "compressed" });
  });
});
