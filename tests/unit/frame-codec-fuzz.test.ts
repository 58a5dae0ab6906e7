import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type DecodedFrame,
  decodeFrame,
  FrameEncoder,
  FrameKind,
  newDecodedFrame,
  type ProtocolVersion,
  parseProtocolVersion,
  V2_HEADER_BYTES,
  V3_HEADER_BYTES,
} from "../../src/device/frame-codec";

/** Fixed, so a failure replays; fast-check prints the seed and path of any counterexample. */
const SEED = 0x7a_10_2026;
const RUNS = 10_000;

const KINDS = new Set<number>(Object.values(FrameKind));
const versionArb = fc.constantFrom<ProtocolVersion>(1, 2, 3);
const headerBytes = (v: ProtocolVersion) => (v === 1 ? 0 : v === 2 ? V2_HEADER_BYTES : V3_HEADER_BYTES);

/** What the spec (device-protocol.md §6) says a message is, computed independently of the codec. */
function oracle(v: ProtocolVersion, d: Uint8Array): { kind: FrameKind; timestampMs: number } {
  const len = d.length;
  if (len === 0) return { kind: FrameKind.Empty, timestampMs: -1 };
  if (v === 1) return { kind: FrameKind.Audio, timestampMs: -1 };
  const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
  if (v === 2) {
    if (len < V2_HEADER_BYTES) return { kind: FrameKind.Short, timestampMs: -1 };
    const size = dv.getUint32(12);
    const timestampMs = dv.getUint32(8);
    if (size !== len - V2_HEADER_BYTES) return { kind: FrameKind.SizeMismatch, timestampMs };
    if (size === 0) return { kind: FrameKind.Empty, timestampMs };
    return { kind: dv.getUint16(2) === 1 ? FrameKind.Json : FrameKind.Audio, timestampMs };
  }
  if (len < V3_HEADER_BYTES) return { kind: FrameKind.Short, timestampMs: -1 };
  const size = dv.getUint16(2);
  if (size !== len - V3_HEADER_BYTES) return { kind: FrameKind.SizeMismatch, timestampMs: -1 };
  if (size === 0) return { kind: FrameKind.Empty, timestampMs: -1 };
  return { kind: d[0] === 1 ? FrameKind.Json : FrameKind.Audio, timestampMs: -1 };
}

/** Frames that are valid, or nearly so: a header whose size field is right or off by a little
 * (arbitrary bytes alone almost never hit a matching size field). */
const frameLikeArb = fc
  .tuple(versionArb, fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 300, size: "max" }), fc.constantFrom(0, 0, 0, 1, -1, 2, 0x10000, -0x10000))
  .map(([v, headerNoise, payload, delta]) => {
    const h = headerBytes(v);
    const out = new Uint8Array(h + payload.length);
    out.set(headerNoise.subarray(0, h));
    out.set(payload, h);
    const dv = new DataView(out.buffer);
    const size = payload.length + delta;
    if (v === 2) dv.setUint32(12, size >>> 0);
    if (v === 3) dv.setUint16(2, size & 0xffff);
    return { v, bytes: out };
  });

const anyBytesArb = fc.tuple(versionArb, fc.uint8Array({ maxLength: 300, size: "max" })).map(([v, bytes]) => ({ v, bytes }));

/** The message as a window into a larger buffer, as a socket hands out views. */
const windowedArb = fc
  .tuple(fc.oneof(anyBytesArb, frameLikeArb), fc.uint8Array({ maxLength: 8 }), fc.uint8Array({ maxLength: 8 }))
  .map(([{ v, bytes }, before, after]) => {
    const buf = new Uint8Array(before.length + bytes.length + after.length);
    buf.set(before);
    buf.set(bytes, before.length);
    buf.set(after, before.length + bytes.length);
    return { v, data: buf.subarray(before.length, before.length + bytes.length) };
  });

function within(payload: Uint8Array, data: Uint8Array): boolean {
  return payload.buffer === data.buffer && payload.byteOffset >= data.byteOffset && payload.byteOffset + payload.length <= data.byteOffset + data.length;
}

