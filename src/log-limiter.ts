import type { Logger } from "./log";

type Level = "info" | "warn" | "error";

interface Seen {
  loggedAtMs: number;
  suppressed: number;
  readonly level: Level;
  readonly msg: string;
}

/**
 * Lines that a client can cause (a refused handshake, a session closed for a flood, a
 * device replaced by its newer connection) are written at most once per key per interval:
 * the others are counted, and a summary line per interval says how many were not written.
 * So no client, and no fleet, can make the gateway write more than a bounded number of
 * lines per second. Keys are fixed reason strings (a bounded set), never client input.
 */
export class LogLimiter {
  private readonly seen = new Map<string, Seen>();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 10_000,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.timer = setInterval(() => this.summarise(), intervalMs);
    this.timer.unref?.();
  }

  /** Writes `msg` with `fields` on `log` (a session's child logger, say), unless a line of
   * `key` was written within the interval: then it is only counted. */
  log(log: Logger, level: Level, key: string, fields: Readonly<Record<string, unknown>>, msg: string): void {
    const now = this.nowMs();
    const s = this.seen.get(key);
    if (s !== undefined && now - s.loggedAtMs < this.intervalMs) {
      s.suppressed++;
      return;
    }
    if (s !== undefined && s.suppressed > 0) this.summary(key, s);
    this.seen.set(key, { loggedAtMs: now, suppressed: 0, level, msg });
    log[level](fields, msg);
  }

  /** Writes the pending summaries now (also at every interval). */
  summarise(): void {
    for (const [key, s] of this.seen) {
      if (s.suppressed > 0) this.summary(key, s);
      if (this.nowMs() - s.loggedAtMs >= this.intervalMs) this.seen.delete(key);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.summarise();
  }

  private summary(key: string, s: Seen): void {
    this.logger[s.level]({ key, notLogged: s.suppressed, intervalMs: this.intervalMs }, `${s.msg} (and ${s.suppressed} more like it, not logged)`);
    s.suppressed = 0;
  }
}
