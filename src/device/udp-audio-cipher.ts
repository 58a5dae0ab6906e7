import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

/** Bytes of the header that precedes every audio datagram (and is its AES-CTR IV). */
export const UDP_HEADER_BYTES = 16;
/** The only datagram type the firmware sends and accepts: an Opus packet. */
export const UDP_AUDIO_TYPE = 0x01;
/** The largest Opus payload accepted in one datagram (an Opus packet is at most 1275 bytes;
 * the firmware never sends more than one). */
export const UDP_MAX_PAYLOAD_BYTES = 1500;

/** Why a datagram was not accepted (counted and logged with this reason). */
export type UdpRejection = FramingRejection | "stale-sequence";
/** Refusals found from the framing alone, before any key is used. */
export type FramingRejection = "short" | "bad-type" | "bad-length" | "too-large";

/** One decrypted audio datagram. */
export interface UdpAudio {
  readonly opus: Uint8Array;
  /** The sender's timestamp field (the firmware's: milliseconds of its audio clock). */
  readonly timestamp: number;
  readonly sequence: number;
}

/**
 * The AES-128-CTR audio channel of one MQTT+UDP session, as the firmware speaks it
 * (main/protocols/mqtt_protocol.cc): each datagram is a 16-byte header
 * `type u8 | flags u8 | payload_len u16 BE | ssrc u32 | timestamp u32 BE | sequence u32 BE`
 * followed by the Opus packet encrypted with the session key, the header itself being the
 * CTR IV. Both sides build their headers from the session nonce the server handed out,
 * overwriting payload_len, timestamp and sequence: the ssrc bytes (4-7) stay the nonce's, so
 * the server, which chose them, finds the session of a datagram from them alone.
 *
 * Sequences start at 1 in each direction and only grow: a datagram whose sequence is not above
 * the last one accepted is a replay or arrived late, and is refused.
 */
export class UdpAudioCipher {
  readonly key: Buffer;
  readonly nonce: Buffer;
  private sendSequence = 0;
  private lastReceived = 0;

  constructor(key: Uint8Array, nonce: Uint8Array) {
    if (key.length !== 16 || nonce.length !== 16) throw new RangeError("an AES-128-CTR audio channel needs a 16-byte key and a 16-byte nonce");
    this.key = Buffer.from(key);
    this.nonce = Buffer.from(nonce);
  }

  /** A fresh key and a nonce whose ssrc bytes are `ssrc` (the session's lookup key). */
  static create(ssrc: number): UdpAudioCipher {
    const nonce = randomBytes(16);
    nonce[0] = UDP_AUDIO_TYPE;
    nonce.writeUInt32BE(ssrc >>> 0, 4);
    return new UdpAudioCipher(randomBytes(16), nonce);
  }

  /** The ssrc of this session's datagrams. */
  get ssrc(): number {
    return this.nonce.readUInt32BE(4);
  }

  /** The last sequence accepted from the device (0 before any). */
  get receivedSequence(): number {
    return this.lastReceived;
  }

  /** Encrypts `opus` into the next outbound datagram. */
  seal(opus: Uint8Array, timestamp: number): Buffer {
    const datagram = Buffer.allocUnsafe(UDP_HEADER_BYTES + opus.length);
    this.nonce.copy(datagram, 0, 0, UDP_HEADER_BYTES);
    datagram.writeUInt16BE(opus.length, 2);
    datagram.writeUInt32BE(timestamp >>> 0, 8);
    datagram.writeUInt32BE(++this.sendSequence >>> 0, 12);
    const cipher = createCipheriv("aes-128-ctr", this.key, datagram.subarray(0, UDP_HEADER_BYTES));
    const n = cipher.update(opus).copy(datagram, UDP_HEADER_BYTES);
    cipher.final();
    if (n !== opus.length) throw new Error("AES-CTR produced a different length");
    return datagram;
  }

  /**
   * Decrypts an inbound datagram, or says why it is refused. Only a datagram that passes
   * every check moves the receive sequence on: garbage cannot push it forward.
   */
  open(datagram: Uint8Array, header: DatagramHeader | FramingRejection = checkDatagram(datagram)): UdpAudio | UdpRejection {
    const check = header;
    if (typeof check === "string") return check;
    if (check.sequence <= this.lastReceived) return "stale-sequence";
    const iv = datagram.subarray(0, UDP_HEADER_BYTES);
    const decipher = createDecipheriv("aes-128-ctr", this.key, iv);
    const plain = decipher.update(datagram.subarray(UDP_HEADER_BYTES));
    decipher.final();
    // A plain view of the cipher's output: no copy.
    const opus = new Uint8Array(plain.buffer, plain.byteOffset, plain.length);
    this.lastReceived = check.sequence;
    return { opus, timestamp: check.timestamp, sequence: check.sequence };
  }
}

/** The fields of a datagram's header the receiver uses. */
export interface DatagramHeader {
  readonly ssrc: number;
  readonly timestamp: number;
  readonly sequence: number;
}

/** The header of a datagram, if its framing is sound (type, length) - before any key is used.
 * The receiving socket checks once and hands the header on to `open`. */
export function checkDatagram(d: Uint8Array): DatagramHeader | FramingRejection {
  if (d.length < UDP_HEADER_BYTES) return "short";
  if (d[0] !== UDP_AUDIO_TYPE) return "bad-type";
  const payloadLength = (d[2]! << 8) | d[3]!;
  if (payloadLength !== d.length - UDP_HEADER_BYTES) return "bad-length";
  if (payloadLength > UDP_MAX_PAYLOAD_BYTES) return "too-large";
  return { ssrc: u32(d, 4), timestamp: u32(d, 8), sequence: u32(d, 12) };
}

function u32(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!) >>> 0;
}
