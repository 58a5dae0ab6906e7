import { expect, test } from "bun:test";
import { ConversationMemory, estimateTokens } from "../../../src/ai/voice/conversation-memory";

test("over 100 turns a device's memory keeps only the last turns, oldest out first", () => {
  const memory = new ConversationMemory({ maxTurns: 5, maxTokens: 10_000, idleMs: 60_000 });
  for (let i = 0; i < 100; i++) memory.remember("dev", `question ${i}`, `answer ${i}`);
  const history = memory.history("dev");
  expect(history).toHaveLength(10);
  expect(history[0]).toEqual({ role: "user", content: "question 95" });
  expect(history.at(-1)).toEqual({ role: "assistant", content: "answer 99" });
});

test("the token bound drops the oldest exchanges first; one exchange past it alone is not kept", () => {
  const memory = new ConversationMemory({ maxTurns: 100, maxTokens: 30, idleMs: 60_000 });
  for (let i = 0; i < 100; i++) memory.remember("dev", "a".repeat(40), `answer ${i}`); // ~13 tokens each
  const kept = memory.history("dev");
  expect(kept.length).toBe(4);
  expect(kept.at(-1)).toEqual({ role: "assistant", content: "answer 99" });
  memory.remember("dev", "x".repeat(400), "too long to remember");
  expect(memory.history("dev").at(-1)).toEqual({ role: "assistant", content: "answer 99" });
});

test("devices do not share memory; an idle device's memory is forgotten", () => {
  let now = 0;
  const memory = new ConversationMemory({ maxTurns: 5, maxTokens: 1000, idleMs: 1000, now: () => now });
  memory.remember("a", "hi from a", "hello a");
  memory.remember("b", "hi from b", "hello b");
  expect(memory.history("a")).toEqual([
    { role: "user", content: "hi from a" },
    { role: "assistant", content: "hello a" },
  ]);
  now = 1001;
  expect(memory.history("a")).toEqual([]);
  expect(memory.size).toBe(1);
});

test("the number of devices remembered is bounded, the least recently heard forgotten first", () => {
  const memory = new ConversationMemory({ maxTurns: 5, maxTokens: 1000, idleMs: 60_000, maxDevices: 3 });
  for (const d of ["a", "b", "c"]) memory.remember(d, "q", "a");
  memory.remember("a", "q2", "a2");
  memory.remember("d", "q", "a");
  expect(memory.size).toBe(3);
  expect(memory.history("b")).toEqual([]);
  expect(memory.history("a")).toHaveLength(4);
});

test("memory 0 turns keeps nothing; tokens are estimated for Chinese and English", () => {
  const none = new ConversationMemory({ maxTurns: 0, maxTokens: 1000, idleMs: 60_000 });
  none.remember("dev", "q", "a");
  expect(none.history("dev")).toEqual([]);
  expect(estimateTokens("你好世界")).toBe(4);
  expect(estimateTokens("hello world!")).toBe(3);
});
