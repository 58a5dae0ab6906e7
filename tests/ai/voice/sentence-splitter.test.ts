import { describe, expect, test } from "bun:test";
import { SentenceSplitter, type SentenceSplitterOptions } from "../../../src/ai/voice/sentence-splitter";

/** Everything one splitter returns for the text pushed in the given pieces, then flushed. */
function split(pieces: string[], options?: SentenceSplitterOptions): string[] {
  const splitter = new SentenceSplitter(options);
  const out: string[] = [];
  for (const piece of pieces) out.push(...splitter.push(piece));
  out.push(...splitter.flush());
  return out;
}

const whole = (text: string, options?: SentenceSplitterOptions) => split([text], options);
const charByChar = (text: string, options?: SentenceSplitterOptions) => split(Array.from(text), options);
/** UTF-16 code units, so a chunk may even end inside a surrogate pair. */
const unitByUnit = (text: string, options?: SentenceSplitterOptions) => split(text.split(""), options);

const SAMPLES = [
  "你好！今天天气很好。我们去公园吧？好的；走吧……出发",
  "Hello there. This is version 3.5 of the app! Really?! Yes... it is e.g. great. Mr. Smith said hi.",
  "## 标题\n- **第一点**：苹果\n- 第二点：香蕉\n\n1. 首先\n2. 然后\n---\n结束",
  '他说：“你好。”然后走了。I said "ok." Then left.',
  "😀 Great job! 🎉🎉 你真棒👍。Bye",
  "温度是23.5度，湿度60%。The price is $3.99. OK",
  `${"很长的句子，".repeat(30)}完。`,
  `${"a very long sentence without an end ".repeat(8)}ok`,
];

