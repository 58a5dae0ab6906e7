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
  const decoder = new TextDecoder();
  let seen = "";
  let partial = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited before "${msg}": ${seen}${partial} ${await new Response(proc.stderr).text()}`);
    // A line may be split across chunks (and a character across reads): only whole lines
    // are parsed.
    const lines = (partial + decoder.decode(value, { stream: true })).split("\n");
    partial = lines.pop() ?? "";
    seen += lines.join("\n");
    for (const text of lines) {
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
