import type { Scheduler } from "./scheduler";
import { StreamingPlayback } from "./voice/streaming-playback";

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

/**
 * Sends a known list of audio frames at the rate a device plays them: `prebufferFrames` at
 * once, then one per `frameDurationMs` on an absolute schedule; the end comes when the device
 * should have played the last frame. A {@link StreamingPlayback} given every frame at once
 * (see there for stalls and pacing).
 */
export class PacedPlayback {
  private readonly playback: StreamingPlayback;
  private startedOnce = false;

  constructor(
    private readonly frames: readonly Uint8Array[],
    options: PacedPlaybackOptions,
  ) {
    this.playback = new StreamingPlayback(options);
  }

  /** True from `start()` until the end or `stop()`. */
  get active(): boolean {
    return this.startedOnce && this.playback.active;
  }

  /** Sends the prebuffer synchronously and schedules the rest. Only the first call acts. */
  start(): void {
    if (this.startedOnce) return;
    this.startedOnce = true;
    this.playback.append(this.frames);
    this.playback.finish();
  }

  /** Cancels every pending frame and the end; returns true when playback was still active. */
  stop(): boolean {
    return this.startedOnce && this.playback.stop();
  }
}
