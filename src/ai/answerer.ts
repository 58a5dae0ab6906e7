import type { ChatTool } from "./voice/chat-turn";

/** A question: typed or spoken by a device, or asked through the HTTP API. */
export interface Question {
  /** The question's text; may be empty when an image is given. */
  text: string;
  /** An optional picture to ask about. */
  image?: { data: Uint8Array; mimeType: string };
  /** The device the answer is for, or empty. */
  deviceId: string;
  /** The asking user (token `sub`), or empty. */
  userId: string;
  /** What the answerer may call while answering (the device's MCP tools). Default none. */
  tools?: readonly ChatTool[];
}

/**
 * What turns a question into streamed answer text: the deterministic echo of the reference
 * service, or an LLM provider. Implementations stop (and release what they hold) when `signal`
 * aborts; chunks are pieces of one text, in order, to be concatenated as they are.
 */
export interface Answerer {
  answer(question: Question, signal: AbortSignal): AsyncIterable<string>;
}
