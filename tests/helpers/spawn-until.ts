/** A process the test started, and the JSON log line it waited for. */
export interface Spawned {
  readonly proc: ReturnType<typeof Bun.spawn>;
  readonly line: Record<string, unknown>;
}

/**
 * Spawns `cmd` and resolves once a JSON log line on its stdout has `msg` (e.g. "gateway
 * listening", which carries the port); then keeps draining stdout so a chatty process never
 * blocks on a full pipe. Rejects with what it printed if it exits first.
 */
export async function spawnUntil(cmd: string[], o: { cwd: string; env: Record<string, string | undefined> }, msg: string): Promise<Spawned> {
  const proc = Bun.spawn(cmd, { cwd: o.cwd, env: o.env, stdout: "pipe", stderr: "pipe" });
  const reader = proc.stdout.getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited before "${msg}": ${buf} ${await new Response(proc.stderr).text()}`);
    buf += new TextDecoder().decode(value);
    for (const text of buf.split("\n")) {
      if (!text.startsWith("{")) continue;
      const line = JSON.parse(text) as Record<string, unknown>;
      if (line.msg === msg) {
        reader.releaseLock();
        void proc.stdout.pipeTo(new WritableStream());
        void proc.stderr.pipeTo(new WritableStream());
        return { proc, line };
      }
    }
  }
}
