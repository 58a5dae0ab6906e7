import { mkdirSync } from "node:fs";
import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import pino, { type DestinationStream } from "pino";

type SonicBoom = ReturnType<typeof pino.destination>;

/**
 * Where the process logger writes: every line to stdout and, with a log directory, also to
 * `<dir>/YYYY-MM-DD.log` (UTC date of the moment the line is written).
 */
export interface LogDestination extends DestinationStream {
  /** The file lines currently go to; undefined without a log directory or after close(). */
  readonly filePath: string | undefined;
  /**
   * Calls `cb` once every line written so far has reached the file (and stdout has been
   * written out synchronously). pino's `logger.flush(cb)` calls this.
   */
  flush(cb?: (err?: Error) => void): void;
  /** Flushes and closes the file; later lines go to stdout only. Idempotent. */
  close(): Promise<void>;
  /** The last pruning of old files (at each day's first file): the names removed. */
  pruned(): Promise<readonly string[]>;
}

export interface LogDestinationOptions {
  /** Wall clock, ms since the epoch; picks the file's date. Default `Date.now`. */
  readonly nowMs?: () => number;
  /** Where stdout lines go. Default: an asynchronous sonic-boom on fd 1 (pino's own default). */
  readonly stdout?: DestinationStream;
  /** Bytes a file may have waiting for a slow disk; lines past it are dropped, not buffered.
   * Default 16 MiB. */
  readonly maxPendingBytes?: number;
  /** Daily files are kept this many days (today's included), older ones removed whenever a
   * day's file is opened; 0 keeps them all. Default 14 (IM_LOG_RETENTION_DAYS). */
  readonly retentionDays?: number;
}

const DAY_FILE = /^(\d{4}-\d{2}-\d{2})\.log$/;

/** Removes the day files in `dir` dated `keepDays` or more days before `todayStartMs`. */
async function pruneDayFiles(dir: string, todayStartMs: number, keepDays: number): Promise<readonly string[]> {
  const oldest = new Date(todayStartMs - (keepDays - 1) * DAY_MS).toISOString().slice(0, 10);
  const removed: string[] = [];
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const day = DAY_FILE.exec(name)?.[1];
    // ISO dates compare as strings; other files in the directory are never touched.
    if (day === undefined || day >= oldest) continue;
    await unlink(join(dir, name)).then(
      () => removed.push(name),
      (err: Error) => stderrLine("cannot remove an old log file", { path: join(dir, name), err: err.message }),
    );
  }
  return removed;
}

const DAY_MS = 86_400_000;
/** After a file fails to open or write, the next attempt waits this long. */
const RETRY_AFTER_FAILURE_MS = 60_000;
const DEFAULT_MAX_PENDING_BYTES = 16 * 1024 * 1024;

/** One day's file. */
interface DayFile {
  readonly path: string;
  readonly startMs: number;
  readonly endMs: number;
  readonly stream: SonicBoom;
  /** No write is in flight or queued (sonic-boom's `drain` says when it becomes so). */
  idle: boolean;
  failed: { readonly atMs: number } | undefined;
  readonly waiters: ((err?: Error) => void)[];
  /** Resolves once the file is closed (or given up after a failure). */
  closed: Promise<void> | undefined;
}

function dayOf(t: number): { name: string; startMs: number } {
  const startMs = Math.floor(t / DAY_MS) * DAY_MS;
  return { name: new Date(startMs).toISOString().slice(0, 10), startMs };
}

function stderrLine(msg: string, extra: Record<string, unknown>): void {
  process.stderr.write(`${JSON.stringify({ level: 50, time: Date.now(), msg, ...extra })}\n`);
}

/**
 * The logger's destination: stdout always, plus daily files `<logDir>/YYYY-MM-DD.log` when
 * `logDir` is a non-empty path. The directory is created now (synchronously, so that a path
 * that cannot exist fails the start with its reason) and again when a file is opened (it may
 * have been removed). Files are opened for appending through asynchronous sonic-boom streams
 * (`pino.destination({ dest, sync: false, mkdir: true })`): a slow disk never blocks the
 * event loop, and at most `maxPendingBytes` wait for it, beyond that lines are dropped from
 * the file (stdout still gets them). The first line written on a new UTC day opens that
 * day's file and closes the previous one. A file that fails is reported once on stderr and
 * retried a minute later (or on the next day). Opening a day's file also removes the day
 * files older than `retentionDays`. No worker threads (pino transports), so this
 * runs in `bun build --compile` binaries.
 */
