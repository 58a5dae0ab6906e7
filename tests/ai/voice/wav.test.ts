import { describe, expect, test } from "bun:test";
import { pcm16FromWav, wavFromPcm16 } from "../../../src/ai/voice/wav";

const ascii = (bytes: Uint8Array, at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));

/** A RIFF/WAVE file from raw chunks, for inputs `wavFromPcm16` never writes. */
function riff(...chunks: [id: string, body: Uint8Array][]): Uint8Array {
  const bytes: number[] = [];
  const u32 = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  const tag = (t: string) => Array.from(t, (c) => c.charCodeAt(0));
  for (const [id, body] of chunks) {
    bytes.push(...tag(id), ...u32(body.length), ...body);
    if (body.length % 2 === 1) bytes.push(0);
  }
  return new Uint8Array([...tag("RIFF"), ...u32(bytes.length + 4), ...tag("WAVE"), ...bytes]);
}

function fmt(format: number, channels: number, rate: number, bits: number, blockAlign = channels * (bits / 8)): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, format, true);
  v.setUint16(2, channels, true);
  v.setUint32(4, rate, true);
  v.setUint32(8, rate * blockAlign, true);
  v.setUint16(12, blockAlign, true);
  v.setUint16(14, bits, true);
  return b;
}

function le16(...samples: number[]): Uint8Array {
  const b = new Uint8Array(samples.length * 2);
  const v = new DataView(b.buffer);
  for (const [i, s] of samples.entries()) v.setInt16(i * 2, s, true);
  return b;
}

describe("wavFromPcm16", () => {
  test("writes the canonical 44-byte PCM header and little-endian samples", () => {
    const wav = wavFromPcm16(new Int16Array([1, -2, 32767, -32768]), 16000);
    const v = new DataView(wav.buffer);
    expect(wav.length).toBe(44 + 8);
    expect(ascii(wav, 0)).toBe("RIFF");
    expect(v.getUint32(4, true)).toBe(wav.length - 8);
    expect(ascii(wav, 8)).toBe("WAVE");
    expect(ascii(wav, 12)).toBe("fmt ");
    expect(v.getUint32(16, true)).toBe(16);
    expect(v.getUint16(20, true)).toBe(1); // PCM
    expect(v.getUint16(22, true)).toBe(1); // channels
    expect(v.getUint32(24, true)).toBe(16000);
    expect(v.getUint32(28, true)).toBe(32000); // byte rate
    expect(v.getUint16(32, true)).toBe(2); // block align
    expect(v.getUint16(34, true)).toBe(16);
    expect(ascii(wav, 36)).toBe("data");
    expect(v.getUint32(40, true)).toBe(8);
    expect(Array.from(wav.subarray(44))).toEqual([0x01, 0x00, 0xfe, 0xff, 0xff, 0x7f, 0x00, 0x80]);
  });

  test("stereo: byte rate and block align count both channels; a half frame is refused", () => {
    const v = new DataView(wavFromPcm16(new Int16Array(4), 24000, 2).buffer);
    expect(v.getUint16(22, true)).toBe(2);
    expect(v.getUint32(28, true)).toBe(96000);
    expect(v.getUint16(32, true)).toBe(4);
    expect(() => wavFromPcm16(new Int16Array(3), 24000, 2)).toThrow(RangeError);
    expect(() => wavFromPcm16(new Int16Array(2), 0)).toThrow(RangeError);
  });
});

describe("pcm16FromWav", () => {
  test("round trips mono, stereo and empty PCM", () => {
    const mono = new Int16Array([0, 1, -1, 12345, -32768, 32767]);
    expect(pcm16FromWav(wavFromPcm16(mono, 16000))).toEqual({ sampleRateHz: 16000, channels: 1, pcm: mono });
    const stereo = new Int16Array([10, -10, 20, -20]);
    expect(pcm16FromWav(wavFromPcm16(stereo, 48000, 2))).toEqual({ sampleRateHz: 48000, channels: 2, pcm: stereo });
    expect(pcm16FromWav(wavFromPcm16(new Int16Array(0), 8000)).pcm.length).toBe(0);
  });

  test("reads a file that is a view at an odd offset into a larger buffer", () => {
    const wav = wavFromPcm16(new Int16Array([7, -7, 300]), 16000);
    const big = new Uint8Array(wav.length + 3);
    big.set(wav, 1);
    expect(Array.from(pcm16FromWav(big.subarray(1, 1 + wav.length)).pcm)).toEqual([7, -7, 300]);
  });

  test("skips other chunks, odd-sized ones padded, and reads WAVE_FORMAT_EXTENSIBLE PCM", () => {
    const list: [string, Uint8Array] = ["LIST", new Uint8Array([1, 2, 3])];
    expect(Array.from(pcm16FromWav(riff(list, ["fmt ", fmt(1, 1, 22050, 16)], ["data", le16(5, -5)])).pcm)).toEqual([5, -5]);
    const extensible = new Uint8Array(40);
    extensible.set(fmt(0xfffe, 1, 16000, 16));
    new DataView(extensible.buffer).setUint16(24, 1, true); // sub-format GUID starts with PCM's tag
    expect(pcm16FromWav(riff(["fmt ", extensible], ["data", le16(9)]))).toEqual({ sampleRateHz: 16000, channels: 1, pcm: new Int16Array([9]) });
  });

  test("malformed or unsupported files throw an Error that says what is wrong", () => {
    const good = wavFromPcm16(new Int16Array([1, 2, 3, 4]), 16000);
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array(0), /shorter than a RIFF header/],
      [new TextEncoder().encode("this is not audio at all"), /no RIFF\/WAVE signature/],
      [good.subarray(0, good.length - 1), /chunk "data".*claims 8 bytes, only 7 remain/],
      [riff(["data", le16(1)]), /"data" chunk before "fmt "/],
      [riff(["LIST", new Uint8Array(2)]), /no "fmt " chunk/],
      [riff(["fmt ", fmt(1, 1, 16000, 16)]), /no "data" chunk/],
      [riff(["fmt ", fmt(1, 1, 16000, 8)], ["data", new Uint8Array(2)]), /8-bit samples/],
      [riff(["fmt ", fmt(3, 1, 16000, 32)], ["data", new Uint8Array(4)]), /format 3/],
      [riff(["fmt ", fmt(1, 2, 16000, 16)], ["data", le16(1)]), /not a whole number of 4-byte frames/],
      [riff(["fmt ", fmt(1, 0, 16000, 16, 0)], ["data", le16(1)]), /0 channels/],
      [riff(["fmt ", new Uint8Array(10)], ["data", le16(1)]), /"fmt " chunk of 10 bytes/],
    ];
    for (const [bytes, message] of cases) expect(() => pcm16FromWav(bytes)).toThrow(message);
  });
});
