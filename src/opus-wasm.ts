import OpusScript from "opusscript";

/**
 * Encoding and decoding through opusscript's wasm handler, with the buffers it allocated
 * used as allocated. opusscript 0.1.1's own `encode`/`decode` take their views of the wasm
 * memory with `HEAPU16.subarray(pointer, ...)`, i.e. at twice the address `malloc` returned:
 * they read and write memory they never allocated. With a few instances that memory happens
 * to be free; with a hundred (one decoder and one encoder per conversation) it is another
 * instance's, and every answer failed ("offset and length are out of bounds", measured at
 * 100 conversations) or the heap was corrupted. Here the same C entry points are called with
 * the real addresses, within the sizes malloc'd for them.
 */

/** What opusscript keeps on an instance that these calls use. */
interface OpusScriptInternals {
  readonly handler: {
    _encode(inputPointer: number, count: number, outputPointer: number, frameSize: number): number;
    _decode(inputPointer: number, bytes: number, outputPointer: number): number;
  };
  readonly inPCMPointer: number;
  /** Bytes malloc'd at inPCMPointer. */
  readonly inPCMLength: number;
  readonly inOpusPointer: number;
  readonly outOpusPointer: number;
  readonly outPCMPointer: number;
  /** Bytes malloc'd at outPCMPointer. */
  readonly outPCMLength: number;
  /** A view of the wasm memory (at the right address: HEAPU8): how we find that memory. */
  readonly inOpus: Uint8Array;
  readonly channels: number;
}

/** Bytes malloc'd at inOpusPointer and outOpusPointer (index.js: MAX_PACKET_SIZE). */
const PACKET_BUFFER_BYTES = 1276 * 3;

/** Views of the wasm memory, made once for each buffer it has (growing it detaches the old
 * one): no view is made per frame. */
let heapU8: Uint8Array | undefined;
let heapU16: Uint16Array | undefined;

/** The wasm memory as it is now, as bytes and as 16-bit slots. */
function heap(o: OpusScriptInternals): { readonly u8: Uint8Array; readonly u16: Uint16Array } {
  if (heapU8 === undefined || heapU16 === undefined || heapU8.buffer.byteLength === 0) {
    let memory = o.inOpus.buffer as ArrayBuffer;
    if (memory.byteLength === 0) {
      // This instance's view predates a growth: a new instance's view is of the current memory.
      const probe = new OpusScript(8000, 1, OpusScript.Application.VOIP);
      memory = (probe as unknown as OpusScriptInternals).inOpus.buffer as ArrayBuffer;
      probe.delete();
    }
    heapU8 = new Uint8Array(memory);
    heapU16 = new Uint16Array(memory);
  }
  return { u8: heapU8, u16: heapU16 };
}

/**
 * Encodes one frame of `frameSize` mono samples. The handler wants each byte of the PCM in a
 * 16-bit slot, which it packs in place: 4 bytes of buffer a sample.
 */
export function encodeFrame(opus: OpusScript, pcm: Int16Array, frameSize: number): Uint8Array {
  const o = opus as unknown as OpusScriptInternals;
  const count = frameSize * o.channels;
  if (pcm.length < count) throw new RangeError(`a frame of ${frameSize} samples needs ${count} values, got ${pcm.length}`);
  if (count * 4 > o.inPCMLength) throw new RangeError(`a frame of ${frameSize} samples is past opusscript's input buffer`);
  const { u16 } = heap(o);
  // Each byte of the samples (little endian) in a 16-bit slot, low byte first.
  const at = o.inPCMPointer >>> 1;
  for (let i = 0; i < count; i++) {
    const v = pcm[i]!;
    u16[at + 2 * i] = v & 0xff;
    u16[at + 2 * i + 1] = (v >> 8) & 0xff;
  }
  const len = o.handler._encode(o.inPCMPointer, count, o.outOpusPointer, frameSize);
  if (len < 0) throw new Error(`opus encode failed (${len})`);
  return heap(o).u8.slice(o.outOpusPointer, o.outOpusPointer + len);
}

/**
 * Decodes one packet to 16-bit samples (interleaved), or undefined for a packet libopus
 * rejects or one longer than the output buffer holds (the handler writes 4 bytes a sample:
 * 1,440 mono samples, 60 ms at 24 kHz or 90 ms at 16 kHz).
 */
export function decodePacket(opus: OpusScript, packet: Uint8Array, sampleRateHz: number): Int16Array | undefined {
  const o = opus as unknown as OpusScriptInternals;
  if (packet.length === 0 || packet.length > PACKET_BUFFER_BYTES) return undefined;
  const samples = packetSamples(packet, sampleRateHz);
  if (samples === undefined || samples * o.channels * 4 > o.outPCMLength) return undefined;
  heap(o).u8.set(packet, o.inOpusPointer);
  const len = o.handler._decode(o.inOpusPointer, packet.length, o.outPCMPointer);
  if (len < 0) return undefined;
  // The handler writes each sample's low and high byte in 16-bit slots of their own.
  const { u16 } = heap(o);
  const at = o.outPCMPointer >>> 1;
  const out = new Int16Array(len * o.channels);
  for (let i = 0; i < out.length; i++) out[i] = u16[at + 2 * i]! | (u16[at + 2 * i + 1]! << 8);
  return out;
}

/**
 * Samples per channel a packet decodes to at `sampleRateHz`, from its TOC byte (RFC 6716
 * section 3.1), or undefined when it is malformed.
 */
export function packetSamples(packet: Uint8Array, sampleRateHz: number): number | undefined {
  const toc = packet[0];
  if (toc === undefined) return undefined;
  const config = toc >> 3;
  // Frame duration in units of 2.5 ms: SILK 10/20/40/60, hybrid 10/20, CELT 2.5/5/10/20.
  const units = config < 12 ? [4, 8, 16, 24][config & 3]! : config < 16 ? [4, 8][config & 1]! : [1, 2, 4, 8][config & 3]!;
  let frames: number;
  switch (toc & 3) {
    case 0:
      frames = 1;
      break;
    case 1:
    case 2:
      frames = 2;
      break;
    default: {
      const count = packet[1];
      if (count === undefined) return undefined;
      frames = count & 0x3f;
      if (frames === 0) return undefined;
    }
  }
  const samples = (frames * units * sampleRateHz) / 400;
  // RFC 6716: a packet holds at most 120 ms.
  return frames * units > 48 ? undefined : samples;
}
