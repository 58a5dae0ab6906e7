import type { CancelScheduled, Scheduler } from "../scheduler";

/** How a {@link StreamingPlayback} sends its frames. */
export interface StreamingPlaybackOptions {
  /** Playing time of one frame, ms: the spacing of frames after the prebuffer. */
  readonly frameDurationMs: number;
  /** Frames sent at once when playing starts (or restarts after the device ran dry); also the
   * most frames ever sent in one burst. Clamped to >= 1. */
  readonly prebufferFrames: number;
  readonly scheduler: Scheduler;
  /** Called for each frame, in order; `index` counts every frame of this playback. */
  onFrame(frame: Uint8Array, index: number): void;
  /** Called once, after `finish()`, when the device should have played the last frame. */
  onEnd(): void;
}

/** A frame to send, or a mark to run: kept as they are, nothing made per frame. */
type Item = Uint8Array | (() => void);

/**
 * Paced playback of audio that is still being made (speech synthesized sentence by sentence
 * while the LLM writes): frames are appended as they are encoded, and sent at the rate a
 * device plays them, `prebufferFrames` at once and then one per `frameDurationMs` on an
 * absolute schedule (timer lateness does not drift). `mark()` queues an action (a subtitle)
 * that runs when playback reaches it. When the queue runs dry before `finish()`, playback
 * waits; if by the next frame the device has played everything it was sent, the schedule
 * starts over with a prebuffer, else it goes on where it was. After an event-loop stall at
 * most `prebufferFrames` overdue frames go out at once (a device's decode queue is small).
 */
export class StreamingPlayback {
  private readonly queue: Item[] = [];
  /** The next item of `queue`; what is before it was sent (or run). */
  private head = 0;
  private readonly prebufferFrames: number;
  /** Time the current schedule started, and frames sent on it. */
  private originMs = 0;
  private sentOnSchedule = 0;
  private index = 0;
  private timer: CancelScheduled | undefined;
  private state: "playing" | "finishing" | "ended" | "stopped" = "playing";
  private started = false;
  private ticking = false;
  /** Called after each frame sent (a producer that encodes just ahead of playback refills
   * here); what it appends meanwhile is taken by the same pass. */
  onFrameSent: (() => void) | undefined;

  constructor(private readonly o: StreamingPlaybackOptions) {
    this.prebufferFrames = Math.max(1, Math.floor(o.prebufferFrames));
  }

  /** Frames queued and not yet sent. */
  get queuedFrames(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i] instanceof Uint8Array) n++;
    return n;
  }

  /** True until the end or `stop()`. */
  get active(): boolean {
    return this.state === "playing" || this.state === "finishing";
  }

  /** Queues frames; sends what is due now. */
  append(frames: readonly Uint8Array[]): void {
    if (!this.active) return;
    for (const opus of frames) this.queue.push(opus);
    this.kick();
  }

  /** Queues an action that runs when playback reaches this point. */
  mark(run: () => void): void {
    if (!this.active) return;
    this.queue.push(run);
    this.kick();
  }

  /** No more frames will come: ends once the device has played what it was sent. */
  finish(): void {
    if (this.state !== "playing") return;
    this.state = "finishing";
    this.kick();
  }

  /** Cancels every pending frame, mark and the end; true when playback was still active. */
  stop(): boolean {
    const was = this.active;
    this.state = "stopped";
    this.timer?.();
    this.timer = undefined;
    this.queue.length = 0;
    this.head = 0;
    return was;
  }

  /** When the device will have played every frame sent so far. */
  private get playedUntilMs(): number {
    return this.originMs + this.sentOnSchedule * this.o.frameDurationMs;
  }

  private kick(): void {
    if (this.timer === undefined && !this.ticking) this.tick();
  }

  private readonly tick = (): void => {
    this.ticking = true;
    try {
      this.pass();
    } finally {
      this.ticking = false;
    }
  };

  /** Moves past the next item; the array is reset once all of it was taken (O(1) a frame,
   * where shift() moved every frame still queued). */
  private take(): void {
    this.head++;
    if (this.head === this.queue.length) {
      this.queue.length = 0;
      this.head = 0;
    }
  }

  private pass(): void {
    this.timer = undefined;
    if (!this.active) return;
    const { scheduler, frameDurationMs } = this.o;
    const now = scheduler.now();
    let burst = 0;
    while (this.head < this.queue.length) {
      const item = this.queue[this.head]!;
      if (!(item instanceof Uint8Array)) {
        this.take();
        item();
        if (!this.active) return;
        continue;
      }
      // Nothing sent yet, or the device has run dry: a new schedule, starting with a prebuffer.
      if (!this.started || this.playedUntilMs <= now) {
        this.started = true;
        this.originMs = now;
        this.sentOnSchedule = 0;
      }
      const dueMs = this.originMs + Math.max(0, this.sentOnSchedule - this.prebufferFrames + 1) * frameDurationMs;
      if (dueMs > now) {
        this.timer = scheduler.schedule(this.tick, dueMs - now);
        return;
      }
      if (burst === this.prebufferFrames) {
        // Overdue after a stall: re-anchor so that the next frame is due one frame from now.
        this.originMs = now + frameDurationMs - (this.sentOnSchedule - this.prebufferFrames + 1) * frameDurationMs;
        continue;
      }
      this.take();
      burst++;
      this.sentOnSchedule++;
      this.o.onFrame(item, this.index++);
      if (!this.active) return;
      this.onFrameSent?.();
      if (!this.active) return;
    }
    if (this.state !== "finishing") return;
    const endAtMs = this.started ? this.playedUntilMs : now;
    if (endAtMs > now) {
      this.timer = scheduler.schedule(this.tick, endAtMs - now);
      return;
    }
    this.state = "ended";
    this.o.onEnd();
  }
}
