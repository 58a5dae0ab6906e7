import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";

/** Bounds of what the LLM remembers of each device's conversation. */
export interface ConversationMemoryOptions {
  /** Exchanges (a question and its answer) kept per device; 0 keeps none. */
  readonly maxTurns: number;
  /** Estimated tokens kept per device; the oldest exchanges go first. */
  readonly maxTokens: number;
  /** A device's conversation is forgotten after this long without a turn, ms. */
  readonly idleMs: number;
  /** Devices remembered at once; the least recently heard is forgotten first. Default 10,000. */
  readonly maxDevices?: number;
  /** The clock, for tests. Default Date.now. */
  readonly now?: () => number;
}

/** One exchange: what the user said and what the assistant answered. */
interface Exchange {
  readonly user: string;
  readonly assistant: string;
  readonly tokens: number;
}

interface DeviceHistory {
  exchanges: Exchange[];
  tokens: number;
  lastAtMs: number;
}

/**
 * What the LLM remembers of each device's conversation, across its sessions: the last
 * exchanges, bounded in turns and estimated tokens, forgotten after an idle time. Only the
 * spoken text is kept (no tool calls, no images), so that a memory of a few thousand tokens
 * holds many turns. Bounded in devices too: the whole service's memory has a ceiling.
 */
export class ConversationMemory {
  private readonly byDevice = new Map<string, DeviceHistory>();
  private readonly maxDevices: number;
  private readonly now: () => number;

  constructor(private readonly o: ConversationMemoryOptions) {
    this.maxDevices = o.maxDevices ?? 10_000;
    this.now = o.now ?? Date.now;
  }

  /** The device's remembered exchanges, oldest first, as chat messages. */
  history(deviceId: string): ChatCompletionMessageParam[] {
    const h = this.live(deviceId);
    if (h === undefined) return [];
    return h.exchanges.flatMap((e): ChatCompletionMessageParam[] => [
      { role: "user", content: e.user },
      { role: "assistant", content: e.assistant },
    ]);
  }

  /** Remembers one exchange, dropping the oldest past the bounds. */
  remember(deviceId: string, user: string, assistant: string): void {
    if (deviceId === "" || this.o.maxTurns === 0 || this.o.maxTokens === 0) return;
    const exchange = { user, assistant, tokens: estimateTokens(user) + estimateTokens(assistant) };
    if (exchange.tokens > this.o.maxTokens) return;
    const h = this.live(deviceId) ?? { exchanges: [], tokens: 0, lastAtMs: 0 };
    // Re-inserted: the Map's order is the order devices were last heard.
    this.byDevice.delete(deviceId);
    this.byDevice.set(deviceId, h);
    h.lastAtMs = this.now();
    h.exchanges.push(exchange);
    h.tokens += exchange.tokens;
    while (h.exchanges.length > this.o.maxTurns || h.tokens > this.o.maxTokens) h.tokens -= h.exchanges.shift()!.tokens;
    while (this.byDevice.size > this.maxDevices) this.byDevice.delete(this.byDevice.keys().next().value!);
  }

  /** Forgets a device's conversation. */
  forget(deviceId: string): void {
    this.byDevice.delete(deviceId);
  }

  /** Devices remembered now. */
  get size(): number {
    return this.byDevice.size;
  }

  private live(deviceId: string): DeviceHistory | undefined {
    const h = this.byDevice.get(deviceId);
    if (h !== undefined && this.now() - h.lastAtMs > this.o.idleMs) {
      this.byDevice.delete(deviceId);
      return undefined;
    }
    return h;
  }
}

/**
 * A token estimate without a tokenizer: about 4 characters of Latin text a token, and one
 * token a CJK character (what OpenAI's tokenizers give within some 30%). A bound, not a bill.
 */
export function estimateTokens(text: string): number {
  let cjk = 0;
  for (const ch of text) if (ch.codePointAt(0)! >= 0x2e80) cjk++;
  return cjk + Math.ceil((text.length - cjk) / 4);
}
