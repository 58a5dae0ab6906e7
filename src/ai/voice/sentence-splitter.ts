export interface SentenceSplitterOptions {
  /** Longest piece returned, in characters (code points). Default 120. */
  maxChars?: number;
  /** Shorter pieces are joined to the next one (except the last, at flush). Default 2. */
  minChars?: number;
}

/** End a sentence whatever follows them. */
const CJK_ENDERS = new Set(["。", "！", "？", "；", "…", "｡"]);
/** End a sentence only before whitespace, CJK text or the end of the text: not "3.5", "e.g". */
const WESTERN_ENDERS = new Set([".", "!", "?", ";"]);
/** Belong to the sentence they follow: `他说："好。"` ends after the quote. */
const CLOSERS = new Set(['"', "'", "”", "’", "」", "』", "）", ")", "】", "》", "]"]);
/** Where an over-long piece is best cut; the break stays with the first half. */
const SOFT_BREAKS = new Set(["，", ",", "、"]);
/** Words that end in a dot without ending the sentence, lower case, without their final dot. */
const ABBREVIATIONS = new Set(["e.g", "i.e", "mr", "mrs", "ms", "dr", "prof", "vs", "cf"]);

const CJK_CHAR = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}]/u;
const CJK_TEXT_END = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\u3000-\u303f\uff00-\uffef…]$/u;
const CJK_TEXT_START = /^[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\u3000-\u303f\uff00-\uffef]/u;
const WHITESPACE = /\s/u;
/** Something a TTS voice can say; a piece without any ("---", "。") is not returned. */
const SPEAKABLE = /[\p{L}\p{N}\p{Extended_Pictographic}]/u;
/** Code points that modify the one before them: a hard cut must not separate them. */
const ATTACHED = /^(?:\p{M}|\u200d|\ufe0e|\ufe0f|[\u{1f3fb}-\u{1f3ff}])$/u;

interface Cut {
  /** The piece is chars [0, end). */
  end: number;
  /** The rest starts here (past a newline, which is not part of either). */
  resume: number;
}

/**
 * Splits an LLM's streamed answer into sentences for TTS, so speech can start before the whole
 * answer exists. Chunks may split anywhere, even inside "3.5" or "..."; pushing the text char by
 * char gives the same sentences as pushing it whole, because a boundary is only decided once
 * the characters it depends on have arrived. Markdown that should not be spoken (bullets,
 * headings, bold, rules, code ticks) is removed; empty or unspeakable pieces are never returned.
 */
export class SentenceSplitter {
  readonly #maxChars: number;
  readonly #minChars: number;
  #buffer = "";

  constructor(options: SentenceSplitterOptions = {}) {
    const maxChars = options.maxChars ?? 120;
    const minChars = options.minChars ?? 2;
    if (!Number.isInteger(maxChars) || maxChars < 1) throw new RangeError(`maxChars must be a positive integer, got ${maxChars}`);
    if (!Number.isInteger(minChars) || minChars < 0 || minChars > maxChars) throw new RangeError(`minChars must be an integer in 0..maxChars, got ${minChars}`);
    this.#maxChars = maxChars;
    this.#minChars = minChars;
  }

  /** The sentences completed by this chunk, trimmed, in order. */
  push(text: string): string[] {
    this.#buffer += text;
    return this.#drain(false);
  }

  /** Whatever is left, as sentences; the splitter is then empty and ready for another answer. */
  flush(): string[] {
    return this.#drain(true);
  }

