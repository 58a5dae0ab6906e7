/** What a device (or a client speaking the device protocol) sends, once normalised. */

export type ListenState = "start" | "stop" | "detect";
export type ListenMode = "auto" | "manual" | "realtime";

/** An audio stream's description (hello `audio_params`). */
export interface AudioParams {
  readonly format: string;
  readonly sampleRate: number;
  readonly channels: number;
  readonly frameDurationMs: number;
}

/** What a client announcing no `audio_params` is assumed to send (docs/device-protocol.md). */
export const DEFAULT_CLIENT_AUDIO: AudioParams = { format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 };

export interface HelloMessage {
  readonly type: "hello";
  /** The binary protocol version the hello names, if it names one. */
  readonly version: number | undefined;
  readonly transport: string;
  readonly features: Readonly<Record<string, boolean>>;
  readonly audioParams: AudioParams;
}

export interface ListenMessage {
  readonly type: "listen";
  readonly state: ListenState;
  readonly mode: ListenMode | undefined;
  readonly text: string | undefined;
}

export interface AbortMessage {
  readonly type: "abort";
  readonly reason: string;
}

export interface McpMessage {
  readonly type: "mcp";
  /** The JSON-RPC object as JSON text. */
  readonly payloadJson: string;
}

export interface ChatMessage {
  readonly type: "chat";
  readonly text: string;
}

export interface ImageMessage {
  readonly type: "image";
  readonly data: Uint8Array;
  readonly mimeType: string;
  readonly prompt: string;
}

/** Opus carried base64 in JSON, for clients that cannot send binary frames. */
export interface AudioJsonMessage {
  readonly type: "audio";
  readonly data: Uint8Array;
}

export interface PingMessage {
  readonly type: "ping";
}

export type DeviceMessage = HelloMessage | ListenMessage | AbortMessage | McpMessage | ChatMessage | ImageMessage | AudioJsonMessage | PingMessage;

/** The device messages the gateway forwards to the AI service as they are. */
export type ForwardedMessage = ListenMessage | AbortMessage | McpMessage | ChatMessage | ImageMessage;
