import type { Answerer, Question } from "./answerer";

/**
 * The reference {@link Answerer}: answers `You asked: <text>` (plus ` (with a N-byte <mime>
 * image)` when there is one), streamed one word (with its trailing space) per chunk, so that
 * clients see a multi-chunk stream without any model behind it.
 */
export const echoAnswerer: Answerer = {
  async *answer(question: Question, signal: AbortSignal): AsyncGenerator<string> {
    for (const chunk of echoAnswerText(question).split(/(?<= )/)) {
      if (signal.aborted) return;
      yield chunk;
    }
  },
};

/** The whole text {@link echoAnswerer} streams for `question`. */
export function echoAnswerText(question: Question): string {
  const text = question.text.trim();
  const image = question.image;
  const asked = text === "" ? "You sent an image" : `You asked: ${text}`;
  if (image === undefined) return asked;
  const mime = image.mimeType === "" ? "" : ` ${image.mimeType}`;
  return `${asked} (with a ${image.data.length}-byte${mime} image)`;
}

/** Appended by {@link offlineAnswerer}: the user learns why the answer is canned. */
export const OFFLINE_NOTE = " (offline answer: no AI provider is configured; set AI_API_KEY for real answers)";

/** The answerer without an LLM provider: {@link echoAnswerer}'s text, saying it is offline. */
export const offlineAnswerer: Answerer = {
  async *answer(question: Question, signal: AbortSignal): AsyncGenerator<string> {
    yield* echoAnswerer.answer(question, signal);
    if (!signal.aborted) yield OFFLINE_NOTE;
  },
};