describe("SentenceSplitter", () => {
  test("Chinese: ends at 。！？；… and keeps a run of them together", () => {
    expect(whole("你好！今天天气很好。我们去公园吧？好的；走吧……出发")).toEqual(["你好！", "今天天气很好。", "我们去公园吧？", "好的；", "走吧……", "出发"]);
    expect(whole("真的吗？！是的。")).toEqual(["真的吗？！", "是的。"]);
  });

  test("English: . ! ? ; end a sentence only before whitespace or the end", () => {
    expect(whole("Hello there. How are you? Great! Fine; thanks.")).toEqual(["Hello there.", "How are you?", "Great!", "Fine;", "thanks."]);
    expect(whole("Wait... what?! No.")).toEqual(["Wait...", "what?!", "No."]);
    expect(whole("See example.com/a.b?x=1 now. Done")).toEqual(["See example.com/a.b?x=1 now.", "Done"]);
  });

  test("decimals, abbreviations and list numbers do not end a sentence", () => {
    expect(whole("It costs 3.5 dollars. Then 10.25 more.")).toEqual(["It costs 3.5 dollars.", "Then 10.25 more."]);
    expect(whole("Fruit, e.g. apples, i.e. food. Mr. Smith agrees.")).toEqual(["Fruit, e.g. apples, i.e. food.", "Mr. Smith agrees."]);
    expect(whole("1. 首先\n2. 然后")).toEqual(["1. 首先", "2. 然后"]);
    expect(whole("温度是23.5度。")).toEqual(["温度是23.5度。"]);
  });

  test("mixed Chinese and English; closing quotes stay with their sentence", () => {
    expect(whole('他说：“你好。”然后走了。I said "ok." Then left.')).toEqual(["他说：“你好。”", "然后走了。", 'I said "ok."', "Then left."]);
    expect(whole("我用Python.它很好。")).toEqual(["我用Python.", "它很好。"]);
  });

  test("newlines end sentences; markdown that should not be spoken is stripped", () => {
    expect(whole("## 标题\n- **第一点**：苹果\n* 第二点：香蕉\n> 引用\n---\n`code` 结束\n\n\n")).toEqual([
      "标题",
      "第一点：苹果",
      "第二点：香蕉",
      "引用",
      "code 结束",
    ]);
  });

  test("chunked char by char, or even mid surrogate pair, equals whole", () => {
    for (const text of SAMPLES) {
      const expected = whole(text);
      expect(charByChar(text)).toEqual(expected);
      expect(unitByUnit(text)).toEqual(expected);
      expect(charByChar(text, { maxChars: 15, minChars: 4 })).toEqual(whole(text, { maxChars: 15, minChars: 4 }));
    }
  });

  test("chunked in arbitrary pieces equals whole", () => {
    const text = SAMPLES.join("\n");
    const expected = whole(text);
    for (const size of [2, 3, 5, 7, 13]) {
      const pieces: string[] = [];
      for (let at = 0; at < text.length; at += size) pieces.push(text.slice(at, at + size));
      expect(split(pieces)).toEqual(expected);
    }
  });

  test("a sentence is returned as soon as it is known to be complete, not before", () => {
    const s = new SentenceSplitter();
    expect(s.push("版本3")).toEqual([]);
    expect(s.push(".")).toEqual([]); // could be 3.5
    expect(s.push("5好。")).toEqual([]); // could be 。」
    expect(s.push("再")).toEqual(["版本3.5好。"]);
    expect(s.push("见. ")).toEqual(["再见."]);
    expect(s.push("Bye.")).toEqual([]);
    expect(s.flush()).toEqual(["Bye."]);
    expect(s.flush()).toEqual([]);
    // After flush it starts over.
    expect(s.push("新的。开始")).toEqual(["新的。"]);
  });

  test("past maxChars without an end: cut after the last comma or at the last space, else hard", () => {
    const max = 20;
    const commas = whole("这是一个非常非常长的句子，没有任何句号而且一直在说话，说个不停说个不停说个不停说个不停", { maxChars: max });
    expect(commas).toEqual(["这是一个非常非常长的句子，", "没有任何句号而且一直在说话，", "说个不停说个不停说个不停说个不停"]);
    expect(whole("one two three four five six seven eight", { maxChars: max })).toEqual(["one two three four", "five six seven eight"]);
    expect(whole("一二三四五六七八九十一二三四五六七八九十一二三", { maxChars: 10 })).toEqual(["一二三四五六七八九十", "一二三四五六七八九十", "一二三"]);
    for (const text of SAMPLES) for (const piece of whole(text, { maxChars: max })) expect(Array.from(piece).length).toBeLessThanOrEqual(max);
  });

  test("the default cap is 120 characters", () => {
    const pieces = whole("字".repeat(250));
    expect(pieces.map((p) => p.length)).toEqual([120, 120, 10]);
  });

  test("emoji pass through whole, and a hard cut does not split one", () => {
    expect(whole("😀 Great job! 🎉🎉 你真棒👍。Bye")).toEqual(["😀 Great job!", "🎉🎉 你真棒👍。", "Bye"]);
    // The cap falls inside the family emoji (man ZWJ woman ZWJ girl): cut before all of it.
    const family = "👨‍👩‍👧";
    const pieces = whole(`一二三四五六七八${family}九十`, { maxChars: 10 });
    expect(pieces).toEqual(["一二三四五六七八", `${family}九十`]);
  });

  test("pieces shorter than minChars join the next; the last one is returned anyway", () => {
    expect(whole("嗯\n好的。OK")).toEqual(["嗯好的。", "OK"]);
    expect(whole("A. B. Cee.", { minChars: 3 })).toEqual(["A. B.", "Cee."]);
    expect(whole("好。", { minChars: 5 })).toEqual(["好。"]);
  });

  test("never returns empty or unspeakable strings", () => {
    const noisy = ["", "\n\n\n", "。。。", "- \n", "---\n***\n", "  ", "**", "!!! ???", "……\n"];
    for (const text of noisy) expect(whole(text)).toEqual([]);
    for (const text of [...SAMPLES, ...noisy]) {
      for (const piece of charByChar(text)) {
        expect(piece).toBe(piece.trim());
        expect(piece).not.toBe("");
      }
    }
  });

  test("rejects impossible options", () => {
    expect(() => new SentenceSplitter({ maxChars: 0 })).toThrow(RangeError);
    expect(() => new SentenceSplitter({ maxChars: 5, minChars: 6 })).toThrow(RangeError);
  });
});
