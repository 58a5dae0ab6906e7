import { afterEach, expect, test } from "bun:test";
import ESpeakNg from "espeak-ng";
import { OpusFrameEncoder } from "../../src/ai/voice/opus-frame-encoder";
import { resamplePcm16 } from "../../src/ai/voice/pcm-resampler";
import { pcm16FromWav } from "../../src/ai/voice/wav";
import { type FakeOpenAi, startFakeOpenAi } from "../helpers/fake-openai";
import { voiceAiOptions } from "../helpers/fake-voice-ai";
import { startStack } from "../helpers/start-stack";

// Real speech, synthesized at test time by eSpeak NG (WASM, a devDependency: GPL, never in the
// binary), spoken by a device in AUTO mode: the end of speech is found on real audio, whose
// pauses between words and sentences must not cut the utterance short.

let fakes: FakeOpenAi[] = [];
afterEach(async () => {
  for (const f of fakes) await f.stop();
  fakes = [];
});

/** `text` spoken by eSpeak NG, as 16 kHz mono samples. */
async function speech(text: string): Promise<Int16Array> {
  const espeak = await ESpeakNg({ arguments: ["-w", "speech.wav", "-v", "en-us", "-s", "160", text] });
  const wav = pcm16FromWav(espeak.FS.readFile("speech.wav") as Uint8Array);
  return resamplePcm16(wav.pcm, wav.sampleRateHz, 16000);
}

/** Samples as the device's 60 ms Opus frames, then `silentFrames` frames of silence. */
function frames(pcm: Int16Array, silentFrames: number): Uint8Array[] {
  const enc = new OpusFrameEncoder(16000, 60);
  try {
    return [...enc.push(pcm), ...enc.flush(), ...enc.push(new Int16Array(960 * silentFrames))];
  } finally {
    enc.delete();
  }
}

test("AUTO mode on real speech: the utterance ends after the last word, not at a pause between sentences", async () => {
  const fake = await startFakeOpenAi();
  fakes.push(fake);
  // End of speech: -45 dBFS, 200 ms of speech, 700 ms of quiet after it.
  await using stack = await startStack({ ai: voiceAiOptions(fake.url) });
  const said = await speech("Turn the volume down. Then tell me the time, please.");
  const seconds = said.length / 16000;
  expect(seconds).toBeGreaterThan(2);
  const dev = await stack.device("aa:00:00:00:a3:01", 3);
  await dev.hello();
  dev.sendJson({ type: "listen", state: "start", mode: "auto" });
  // 1.5 s of silence after the speech: only the hangover (0.7 s) of it should be heard.
  for (const f of frames(said, 25)) dev.sendAudio(f);
  await dev.waitJson((m) => m.type === "stt");
  const asr = await fake.waitFor((r) => r.kind === "transcription");
  const heard = asr.kind === "transcription" ? asr.audio.pcm.length / 16000 : 0;
  // All of the speech (eSpeak's own leading and trailing quiet aside) and the hangover, not
  // the first sentence only, nor the whole second and a half of silence after it.
  expect(heard).toBeGreaterThan(seconds - 0.3);
  expect(heard).toBeLessThan(seconds + 1.2);
  expect(fake.requests.filter((r) => r.kind === "transcription")).toHaveLength(1);
});