  #drain(final: boolean): string[] {
    const out: string[] = [];
    const emit = (chars: string[]) => {
      const piece = clean(chars.join(""));
      if (SPEAKABLE.test(piece)) out.push(piece);
    };
    for (;;) {
      // Whitespace between sentences is never spoken; left in, it would count against the cap.
      this.#buffer = this.#buffer.trimStart();
      const chars = Array.from(this.#buffer);
      if (chars.length === 0) break;
      const cut = this.#findCut(chars, final);
      if (cut !== undefined && cut.end <= this.#maxChars) {
        emit(chars.slice(0, cut.end));
        this.#buffer = chars.slice(cut.resume).join("");
      } else if (chars.length > this.#maxChars) {
        const end = capCut(chars, this.#maxChars);
        emit(chars.slice(0, end));
        this.#buffer = chars.slice(end).join("");
      } else {
        if (final) {
          emit(chars);
          this.#buffer = "";
        }
        break;
      }
    }
    return out;
  }

  /**
   * The first sentence end whose piece is long enough to return, or undefined if there is none
   * or whether there is one depends on characters not yet pushed.
   */
  #findCut(chars: string[], final: boolean): Cut | undefined {
    // Past maxChars no cut can be short enough; the caller cuts at the cap instead.
    for (let i = 0; i < chars.length && i <= this.#maxChars; i++) {
      const c = chars[i]!;
      let cut: Cut;
      if (c === "\n") {
        cut = { end: i, resume: i + 1 };
      } else if (CJK_ENDERS.has(c) || WESTERN_ENDERS.has(c)) {
        // A run of enders ("?!", "...", "……") and closing quotes ends once, after all of it.
        let j = i;
        let cjk = false;
        for (; j < chars.length && (CJK_ENDERS.has(chars[j]!) || WESTERN_ENDERS.has(chars[j]!)); j++) {
          if (CJK_ENDERS.has(chars[j]!)) cjk = true;
        }
        let k = j;
        while (k < chars.length && CLOSERS.has(chars[k]!)) k++;
        if (k === chars.length && !final) return undefined;
        if (!cjk && !westernEnds(chars, i, j, k)) {
          i = k - 1;
          continue;
        }
        cut = { end: k, resume: k };
      } else {
        continue;
      }
      const piece = clean(chars.slice(0, cut.end).join(""));
      if (SPEAKABLE.test(piece) && Array.from(piece).length >= this.#minChars) return cut;
      // Too short to say alone ("1", "嗯", a lone bullet): it joins the next sentence.
      i = cut.resume - 1;
    }
    return undefined;
  }
}

/** Whether Western enders chars[i, j), then closers up to k, end a sentence. */
function westernEnds(chars: string[], i: number, j: number, k: number): boolean {
  const next = chars[k];
  if (next !== undefined && !WHITESPACE.test(next) && !CJK_CHAR.test(next)) return false;
  if (j - i > 1 || chars[i] !== "." || k > j) return true;
  // A lone dot right after a word: an abbreviation ("e.g. this") or a list number ("1. 苹果").
  let w = i;
  while (w > 0 && !WHITESPACE.test(chars[w - 1]!)) w--;
  const word = chars.slice(w, i).join("");
  if (ABBREVIATIONS.has(word.replace(/^\P{L}+/u, "").toLowerCase())) return false;
  const lineStart = chars.lastIndexOf("\n", w - 1) + 1;
  const atLineStart = chars.slice(lineStart, w).every((ch) => WHITESPACE.test(ch));
  return !(atLineStart && /^\d{1,3}$/.test(word));
}

/** Where to cut a piece with no sentence end within maxChars: after the last soft break, else hard. */
function capCut(chars: string[], maxChars: number): number {
  for (let p = maxChars - 1; p >= 1; p--) {
    const c = chars[p]!;
    if (SOFT_BREAKS.has(c)) return p + 1;
    if (WHITESPACE.test(c)) return p;
  }
  if (SOFT_BREAKS.has(chars[0]!)) return 1;
  let end = maxChars;
  while (end > 1 && (ATTACHED.test(chars[end]!) || chars[end - 1] === "\u200d")) end--;
  return end;
}

/** The piece as it should be spoken: markdown markers gone, whitespace collapsed. */
function clean(text: string): string {
  const lines: string[] = [];
  for (const raw of text.split(/\r?\n|\r/)) {
    let line = raw.trim();
    // A horizontal rule: "---", "***", "___", "- - -".
    if (/^([-*_])(\s*\1){2,}$/.test(line)) continue;
    line = line
      .replace(/^(>\s*)+/, "") // blockquote
      .replace(/^#+\s*/, "") // heading
      .replace(/^[-*+]\s+/, "") // bullet
      .replaceAll("**", "")
      .replaceAll("`", "");
    if (line.trim() !== "") lines.push(line);
  }
  // Lines of Chinese join without a space, which some voices read as a pause.
  let joined = "";
  for (const line of lines) joined += joined !== "" && !(CJK_TEXT_END.test(joined) && CJK_TEXT_START.test(line)) ? ` ${line}` : line;
  return joined.replace(/\s+/gu, " ").trim();
}
