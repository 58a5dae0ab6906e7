import type { PacedDevice } from "./paced-device";

/**
 * Drives a fleet's frames from one timer: device `i` of `N` owns the slots at
 * `start + i * frameMs / N + k * frameMs`, so the fleet's frames are spread evenly over the
 * period as a real fleet's are (all devices sending in the same millisecond would measure
 * the client's burst, not the server). The schedule is absolute: a late timer sends every
 * overdue slot at once (each device's offered rate holds) and lateness never accumulates
 * into drift; devices see how late they were (send lag). One timer instead of one per
 * device keeps thousands of devices cheap and in their order.
 */
export class FramePacer {
  private readonly stepMs: number;
  private readonly totalSlots: number;
  private next = 0;
  private timer: Timer | undefined;
  private done: (() => void) | undefined;

  constructor(
    private readonly devices: readonly PacedDevice[],
    /** Each device's frame period, ms. */
    frameMs: number,
    /** When slot 0 is due (performance.now()). */
    private readonly startMs: number,
    /** No slot at or after this is sent (performance.now()). */
    private readonly endMs: number,
  ) {
    this.stepMs = devices.length === 0 ? frameMs : frameMs / devices.length;
    this.totalSlots = devices.length === 0 ? 0 : Math.max(0, Math.ceil((endMs - startMs) / this.stepMs));
  }

  /** Slots handed out so far. */
  get slotsDone(): number {
    return this.next;
  }

  /**
   * Runs the schedule; resolves at `endMs`, after every device's onPhaseEnd. Call once.
   */
  run(): Promise<void> {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.done = resolve;
    this.tick();
    return promise;
  }

  /** Ends the schedule now (as if `endMs` had come). */
  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.finish();
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    const n = this.devices.length;
    let now = performance.now();
    while (this.next < this.totalSlots) {
      const j = this.next;
      const due = this.startMs + j * this.stepMs;
      if (due > now) break;
      this.next = j + 1;
      this.devices[j % n]!.onSlot(Math.floor(j / n), due, now);
      now = performance.now();
    }
    if (this.next < this.totalSlots) {
      this.timer = setTimeout(this.tick, Math.max(0, this.startMs + this.next * this.stepMs - now));
    } else {
      this.timer = setTimeout(() => this.stop(), Math.max(0, this.endMs - now));
    }
  };

  private finish(): void {
    const done = this.done;
    if (done === undefined) return;
    this.done = undefined;
    this.next = this.totalSlots;
    const now = performance.now();
    for (const d of this.devices) d.onPhaseEnd(now);
    done();
  }
}
