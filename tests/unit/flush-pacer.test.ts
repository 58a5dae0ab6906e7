import { expect, test } from "bun:test";
import { FlushPacer } from "../../src/flush-pacer";

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Resolves once `writes` holds `n` entries (polled every millisecond). */
async function writesReach(writes: readonly number[], n: number): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  const poll = setInterval(() => writes.length >= n && resolve(), 1);
  await promise;
  clearInterval(poll);
}

test("a quiet stream writes at the end of the turn; a busy one at most once per window, every request served", async () => {
  const writes: number[] = [];
  const pacer = new FlushPacer(20, () => writes.push(performance.now()));
  pacer.request();
  pacer.request();
  await turn();
  expect(writes).toHaveLength(1);

  // Busy: the next batch waits for the window, however many requests come meanwhile.
  pacer.request();
  pacer.request();
  await turn();
  expect(writes).toHaveLength(1);
  await writesReach(writes, 2);
  expect(writes[1]! - writes[0]!).toBeGreaterThanOrEqual(19);
});

test("a batch the owner wrote itself (full, or on drain) starts the window again", async () => {
  const writes: number[] = [];
  const pacer = new FlushPacer(20, () => writes.push(performance.now()));
  const wroteAt = performance.now();
  pacer.wrote();
  pacer.request();
  await turn();
  expect(writes).toHaveLength(0);
  await writesReach(writes, 1);
  expect(writes[0]! - wroteAt).toBeGreaterThanOrEqual(19);
});

test("window 0: every turn's events are written at its end, as before", async () => {
  let writes = 0;
  const pacer = new FlushPacer(0, () => writes++);
  for (let k = 1; k <= 3; k++) {
    pacer.request();
    await turn();
    expect(writes).toBe(k);
  }
});
