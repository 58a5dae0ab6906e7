import OpenAI from "openai";
import type { ChatCompletionMessageParam, ChatCompletionMessageFunctionToolCall, ChatCompletionTool } from "openai/resources/chat/completions";
import { describeError } from "../../errors";
import type { Logger } from "../../log";

/** A function the LLM may call during a turn (a device's MCP tool, as the session offers it). */
export interface ChatTool {
  /** The name the LLM sees: `^[a-zA-Z0-9_-]{1,64}$`, as OpenAI requires. */
  readonly name: string;
  readonly description: string;
  /** JSON Schema of the arguments. */
  readonly parameters: Record<string, unknown>;
  /** Runs the call; resolves with the text the LLM is given back (an error said in words). */
  call(args: Record<string, unknown>, signal: AbortSignal): Promise<string>;
}

export interface ChatTurnOptions {
  readonly client: OpenAI;
  readonly model: string;
  /** The conversation so far, system prompt first, the user's question last. */
  readonly messages: ChatCompletionMessageParam[];
  readonly tools: readonly ChatTool[];
  /** Aborts the turn: the HTTP request in flight is cancelled. */
  readonly signal: AbortSignal;
  /** Longest wait for the provider's first or next chunk. */
  readonly idleTimeoutMs: number;
  /** Rounds of tool calls before the model must answer in words. Default 4. */
  readonly maxToolRounds?: number;
  readonly logger: Logger;
}

/** What the user hears when the provider fails: the cause goes to the log, not to them. */
export const PROVIDER_FAILED_ANSWER = "Sorry, I cannot reach my language model right now. Please try again in a moment.";

/**
 * One turn of a streamed chat completion, with tools: yields the answer's text as it streams.
 * When the model calls tools, each is run (in order), its result fed back, and the completion
 * continues, up to `maxToolRounds` rounds. A provider that fails, or goes quiet for
 * `idleTimeoutMs` (before its first chunk or mid-stream), ends the turn with
 * {@link PROVIDER_FAILED_ANSWER} and one log line with the cause; an aborted turn just ends.
 */
export async function* streamChatTurn(o: ChatTurnOptions): AsyncGenerator<string, void> {
  const messages = [...o.messages];
  const maxRounds = o.maxToolRounds ?? 4;
  let produced = false;
  for (let round = 0; ; round++) {
    const offerTools = o.tools.length > 0 && round < maxRounds;
    const step = completionStep(o, messages, offerTools);
    let calls: ChatCompletionMessageFunctionToolCall[] = [];
    let text = "";
    try {
      for (;;) {
        const next = await step.next();
        if (next.done) {
          calls = next.value;
          break;
        }
        text += next.value;
        produced = true;
        yield next.value;
      }
    } catch (err) {
      if (o.signal.aborted) return;
      o.logger.warn({ model: o.model, cause: err instanceof IdleError ? err.message : providerError(err) }, "AI provider failed; answering with an apology");
      yield produced ? ` ${PROVIDER_FAILED_ANSWER}` : PROVIDER_FAILED_ANSWER;
      return;
    }
    if (calls.length === 0) {
      if (!produced && !o.signal.aborted) {
        o.logger.warn({ model: o.model, cause: "the provider returned an empty answer" }, "AI provider failed; answering with an apology");
        yield PROVIDER_FAILED_ANSWER;
      }
      return;
    }
    messages.push({ role: "assistant", content: text === "" ? null : text, tool_calls: calls });
    for (const call of calls) {
      const content = await runTool(o, call);
      if (o.signal.aborted) return;
      messages.push({ role: "tool", tool_call_id: call.id, content });
    }
  }
}

/** Thrown when the provider goes quiet past the idle timeout. */
class IdleError extends Error {}

/** One streamed completion: yields text deltas, returns the tool calls it asked for. */
async function* completionStep(
  o: ChatTurnOptions,
  messages: ChatCompletionMessageParam[],
  offerTools: boolean,
): AsyncGenerator<string, ChatCompletionMessageFunctionToolCall[]> {
  const idle = new AbortController();
  let timer = setTimeout(() => idle.abort(), o.idleTimeoutMs);
  const signal = AbortSignal.any([o.signal, idle.signal]);
  const calls: { id: string; name: string; arguments: string }[] = [];
  try {
    const tools: ChatCompletionTool[] | undefined = offerTools
      ? o.tools.map((t) => ({ type: "function", function: { name: t.name, description: t.description, parameters: t.parameters } }))
      : undefined;
    const stream = await o.client.chat.completions.create({ model: o.model, stream: true, messages, ...(tools ? { tools } : {}) }, { signal });
    for await (const chunk of stream) {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), o.idleTimeoutMs);
      const delta = chunk.choices[0]?.delta;
      for (const d of delta?.tool_calls ?? []) {
        calls[d.index] ??= { id: "", name: "", arguments: "" };
        const c = calls[d.index]!;
        if (d.id) c.id = d.id;
        if (d.function?.name) c.name += d.function.name;
        if (d.function?.arguments) c.arguments += d.function.arguments;
      }
      if (delta?.content) yield delta.content;
    }
    // An abort can end the SDK's stream quietly instead of throwing.
    if (idle.signal.aborted && !o.signal.aborted) throw new IdleError(`no answer within ${o.idleTimeoutMs} ms`);
  } catch (err) {
    if (idle.signal.aborted && !o.signal.aborted) throw new IdleError(`no answer within ${o.idleTimeoutMs} ms`);
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return calls
    .filter((c) => c.name !== "")
    .map((c, i) => ({ id: c.id || `call_${i}`, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
}

/** Runs one tool call; whatever goes wrong becomes the text the model is told. */
async function runTool(o: ChatTurnOptions, call: ChatCompletionMessageFunctionToolCall): Promise<string> {
  const tool = o.tools.find((t) => t.name === call.function.name);
  if (tool === undefined) return `error: there is no tool named ${call.function.name}`;
  let args: unknown;
  try {
    args = call.function.arguments.trim() === "" ? {} : JSON.parse(call.function.arguments);
  } catch {
    return "error: the arguments are not valid JSON";
  }
  if (typeof args !== "object" || args === null || Array.isArray(args)) return "error: the arguments must be a JSON object";
  o.logger.debug({ tool: tool.name }, "llm calls a tool");
  try {
    return await tool.call(args as Record<string, unknown>, o.signal);
  } catch (err) {
    return `error: ${describeError(err)}`;
  }
}

/** The provider's status and message, without anything from our request (the key). */
function providerError(err: unknown): string {
  if (err instanceof OpenAI.APIError) return `HTTP ${err.status ?? "?"}: ${err.message}`.slice(0, 300);
  return describeError(err).slice(0, 300);
}
