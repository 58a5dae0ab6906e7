/**
 * The binary audio framing of device protocol versions 1, 2 and 3 (docs/device-protocol.md).
 * All multi-byte fields are big-endian. Decoding reads the header in place and hands out the
 * payload as a view of the received buffer; encoding writes headers into a buffer the
 * encoder owns, so a frame costs no allocation beyond the view.
 */

export type ProtocolVersion = 1 | 2 | 3;

export const V2_HEADER_BYTES = 16;
export const V3_HEADER_BYTES = 4;

/** What a received binary message turned out to be. */
export const FrameKind = {
  /** An audio packet: `payload` and (v2) `timestampMs` are set. */
  Audio: 0,
  /** A zero-length message or payload: the end of a recording (treated as listen stop). */
  Empty: 1,
  /** A v2/v3 frame of type 1: `payload` is a JSON text message in UTF-8. */
  Json: 2,
  /** Shorter than its version's header. */
  Short: 3,
  /** The header's payload_size disagrees with the message length. */
  SizeMismatch: 4,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

/** Reusable out-parameter of decodeFrame: one per session, filled per frame. */
export interface DecodedFrame {
  payload: Uint8Array;
  /** The v2 header's timestamp, or -1 when the version carries none. */
  timestampMs: number;
}

export function newDecodedFrame(): DecodedFrame {
  return { payload: new Uint8Array(0), timestampMs: -1 };
}

/** Parses a Protocol-Version header/query value; undefined when absent or not 1, 2 or 3. */
export function parseProtocolVersion(value: string | number | null | undefined): ProtocolVersion | undefined {
  const n = typeof value === "number" ? value : Number(value);
  return n === 1 || n === 2 || n === 3 ? n : undefined;
}

/** Decodes one binary message of `version` into `out` and says what it is. */
export function decodeFrame(version: ProtocolVersion, data: Uint8Array, out: DecodedFrame): FrameKind {
  const len = data.length;
  if (version === 1) {
    out.payload = data;
    out.timestampMs = -1;
    return len === 0 ? FrameKind.Empty : FrameKind.Audio;
  }
  if (len === 0) {
    out.payload = data;
    out.timestampMs = -1;
    return FrameKind.Empty;
  }
  if (version === 2) {
    if (len < V2_HEADER_BYTES) return FrameKind.Short;
    // Some senders leave bytes 0-7 zero: only the type decides JSON, nothing is rejected on it.
    const type = (data[2]! << 8) | data[3]!;
    out.timestampMs = ((data[8]! << 24) | (data[9]! << 16) | (data[10]! << 8) | data[11]!) >>> 0;
    const size = ((data[12]! << 24) | (data[13]! << 16) | (data[14]! << 8) | data[15]!) >>> 0;
    if (size !== len - V2_HEADER_BYTES) return FrameKind.SizeMismatch;
    out.payload = data.subarray(V2_HEADER_BYTES);
    if (size === 0) return FrameKind.Empty;
    return type === 1 ? FrameKind.Json : FrameKind.Audio;
  }
  if (len < V3_HEADER_BYTES) return FrameKind.Short;
  const size = (data[2]! << 8) | data[3]!;
  if (size !== len - V3_HEADER_BYTES) return FrameKind.SizeMismatch;
  out.payload = data.subarray(V3_HEADER_BYTES);
  out.timestampMs = -1;
  if (size === 0) return FrameKind.Empty;
  return data[0] === 1 ? FrameKind.Json : FrameKind.Audio;
}

/**
 * Writes outgoing audio frames in one protocol version. The returned view is valid until the
 * next encode() (ws.send copies it), so one encoder per session serves every frame.
 */
export class FrameEncoder {
  readonly version: ProtocolVersion;
  private buf: Uint8Array;
  /** The last view handed out: reused while the frame length repeats (Opus packets of a
   * stream are mostly one size), saving a view allocation per frame. */
  private view: Uint8Array = new Uint8Array(0);

  constructor(version: ProtocolVersion, initialBytes = 1024) {
    this.version = version;
    this.buf = new Uint8Array(version === 1 ? 0 : initialBytes);
  }

  /** The frame for `payload`; v3 payloads over 65535 bytes cannot be framed (throws). */
  encode(payload: Uint8Array, timestampMs: number): Uint8Array {
    const v = this.version;
    if (v === 1) return payload;
    const header = v === 2 ? V2_HEADER_BYTES : V3_HEADER_BYTES;
    const size = payload.length;
    if (v === 3 && size > 0xffff) throw new RangeError(`a v3 frame carries at most 65535 bytes, got ${size}`);
    const total = header + size;
    if (this.buf.length < total) {
      this.buf = new Uint8Array(Math.max(total, this.buf.length * 2));
      this.view = new Uint8Array(0);
    }
    const b = this.buf;
    if (v === 2) {
      b[0] = 0;
      b[1] = 2;
      b[2] = 0;
      b[3] = 0; // type 0: opus
      b[4] = b[5] = b[6] = b[7] = 0;
      const ts = timestampMs >>> 0;
      b[8] = ts >>> 24;
      b[9] = (ts >>> 16) & 0xff;
      b[10] = (ts >>> 8) & 0xff;
      b[11] = ts & 0xff;
      b[12] = size >>> 24;
      b[13] = (size >>> 16) & 0xff;
      b[14] = (size >>> 8) & 0xff;
      b[15] = size & 0xff;
    } else {
      b[0] = 0; // type 0: opus
      b[1] = 0;
      b[2] = size >>> 8;
      b[3] = size & 0xff;
    }
    b.set(payload, header);
    if (this.view.length !== total) this.view = b.subarray(0, total);
    return this.view;
  }
}
