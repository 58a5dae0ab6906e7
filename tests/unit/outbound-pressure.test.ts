import { describe, expect, test } from "bun:test";
import { OutboundPressure, type SlowConsumerCause } from "../../src/session/outbound-pressure";

/** A socket whose queue the test sets, and a listener that resolves when told. */
function fixture(slowConsumerMs: number, slowConsumerBytes = 1000) {
  const socket = { buffered: 0, getBufferedAmount: () => socket.buffered };
  const told = Promise.withResolvers<{ cause: SlowConsumerCause; bufferedBytes: number; stalledMs: number }>();
  let calls = 0;
  const pressure = new OutboundPressure(
    socket,
    { slowConsumerBytes, slowConsumerMs },
    {
      onSlowConsumer(cause, bufferedBytes, stalledMs) {
        calls++;
        told.resolve({ cause, bufferedBytes, stalledMs });
      },
    },
  );
  return { socket, pressure, told: told.promise, calls: () => calls };
}

describe("OutboundPressure", () => {
  test("a queue that does not move for the slow period is reported once as stalled", async () => {
    const f = fixture(100);
    f.socket.buffered = 10;
    f.pressure.press(performance.now());
    expect(f.pressure.pressed).toBe(true);
    const verdict = await f.told;
    expect(verdict.cause).toBe("stalled");
    expect(verdict.stalledMs).toBeGreaterThanOrEqual(100);
    expect(f.pressure.pressed).toBe(false);
    expect(f.calls()).toBe(1);
  });

  test("a queue over the byte limit is reported as full without waiting for the slow period", async () => {
    const f = fixture(60_000, 1000);
    f.socket.buffered = 1001;
    f.pressure.press(performance.now());
    const verdict = await f.told;
    expect(verdict).toMatchObject({ cause: "queue-full", bufferedBytes: 1001 });
  });

  test("a drain that empties the queue releases the pressure; a partial drain counts as progress", () => {
    const f = fixture(60_000);
    f.socket.buffered = 500;
    f.pressure.press(0);
    f.socket.buffered = 200;
    f.pressure.drained(10);
    expect(f.pressure.pressed).toBe(true);
    f.socket.buffered = 0;
    f.pressure.drained(20);
    expect(f.pressure.pressed).toBe(false);
    f.pressure.stop();
    expect(f.calls()).toBe(0);
  });

  test("stop() ends the watch: nothing is reported afterwards", async () => {
    const f = fixture(20);
    f.socket.buffered = 10;
    f.pressure.press(performance.now());
    f.pressure.stop();
    // Outlast several would-be checks, then prove none reported.
    const waited = Promise.withResolvers<void>();
    setTimeout(waited.resolve, 100);
    await waited.promise;
    expect(f.calls()).toBe(0);
  });
});
