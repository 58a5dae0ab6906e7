import type { FanoutPayload } from "./broker";

/**
 * The envelope: the bytes published to Redis for one message: a small binary header, then the payload as is
 * (no base64, no JSON), so audio and other binary payloads cost their own size.
 *
 * ```
 * 0      format (1)
 * 1      kind: 0 = UTF-8 text, 1 = bytes
 * 2      origin length L (1..255)
 * 3      origin instance id (L bytes, ASCII)
 * 3+L    sequence number, uint64 big-endian (as two uint32; < 2^53)
 * 11+L   payload
 * ```
 * The origin lets an instance skip its own publications (its local handlers had them in
 * `publish` already); origin + sequence identify a message, so a repeat can be detected.
 *
 * @packageDocumentation
 */

const FORMAT = 1;
const KIND_TEXT = 0;
const KIND_BYTES = 1;
const FIXED_BYTES = 11;
const TWO_32 = 2 ** 32;

/**
 * Encodes one message. `origin` is the instance id already as ASCII bytes (encoded once per
 * broker, not per message). One allocation: the returned buffer.
 */
export function encodeEnvelope(origin: Uint8Array, seq: number, payload: FanoutPayload): Buffer {
  const head = FIXED_BYTES + origin.length;
  const text = typeof payload === "string";
  const size = head + (text ? Buffer.byteLength(payload, "utf8") : payload.byteLength);
  const out = Buffer.allocUnsafe(size);
  out[0] = FORMAT;
  out[1] = text ? KIND_TEXT : KIND_BYTES;
  out[2] = origin.length;
  out.set(origin, 3);
  out.writeUInt32BE(Math.floor(seq / TWO_32), 3 + origin.length);
  out.writeUInt32BE(seq >>> 0, 7 + origin.length);
  if (text) out.write(payload, head, "utf8");
  else out.set(payload, head);
  return out;
}

/** The header of a received envelope; the payload is read separately, and only if needed. */
export interface EnvelopeHeader {
  readonly origin: string;
  readonly seq: number;
  readonly text: boolean;
  /** Where the payload starts in the message. */
  readonly payloadStart: number;
}

/** Reads the header of what `encodeEnvelope` made; `undefined` for anything else. */
export function readEnvelopeHeader(message: Buffer): EnvelopeHeader | undefined {
  if (message.length < FIXED_BYTES + 1 || message[0] !== FORMAT) return undefined;
  const kind = message[1];
  const originLength = message[2] ?? 0;
  const payloadStart = FIXED_BYTES + originLength;
  if (originLength === 0 || message.length < payloadStart || (kind !== KIND_TEXT && kind !== KIND_BYTES)) return undefined;
  return {
    origin: message.toString("latin1", 3, 3 + originLength),
    seq: message.readUInt32BE(3 + originLength) * TWO_32 + message.readUInt32BE(7 + originLength),
    text: kind === KIND_TEXT,
    payloadStart,
  };
}

/**
 * The payload of a received envelope: text is decoded once here for all local handlers; bytes
 * are a view into `message` (no copy).
 */
export function envelopePayload(message: Buffer, header: EnvelopeHeader): FanoutPayload {
  return header.text ? message.toString("utf8", header.payloadStart) : message.subarray(header.payloadStart);
}
