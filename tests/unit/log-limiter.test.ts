import { expect, test } from "bun:test";
import { LogLimiter } from "../../src/log-limiter";
import { captureLogs } from "../security/capture-logs";

test("one line per key per interval; the rest counted and summed up in one line", () => {
  const logs = captureLogs();
  let now = 0;
  const limiter = new LogLimiter(logs.logger, 10_000, () => now);
  for (let i = 0; i < 1000; i++) limiter.log(logs.logger, "info", "session:replaced", { i }, "replaced");
  limiter.log(logs.logger, "warn", "session:flood", {}, "flood");
  expect(logs.lines().map((l) => l.msg)).toEqual(["replaced", "flood"]);
  now = 10_000;
  limiter.summarise();
  const summary = logs.lines().at(-1)!;
  expect(summary).toMatchObject({ key: "session:replaced", notLogged: 999, msg: "replaced (and 999 more like it, not logged)" });
  // A quiet key logs again at once.
  limiter.log(logs.logger, "info", "session:replaced", {}, "replaced");
  expect(logs.lines().length).toBe(4);
  limiter.close();
});
