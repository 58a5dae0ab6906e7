/** The wake words of xiaozhi devices, in the form {@link isWakeWord} compares. */
const WAKE_WORDS: ReadonlySet<string> = new Set(
  ["你好小智", "小智", "你好小志", "小志", "hi xiaozhi", "hey xiaozhi", "hello xiaozhi", "xiaozhi"].map(normalize),
);

/**
 * True when `text` (a Listen DETECT's text) is only a wake word, or empty: the device just woke
 * and its question follows as audio. Case, whitespace and punctuation are ignored, so
 * "你好，小智！" and " Hi XiaoZhi " are wake words; "小智 what time is it" is a question.
 */
export function isWakeWord(text: string): boolean {
  const normalized = normalize(text);
  return normalized === "" || WAKE_WORDS.has(normalized);
}

function normalize(text: string): string {
  return text.toLowerCase().replace(/[\s\p{P}\p{S}]/gu, "");
}
