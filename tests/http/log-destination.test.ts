import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { createLogDestination } from "../../src/log-destination";

const FIXTURE = join(import.meta.dir, "fixtures", "log-to-destination.ts");

function tempDir(): { readonly path: string } & Disposable {
  const path = mkdtempSync(join(tmpdir(), "xiaozhi-log-files-"));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

/** A stdout stand-in that keeps what it got. */
function sink() {
  const s = {
    text: "",
    write(line: string) {
      s.text += line;
    },
  };
  return s;
}

function messages(text: string): string[] {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
}

/** A fixed clock for in-process tests, so that no test straddles a real midnight. */
const NOW = Date.parse("2025-06-15T12:00:00Z");
const DAY = "2025-06-15";

describe("createLogDestination", () => {
  test("with a directory: every line goes to stdout and to <dir>/<today>.log (appending; the directory is created)", async () => {
    using tmp = tempDir();
    const root = tmp.path;
    const dir = join(root, "nested", "logs");
    const out = sink();
    const destination = createLogDestination(dir, { stdout: out, nowMs: () => NOW });
    expect(readdirSync(dir)).toEqual([]);
    const logger = pino({ level: "debug" }, destination);
    logger.info("first");
    logger.debug({ k: 1 }, "second");
    expect(destination.filePath).toBe(join(dir, `${DAY}.log`));
    await destination.close();
    expect(destination.filePath).toBeUndefined();

    expect(messages(out.text)).toEqual(["first", "second"]);
    expect(readFileSync(join(dir, `${DAY}.log`), "utf8")).toBe(out.text);

    // A restart appends to the same day's file.
    const again = createLogDestination(dir, { stdout: sink(), nowMs: () => NOW });
    pino({}, again).info("third");
    await again.close();
    expect(messages(readFileSync(join(dir, `${DAY}.log`), "utf8"))).toEqual(["first", "second", "third"]);
  });

  test("flush(cb) (pino's logger.flush) calls back once the lines are in the file", async () => {
    using tmp = tempDir();
    const dir = tmp.path;
    const destination = createLogDestination(dir, { stdout: sink(), nowMs: () => NOW });
    const logger = pino({}, destination);
    for (let i = 0; i < 100; i++) logger.info({ i }, "line");
    const { promise, resolve, reject } = Promise.withResolvers<void>();
    logger.flush((err) => (err ? reject(err) : resolve()));
    await promise;
    expect(messages(readFileSync(join(dir, `${DAY}.log`), "utf8"))).toHaveLength(100);
    await destination.close();
  });

  test("a new UTC day switches to a new file at the first line after midnight", async () => {
    using tmp = tempDir();
    const dir = tmp.path;
    let now = Date.parse("2025-03-01T23:59:59.900Z");
    const out = sink();
    const destination = createLogDestination(dir, { stdout: out, nowMs: () => now });
    const logger = pino({}, destination);
    logger.info("late on the first");
    logger.info("still the first");
    expect(destination.filePath).toBe(join(dir, "2025-03-01.log"));
    now = Date.parse("2025-03-02T00:00:00.100Z");
    logger.info("early on the second");
    expect(destination.filePath).toBe(join(dir, "2025-03-02.log"));
    now = Date.parse("2025-03-02T23:59:59.999Z");
    logger.info("late on the second");
    await destination.close();

    expect(readdirSync(dir).sort()).toEqual(["2025-03-01.log", "2025-03-02.log"]);
    expect(messages(readFileSync(join(dir, "2025-03-01.log"), "utf8"))).toEqual(["late on the first", "still the first"]);
    expect(messages(readFileSync(join(dir, "2025-03-02.log"), "utf8"))).toEqual(["early on the second", "late on the second"]);
    expect(messages(out.text)).toHaveLength(4);
  });

  test("day files older than the retention are removed when a day's file opens; other files are left alone", async () => {
    using tmp = tempDir();
    const dir = tmp.path;
    for (const name of ["2025-02-25.log", "2025-02-26.log", "2025-02-27.log", "2025-02-28.log", "notes.txt", "2025-01-01.log.gz"]) {
      writeFileSync(join(dir, name), "old\n");
    }
    let now = Date.parse("2025-03-01T10:00:00Z");
    const destination = createLogDestination(dir, { stdout: sink(), nowMs: () => now, retentionDays: 3 });
    const logger = pino({}, destination);
    logger.info("on the first");
    // Three days kept: the 1st, the 28th and the 27th.
    expect([...(await destination.pruned())].sort()).toEqual(["2025-02-25.log", "2025-02-26.log"]);
    now = Date.parse("2025-03-02T00:00:01Z");
    logger.info("on the second");
    expect(await destination.pruned()).toEqual(["2025-02-27.log"]);
    await destination.close();
    expect(readdirSync(dir).sort()).toEqual(["2025-01-01.log.gz", "2025-02-28.log", "2025-03-01.log", "2025-03-02.log", "notes.txt"]);
  });

  test("retention 0 keeps every file", async () => {
    using tmp = tempDir();
    writeFileSync(join(tmp.path, "2000-01-01.log"), "old\n");
    const destination = createLogDestination(tmp.path, { stdout: sink(), retentionDays: 0 });
    pino({}, destination).info("now");
    expect(await destination.pruned()).toEqual([]);
    await destination.close();
    expect(readdirSync(tmp.path)).toContain("2000-01-01.log");
  });

  test("without a directory: stdout only (the real fd 1), nothing written to disk", async () => {
    using tmp = tempDir();
    const cwd = tmp.path;
    const proc = Bun.spawn(["bun", FIXTURE, ""], { cwd, stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    expect(stderr).toContain("file=none");
    expect(messages(stdout)).toEqual(["fixture line one", "fixture line two"]);
    expect(readdirSync(cwd)).toEqual([]);
  });

  test("in a separate process with a directory: stdout and the file get the same lines before exit", async () => {
    using tmp = tempDir();
    const dir = tmp.path;
    const proc = Bun.spawn(["bun", FIXTURE, dir], { cwd: dir, stdout: "pipe", stderr: "pipe" });
    const [stdout, , code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(0);
    expect(messages(stdout)).toEqual(["fixture line one", "fixture line two"]);
    // The real clock: whichever day it is (a run across midnight may have two files).
    const files = readdirSync(dir);
    expect(files.every((f) => /^\d{4}-\d{2}-\d{2}\.log$/.test(f))).toBe(true);
    expect(files.map((f) => readFileSync(join(dir, f), "utf8")).join("")).toBe(stdout);
  });

  test("a file that cannot be opened: reported, stdout keeps every line, no crash, close() still resolves", async () => {
    using tmp = tempDir();
    const dir = tmp.path;
    // A directory where the day's file should be: open() fails with EISDIR.
    mkdirSync(join(dir, `${DAY}.log`));
    const out = sink();
    const destination = createLogDestination(dir, { stdout: out, nowMs: () => NOW });
    const logger = pino({}, destination);
    logger.info("one");
    const { promise, resolve } = Promise.withResolvers<Error | undefined>();
    logger.flush((err) => resolve(err));
    expect(await promise).toBeInstanceOf(Error);
    logger.info("two");
    await destination.close();
    expect(messages(out.text)).toEqual(["one", "two"]);
  });

  test("a directory that cannot be created fails at once with the reason", () => {
    using tmp = tempDir();
    const dir = tmp.path;
    const file = join(dir, "a-file");
    writeFileSync(file, "x");
    expect(() => createLogDestination(join(file, "logs"))).toThrow();
  });
});
