import type { AudioParams, ForwardedMessage } from "../device/device-message";
import type { ProtocolVersion } from "../device/frame-codec";
import type { ServerMessage } from "../device/server-message";

/** Everything the AI service learns when a session opens. */
export interface SessionHello {
  readonly sessionId: string;
  readonly deviceId: string;
  readonly clientId: string;
  /** Token `sub`, or "" when admitted without a token. */
  readonly userId: string;
  readonly claims: Readonly<Record<string, string>>;
  readonly protocolVersion: ProtocolVersion;
  readonly audioParams: AudioParams;
  readonly features: Readonly<Record<string, boolean>>;
  readonly transport: string;
}

/** Why the gateway ends a session. */
export type EndReason = "device-gone" | "replaced" | "shutdown";

/** The upstream's view of the link to the AI service, as the device should hear of it. */
export type UpstreamStatus = "unavailable" | "restored";

/** Where a session's AI events go: implemented by the device session. */
export interface UpstreamSink {
  /** An audio packet to play, in order. */
  onAudio(opus: Uint8Array, timestampMs: number): void;
  /** A JSON message for the device (stt, llm, tts, mcp, system, alert, custom). */
  onMessage(message: ServerMessage): void;
  /** The AI service ended the session: close the device socket normally. */
  onClose(reason: string): void;
  /** The link failed (the session is being resumed) or came back. */
  onStatus(status: UpstreamStatus): void;
  /** The link cannot serve this session at all (e.g. the AI service does not implement the
   * RPC): close the device socket with an error. */
  onFatal(reason: string): void;
}

/** One device session's link to the AI service. Calls never throw and never block. */
export interface UpstreamSession {
  /** Forwards one audio packet. `opus` is kept until sent (Relay batches it, and holds a
   * backlog while its stream is away): the caller must not reuse its memory (a view of the
   * message Bun handed over, which Bun never reuses, is fine). */
  audio(opus: Uint8Array, timestampMs: number): void;
  /** Forwards a control or content message, in order with the audio. */
  send(message: ForwardedMessage): void;
  /** Ends the session upstream; idempotent. */
  end(reason: EndReason): void;
}

/** A one-off question (HTTP API, the text dialect), answered with streamed text. */
export interface AskQuestion {
  readonly text: string;
  readonly image?: { readonly data: Uint8Array; readonly mimeType: string };
  /** The device the answer is for, if any. */
  readonly deviceId?: string;
  /** The asking user (token `sub`), if any. */
  readonly userId?: string;
}

/** The link to the AI service, whatever the transport. */
export interface Upstream {
  open(hello: SessionHello, sink: UpstreamSink): UpstreamSession;
  /**
   * Asks the AI service one question (the Ask RPC on the least-loaded ready connection)
   * and yields its answer's text chunks in order. Throws a GatewayError
   * (ERR_UPSTREAM_UNAVAILABLE) when no AI service answers; stops when `signal` aborts.
   */
  ask(question: AskQuestion, signal: AbortSignal): AsyncIterable<string>;
  /** True while at least one connection to the AI service is usable. */
  ready(): boolean;
  /** Resolves once a connection is usable, or false after `timeoutMs`. */
  waitReady(timeoutMs: number): Promise<boolean>;
  /** Ends every session and connection. */
  close(): Promise<void>;
  /** Bytes written towards the AI service and not yet sent (its HTTP/2 write buffers), for
   * the memory budget's sampling. */
  bufferedBytes(): number;
  /** What each session holds for the AI service (queued events and write buffers), for
   * shedding the largest when the memory budget is exceeded. Not cheap: not per frame. */
  heldBytes(): Map<UpstreamSession, number>;
}
