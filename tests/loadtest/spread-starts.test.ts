import { describe, expect, test } from "bun:test";
import { spreadStarts } from "../../src/loadtest/spread-starts";

describe("spreadStarts", () => {
  test("starts every index once, in order", async () => {
    const started: number[] = [];
    const s = spreadStarts(10, performance.now(), 20, (i) => started.push(i));
    await s.done;
    expect(started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  test("cancel stops further starts and resolves done", async () => {
    const started: number[] = [];
    const s = spreadStarts(10, performance.now() + 60_000, 1000, (i) => started.push(i));
    s.cancel();
    await s.done;
    expect(started).toEqual([]);
  });
});
