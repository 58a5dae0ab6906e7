import { describe, expect, test } from "bun:test";
import { spawnUntil } from "../helpers/spawn-until";

/** `bun -e script`: a child process whose stdout the test controls. */
const child = (script: string) => ["bun", "-e", script];
const env = { PATH: process.env.PATH };

describe("spawnUntil (the tests' spawn-and-wait helper)", () => {
  test("a log line split across writes, mid-character too, is parsed whole; later lines are kept", async () => {
    // "é" is two bytes in UTF-8: the first write ends after its first byte. The pauses give
    // the pipe separate chunks to deliver (they pace the child, they synchronise nothing).
    const script = `
      const bytes = new TextEncoder().encode('{"msg":"ready","name":"caf\u00e9"}\\n{"msg":"later"}\\n');
      const cut = bytes.indexOf(0xc3) + 1;
      process.stdout.write(bytes.subarray(0, 5));
      await Bun.sleep(50);
      process.stdout.write(bytes.subarray(5, cut));
      await Bun.sleep(50);
      process.stdout.write(bytes.subarray(cut));
    `;
    const s = await spawnUntil(child(script), { env }, "ready");
    expect(s.line).toEqual({ msg: "ready", name: "café" });
    expect(await s.logLine("later")).toEqual({ msg: "later" });
    expect(await s.proc.exited).toBe(0);
  });

  test("a process that exits without the line: rejected with what it printed", async () => {
    const start = spawnUntil(child(`console.log("not json"); console.error("oops"); process.exit(3);`), { env }, "ready");
    await expect(start).rejects.toThrow(/exited \(3\) before logging "ready".*not json.*oops/s);
  });

  test("a process that never prints the line: rejected at the deadline, and killed", async () => {
    const start = spawnUntil(
      child(`console.log(JSON.stringify({ msg: "pid", pid: process.pid })); setInterval(() => {}, 1000);`),
      { env, timeoutMs: 500 },
      "ready",
    );
    await expect(start).rejects.toThrow(/did not log "ready" within 500 ms/);
    // The pid it printed names a process that no longer runs.
    const err = await start.then(
      () => "",
      (e: unknown) => String(e),
    );
    const pid = Number(/"pid":(\d+)/.exec(err)?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(() => process.kill(pid, 0)).toThrow();
  });
});
