import { afterEach, expect, test } from "bun:test";
import { MemoryBudget } from "../../src/memory-budget";
import { handshake, startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";
import { type HostileAi, startHostileAi } from "./hostile-ai";

/**
 * Found before: connections each within their own limits could together grow the process
 * without bound (100 streaming at their 2 MiB burst: RSS 101 MB -> 953 MB, nobody closed).
 * Here the AI service stops reading, so everything devices send backs up in the gateway:
 * the budget holds, the largest holders are closed with the retryable 1013, new devices get
 * 503, audio past the budget is dropped and counted; once the AI reads again, all is well.
 */

let ais: HostileAi[] = [];
afterEach(async () => {
  for (const ai of ais) await ai.close();
  ais = [];
});

const LIMIT = 2 * 1024 * 1024;
const FRAME = new Uint8Array(16 * 1024).fill(0x55);

test("a flood that backs up behind a stalled AI service is held to the budget", async () => {
  const ai = await startHostileAi();
  ais.push(ai);
  const budget = new MemoryBudget(LIMIT);
  let peak = 0;
  budget.addSource(() => {
    peak = Math.max(peak, budget.queued);
    return 0;
  });
  await using stack = await startStack({
    ai: false,
    targets: [{ host: "127.0.0.1", port: ai.port }],
    upstream: { maxConnections: 1, budget, bufferMs: 60_000 },
    gateway: { budget, budgetSampleMs: 20 },
  });
  await ai.until(() => ai.relayStreams() >= 1);
  const flooders = await Promise.all(Array.from({ length: 8 }, (_, i) => stack.device(`b0:00:00:00:00:0${i}`, 1)));
  await Promise.all(flooders.map((d) => d.hello()));
  await ai.until(() => ai.hellos.length === 8);
  ai.stallRelay(true);
  // 8 devices x 64 frames x 16 KiB = 8 MiB, four times the budget, each within its limits.
  for (let n = 0; n < 64; n++) for (const d of flooders) d.sendAudio(FRAME);
  // The first shed is the event; then who was closed, and how.
  await Promise.any(flooders.map((d) => d.closed));
  const closed = await Promise.all(flooders.map((d) => (d.isOpen ? "open" : d.closed.then((c) => c.code))));
  expect(closed.filter((c) => c === 1013).length).toBeGreaterThan(0);
  expect(stack.metrics.budgetShedCloses).toBeGreaterThan(0);
  expect(stack.metrics.dropped["memory-budget"]).toBeGreaterThan(0);
  // Never past the budget by more than one frame.
  expect(peak).toBeLessThanOrEqual(LIMIT + FRAME.length);
  // While over, a new device is refused 503 with Retry-After.
  const refused = await handshake(stack.wsUrl, { Authorization: `Bearer ${await stack.token("b0:00:00:00:01:01")}`, "Device-Id": "b0:00:00:00:01:01" });
  expect(refused.status).toBe(503);
  expect(refused.raw.toLowerCase()).toContain("retry-after");
  expect(stack.metrics.upgradesRefused["memory-budget"]).toBe(1);
  // The AI reads again: the backlog drains and devices are admitted again.
  ai.stallRelay(false);
  // Until all that backed up has drained (the estimate reads the sources itself: the gateway's
  // own sample lags by up to its period, and one dip under the limit is not the end of it).
  await until(() => budget.sample() === 0, { what: () => `the backlog to drain (held: ${budget.total} bytes)`, intervalMs: 20 });
  const fresh = await stack.device("b0:00:00:00:01:02", 3);
  await fresh.hello();
  fresh.sendAudio(new Uint8Array([9, 9, 9]));
  await fresh.waitFor((r) => r.kind === "audio" && r.payload[0] === 9);
});
