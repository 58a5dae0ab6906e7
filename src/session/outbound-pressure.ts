/** The socket as the watch sees it: how much the gateway has queued for the device. */
export interface BufferedSocket {
  getBufferedAmount(): number;
}

/** When a device counts as a slow consumer (IM_SLOW_CONSUMER_*). */
export interface SlowConsumerLimits {
  /** More than this queued for the device: slow at once. */
  readonly slowConsumerBytes: number;
  /** Under backpressure with no write progress for this long: slow. */
  readonly slowConsumerMs: number;
}

/** Why a device was judged slow: its queue stopped moving, or grew past the byte limit. */
export type SlowConsumerCause = "stalled" | "queue-full";

/** Told once when the watched device turns out to be slow; the watch has stopped by then. */
export interface SlowConsumerListener {
  onSlowConsumer(cause: SlowConsumerCause, bufferedBytes: number, stalledMs: number): void;
}

/**
 * Backpressure on one device socket. Pressed when `ws.send` returns -1 (queued: the kernel
 * buffer is full) or 0 (dropped: over Bun's backpressureLimit); released when Bun's drain
 * leaves nothing queued. While pressed the session sends no audio (real-time audio that
 * cannot be played in time is worth nothing and would only grow the queue) but still sends
 * control messages, so the queue grows only by those.
 *
 * While pressed, and only then, a timer checks the queue a few times per slow-consumer
 * period: no per-frame work, and nothing at all for the sessions that keep up. Every drain
 * that writes something counts as progress, so a slow link that still moves is left alone;
 * one that does not move for `slowConsumerMs`, or whose queue passes `slowConsumerBytes`
 * (control messages piling up), is reported.
 */
export class OutboundPressure {
  private timer: ReturnType<typeof setInterval> | undefined;
  private progressAtMs = 0;
  private readonly tickMs: number;

  constructor(
    private readonly socket: BufferedSocket,
    private readonly limits: SlowConsumerLimits,
    private readonly listener: SlowConsumerListener,
  ) {
    this.tickMs = Math.min(1000, Math.max(10, limits.slowConsumerMs / 4));
  }

  /** True while audio must not be sent. */
  get pressed(): boolean {
    return this.timer !== undefined;
  }

  /** A send was queued behind others (-1) or dropped (0). */
  press(nowMs: number): void {
    if (this.timer !== undefined) return;
    this.progressAtMs = nowMs;
    this.timer = setInterval(this.check, this.tickMs);
  }

  /** Bun's drain: the socket wrote some of its queue. */
  drained(nowMs: number): void {
    if (this.timer === undefined) return;
    if (this.socket.getBufferedAmount() === 0) this.stop();
    else this.progressAtMs = nowMs;
  }

  /** Stops watching (the socket closed, or the queue emptied). */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly check = (): void => {
    const buffered = this.socket.getBufferedAmount();
    // A drain event we did not see (the queue emptied between events): flowing again.
    if (buffered === 0) {
      this.stop();
      return;
    }
    const stalledMs = performance.now() - this.progressAtMs;
    const cause: SlowConsumerCause | undefined =
      buffered > this.limits.slowConsumerBytes ? "queue-full" : stalledMs >= this.limits.slowConsumerMs ? "stalled" : undefined;
    if (cause === undefined) return;
    this.stop();
    this.listener.onSlowConsumer(cause, buffered, Math.round(stalledMs));
  };
}
