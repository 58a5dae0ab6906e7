/** Bytes at the end of a load-test packet that carry its sequence number (big-endian u32). */
export const FRAME_SEQ_BYTES = 4;

/**
 * Writes `seq` (a u32) into the last {@link FRAME_SEQ_BYTES} bytes of `packet`, in place.
 * The TOC byte and the length are untouched, so a real Opus packet stays one: the decoder
 * reads the tail as (different) coded audio. The gateway forwards payloads verbatim, so the
 * stamp identifies a frame and its echo without any per-frame bookkeeping on the wire.
 */
export function writeFrameSeq(packet: Uint8Array, seq: number): void {
  const end = packet.length;
  packet[end - 4] = seq >>> 24;
  packet[end - 3] = (seq >>> 16) & 0xff;
  packet[end - 2] = (seq >>> 8) & 0xff;
  packet[end - 1] = seq & 0xff;
}

/** The sequence number stamped by {@link writeFrameSeq}; -1 when `payload` is too short. */
export function readFrameSeq(payload: Uint8Array): number {
  const end = payload.length;
  if (end <= FRAME_SEQ_BYTES) return -1;
  return ((payload[end - 4]! << 24) | (payload[end - 3]! << 16) | (payload[end - 2]! << 8) | payload[end - 1]!) >>> 0;
}
