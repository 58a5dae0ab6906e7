import { describe, expect, test } from "bun:test";
import { PacedPlayback } from "../../src/ai/paced-playback";
import { ManualScheduler } from "./helpers";

function frames(n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) => new Uint8Array([i]));
}

function player(n: number, scheduler: ManualScheduler, frameDurationMs = 60, prebufferFrames = 2) {
  const sent: { index: number; atMs: number }[] = [];
  const ends: number[] = [];
  const playback = new PacedPlayback(frames(n), {
    frameDurationMs,
    prebufferFrames,
    scheduler,
    onFrame: (frame, index) => {
      expect(frame[0]).toBe(index);
      sent.push({ index, atMs: scheduler.now() });
    },
    onEnd: () => ends.push(scheduler.now()),
  });
  return { playback, sent, ends };
}

describe("PacedPlayback", () => {
  test("prebuffer at once, then one frame per duration, end after the last frame's play time", () => {
    const clock = new ManualScheduler();
    const { playback, sent, ends } = player(6, clock);
    playback.start();
    expect(sent.map((s) => s.atMs)).toEqual([0, 0]);
    clock.advance(59);
    expect(sent).toHaveLength(2);
    clock.advance(1);
    expect(sent).toHaveLength(3);
    clock.advance(1000);
    expect(sent.map((s) => s.atMs)).toEqual([0, 0, 60, 120, 180, 240]);
    // The device started playing at 0 and plays 6 x 60 ms.
    expect(ends).toEqual([360]);
    expect(playback.active).toBe(false);
    expect(clock.pending).toBe(0);
  });

  test("a stall sends at most the prebuffer at once and re-anchors the schedule", () => {
    const clock = new ManualScheduler();
    const { playback, sent } = player(12, clock);
    playback.start();
    clock.advance(60);
    expect(sent).toHaveLength(3);
    // A blocked event loop: at 400 ms frames 3..7 are all overdue; only 2 go out at once.
    const before = sent.length;
    clock.jump(340);
    clock.advance(0);
    const burst = sent.slice(before);
    expect(burst.map((s) => s.atMs)).toEqual([400, 400]);
    clock.advance(59);
    expect(sent).toHaveLength(before + 2);
    clock.advance(1);
    expect(sent.at(-1)?.atMs).toBe(460);
    expect(sent.map((s) => s.index)).toEqual(Array.from({ length: sent.length }, (_, i) => i));
  });

  test("stop cancels pending frames and the end, and reports whether it was active", () => {
    const clock = new ManualScheduler();
    const { playback, sent, ends } = player(10, clock);
    playback.start();
    clock.advance(120);
    expect(sent).toHaveLength(4);
    expect(playback.stop()).toBe(true);
    clock.advance(10_000);
    expect(sent).toHaveLength(4);
    expect(ends).toEqual([]);
    expect(clock.pending).toBe(0);
    expect(playback.stop()).toBe(false);
  });

  test("no frames: ends at once", () => {
    const clock = new ManualScheduler();
    const { playback, sent, ends } = player(0, clock);
    playback.start();
    expect(sent).toEqual([]);
    expect(ends).toEqual([0]);
  });
});
