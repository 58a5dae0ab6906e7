import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType as Wire } from "@bufbuild/protobuf/wire";
import { type DeviceEvent, DeviceEventSchema, type RelayRequest, type RelayResponse, type ServerEvent, ServerEventSchema } from "../gen/xiaozhi/ai/v1/ai_pb";

/**
 * The Relay messages as gRPC frames, with the audio events (nearly all of them) encoded and
 * decoded by hand and every other event by protobuf-es.
 *
 * Why: Relay carries every frame of every device both ways. protobuf-es's reflective encoder
 * built each batch in chunks, joined them (a copy), and the gRPC frame copied it again; its
 * decoder walks the descriptors per field. Both ran at about 15% of the gateway's samples at
 * 1,000 streaming devices. Here one batch is one buffer (the 5-byte gRPC prefix included),
 * each payload is copied once, and an audio event is read in one pass into a plain object.
 *
 * The bytes are exactly protobuf-es's (proto3: zero scalars and empty bytes omitted, fields in
 * number order), which the tests check against it; decoding accepts anything a conformant
 * encoder may send (unknown fields skipped, varints up to 10 bytes, fields in any order), and
 * hands an event it does not read itself to protobuf-es whole.
 *
 * Both Relay event messages share the shape this relies on: `uint32 session_key = 1` and the
 * `Audio audio = 2` case of their oneof, `Audio` being `bytes opus = 1; uint32 seq = 2;
 * uint32 timestamp_ms = 3`.
 */

/** Tag byte of field `n` (n < 16) with wire type `w`. */
const tag = (n: number, w: Wire) => (n << 3) | w;

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

function writeVarint(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

type KeyedEvent = DeviceEvent | ServerEvent;

/** An audio event's sizes, measured once and used when writing. */
interface AudioSizes {
  readonly audio: number;
  readonly event: number;
}

function audioSizes(key: number, opus: Uint8Array, seq: number, timestampMs: number): AudioSizes {
  const audio =
    (opus.length > 0 ? 1 + varintSize(opus.length) + opus.length : 0) +
    (seq !== 0 ? 1 + varintSize(seq) : 0) +
    (timestampMs !== 0 ? 1 + varintSize(timestampMs) : 0);
  const event = (key !== 0 ? 1 + varintSize(key) : 0) + 1 + varintSize(audio) + audio;
  return { audio, event };
}

/**
 * One gRPC message (5-byte prefix, then the body) holding a RelayRequest or RelayResponse of
 * `events`. Throws (like protobuf-es) when an event cannot be encoded.
 */
function encodeFrame(events: readonly KeyedEvent[], encodeOther: (ev: KeyedEvent) => Uint8Array): Buffer {
  const parts: (AudioSizes | Uint8Array)[] = new Array(events.length);
  let body = 0;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i]!;
    const e = ev.event;
    let size: number;
    if (e.case === "audio") {
      const a = e.value;
      const s = audioSizes(ev.sessionKey, a.opus, a.seq, a.timestampMs);
      parts[i] = s;
      size = s.event;
    } else {
      const bytes = encodeOther(ev);
      parts[i] = bytes;
      size = bytes.length;
    }
    body += 1 + varintSize(size) + size;
  }
  const frame = Buffer.allocUnsafe(5 + body);
  frame[0] = 0;
  frame.writeUInt32BE(body, 1);
  let at = 5;
  for (let i = 0; i < events.length; i++) {
    const part = parts[i]!;
    frame[at++] = tag(1, Wire.LengthDelimited);
    if (part instanceof Uint8Array) {
      at = writeVarint(frame, at, part.length);
      frame.set(part, at);
      at += part.length;
      continue;
    }
    const ev = events[i]!;
    const a = (ev.event as { value: { opus: Uint8Array; seq: number; timestampMs: number } }).value;
    at = writeVarint(frame, at, part.event);
    if (ev.sessionKey !== 0) {
      frame[at++] = tag(1, Wire.Varint);
      at = writeVarint(frame, at, ev.sessionKey);
    }
    frame[at++] = tag(2, Wire.LengthDelimited);
    at = writeVarint(frame, at, part.audio);
    if (a.opus.length > 0) {
      frame[at++] = tag(1, Wire.LengthDelimited);
      at = writeVarint(frame, at, a.opus.length);
      frame.set(a.opus, at);
      at += a.opus.length;
    }
    if (a.seq !== 0) {
      frame[at++] = tag(2, Wire.Varint);
      at = writeVarint(frame, at, a.seq);
    }
    if (a.timestampMs !== 0) {
      frame[at++] = tag(3, Wire.Varint);
      at = writeVarint(frame, at, a.timestampMs);
    }
  }
  return frame;
}

/** A RelayRequest of `events` as one gRPC frame. */
export function encodeRelayRequestFrame(events: readonly DeviceEvent[]): Buffer {
  return encodeFrame(events, (ev) => toBinary(DeviceEventSchema, ev as DeviceEvent));
}

/** A RelayResponse of `events` as one gRPC frame. */
export function encodeRelayResponseFrame(events: readonly ServerEvent[]): Buffer {
  return encodeFrame(events, (ev) => toBinary(ServerEventSchema, ev as ServerEvent));
}

/** Reads protobuf's wire format from a view; throws on truncation. */
class Reader {
  pos = 0;
  constructor(
    readonly buf: Uint8Array,
    public end: number,
  ) {}

