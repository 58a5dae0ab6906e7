import type { FleetStats } from "./fleet-stats";

/** How often the line is redrawn, ms. */
export const PROGRESS_INTERVAL_MS = 500;

const HEADLINE_LABEL = { roundTrip: "p99 rtt", firstAnswer: "p99 first answer", hello: "p99 hello" } as const;

/**
 * The live one-line status of a run on a terminal, redrawn in place (`\r`) every 500 ms:
 * elapsed time, sessions open, frames sent/received/lost so far and the headline p99 of the
 * last interval (not of the whole run: the point is to see it move).
 */
export class ProgressLine {
  private timer: Timer | undefined;

  constructor(
    private readonly out: (s: string) => void,
    private readonly stats: FleetStats,
    private readonly devices: number,
    /** performance.now() at the start of the run. */
    private readonly startMs: number,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.out(`\r${this.render()}\x1b[K`), PROGRESS_INTERVAL_MS);
  }

  /** Stops redrawing and clears the line, so the report starts on a clean one. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.out("\r\x1b[K");
  }

  /** The line's text (without the carriage return); resets the interval's p99. */
  render(): string {
    const s = this.stats;
    const elapsedS = ((performance.now() - this.startMs) / 1000).toFixed(1);
    const w = s.window;
    const p99 = w.count === 0 ? "-" : `${(w.valueAtPercentile(99) / 1000).toFixed(2)} ms`;
    w.reset();
    return (
      `${elapsedS.padStart(6)} s  connected ${s.liveSessions}/${this.devices}  sent ${s.framesSent}` +
      `  received ${s.framesReceived}  lost ${s.framesLost}  ${HEADLINE_LABEL[s.headline]} ${p99}`
    );
  }
}
