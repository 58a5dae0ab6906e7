import { expect, test } from "bun:test";
import { StreamingPlayback } from "../../../src/ai/voice/streaming-playback";
import { ManualScheduler } from "../helpers";

function player(clock: ManualScheduler) {
  const events: string[] = [];
  const playback = new StreamingPlayback({
    frameDurationMs: 60,
    prebufferFrames: 2,
    scheduler: clock,
    onFrame: (frame, index) => events.push(`f${frame[0]}#${index}@${clock.now()}`),
    onEnd: () => events.push(`end@${clock.now()}`),
  });
  return { playback, events };
}

const f = (...ids: number[]) => ids.map((i) => new Uint8Array([i]));

test("frames appended while playing keep the schedule; marks run in order between frames", () => {
  const clock = new ManualScheduler();
  const { playback, events } = player(clock);
  playback.mark(() => events.push(`mark1@${clock.now()}`));
  playback.append(f(1, 2, 3));
  expect(events).toEqual(["mark1@0", "f1#0@0", "f2#1@0"]);
  clock.advance(30);
  playback.mark(() => events.push(`mark2@${clock.now()}`));
  playback.append(f(4));
  clock.advance(30);
  expect(events.slice(3)).toEqual(["f3#2@60", "mark2@60"]);
  clock.advance(60);
  expect(events.slice(5)).toEqual(["f4#3@120"]);
  playback.finish();
  clock.advance(1000);
  // The device started at 0 and was sent 4 frames: it has played them at 240.
  expect(events.at(-1)).toBe("end@240");
  expect(clock.pending).toBe(0);
});

test("a device that ran dry gets a new prebuffer; one still playing gets the next frame on time", () => {
  const clock = new ManualScheduler();
  const { playback, events } = player(clock);
  playback.append(f(1, 2));
  clock.advance(500); // the synthesis of the next sentence is slow: the device ran dry at 120
  playback.append(f(3, 4, 5));
  expect(events).toEqual(["f1#0@0", "f2#1@0", "f3#2@500", "f4#3@500"]);
  clock.advance(60);
  expect(events.at(-1)).toBe("f5#4@560");
  clock.advance(10); // the device is playing frame 5 until 620: 6 is due on its schedule
  playback.append(f(6));
  expect(events.at(-1)).toBe("f5#4@560");
  clock.advance(50);
  expect(events.at(-1)).toBe("f6#5@620");
});

test("stop cancels frames, marks and the end; nothing is sent after it", () => {
  const clock = new ManualScheduler();
  const { playback, events } = player(clock);
  playback.append(f(1, 2, 3, 4));
  playback.mark(() => events.push("mark"));
  playback.finish();
  expect(playback.stop()).toBe(true);
  playback.append(f(5));
  clock.advance(1000);
  expect(events).toEqual(["f1#0@0", "f2#1@0"]);
  expect(playback.active).toBe(false);
  expect(playback.stop()).toBe(false);
});

test("finish with nothing queued ends at once; after a stall at most the prebuffer goes out in one burst", () => {
  const clock = new ManualScheduler();
  const empty = player(clock);
  empty.playback.finish();
  expect(empty.events).toEqual(["end@0"]);

  const { playback, events } = player(clock);
  playback.append(f(1, 2, 3, 4, 5, 6));
  clock.jump(400); // the event loop was blocked: 4 frames overdue
  clock.advance(0);
  expect(events.filter((e) => e.endsWith("@400"))).toEqual(["f3#2@400", "f4#3@400"]);
});
