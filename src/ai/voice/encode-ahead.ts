import type { OpusFrameEncoder } from "./opus-frame-encoder";
import type { StreamingPlayback } from "./streaming-playback";

type Item =
  | { readonly t: "pcm"; readonly pcm: Int16Array }
  | { readonly t: "frames"; readonly frames: readonly Uint8Array[] }
  | { readonly t: "mark"; readonly run: () => void }
  | { readonly t: "sentence-end" }
  | { readonly t: "finish" };

/**
 * Feeds a playback with speech encoded just ahead of it: PCM, ready frames (the tone),
 * subtitles and the end are queued in order, and Opus frames are encoded only while the
 * playback holds fewer than `leadFrames`, then one at a time as it sends them. Encoding a
 * frame costs this thread a fraction of a millisecond; encoding each synthesized sentence
 * the moment it arrives held the event loop in bursts, and with 100 answers at once a new
 * answer's first frame waited behind the others' tails.
 */
export class EncodeAhead {
  private readonly items: Item[] = [];
  private head = 0;
  /** Samples of the head item (PCM) already encoded. */
  private taken = 0;
  private closed = false;

  constructor(
    private readonly playback: StreamingPlayback,
    private readonly encoder: OpusFrameEncoder | undefined,
    private readonly leadFrames: number,
  ) {
    playback.onFrameSent = () => this.fill();
  }

  pcm(pcm: Int16Array): void {
    if (pcm.length > 0) this.push({ t: "pcm", pcm });
  }

  frames(frames: readonly Uint8Array[]): void {
    this.push({ t: "frames", frames });
  }

  mark(run: () => void): void {
    this.push({ t: "mark", run });
  }

  /** The end of a sentence's audio: its last partial frame is padded and sent. */
  sentenceEnd(): void {
    this.push({ t: "sentence-end" });
  }

  /** Nothing more: the playback finishes after what is queued. */
  finish(): void {
    this.push({ t: "finish" });
  }

  /** Drops what is queued and frees the encoder (the answer was cut short). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.items.length = 0;
    this.head = 0;
    this.taken = 0;
    this.playback.onFrameSent = undefined;
    this.encoder?.delete();
  }

  private push(item: Item): void {
    if (this.closed) return;
    this.items.push(item);
    this.fill();
  }

  private fill(): void {
    if (this.closed) return;
    if (!this.playback.active) {
      this.close();
      return;
    }
    while (this.head < this.items.length && this.playback.queuedFrames < this.leadFrames) {
      const item = this.items[this.head]!;
      if (item.t === "pcm" && this.encoder !== undefined) {
        // One frame's worth at a time, so that a long chunk is not encoded all at once.
        const take = Math.min(item.pcm.length - this.taken, this.encoder.frameSamples - this.encoder.pendingSamples);
        this.playback.append(this.encoder.push(item.pcm.subarray(this.taken, this.taken + take)));
        this.taken += take;
        if (this.taken < item.pcm.length) continue;
        this.taken = 0;
      } else if (item.t === "frames") this.playback.append(item.frames);
      else if (item.t === "mark") this.playback.mark(item.run);
      else if (item.t === "sentence-end" && this.encoder !== undefined) this.playback.append(this.encoder.flush());
      else if (item.t === "finish") {
        this.playback.finish();
        this.close();
        return;
      }
      this.head++;
    }
    if (this.head === this.items.length) {
      this.items.length = 0;
      this.head = 0;
    }
  }
}
