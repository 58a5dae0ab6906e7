/** What the gateway sends a device as JSON (docs/device-protocol.md), before `session_id`. */

export type TtsState = "start" | "stop" | "sentence_start";

export type ServerMessage =
  | { readonly type: "stt"; readonly text: string }
  | { readonly type: "llm"; readonly text: string; readonly emotion: string }
  | { readonly type: "tts"; readonly state: TtsState; readonly text?: string }
  | { readonly type: "mcp"; readonly payload: unknown }
  | { readonly type: "system"; readonly command: string }
  | { readonly type: "alert"; readonly status: string; readonly message: string; readonly emotion: string }
  | { readonly type: "custom"; readonly payload: unknown };
