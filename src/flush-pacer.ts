/**
 * When a stream of small events writes its next batch: at the end of the event-loop turn if
 * the last write was at least `windowMs` ago (a quiet stream adds no delay), else when that
 * window has passed. A busy Relay stream so writes once per window instead of once per turn.
 *
 * Why: with frames spread over the frame period, a turn held one or two of them. At 1,000
 * streaming devices the gateway made about 14,500 writes a second to the AI service for
 * 16,700 frames, and the AI as many back; on loopback each costs a syscall that also runs
 * the receiver's TCP stack, and the kernel was 61% of the gateway's CPU. One write per
 * millisecond carries the same frames at a bounded cost in latency (at most `windowMs`, and
 * only while the stream is busy).
 */
export class FlushPacer {
  private lastWriteMs = Number.NEGATIVE_INFINITY;
  private scheduled = false;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly windowMs: number,
    private readonly write: () => void,
  ) {}

  /** Events are waiting: their batch is written at the time this pacer decides. */
  request(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const waitMs = this.lastWriteMs + this.windowMs - performance.now();
    if (waitMs <= 0) setImmediate(this.run);
    else {
      this.timer = setTimeout(this.run, waitMs);
      this.timer.unref?.();
    }
  }

  /** The owner wrote a batch itself (full, or on drain): the window starts again. */
  wrote(): void {
    this.lastWriteMs = performance.now();
  }

  private readonly run = () => {
    this.scheduled = false;
    this.timer = undefined;
    this.lastWriteMs = performance.now();
    this.write();
  };
}
