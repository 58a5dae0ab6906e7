import { describe, expect, test } from "bun:test";
import { DBFS_FLOOR, EndOfSpeechDetector, type EndOfSpeechState, levelDbfs } from "../../../src/ai/voice/end-of-speech";

const RATE = 16000;
const OPTIONS = { thresholdDbfs: -45, minSpeechMs: 200, hangoverMs: 700 };

/** A sine whose RMS is `dbfs` (peak = rms * sqrt 2), `ms` long. */
function tone(dbfs: number, ms: number, rate = RATE, frequencyHz = 300): Int16Array {
  const peak = 32768 * 10 ** (dbfs / 20) * Math.SQRT2;
  const pcm = new Int16Array((rate * ms) / 1000);
  for (let i = 0; i < pcm.length; i++) pcm[i] = Math.round(peak * Math.sin((2 * Math.PI * frequencyHz * i) / rate));
  return pcm;
}

/** Deterministic white-ish noise with RMS `dbfs`: uniform in [-a, a] has RMS a / sqrt 3. */
function noise(dbfs: number, ms: number, rate = RATE): Int16Array {
  const a = 32768 * 10 ** (dbfs / 20) * Math.sqrt(3);
  const pcm = new Int16Array((rate * ms) / 1000);
  let state = 12345;
  for (let i = 0; i < pcm.length; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    pcm[i] = Math.round(((state >>> 0) / 0xffffffff) * 2 * a - a);
  }
  return pcm;
}

const speech = (ms: number) => tone(-20, ms);
const quiet = (ms: number) => noise(-70, ms);

/** Feeds `frames` in order and returns the state after each. */
function feed(detector: EndOfSpeechDetector, frames: Int16Array[], rate = RATE): EndOfSpeechState[] {
  return frames.map((f) => detector.push(f, rate));
}

const times = <T>(n: number, make: () => T): T[] => Array.from({ length: n }, make);
const repeat = (n: number, state: EndOfSpeechState): EndOfSpeechState[] => times(n, () => state);

describe("levelDbfs", () => {
  test("RMS relative to full scale", () => {
    expect(levelDbfs(tone(-20, 100))).toBeCloseTo(-20, 1);
    expect(levelDbfs(tone(-3.01, 100))).toBeCloseTo(-3.01, 1);
    expect(levelDbfs(noise(-70, 100))).toBeCloseTo(-70, 0);
    expect(levelDbfs(new Int16Array([1]))).toBeCloseTo(20 * Math.log10(1 / 32768), 6);
    expect(levelDbfs(new Int16Array([-32768, -32768]))).toBe(0);
  });

  test("digital silence and no samples are the floor, not -Infinity", () => {
    expect(DBFS_FLOOR).toBe(-120);
    expect(levelDbfs(new Int16Array(320))).toBe(-120);
    expect(levelDbfs(new Int16Array(0))).toBe(-120);
  });
});

describe("EndOfSpeechDetector", () => {
  test("speech starts after minSpeechMs of loud frames and ends after hangoverMs of quiet", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    // 20 ms frames: the 10th loud frame reaches 200 ms.
    const onset = feed(
      d,
      times(10, () => speech(20)),
    );
    expect(onset).toEqual([...repeat(9, "waiting"), "speech"]);
    expect(d.speechStarted).toBe(true);
    expect(
      feed(
        d,
        times(20, () => speech(20)),
      ),
    ).toEqual(repeat(20, "speech"));
    // The 35th quiet frame reaches 700 ms.
    const tail = feed(
      d,
      times(35, () => quiet(20)),
    );
    expect(tail).toEqual([...repeat(34, "speech"), "ended"]);
    // Ended sticks, whatever comes next, until reset.
    expect(feed(d, [speech(20), quiet(20)])).toEqual(["ended", "ended"]);
    expect(d.speechStarted).toBe(true);
    d.reset();
    expect(d.speechStarted).toBe(false);
    expect(d.push(quiet(20), RATE)).toBe("waiting");
  });

  test("quiet before speech never ends anything", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    const states = feed(d, [...times(100, () => quiet(60)), ...times(100, () => new Int16Array(960))]);
    expect(new Set(states)).toEqual(new Set(["waiting"]));
    expect(d.speechStarted).toBe(false);
  });

  test("clicks shorter than minSpeechMs, even close together, neither start nor end speech", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    const clicky: Int16Array[] = [];
    for (let i = 0; i < 10; i++) clicky.push(...times(9, () => speech(20)), quiet(20)); // 180 ms loud, 20 ms gap
    clicky.push(...times(50, () => quiet(20)));
    expect(new Set(feed(d, clicky))).toEqual(new Set(["waiting"]));
  });

  test("a pause shorter than the hangover does not end speech; the quiet count restarts", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    feed(d, [speech(300)]);
    expect(d.speechStarted).toBe(true);
    const states = feed(d, [...times(10, () => quiet(60)), speech(20), ...times(11, () => quiet(60))]);
    expect(new Set(states)).toEqual(new Set(["speech"]));
    expect(d.push(quiet(60), RATE)).toBe("ended");
  });

  test("frame durations come from the sample count and rate", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    // 24 kHz, 60 ms frames: 4 loud frames (240 ms) start speech, the 4th is the first past 200.
    expect(
      feed(
        d,
        times(4, () => tone(-20, 60, 24000)),
        24000,
      ),
    ).toEqual(["waiting", "waiting", "waiting", "speech"]);
    // 700 / 60 = 11.7: the 12th quiet frame ends it.
    const tail = feed(
      d,
      times(12, () => new Int16Array(1440)),
      24000,
    );
    expect(tail).toEqual([...repeat(11, "speech"), "ended"]);
  });

  test("the threshold is inclusive and configurable", () => {
    const loudEnough = new EndOfSpeechDetector({ thresholdDbfs: -45, minSpeechMs: 0, hangoverMs: 100 });
    expect(loudEnough.push(tone(-44, 20), RATE)).toBe("speech");
    const deaf = new EndOfSpeechDetector({ thresholdDbfs: -10, minSpeechMs: 0, hangoverMs: 100 });
    expect(deaf.push(speech(20), RATE)).toBe("waiting");
    // minSpeechMs 0: a quiet frame still is not speech.
    expect(new EndOfSpeechDetector({ thresholdDbfs: -45, minSpeechMs: 0, hangoverMs: 100 }).push(quiet(20), RATE)).toBe("waiting");
  });

  test("empty frames change nothing; bad options and rates are refused", () => {
    const d = new EndOfSpeechDetector(OPTIONS);
    feed(d, [speech(200)]);
    expect(d.push(new Int16Array(0), RATE)).toBe("speech");
    expect(() => d.push(speech(20), 0)).toThrow(RangeError);
    expect(() => new EndOfSpeechDetector({ ...OPTIONS, thresholdDbfs: Number.NaN })).toThrow(RangeError);
    expect(() => new EndOfSpeechDetector({ ...OPTIONS, minSpeechMs: -1 })).toThrow(RangeError);
    expect(() => new EndOfSpeechDetector({ ...OPTIONS, hangoverMs: 0 })).toThrow(RangeError);
  });
});
