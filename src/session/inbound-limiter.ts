import { TokenBucket } from "../token-bucket";

/** Per-connection limits on what a device sends (IM_MAX_FRAMES_PER_SECOND and friends). */
export interface InboundLimits {
  /** Messages (binary and text) per second, sustained. */
  readonly maxFramesPerSecond: number;
  /** Bytes per second, sustained. */
  readonly maxBytesPerSecond: number;
  /** The burst each limit allows, in seconds of its rate. */
  readonly burstSeconds: number;
  /** The largest single message the session accepts: the byte burst always holds two, so
   * that a legal message (an image in JSON) never counts as a flood on its own. */
  readonly maxMessageBytes: number;
}

/** The limits from their settings: the largest message is the larger of a frame and a JSON
 * message. One place, for the sessions and for the per-address budget computed from them. */
export function inboundLimitsOf(o: {
  readonly maxFramesPerSecond: number;
  readonly maxBytesPerSecond: number;
  readonly inboundBurstSeconds: number;
  readonly maxFrameBytes: number;
  readonly maxJsonBytes: number;
}): InboundLimits {
  return {
    maxFramesPerSecond: o.maxFramesPerSecond,
    maxBytesPerSecond: o.maxBytesPerSecond,
    burstSeconds: o.inboundBurstSeconds,
    maxMessageBytes: Math.max(o.maxFrameBytes, o.maxJsonBytes),
  };
}

/** The bytes one connection may send at once before its byte rate bites. */
export function inboundBurstBytes(limits: InboundLimits): number {
  return Math.max(limits.maxBytesPerSecond * limits.burstSeconds, 2 * limits.maxMessageBytes);
}

/** Which limit a connection went over: its own, or its address's (all its connections). */
export type InboundLimit = "frames" | "bytes" | "address-bytes";

/**
 * One connection's inbound budget: two token buckets, one counting messages, one bytes.
 * A real device streams 60 ms frames (~17/s, a few KiB/s) and may send its buffered
 * wake-word audio (~2 s of frames) at once; both fit in the burst with room to spare.
 */
export class InboundLimiter {
  private readonly frames: TokenBucket;
  private readonly bytes: TokenBucket;

  constructor(
    limits: InboundLimits,
    nowMs: number,
    /** The bucket this connection shares with every connection of its client address. */
    private readonly addressBytes?: TokenBucket,
  ) {
    this.frames = new TokenBucket(limits.maxFramesPerSecond, Math.max(1, limits.maxFramesPerSecond * limits.burstSeconds), nowMs);
    this.bytes = new TokenBucket(limits.maxBytesPerSecond, inboundBurstBytes(limits), nowMs);
  }

  /** Counts one message of `bytes`; returns the limit it went over, or undefined. */
  admit(bytes: number, nowMs: number): InboundLimit | undefined {
    if (!this.frames.take(1, nowMs)) return "frames";
    if (!this.bytes.take(bytes, nowMs)) return "bytes";
    if (this.addressBytes !== undefined && !this.addressBytes.take(bytes, nowMs)) return "address-bytes";
    return undefined;
  }
}