export function createLogDestination(logDir: string | undefined, options: LogDestinationOptions = {}): LogDestination {
  const nowMs = options.nowMs ?? Date.now;
  const stdout: DestinationStream = options.stdout ?? pino.destination({ dest: 1, sync: false });
  const maxPendingBytes = options.maxPendingBytes ?? DEFAULT_MAX_PENDING_BYTES;
  const retentionDays = options.retentionDays ?? 14;
  let lastPrune: Promise<readonly string[]> = Promise.resolve([]);
  const dir = logDir === undefined || logDir.trim() === "" ? undefined : logDir;
  if (dir !== undefined) mkdirSync(dir, { recursive: true });
  let current: DayFile | undefined;
  let closed = false;
  const closing = new Set<Promise<void>>();

  function settle(file: DayFile, err?: Error): void {
    for (const cb of file.waiters.splice(0)) cb(err);
  }

  function open(t: number): DayFile {
    const { name, startMs } = dayOf(t);
    const path = join(dir ?? ".", `${name}.log`);
    const stream = pino.destination({ dest: path, sync: false, mkdir: true, append: true, minLength: 0, maxLength: maxPendingBytes });
    const file: DayFile = { path, startMs, endMs: startMs + DAY_MS, stream, idle: true, failed: undefined, waiters: [], closed: undefined };
    if (retentionDays > 0 && dir !== undefined) lastPrune = pruneDayFiles(dir, startMs, retentionDays);
    stream.on("drain", () => {
      file.idle = true;
      settle(file);
    });
    stream.on("error", (err: Error) => {
      if (file.failed !== undefined) return;
      file.failed = { atMs: nowMs() };
      stderrLine("log file failed; lines go to stdout only until it is retried", { path, err: err.message });
      settle(file, err);
    });
    return file;
  }

  function retire(file: DayFile): Promise<void> {
    if (file.closed !== undefined) return file.closed;
    // A file that never opened (or broke) has nothing to flush: sonic-boom's end() would
    // wait for an open that is not coming.
    if (file.failed !== undefined) {
      file.closed = Promise.resolve();
      return file.closed;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    file.stream.once("close", () => resolve());
    file.stream.once("error", () => resolve());
    file.stream.end();
    file.closed = promise;
    closing.add(promise);
    void promise.then(() => closing.delete(promise));
    return promise;
  }

  function fileFor(t: number): DayFile | undefined {
    if (dir === undefined || closed) return undefined;
    const f = current;
    if (f !== undefined && t >= f.startMs && t < f.endMs) {
      if (f.failed === undefined) return f;
      if (t - f.failed.atMs < RETRY_AFTER_FAILURE_MS) return undefined;
    }
    if (f !== undefined) void retire(f);
    current = open(t);
    return current;
  }

  return {
    get filePath() {
      return closed ? undefined : current?.path;
    },
    write(line: string) {
      stdout.write(line);
      const file = fileFor(nowMs());
      if (file === undefined) return;
      file.idle = false;
      file.stream.write(line);
    },
    flush(cb) {
      const done = cb ?? (() => {});
      try {
        const out = stdout as Partial<{ flushSync: () => void }>;
        out.flushSync?.();
      } catch {
        // stdout not ready or gone: nothing more to do for it.
      }
      const file = current;
      if (file === undefined || closed || file.idle) {
        queueMicrotask(() => done());
        return;
      }
      if (file.failed !== undefined) {
        queueMicrotask(() => done(new Error("the log file failed")));
        return;
      }
      file.waiters.push(done);
    },
    pruned() {
      return lastPrune;
    },
    async close() {
      if (!closed) {
        closed = true;
        const file = current;
        current = undefined;
        if (file !== undefined) {
          const finished = retire(file);
          await finished;
          settle(file);
        }
      }
      await Promise.all([...closing]);
      try {
        (stdout as Partial<{ flushSync: () => void }>).flushSync?.();
      } catch {
        // as in flush()
      }
    },
  };
}
