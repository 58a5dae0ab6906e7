import type { CancelScheduled, Scheduler } from "./scheduler";

/** How a {@link PacedPlayback} sends its frames. */
export interface PacedPlaybackOptions {
  /** Playing time of one frame, ms: the spacing of frames after the prebuffer. */
  frameDurationMs: number;
  /**
   * Frames sent at once at the start, so that the device has something queued when network
   * jitter delays the next one; also the most frames ever sent in one burst. Clamped to >= 1.
   */
  prebufferFrames: number;
  scheduler: Scheduler;
  /** Called for each frame, in order. May call `stop()`. */
  onFrame(frame: Uint8Array, index: number): void;
  /** Called once, when the device should have finished playing the last frame. */
  onEnd(): void;
}

type PlaybackState =
  | { t: "ready" }
  | { t: "playing"; originMs: number; next: number; cancel: CancelScheduled | undefined }
  | { t: "draining"; cancel: CancelScheduled }
  | { t: "ended" }
  | { t: "stopped" };

/**
 * Sends audio frames at the rate a device plays them: `prebufferFrames` at once, then frame `i`
 * at `origin + (i - prebufferFrames + 1) * frameDurationMs`. The schedule is absolute, so timer
 * lateness does not accumulate into drift. A device's decode queue is small and drops overflow
 * (a burst of 5+ frames has crashed small boards), so after a stall of the event loop at most
 * `prebufferFrames` overdue frames go out at once (refilling the buffer the device has drained
 * meanwhile) and the schedule is re-anchored, rather than bursting every overdue frame.
 */
export class PacedPlayback {
  private state: PlaybackState = { t: "ready" };
  private readonly prebufferFrames: number;

  constructor(
    private readonly frames: readonly Uint8Array[],
    private readonly options: PacedPlaybackOptions,
  ) {
    this.prebufferFrames = Math.max(1, Math.floor(options.prebufferFrames));
  }

  /** True from `start()` until the end or `stop()`. */
  get active(): boolean {
    return this.state.t === "playing" || this.state.t === "draining";
  }

  /** Sends the prebuffer synchronously and schedules the rest. Only the first call acts. */
  start(): void {
    if (this.state.t !== "ready") return;
    if (this.frames.length === 0) {
      this.state = { t: "ended" };
      this.options.onEnd();
      return;
    }
    this.state = { t: "playing", originMs: this.options.scheduler.now(), next: 0, cancel: undefined };
    this.tick();
  }

  /** Cancels every pending frame and the end; returns true when playback was still active. */
  stop(): boolean {
    const s = this.state;
    this.state = { t: "stopped" };
    if (s.t === "playing") {
      s.cancel?.();
      return true;
    }
    if (s.t === "draining") {
      s.cancel();
      return true;
    }
    return false;
  }

  private readonly tick = (): void => {
    const s = this.state;
    if (s.t !== "playing") return;
    s.cancel = undefined;
    const { scheduler, frameDurationMs } = this.options;
    const now = scheduler.now();
    let sent = 0;
    while (s.next < this.frames.length && this.dueAtMs(s.originMs, s.next) <= now) {
      if (sent === this.prebufferFrames) {
        s.originMs = now + frameDurationMs - (s.next - this.prebufferFrames + 1) * frameDurationMs;
        break;
      }
      const index = s.next++;
      sent++;
      this.options.onFrame(this.frames[index]!, index);
      if (this.state !== s) return;
    }
    if (s.next < this.frames.length) {
      s.cancel = scheduler.schedule(this.tick, this.dueAtMs(s.originMs, s.next) - now);
      return;
    }
    // Firmware leaves Speaking on tts stop (and may drop what it still has queued), so the end
    // waits until the device should have played the frames it buffered.
    const endAtMs = s.originMs + this.frames.length * frameDurationMs;
    this.state = { t: "draining", cancel: scheduler.schedule(this.finish, endAtMs - now) };
  };

  private readonly finish = (): void => {
    if (this.state.t !== "draining") return;
    this.state = { t: "ended" };
    this.options.onEnd();
  };

  private dueAtMs(originMs: number, index: number): number {
    return originMs + Math.max(0, index - this.prebufferFrames + 1) * this.options.frameDurationMs;
  }
}
