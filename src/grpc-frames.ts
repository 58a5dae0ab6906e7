/**
 * gRPC's length-prefixed message framing (a flag byte, a big-endian u32 length, the
 * message), shared by the hand-framed Relay/probe calls and the reference AI's Relay handler.
 */

/** Largest message either end of a hand-framed call accepts: a peer announcing more is
 * broken or hostile (a Relay batch of 256 events is a few hundred KiB). */
export const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/** One message framed for the wire: one buffer, one copy of the body. */
export function grpcFrame(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0; // not compressed: no grpc-encoding is ever negotiated
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

/** Why a stream of frames cannot be read on. */
export type FrameError = { readonly t: "compressed" } | { readonly t: "too-large"; readonly bytes: number };

/**
 * Cuts a byte stream into messages. Chunks of an incomplete message are kept as a list and
 * joined once, when enough bytes are there: a message arriving in many small chunks costs
 * linear time (joining on every chunk was quadratic: a 31 MiB message took 7.6 s).
 */
export class GrpcFrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  /** Bytes needed before the buffered chunks are worth joining: a header, or a message. */
  private need = 5;

  constructor(private readonly maxMessageBytes: number) {}

  /**
   * Feeds one chunk; calls `onMessage` with each complete message body (a view, valid until
   * the next push) until it returns false. Returns the error that makes the stream unusable.
   */
  push(chunk: Buffer, onMessage: (body: Buffer) => boolean): FrameError | undefined {
    let buf: Buffer;
    if (this.chunks.length === 0) {
      buf = chunk;
    } else {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
      if (this.buffered < this.need) return undefined;
      buf = Buffer.concat(this.chunks, this.buffered);
      this.chunks = [];
      this.buffered = 0;
    }
    while (buf.length >= 5) {
      if (buf[0] !== 0) return { t: "compressed" };
      const len = buf.readUInt32BE(1);
      if (len > this.maxMessageBytes) return { t: "too-large", bytes: len };
      if (buf.length < 5 + len) {
        this.keep(buf, 5 + len);
        return undefined;
      }
      const body = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      if (!onMessage(body)) return undefined;
    }
    if (buf.length > 0) this.keep(buf, 5);
    return undefined;
  }

  /** True while part of a message is buffered: a stream ending now was cut mid-message. */
  get midMessage(): boolean {
    return this.chunks.length > 0;
  }

  private keep(rest: Buffer, need: number): void {
    this.chunks = [rest];
    this.buffered = rest.length;
    this.need = need;
  }
}
