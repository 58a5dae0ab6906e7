import { describe, expect, test } from "bun:test";
import {
  decodeFrame,
  FrameEncoder,
  FrameKind,
  newDecodedFrame,
  type ProtocolVersion,
  parseProtocolVersion,
  V2_HEADER_BYTES,
  V3_HEADER_BYTES,
} from "../../src/device/frame-codec";

function bytes(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** A v2 frame built by hand from the spec (all fields big-endian). */
function v2Frame(opts: { version?: number; type?: number; timestamp: number; size?: number; payload: Uint8Array }): Uint8Array {
  const out = new Uint8Array(V2_HEADER_BYTES + opts.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, opts.version ?? 2);
  dv.setUint16(2, opts.type ?? 0);
  dv.setUint32(4, 0);
  dv.setUint32(8, opts.timestamp);
  dv.setUint32(12, opts.size ?? opts.payload.length);
  out.set(opts.payload, V2_HEADER_BYTES);
  return out;
}

function v3Frame(opts: { type?: number; size?: number; payload: Uint8Array }): Uint8Array {
  const out = new Uint8Array(V3_HEADER_BYTES + opts.payload.length);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, opts.type ?? 0);
  dv.setUint8(1, 0);
  dv.setUint16(2, opts.size ?? opts.payload.length);
  out.set(opts.payload, V3_HEADER_BYTES);
  return out;
}

describe("parseProtocolVersion", () => {
  test("accepts 1, 2 and 3 as strings or numbers", () => {
    expect(parseProtocolVersion("1")).toBe(1);
    expect(parseProtocolVersion("2")).toBe(2);
    expect(parseProtocolVersion("3")).toBe(3);
    expect(parseProtocolVersion(3)).toBe(3);
  });

  test("anything else is undefined", () => {
    for (const v of ["0", "4", "", "abc", "2.5", null, undefined, 0, -1, 1.5]) {
      expect(parseProtocolVersion(v)).toBeUndefined();
    }
  });
});

