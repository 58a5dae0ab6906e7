import pino from "pino";

export type Logger = pino.Logger;
export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

/**
 * The process logger: JSON lines on stdout. No transports (they run in worker threads and do
 * not survive `bun build --compile`). Tokens are never passed to it; `redact` is the last
 * line of defence for fields that might carry one.
 */
export function createLogger(level: LogLevel = "info", name = "xiaozhi-im", destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    base: { pid: process.pid },
    redact: {
      paths: ["token", "authorization", "*.token", "*.authorization", "headers.authorization"],
      censor: "[redacted]",
    },
  };
  // The destination must be pino's second argument: alone it would be taken for options.
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** A logger that writes nothing, for tests and library use. */
export const silentLogger: Logger = pino({ level: "silent" });
