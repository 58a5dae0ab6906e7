import OpusScript from "opusscript";
import { decodePacket } from "../../opus-wasm";

/** The sample rates libopus decodes to, in Hz. */
export type OpusSampleRateHz = 8000 | 12000 | 16000 | 24000 | 48000;

/**
 * Decodes a device's Opus packets, one at a time, to 16-bit PCM (interleaved if stereo).
 *
 * Devices send what the network delivers: a corrupt or truncated packet must cost one frame,
 * not the session, so `decode` never throws for a bad packet; it counts it in `rejected`.
 */
export class OpusFrameDecoder {
  readonly sampleRateHz: OpusSampleRateHz;
  readonly channels: 1 | 2;
  #opus: OpusScript | undefined;
  #rejected = 0;

  constructor(sampleRateHz: OpusSampleRateHz, channels: 1 | 2 = 1) {
    this.sampleRateHz = sampleRateHz;
    this.channels = channels;
    // The application argument only matters to encoders; decoders ignore it.
    this.#opus = new OpusScript(sampleRateHz, channels, OpusScript.Application.AUDIO);
  }

  /** Packets refused since construction: libopus said invalid, or empty, or too large to pass in. */
  get rejected(): number {
    return this.#rejected;
  }

  /**
   * The PCM of one packet (960 samples for a 16 kHz mono 60 ms frame), or undefined if the
   * packet is rejected. Throws only if called after `delete()`: the wasm buffers are freed then,
   * and writing into them could corrupt another coder's memory.
   */
  decode(packet: Uint8Array): Int16Array | undefined {
    const opus = this.#opus;
    if (opus === undefined) throw new Error("OpusFrameDecoder.decode called after delete()");
    // libopus reads an empty packet as "packet lost" and invents concealment audio (180 ms here);
    // a device never sends one on purpose, so it is not audio.
    if (packet.length === 0) {
      this.#rejected++;
      return undefined;
    }
    const pcm = decodePacket(opus, packet, this.sampleRateHz);
    if (pcm === undefined) this.#rejected++;
    return pcm;
  }

  /** Frees the wasm decoder. Idempotent. */
  delete(): void {
    this.#opus?.delete();
    this.#opus = undefined;
  }
}