describe("round trips", () => {
  test("v1: one message is the raw packet", () => {
    const enc = new FrameEncoder(1);
    const payload = bytes(120);
    const frame = enc.encode(payload, 1234);
    expect(Array.from(frame)).toEqual(Array.from(payload));
    const out = newDecodedFrame();
    expect(decodeFrame(1, frame, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual(Array.from(payload));
    expect(out.timestampMs).toBe(-1);
  });

  test("v2: payload and timestamp survive", () => {
    const enc = new FrameEncoder(2);
    const payload = bytes(200, 7);
    const frame = enc.encode(payload, 987654321);
    expect(frame.length).toBe(V2_HEADER_BYTES + 200);
    const out = newDecodedFrame();
    expect(decodeFrame(2, frame, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual(Array.from(payload));
    expect(out.timestampMs).toBe(987654321);
  });

  test("v2: timestamps above 2^31 come back unsigned", () => {
    const enc = new FrameEncoder(2);
    const frame = enc.encode(bytes(10), 0xfedcba98);
    const out = newDecodedFrame();
    expect(decodeFrame(2, frame, out)).toBe(FrameKind.Audio);
    expect(out.timestampMs).toBe(0xfedcba98);
  });

  test("v3: payload survives and carries no timestamp", () => {
    const enc = new FrameEncoder(3);
    const payload = bytes(321, 3);
    const frame = enc.encode(payload, 55);
    expect(frame.length).toBe(V3_HEADER_BYTES + 321);
    const out = newDecodedFrame();
    out.timestampMs = 99;
    expect(decodeFrame(3, frame, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual(Array.from(payload));
    expect(out.timestampMs).toBe(-1);
  });

  test("v3: the largest payload (65535 bytes) round trips", () => {
    const enc = new FrameEncoder(3);
    const payload = bytes(0xffff, 9);
    const frame = enc.encode(payload, 0);
    expect(frame[2]).toBe(0xff);
    expect(frame[3]).toBe(0xff);
    const out = newDecodedFrame();
    expect(decodeFrame(3, frame, out)).toBe(FrameKind.Audio);
    expect(out.payload.length).toBe(0xffff);
    expect(out.payload[0xfffe]).toBe(payload[0xfffe]!);
  });
});

describe("decodeFrame v2", () => {
  test("a header with bytes 0-7 zero still decodes", () => {
    const payload = bytes(40);
    const frame = v2Frame({ version: 0, type: 0, timestamp: 4242, payload });
    for (let i = 0; i < 8; i++) expect(frame[i]).toBe(0);
    const out = newDecodedFrame();
    expect(decodeFrame(2, frame, out)).toBe(FrameKind.Audio);
    expect(out.timestampMs).toBe(4242);
    expect(Array.from(out.payload)).toEqual(Array.from(payload));
  });

  test("an odd version field is not rejected", () => {
    const frame = v2Frame({ version: 7, timestamp: 1, payload: bytes(5) });
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.Audio);
  });

  test("payload_size larger than the message -> SizeMismatch", () => {
    const frame = v2Frame({ timestamp: 1, size: 11, payload: bytes(10) });
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.SizeMismatch);
  });

  test("payload_size smaller than the message -> SizeMismatch", () => {
    const frame = v2Frame({ timestamp: 1, size: 9, payload: bytes(10) });
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.SizeMismatch);
  });

  test("a huge payload_size (high bit set) -> SizeMismatch, not a negative size", () => {
    const frame = v2Frame({ timestamp: 1, size: 0xffffffff, payload: bytes(10) });
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.SizeMismatch);
  });

  test("shorter than the 16-byte header -> Short", () => {
    expect(decodeFrame(2, new Uint8Array(15), newDecodedFrame())).toBe(FrameKind.Short);
    expect(decodeFrame(2, new Uint8Array(1), newDecodedFrame())).toBe(FrameKind.Short);
  });

  test("a zero-length message -> Empty", () => {
    expect(decodeFrame(2, new Uint8Array(0), newDecodedFrame())).toBe(FrameKind.Empty);
  });

  test("a header with payload_size 0 and nothing after -> Empty", () => {
    const frame = v2Frame({ timestamp: 10, payload: new Uint8Array(0) });
    expect(frame.length).toBe(16);
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.Empty);
  });

  test("type 1 -> Json with the UTF-8 text as payload", () => {
    const text = '{"type":"listen","state":"stop"}';
    const frame = v2Frame({ type: 1, timestamp: 0, payload: new TextEncoder().encode(text) });
    const out = newDecodedFrame();
    expect(decodeFrame(2, frame, out)).toBe(FrameKind.Json);
    expect(new TextDecoder().decode(out.payload)).toBe(text);
  });
});

describe("decodeFrame v3", () => {
  test("payload_size disagreeing with the length -> SizeMismatch", () => {
    expect(decodeFrame(3, v3Frame({ size: 6, payload: bytes(5) }), newDecodedFrame())).toBe(FrameKind.SizeMismatch);
    expect(decodeFrame(3, v3Frame({ size: 4, payload: bytes(5) }), newDecodedFrame())).toBe(FrameKind.SizeMismatch);
  });

  test("shorter than the 4-byte header -> Short", () => {
    expect(decodeFrame(3, new Uint8Array(3), newDecodedFrame())).toBe(FrameKind.Short);
    expect(decodeFrame(3, new Uint8Array(1), newDecodedFrame())).toBe(FrameKind.Short);
  });

  test("zero-length message and zero payload -> Empty", () => {
    expect(decodeFrame(3, new Uint8Array(0), newDecodedFrame())).toBe(FrameKind.Empty);
    expect(decodeFrame(3, v3Frame({ payload: new Uint8Array(0) }), newDecodedFrame())).toBe(FrameKind.Empty);
  });

  test("type 1 -> Json", () => {
    const text = '{"type":"ping"}';
    const out = newDecodedFrame();
    expect(decodeFrame(3, v3Frame({ type: 1, payload: new TextEncoder().encode(text) }), out)).toBe(FrameKind.Json);
    expect(new TextDecoder().decode(out.payload)).toBe(text);
  });
});

describe("decodeFrame v1", () => {
  test("a zero-length message -> Empty", () => {
    expect(decodeFrame(1, new Uint8Array(0), newDecodedFrame())).toBe(FrameKind.Empty);
  });

  test("any non-empty message is audio, even a single byte", () => {
    const out = newDecodedFrame();
    expect(decodeFrame(1, Uint8Array.of(0xf8), out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual([0xf8]);
  });
});

describe("decoded payload is a view, not a copy", () => {
  const cases: [ProtocolVersion, number, Uint8Array][] = [
    [2, V2_HEADER_BYTES, v2Frame({ timestamp: 5, payload: bytes(30) })],
    [3, V3_HEADER_BYTES, v3Frame({ payload: bytes(30) })],
    [1, 0, bytes(30)],
  ];
  for (const [version, headerBytes, frame] of cases) {
    test(`v${version}`, () => {
      const out = newDecodedFrame();
      expect(decodeFrame(version, frame, out)).toBe(FrameKind.Audio);
      expect(out.payload.buffer).toBe(frame.buffer);
      expect(out.payload.byteOffset).toBe(frame.byteOffset + headerBytes);
      expect(out.payload.length).toBe(30);
      // Writing through the input shows up in the payload: they share memory.
      frame[headerBytes] = 0xaa;
      expect(out.payload[0]).toBe(0xaa);
    });
  }

  test("a frame that is itself a view at an offset decodes from the right place", () => {
    const backing = new Uint8Array(100);
    const inner = v3Frame({ payload: Uint8Array.of(1, 2, 3) });
    backing.set(inner, 50);
    const view = backing.subarray(50, 50 + inner.length);
    const out = newDecodedFrame();
    expect(decodeFrame(3, view, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual([1, 2, 3]);
    expect(out.payload.buffer).toBe(backing.buffer);
    expect(out.payload.byteOffset).toBe(54);
  });
});

describe("FrameEncoder buffers", () => {
  test("reuses its buffer: the second encode overwrites the first frame", () => {
    const enc = new FrameEncoder(2);
    const first = enc.encode(Uint8Array.of(1, 2, 3), 100);
    const firstCopy = Array.from(first);
    const second = enc.encode(Uint8Array.of(9, 8, 7), 200);
    expect(second.buffer).toBe(first.buffer);
    expect(Array.from(first)).toEqual(Array.from(second));
    expect(Array.from(first)).not.toEqual(firstCopy);
    const out = newDecodedFrame();
    expect(decodeFrame(2, first, out)).toBe(FrameKind.Audio);
    expect(out.timestampMs).toBe(200);
    expect(Array.from(out.payload)).toEqual([9, 8, 7]);
  });

  test("v3 reuses its buffer too", () => {
    const enc = new FrameEncoder(3);
    const a = enc.encode(Uint8Array.of(1), 0);
    const b = enc.encode(Uint8Array.of(2), 0);
    expect(b.buffer).toBe(a.buffer);
    expect(a[4]).toBe(2);
  });

  test("grows for payloads bigger than the initial buffer", () => {
    const enc = new FrameEncoder(2, 32);
    const small = enc.encode(bytes(8), 1);
    const big = bytes(5000, 11);
    const frame = enc.encode(big, 2);
    expect(frame.length).toBe(V2_HEADER_BYTES + 5000);
    expect(frame.buffer).not.toBe(small.buffer);
    const out = newDecodedFrame();
    expect(decodeFrame(2, frame, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual(Array.from(big));
    // A smaller frame after growing still has the right length and content.
    const after = enc.encode(Uint8Array.of(4, 5), 3);
    expect(after.length).toBe(V2_HEADER_BYTES + 2);
    expect(decodeFrame(2, after, out)).toBe(FrameKind.Audio);
    expect(Array.from(out.payload)).toEqual([4, 5]);
  });

  test("v3 over 65535 bytes throws", () => {
    const enc = new FrameEncoder(3);
    expect(() => enc.encode(new Uint8Array(65536), 0)).toThrow(RangeError);
  });

  test("v2 carries payloads over 65535 bytes", () => {
    const enc = new FrameEncoder(2);
    const frame = enc.encode(new Uint8Array(70000), 0);
    expect(decodeFrame(2, frame, newDecodedFrame())).toBe(FrameKind.Audio);
    expect(frame[13]).toBe(0x01);
    expect(frame[14]).toBe(0x11);
    expect(frame[15]).toBe(0x70);
  });
});

describe("byte layout (big-endian, device-protocol.md §6)", () => {
  test("v2 header", () => {
    const enc = new FrameEncoder(2);
    const frame = enc.encode(new Uint8Array(0x0102).fill(0xee), 0x0a0b0c0d);
    // u16 version = 2
    expect(frame[0]).toBe(0x00);
    expect(frame[1]).toBe(0x02);
    // u16 type = 0 (opus)
    expect(frame[2]).toBe(0x00);
    expect(frame[3]).toBe(0x00);
    // u32 reserved
    expect(Array.from(frame.subarray(4, 8))).toEqual([0, 0, 0, 0]);
    // u32 timestamp_ms
    expect(Array.from(frame.subarray(8, 12))).toEqual([0x0a, 0x0b, 0x0c, 0x0d]);
    // u32 payload_size = 258
    expect(Array.from(frame.subarray(12, 16))).toEqual([0x00, 0x00, 0x01, 0x02]);
    expect(frame[16]).toBe(0xee);
    expect(frame.length).toBe(16 + 0x0102);
  });

  test("v2 header reserved bytes are zero even after a reused buffer held data", () => {
    const enc = new FrameEncoder(2, 64);
    enc.encode(new Uint8Array(48).fill(0xff), 0xffffffff);
    const frame = enc.encode(Uint8Array.of(1), 0);
    expect(Array.from(frame.subarray(0, 16))).toEqual([0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });

  test("v3 header", () => {
    const enc = new FrameEncoder(3);
    const frame = enc.encode(new Uint8Array(0x0203).fill(0x5a), 999);
    // u8 type = 0, u8 reserved = 0, u16 payload_size = 0x0203
    expect(Array.from(frame.subarray(0, 4))).toEqual([0x00, 0x00, 0x02, 0x03]);
    expect(frame[4]).toBe(0x5a);
    expect(frame.length).toBe(4 + 0x0203);
  });
});
