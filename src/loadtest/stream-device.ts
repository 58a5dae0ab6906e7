import { FleetDevice, type FleetDeviceOptions } from "./fleet-device";
import { readFrameSeq, writeFrameSeq } from "./frame-seq";
import type { PacedDevice } from "./paced-device";

/** Longest a frame may wait for its echo and still be matched, ms (older echoes are "unexpected"). */
const MATCH_WINDOW_MS = 10_000;

/**
 * The stream scenario's device: `listen start` in realtime mode once the session opens, then
 * one frame per slot, each stamped with its sequence number; the reference AI echoes every
 * frame at once, in order. Send times sit in a ring indexed by sequence number, so matching
 * an echo is two array reads and the round trip goes straight into the shared histogram.
 */
export class StreamDevice extends FleetDevice implements PacedDevice {
  private readonly sentAtMs: Float64Array;
  /** Which sequence number each ring slot holds; -1 once echoed (or never used). */
  private readonly slotSeq: Int32Array;
  private readonly mask: number;
  private nextSeq = 0;
  /** The echo expected next (the gateway keeps order); later ones mean earlier were lost. */
  private nextEcho = 0;
  /** Frames sent in this session and not yet echoed. */
  private awaiting = 0;

  constructor(
    o: FleetDeviceOptions,
    /** Real Opus packets to send in turn; their last 4 bytes are overwritten with the seq. */
    private readonly packets: readonly Uint8Array[],
  ) {
    super(o);
    let size = 16;
    while (size * o.frameMs < MATCH_WINDOW_MS) size *= 2;
    this.sentAtMs = new Float64Array(size);
    this.slotSeq = new Int32Array(size).fill(-1);
    this.mask = size - 1;
  }

  onSlot(_frameIndex: number, dueMs: number, nowMs: number): void {
    if (!this.isReady) return;
    const seq = this.nextSeq;
    const packet = this.packets[seq % this.packets.length]!;
    // ws.send copies synchronously, so stamping the shared packet right before it is safe.
    writeFrameSeq(packet, seq);
    if (!this.sendAudio(packet, (seq * this.o.frameMs) >>> 0)) return;
    const slot = seq & this.mask;
    const { stats } = this.o;
    if (this.slotSeq[slot] !== -1) {
      // The frame that held this slot never came back within the match window.
      this.awaiting--;
      stats.end();
    }
    this.slotSeq[slot] = seq;
    this.sentAtMs[slot] = nowMs;
    this.nextSeq = seq + 1;
    this.awaiting++;
    stats.framesSent++;
    stats.begin();
    stats.sendLag.recordMs(nowMs - dueMs);
  }

  onPhaseEnd(): void {}

  protected override onReady(): void {
    this.sendJson({ type: "listen", state: "start", mode: "realtime" });
  }

  protected override sessionEnded(): void {
    // Echoes of this session can no longer come: stop waiting for them.
    if (this.awaiting > 0) this.o.stats.end(this.awaiting);
    this.awaiting = 0;
    this.slotSeq.fill(-1);
  }

  protected override onAudio(payload: Uint8Array, atMs: number): void {
    const { stats } = this.o;
    const seq = readFrameSeq(payload);
    const slot = seq & this.mask;
    if (seq < 0 || this.slotSeq[slot] !== seq) {
      stats.framesUnexpected++;
      return;
    }
    this.slotSeq[slot] = -1;
    this.awaiting--;
    stats.end();
    stats.framesReceived++;
    stats.recordRoundTripMs(atMs - this.sentAtMs[slot]!);
    if (seq > this.nextEcho) stats.framesLost += seq - this.nextEcho;
    if (seq >= this.nextEcho) this.nextEcho = seq + 1;
  }
}
