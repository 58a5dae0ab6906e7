import { createLogger, type Logger } from "../../src/log";

/** A logger whose JSON lines the test can read (at `level` and above). */
export function capturedLogger(level: "debug" | "info" = "info"): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, "test", { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}
