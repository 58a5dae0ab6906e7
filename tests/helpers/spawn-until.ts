/** A JSON log line of a spawned process. */
export type LogLine = Record<string, unknown>;

/** A process the test started, and the JSON log line it waited for. */
export interface Spawned {
  readonly proc: ReturnType<typeof Bun.spawn>;
  /** The line `spawnUntil` waited for. */
  readonly line: LogLine;
  /** Every JSON line on its stdout so far. */
  readonly lines: readonly LogLine[];
  /**
   * The first JSON line (already printed or still to come) whose `msg` is `msg`. Rejects if
   * the process exits without printing it, or after `timeoutMs` (default 15 s).
   */
  logLine(msg: string, timeoutMs?: number): Promise<LogLine>;
}

const DEFAULT_TIMEOUT_MS = 15_000;
/** How much of a process's output a failure message quotes. */
const QUOTED_CHARS = 4000;

/**
 * Spawns `cmd` and resolves once a JSON log line on its stdout has `msg` (e.g. "gateway
 * listening", which carries the port). Its stdout and stderr are read to the end, always, so
 * a chatty process never blocks on a full pipe; later lines are kept for `logLine`. Rejects
 * with what it printed if it exits first or does not print the line within `timeoutMs`
 * (default 15 s), and then kills it: a failed start leaves no process behind.
 */
export async function spawnUntil(
  cmd: string[],
  o: { cwd?: string; env: Record<string, string | undefined>; timeoutMs?: number },
  msg: string,
): Promise<Spawned> {
  const proc = Bun.spawn(cmd, { cwd: o.cwd, env: o.env, stdout: "pipe", stderr: "pipe" });
  const lines: LogLine[] = [];
  let stdoutText = "";
  let stderrText = "";
  let stdoutEnded = false;
  let waiters: (() => void)[] = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  void (async () => {
    // One decoder for the whole stream, and only whole lines are parsed: a line (or a
    // character) may be split across chunks.
    const decoder = new TextDecoder();
    let partial = "";
    const take = (text: string) => {
      stdoutText = `${stdoutText}${text}\n`.slice(-QUOTED_CHARS);
      if (!text.startsWith("{")) return;
      try {
        lines.push(JSON.parse(text) as LogLine);
      } catch {
        // Not a log line after all: quoted in a failure message, nothing more.
      }
    };
    try {
      for await (const chunk of proc.stdout) {
        const split = (partial + decoder.decode(chunk, { stream: true })).split("\n");
        partial = split.pop() ?? "";
        for (const text of split) take(text);
        notify();
      }
      const last = partial + decoder.decode();
      if (last !== "") take(last);
    } finally {
      stdoutEnded = true;
      notify();
    }
  })();
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderrText = (stderrText + decoder.decode(chunk, { stream: true })).slice(-QUOTED_CHARS);
  })();

  const output = () => `stdout: ${stdoutText.trim() || "(nothing)"}; stderr: ${stderrText.trim() || "(nothing)"}`;
  async function logLine(wanted: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<LogLine> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const found = lines.find((l) => l.msg === wanted);
      if (found !== undefined) return found;
      if (stdoutEnded) {
        // The exit code, once known, says more than "stdout closed".
        const code = await Promise.race([proc.exited, Bun.sleep(1000).then(() => "unknown")]);
        throw new Error(`${cmd.join(" ")} exited (${code}) before logging "${wanted}": ${output()}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${cmd.join(" ")} did not log "${wanted}" within ${timeoutMs} ms: ${output()}`);
      const { promise, resolve } = Promise.withResolvers<void>();
      const timer = setTimeout(resolve, left);
      waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      await promise;
    }
  }

  try {
    const line = await logLine(msg, o.timeoutMs);
    return { proc, line, lines, logLine };
  } catch (err) {
    proc.kill("SIGKILL");
    await proc.exited;
    throw err;
  }
}
