import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { WireType as Wire } from "@bufbuild/protobuf/wire";

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
 * uint32 timestamp_ms = 3`. The schemas come from the caller (upstream/ and ai/ hold the
 * generated code); {@link relayBatchCodec} checks that shape when it is made.
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

/** What this codec reads and writes of a Relay event by hand (both event messages have it). */
interface KeyedEvent {
  readonly sessionKey: number;
  readonly event: { readonly case: string | undefined; readonly value?: unknown };
}

interface AudioValue {
  readonly opus: Uint8Array;
  readonly seq: number;
  readonly timestampMs: number;
}

/** Size of an Audio message's body. */
function audioSize(a: AudioValue): number {
  return (
    (a.opus.length > 0 ? 1 + varintSize(a.opus.length) + a.opus.length : 0) +
    (a.seq !== 0 ? 1 + varintSize(a.seq) : 0) +
    (a.timestampMs !== 0 ? 1 + varintSize(a.timestampMs) : 0)
  );
}

/** Size of an audio event's body whose Audio body is `audio` bytes. */
function audioEventSize(sessionKey: number, audio: number): number {
  return (sessionKey !== 0 ? 1 + varintSize(sessionKey) : 0) + 1 + varintSize(audio) + audio;
}

/**
 * One gRPC message (5-byte prefix, then the body) holding a batch of `events`. Throws (like
 * protobuf-es) when an event cannot be encoded.
 */
function encodeFrame(events: readonly KeyedEvent[], encodeOther: (ev: KeyedEvent) => Uint8Array): Buffer {
  // Per event: its Audio body's size (audio), or its bytes from protobuf-es (anything else).
  const parts: (number | Uint8Array)[] = new Array(events.length);
  let body = 0;
  for (let i = 0; i < events.length; i++) {
    const ev = events[i]!;
    let size: number;
    if (ev.event.case === "audio") {
      const audio = audioSize(ev.event.value as AudioValue);
      parts[i] = audio;
      size = audioEventSize(ev.sessionKey, audio);
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
    const a = ev.event.value as AudioValue;
    at = writeVarint(frame, at, audioEventSize(ev.sessionKey, part));
    if (ev.sessionKey !== 0) {
      frame[at++] = tag(1, Wire.Varint);
      at = writeVarint(frame, at, ev.sessionKey);
    }
    frame[at++] = tag(2, Wire.LengthDelimited);
    at = writeVarint(frame, at, part);
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
function readAudioEvent(r: Reader, start: number, end: number, names: TypeNames): KeyedEvent | undefined {
  try {
    return readPlainAudioEvent(r, start, end, names);
  } catch {
    return undefined;
  }
}

function readPlainAudioEvent(r: Reader, start: number, end: number, names: TypeNames): KeyedEvent | undefined {
  const buf = r.buf;
  r.pos = start;
  r.end = end;
  let sessionKey = 0;
  let audio: { $typeName: string; opus: Uint8Array; seq: number; timestampMs: number } | undefined;
  while (r.pos < end) {
    const t = r.tag();
    const field = t >>> 3;
    const wire = t & 7;
    if (field === 1 && wire === Wire.Varint) sessionKey = r.varint();
    else if (field === 2 && wire === Wire.LengthDelimited && audio === undefined) {
      const len = r.varint();
      const audioEnd = r.pos + len;
      if (audioEnd > end) return undefined;
      audio = { $typeName: names.audio, opus: EMPTY, seq: 0, timestampMs: 0 };
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
  return { $typeName: names.event, sessionKey, event: { case: "audio", value: audio } } as KeyedEvent;
}

const EMPTY = new Uint8Array(0);

/** The type names a decoded audio event carries. */
interface TypeNames {
  readonly event: string;
  readonly audio: string;
}

function decodeBatch(body: Uint8Array, names: TypeNames, decodeOther: (bytes: Uint8Array) => KeyedEvent): KeyedEvent[] {
  const r = new Reader(body, body.length);
  // One reader for the events' insides, moved from event to event.
  const inner = new Reader(body, body.length);
  const events: KeyedEvent[] = [];
  while (r.pos < body.length) {
    const t = r.tag();
    if (t >>> 3 !== 1 || (t & 7) !== Wire.LengthDelimited) {
      r.skip(t & 7, t >>> 3);
      continue;
    }
    const len = r.varint();
    const start = r.pos;
    r.advance(len);
    events.push(readAudioEvent(inner, start, r.pos, names) ?? decodeOther(body.subarray(start, r.pos)));
  }
  return events;
}

/** A Relay batch message (RelayRequest or RelayResponse) both ways. */
export interface RelayBatchCodec<Batch, Event> {
  /** A batch of `events` as one gRPC frame (the 5-byte prefix included). */
  encodeFrame(events: readonly Event[]): Buffer;
  /** A batch from its body. Throws on malformed input. */
  decode(body: Uint8Array): Batch;
}

/**
 * The codec of `batch` (`repeated <event> events = 1`) whose events are `event` messages of
 * the shape above. Throws if the schemas are not of that shape.
 */
export function relayBatchCodec<B extends DescMessage, E extends DescMessage>(batch: B, event: E): RelayBatchCodec<MessageShape<B>, MessageShape<E>> {
  const events = batch.fields.find((f) => f.number === 1);
  const key = event.fields.find((f) => f.number === 1);
  const audio = event.fields.find((f) => f.number === 2);
  if (
    events?.fieldKind !== "list" ||
    events.listKind !== "message" ||
    events.localName !== "events" ||
    events.message.typeName !== event.typeName ||
    key?.fieldKind !== "scalar" ||
    key.localName !== "sessionKey" ||
    audio?.fieldKind !== "message" ||
    audio.oneof === undefined ||
    audio.localName !== "audio"
  ) {
    throw new Error(`relayBatchCodec: ${batch.typeName} / ${event.typeName} are not a Relay batch and event`);
  }
  const names: TypeNames = { event: event.typeName, audio: audio.message.typeName };
  const encodeOther = (ev: KeyedEvent) => toBinary(event, ev as unknown as MessageShape<E>);
  const decodeOther = (bytes: Uint8Array) => fromBinary(event, bytes) as unknown as KeyedEvent;
  return {
    encodeFrame: (evs) => encodeFrame(evs as unknown as readonly KeyedEvent[], encodeOther),
    decode: (body) => ({ $typeName: batch.typeName, events: decodeBatch(body, names, decodeOther) }) as unknown as MessageShape<B>,
  };
}