describe("decodeFrame on hostile input", () => {
  test("never throws; returns the kind the spec says; payload is a view within the input", () => {
    // One out-parameter for every message, as a session reuses it.
    const out: DecodedFrame = newDecodedFrame();
    fc.assert(
      fc.property(windowedArb, ({ v, data }) => {
        const kind = decodeFrame(v, data, out);
        expect(KINDS.has(kind)).toBe(true);
        const want = oracle(v, data);
        expect(kind).toBe(want.kind);
        if (kind === FrameKind.Audio || kind === FrameKind.Json || (kind === FrameKind.Empty && data.length > 0)) {
          expect(within(out.payload, data)).toBe(true);
          expect(out.payload.length).toBe(data.length - headerBytes(v));
          expect(out.payload.byteOffset).toBe(data.byteOffset + headerBytes(v));
          expect(out.timestampMs).toBe(want.timestampMs);
        }
        if (kind === FrameKind.Short) expect(data.length).toBeLessThan(headerBytes(v));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  test("truncating or extending a valid frame never yields a payload with the wrong length", () => {
    const out = newDecodedFrame();
    fc.assert(
      fc.property(
        fc.constantFrom<ProtocolVersion>(2, 3),
        fc.uint8Array({ minLength: 1, maxLength: 400, size: "max" }),
        fc.nat(),
        fc.uint8Array({ minLength: 1, maxLength: 8 }),
        (v, payload, cut, extra) => {
          const frame = new FrameEncoder(v).encode(payload, 1).slice();
          const truncated = frame.subarray(0, cut % frame.length);
          const tk = decodeFrame(v, truncated, out);
          expect<readonly FrameKind[]>([FrameKind.Short, FrameKind.SizeMismatch, FrameKind.Empty]).toContain(tk);
          const extended = new Uint8Array(frame.length + extra.length);
          extended.set(frame);
          extended.set(extra, frame.length);
          expect(decodeFrame(v, extended, out)).toBe(FrameKind.SizeMismatch);
        },
      ),
      { seed: SEED + 1, numRuns: RUNS / 2 },
    );
  });

  // Found by this fuzz test: a zero-length v2/v3 message used to leave the last payload in `out`.
  test("a zero-length v2/v3 message leaves no stale payload in the out-parameter", () => {
    fc.assert(
      fc.property(fc.constantFrom<ProtocolVersion>(2, 3), fc.uint8Array({ minLength: 1, maxLength: 64 }), (v, payload) => {
        const out = newDecodedFrame();
        decodeFrame(v, new FrameEncoder(v).encode(payload, 7).slice(), out);
        const empty = new Uint8Array(0);
        expect(decodeFrame(v, empty, out)).toBe(FrameKind.Empty);
        expect(out.payload.length).toBe(0);
        expect(out.timestampMs).toBe(-1);
      }),
      { seed: SEED + 2, numRuns: 100 },
    );
  });
});

describe("FrameEncoder -> decodeFrame round trip", () => {
  test("a sequence of payloads through one encoder per version decodes to the same bytes and timestamp", () => {
    fc.assert(
      fc.property(
        versionArb,
        fc.integer({ min: 0, max: 2048 }),
        fc.array(fc.tuple(fc.uint8Array({ maxLength: 1500, size: "max" }), fc.oneof(fc.nat(), fc.integer(), fc.double())), { minLength: 1, maxLength: 12 }),
        (v, initialBytes, frames) => {
          const enc = new FrameEncoder(v, initialBytes);
          const out = newDecodedFrame();
          for (const [payload, ts] of frames) {
            const frame = enc.encode(payload, ts);
            // Exactly header + payload: no slack, no growth the payload did not ask for.
            expect(frame.length).toBe(headerBytes(v) + payload.length);
            const kind = decodeFrame(v, frame, out);
            if (payload.length === 0) {
              expect(kind).toBe(FrameKind.Empty);
              continue;
            }
            expect(kind).toBe(FrameKind.Audio);
            expect(Buffer.from(out.payload).equals(Buffer.from(payload))).toBe(true);
            expect(out.timestampMs).toBe(v === 2 ? ts >>> 0 : -1);
          }
        },
      ),
      { seed: SEED + 3, numRuns: 2_000 },
    );
  });

  test("hand-built v2/v3 frames with any type, version and reserved bytes decode per the spec", () => {
    fc.assert(
      fc.property(
        fc.constantFrom<ProtocolVersion>(2, 3),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.uint8Array({ minLength: 1, maxLength: 500, size: "max" }),
        (v, type, versionField, reserved, ts, payload) => {
          const h = headerBytes(v);
          const frame = new Uint8Array(h + payload.length);
          const dv = new DataView(frame.buffer);
          if (v === 2) {
            dv.setUint16(0, versionField);
            dv.setUint16(2, type);
            dv.setUint32(4, reserved);
            dv.setUint32(8, ts);
            dv.setUint32(12, payload.length);
          } else {
            dv.setUint8(0, type & 0xff);
            dv.setUint8(1, reserved & 0xff);
            dv.setUint16(2, payload.length);
          }
          frame.set(payload, h);
          const out = newDecodedFrame();
          const json = v === 2 ? type === 1 : (type & 0xff) === 1;
          expect(decodeFrame(v, frame, out)).toBe(json ? FrameKind.Json : FrameKind.Audio);
          expect(Buffer.from(out.payload).equals(Buffer.from(payload))).toBe(true);
          expect(out.timestampMs).toBe(v === 2 ? ts : -1);
        },
      ),
      { seed: SEED + 4, numRuns: RUNS },
    );
  });

  test("v3 frames carry at most 65535 bytes: more throws a RangeError, never a corrupt frame", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0xfff0, max: 0x10010 }), (size) => {
        const enc = new FrameEncoder(3);
        const payload = new Uint8Array(size).fill(7);
        if (size > 0xffff) {
          expect(() => enc.encode(payload, 0)).toThrow(RangeError);
          return;
        }
        const out = newDecodedFrame();
        expect(decodeFrame(3, enc.encode(payload, 0), out)).toBe(FrameKind.Audio);
        expect(out.payload.length).toBe(size);
      }),
      { seed: SEED + 5, numRuns: 40 },
    );
  });
});

describe("parseProtocolVersion on hostile input", () => {
  test("never throws; only 1, 2, 3 or undefined, and only for values that are numerically 1-3", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: "binary", maxLength: 20 }),
          fc.string({ unit: "binary-ascii", maxLength: 8 }),
          fc.double(),
          fc.integer(),
          fc.constantFrom(null, undefined, "", " 2 ", "0x3", "3e0", "+1", "1.0", "Infinity", "NaN"),
        ),
        (value) => {
          const v = parseProtocolVersion(value);
          expect([1, 2, 3, undefined]).toContain(v);
          if (v !== undefined) expect(Number(value)).toBe(v);
        },
      ),
      { seed: SEED + 6, numRuns: RUNS },
    );
  });
});
