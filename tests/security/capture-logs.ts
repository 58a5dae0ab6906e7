import { createLogger, type Logger } from "../../src/log";

/** One parsed log line. */
export type LogLine = Readonly<Record<string, unknown>> & { readonly msg?: string; readonly level: number };

/** A real gateway logger (the same redaction) writing every level into memory. */
export interface CapturedLogs {
  readonly logger: Logger;
  /** Every line written so far, verbatim. */
  readonly text: () => string;
  readonly lines: () => LogLine[];
  /** Resolves with the first line matching `pred` (at once if already written). */
  waitFor(pred: (line: LogLine) => boolean): Promise<LogLine>;
}

export function captureLogs(): CapturedLogs {
  const raw: string[] = [];
  let waiters: (() => void)[] = [];
  const logger = createLogger("trace", "xiaozhi-im", {
    write(line: string) {
      raw.push(line);
      const w = waiters;
      waiters = [];
      for (const f of w) f();
    },
  });
  const lines = () => raw.map((l) => JSON.parse(l) as LogLine);
  return {
    logger,
    text: () => raw.join(""),
    lines,
    async waitFor(pred) {
      for (;;) {
        const found = lines().find(pred);
        if (found !== undefined) return found;
        const { promise, resolve } = Promise.withResolvers<void>();
        waiters.push(resolve);
        await promise;
      }
    },
  };
}
