import { describe, expect, test } from "bun:test";
import { FramePacer } from "../../src/loadtest/frame-pacer";
import type { PacedDevice } from "../../src/loadtest/paced-device";

class RecordingDevice implements PacedDevice {
  readonly slots: { frameIndex: number; dueMs: number; nowMs: number }[] = [];
  ended = 0;
  onSlot(frameIndex: number, dueMs: number, nowMs: number): void {
    this.slots.push({ frameIndex, dueMs, nowMs });
  }
  onPhaseEnd(): void {
    this.ended++;
  }
}

describe("FramePacer", () => {
  test("device i of N gets slot k due at start + i*frame/N + k*frame, never before it is due", async () => {
    const devices = Array.from({ length: 4 }, () => new RecordingDevice());
    const start = performance.now() + 5;
    await new FramePacer(devices, 20, start, start + 100).run();
    for (const [i, d] of devices.entries()) {
      expect(d.slots.map((s) => s.frameIndex)).toEqual([0, 1, 2, 3, 4]);
      for (const [k, s] of d.slots.entries()) expect(s.dueMs - start).toBeCloseTo(i * 5 + k * 20, 6);
      for (const s of d.slots) expect(s.nowMs).toBeGreaterThanOrEqual(s.dueMs);
      expect(d.ended).toBe(1);
    }
  });

  test("stop() ends the phase at once; later slots are not handed out", async () => {
    const devices = [new RecordingDevice()];
    const start = performance.now();
    const pacer = new FramePacer(devices, 60, start, start + 60_000);
    const done = pacer.run();
    pacer.stop();
    await done;
    expect(devices[0]!.ended).toBe(1);
    expect(devices[0]!.slots.length).toBeLessThanOrEqual(1);
  });
});
