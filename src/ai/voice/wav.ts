/** Bytes of the canonical header `wavFromPcm16` writes: RIFF + "fmt " (16) + "data" headers. */
const HEADER_BYTES = 44;
const FORMAT_PCM = 1;
const FORMAT_EXTENSIBLE = 0xfffe;

/** A RIFF/WAVE file of 16-bit little-endian PCM (format 1); `pcm` is interleaved if stereo. */
export function wavFromPcm16(pcm: Int16Array, sampleRateHz: number, channels = 1): Uint8Array {
  if (!Number.isInteger(sampleRateHz) || sampleRateHz <= 0) throw new RangeError(`sampleRateHz must be a positive integer, got ${sampleRateHz}`);
  if (!Number.isInteger(channels) || channels < 1 || channels > 0xffff) throw new RangeError(`channels must be a positive integer, got ${channels}`);
  if (pcm.length % channels !== 0) throw new RangeError(`${pcm.length} samples are not a whole number of ${channels}-channel frames`);
  const dataBytes = pcm.length * 2;
  // RIFF sizes are 32-bit: past 4 GiB the file cannot describe itself.
  if (HEADER_BYTES - 8 + dataBytes > 0xffffffff) throw new RangeError("PCM too long for a WAV file");
  const wav = new Uint8Array(HEADER_BYTES + dataBytes);
  const view = new DataView(wav.buffer);
  const blockAlign = channels * 2;
  writeTag(wav, 0, "RIFF");
  view.setUint32(4, HEADER_BYTES - 8 + dataBytes, true);
  writeTag(wav, 8, "WAVE");
  writeTag(wav, 12, "fmt ");
  view.setUint32(16, 16, true);
  view.setUint16(20, FORMAT_PCM, true);
  view.setUint16(22, channels, true);
  view.setUint32(24, sampleRateHz, true);
  view.setUint32(28, sampleRateHz * blockAlign, true);
  view.setUint16(32, blockAlign, true);
  view.setUint16(34, 16, true);
  writeTag(wav, 36, "data");
  view.setUint32(40, dataBytes, true);
  // DataView, not an Int16Array copy: WAV is little endian whatever the host is.
  for (let i = 0; i < pcm.length; i++) view.setInt16(HEADER_BYTES + i * 2, pcm[i]!, true);
  return wav;
}

/**
 * The PCM of a 16-bit PCM WAV file (format 1, or WAVE_FORMAT_EXTENSIBLE holding PCM), walking
 * its chunks so LIST/fact chunks before the data are skipped. Throws an Error saying what is
 * wrong for anything else: an ASR fed a misread file would silently transcribe noise.
 */
export function pcm16FromWav(wav: Uint8Array): { sampleRateHz: number; channels: number; pcm: Int16Array } {
  const view = new DataView(wav.buffer, wav.byteOffset, wav.byteLength);
  if (wav.length < 12) throw new Error(`not a WAV file: ${wav.length} bytes is shorter than a RIFF header`);
  if (readTag(wav, 0) !== "RIFF" || readTag(wav, 8) !== "WAVE") throw new Error("not a WAV file: no RIFF/WAVE signature");
  let format: { sampleRateHz: number; channels: number; blockAlign: number } | undefined;
  let at = 12;
  while (at + 8 <= wav.length) {
    const id = readTag(wav, at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (body + size > wav.length) throw new Error(`malformed WAV: chunk "${id}" at byte ${at} claims ${size} bytes, only ${wav.length - body} remain`);
    if (id === "fmt ") {
      format = readFormat(view, body, size);
    } else if (id === "data") {
      if (format === undefined) throw new Error('malformed WAV: "data" chunk before "fmt " chunk');
      if (size % format.blockAlign !== 0) throw new Error(`malformed WAV: ${size} data bytes are not a whole number of ${format.blockAlign}-byte frames`);
      const pcm = new Int16Array(size / 2);
      for (let i = 0; i < pcm.length; i++) pcm[i] = view.getInt16(body + i * 2, true);
      return { sampleRateHz: format.sampleRateHz, channels: format.channels, pcm };
    }
    // Chunks are padded to an even length.
    at = body + size + (size & 1);
  }
  throw new Error(format === undefined ? 'malformed WAV: no "fmt " chunk' : 'malformed WAV: no "data" chunk');
}

function readFormat(view: DataView, at: number, size: number): { sampleRateHz: number; channels: number; blockAlign: number } {
  if (size < 16) throw new Error(`malformed WAV: "fmt " chunk of ${size} bytes, expected at least 16`);
  let formatTag = view.getUint16(at, true);
  const channels = view.getUint16(at + 2, true);
  const sampleRateHz = view.getUint32(at + 4, true);
  const blockAlign = view.getUint16(at + 12, true);
  const bitsPerSample = view.getUint16(at + 14, true);
  if (formatTag === FORMAT_EXTENSIBLE && size >= 26) {
    // The real format is the first two bytes of the sub-format GUID.
    formatTag = view.getUint16(at + 24, true);
  }
  if (formatTag !== FORMAT_PCM) throw new Error(`unsupported WAV: format ${formatTag}, only PCM (1) is read`);
  if (bitsPerSample !== 16) throw new Error(`unsupported WAV: ${bitsPerSample}-bit samples, only 16-bit is read`);
  if (channels === 0) throw new Error("malformed WAV: 0 channels");
  if (sampleRateHz === 0) throw new Error("malformed WAV: sample rate 0");
  if (blockAlign !== channels * 2) throw new Error(`malformed WAV: block align ${blockAlign} for ${channels} channels of 16 bits`);
  return { sampleRateHz, channels, blockAlign };
}

function writeTag(bytes: Uint8Array, at: number, tag: string): void {
  for (let i = 0; i < 4; i++) bytes[at + i] = tag.charCodeAt(i);
}

function readTag(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at]!, bytes[at + 1]!, bytes[at + 2]!, bytes[at + 3]!);
}