  /** A varint's low 32 bits, unsigned (what a uint32 field takes of it). */
  varint(): number {
    let v = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) throw new Error("premature EOF");
      const b = this.buf[this.pos++]!;
      if (shift < 32) v |= (b & 0x7f) << shift;
      if (b < 0x80) return v >>> 0;
    }
    throw new Error("invalid varint");
  }

  /** A field's tag (number << 3 | wire type); throws on one no encoder may write. */
  tag(): number {
    const start = this.pos;
    const t = this.varint();
    // A tag is a uint32: longer varints (which a uint32 field's value may be) are refused.
    if (this.pos - start > 5 || (this.pos - start === 5 && this.buf[this.pos - 1]! > 0x0f)) throw new Error("illegal tag: varint overflows uint32");
    if (t >>> 3 === 0 || (t & 7) > Wire.Bit32) throw new Error(`illegal tag: field no ${t >>> 3} wire type ${t & 7}`);
    return t;
  }

  /** Skips one field's value (`field`: its number, which a group's end must repeat). */
  skip(wire: number, field: number): void {
    switch (wire) {
      case Wire.Varint:
        // Any length, as protobuf-es skips one: only the value's end matters here.
        while (this.pos < this.end && this.buf[this.pos]! >= 0x80) this.pos++;
        this.advance(1);
        return;
      case Wire.Bit64:
        this.advance(8);
        return;
      case Wire.LengthDelimited:
        this.advance(this.varint());
        return;
      case Wire.Bit32:
        this.advance(4);
        return;
      case Wire.StartGroup:
        // Deprecated, but a conformant peer may still send one: skipped to its end.
        for (;;) {
          const t = this.tag();
          if ((t & 7) === Wire.EndGroup) {
            if (t >>> 3 !== field) throw new Error("invalid end group tag");
            return;
          }
          this.skip(t & 7, t >>> 3);
        }
      default:
        throw new Error(`cannot skip wire type ${wire}`);
    }
  }

  advance(n: number): void {
    if (this.pos + n > this.end) throw new Error("premature EOF");
    this.pos += n;
  }
}

/**
 * One event of a batch when it is a plain audio event: exactly the fields protobuf-es would
 * read, each with its own wire type, all within their lengths. Undefined for anything else
 * (another case, a oneof set twice, unknown fields, a field running past its message), which
 * protobuf-es then reads as it always did, laxities included: the same bytes are never read
 * two ways.
 */
function readAudioEvent(r: Reader, start: number, end: number, typeName: string): KeyedEvent | undefined {
  try {
    return readPlainAudioEvent(r, start, end, typeName);
  } catch {
    return undefined;
  }
}

function readPlainAudioEvent(r: Reader, start: number, end: number, typeName: string): KeyedEvent | undefined {
  const buf = r.buf;
  r.pos = start;
  r.end = end;
  let sessionKey = 0;
  let audio: { $typeName: "xiaozhi.ai.v1.Audio"; opus: Uint8Array; seq: number; timestampMs: number } | undefined;
  while (r.pos < end) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1 && wire === Wire.Varint) sessionKey = r.varint();
    else if (field === 2 && wire === Wire.LengthDelimited && audio === undefined) {
      const len = r.varint();
      const audioEnd = r.pos + len;
      if (audioEnd > end) return undefined;
      audio = { $typeName: "xiaozhi.ai.v1.Audio", opus: EMPTY, seq: 0, timestampMs: 0 };
      while (r.pos < audioEnd) {
        const at = r.tag();
        const f = at >>> 3;
        const w = at & 7;
        if (f === 1 && w === Wire.LengthDelimited) {
          const n = r.varint();
          if (r.pos + n > audioEnd) return undefined;
          audio.opus = buf.subarray(r.pos, r.pos + n);
          r.pos += n;
        } else if (f === 2 && w === Wire.Varint) audio.seq = r.varint();
        else if (f === 3 && w === Wire.Varint) audio.timestampMs = r.varint();
        else return undefined;
      }
      if (r.pos !== audioEnd) return undefined;
    } else return undefined;
  }
  if (audio === undefined) return undefined;
  return { $typeName: typeName, sessionKey, event: { case: "audio", value: audio } } as KeyedEvent;
}

const EMPTY = new Uint8Array(0);

function decodeBatch<E extends KeyedEvent>(body: Uint8Array, typeName: string, decodeOther: (bytes: Uint8Array) => E): E[] {
  const r = new Reader(body, body.length);
  // One reader for the events' insides, moved from event to event.
  const inner = new Reader(body, body.length);
  const events: E[] = [];
  while (r.pos < body.length) {
    const t = r.tag();
    if (t >>> 3 !== 1 || (t & 7) !== Wire.LengthDelimited) {
      r.skip(t & 7, t >>> 3);
      continue;
    }
    const len = r.varint();
    const start = r.pos;
    r.advance(len);
    events.push((readAudioEvent(inner, start, r.pos, typeName) as E | undefined) ?? decodeOther(body.subarray(start, r.pos)));
  }
  return events;
}

/** A RelayRequest's body (the AI service's side). Throws on malformed input. */
export function decodeRelayRequest(body: Uint8Array): RelayRequest {
  return {
    $typeName: "xiaozhi.ai.v1.RelayRequest",
    events: decodeBatch<DeviceEvent>(body, "xiaozhi.ai.v1.DeviceEvent", (b) => fromBinary(DeviceEventSchema, b)),
  };
}

/** A RelayResponse's body (the gateway's side). Throws on malformed input. */
export function decodeRelayResponse(body: Uint8Array): RelayResponse {
  return {
    $typeName: "xiaozhi.ai.v1.RelayResponse",
    events: decodeBatch<ServerEvent>(body, "xiaozhi.ai.v1.ServerEvent", (b) => fromBinary(ServerEventSchema, b)),
  };
}
