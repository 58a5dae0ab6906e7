import { create } from "@bufbuild/protobuf";
import {
  type DeviceEvent,
  DeviceEventSchema,
  EndReason as PbEndReason,
  ListenMode as PbListenMode,
  ListenState as PbListenState,
  type ServerEvent,
  TtsState as PbTtsState,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage, ListenMode, ListenState } from "../device/device-message";
import type { TtsState } from "../device/server-message";
import type { EndReason, SessionHello, UpstreamSink } from "./upstream";

const LISTEN_STATE: Record<ListenState, PbListenState> = {
  start: PbListenState.START,
  stop: PbListenState.STOP,
  detect: PbListenState.DETECT,
};
const LISTEN_MODE: Record<ListenMode, PbListenMode> = {
  auto: PbListenMode.AUTO,
  manual: PbListenMode.MANUAL,
  realtime: PbListenMode.REALTIME,
};
const END_REASON: Record<EndReason | "moved", PbEndReason> = {
  "device-gone": PbEndReason.DEVICE_GONE,
  replaced: PbEndReason.REPLACED,
  shutdown: PbEndReason.SHUTDOWN,
  moved: PbEndReason.MOVED,
};
const TTS_STATE: Partial<Record<PbTtsState, TtsState>> = {
  [PbTtsState.START]: "start",
  [PbTtsState.STOP]: "stop",
  [PbTtsState.SENTENCE_START]: "sentence_start",
};

export function helloEvent(h: SessionHello, resumed: boolean, sessionKey = 0): DeviceEvent {
  return create(DeviceEventSchema, {
    sessionKey,
    event: {
      case: "hello",
      value: {
        sessionId: h.sessionId,
        deviceId: h.deviceId,
        clientId: h.clientId,
        userId: h.userId,
        claims: { ...h.claims },
        protocolVersion: h.protocolVersion,
        audioParams: {
          format: h.audioParams.format,
          sampleRate: h.audioParams.sampleRate,
          channels: h.audioParams.channels,
          frameDurationMs: h.audioParams.frameDurationMs,
        },
        features: { ...h.features },
        transport: h.transport,
        resumed,
      },
    },
  });
}

/**
 * The per-frame event, built as a plain object literal: protobuf-es v2 messages are plain
 * objects, and skipping create()'s reflection keeps a frame to two small allocations.
 */
export function audioEvent(opus: Uint8Array, seq: number, timestampMs: number, sessionKey = 0): DeviceEvent {
  return {
    $typeName: "xiaozhi.ai.v1.DeviceEvent",
    sessionKey,
    event: { case: "audio", value: { $typeName: "xiaozhi.ai.v1.Audio", opus, seq, timestampMs } },
  };
}

export function heartbeatEvent(sentAtMs: number, sessionKey = 0): DeviceEvent {
  return create(DeviceEventSchema, { sessionKey, event: { case: "heartbeat", value: { sentAtMs: BigInt(sentAtMs) } } });
}

/** `moved`: Relay moved the session to another stream (it is not a device's reason). */
export function endEvent(reason: EndReason | "moved", sessionKey = 0): DeviceEvent {
  return create(DeviceEventSchema, { sessionKey, event: { case: "end", value: { reason: END_REASON[reason] } } });
}

export function forwardedEvent(m: ForwardedMessage, sessionKey = 0): DeviceEvent {
  switch (m.type) {
    case "listen":
      return create(DeviceEventSchema, {
        sessionKey,
        event: {
          case: "listen",
          value: {
            state: LISTEN_STATE[m.state],
            mode: m.mode === undefined ? PbListenMode.UNSPECIFIED : LISTEN_MODE[m.mode],
            text: m.text ?? "",
          },
        },
      });
    case "abort":
      return create(DeviceEventSchema, { sessionKey, event: { case: "abort", value: { reason: m.reason } } });
    case "chat":
      return create(DeviceEventSchema, { sessionKey, event: { case: "chat", value: { text: m.text } } });
    case "image":
      return create(DeviceEventSchema, {
        sessionKey,
        event: { case: "image", value: { data: m.data, mimeType: m.mimeType, prompt: m.prompt } },
      });
    case "mcp":
      return create(DeviceEventSchema, { sessionKey, event: { case: "mcp", value: { payloadJson: m.payloadJson } } });
  }
}

/** The outcome of delivering one ServerEvent, for the caller's bookkeeping. */
export const Delivered = {
  /** Handed to the sink. */
  Ok: 0,
  /** A Heartbeat: not for the device; the caller takes it as the answer to its own. */
  Heartbeat: 1,
  /** A Close: the session is over. */
  Close: 2,
  /** Not usable (unknown oneof, bad JSON, unknown enum): dropped. */
  Bad: 3,
} as const;
export type Delivered = (typeof Delivered)[keyof typeof Delivered];

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch {
    return { ok: false };
  }
}

/** Delivers one ServerEvent to the device session's sink, translated. Never throws. */
export function deliver(ev: ServerEvent, sink: UpstreamSink): Delivered {
  const e = ev.event;
  switch (e.case) {
    case "audio":
      sink.onAudio(e.value.opus, e.value.timestampMs);
      return Delivered.Ok;
    case "stt":
      sink.onMessage({ type: "stt", text: e.value.text });
      return Delivered.Ok;
    case "llm":
      sink.onMessage({ type: "llm", text: e.value.text, emotion: e.value.emotion || "neutral" });
      return Delivered.Ok;
    case "tts": {
      const state = TTS_STATE[e.value.state];
      if (state === undefined) return Delivered.Bad;
      sink.onMessage(state === "sentence_start" ? { type: "tts", state, text: e.value.text } : { type: "tts", state });
      return Delivered.Ok;
    }
    case "mcp":
    case "custom": {
      const p = parseJson(e.value.payloadJson);
      if (!p.ok || typeof p.value !== "object" || p.value === null) return Delivered.Bad;
      sink.onMessage({ type: e.case, payload: p.value });
      return Delivered.Ok;
    }
    case "system":
      if (e.value.command === "") return Delivered.Bad;
      sink.onMessage({ type: "system", command: e.value.command });
      return Delivered.Ok;
    case "alert":
      // The firmware reads all three strings unchecked: never send one missing.
      sink.onMessage({
        type: "alert",
        status: e.value.status || "info",
        message: e.value.message,
        emotion: e.value.emotion || "neutral",
      });
      return Delivered.Ok;
    case "heartbeat":
      return Delivered.Heartbeat;
    case "close":
      sink.onClose(e.value.reason);
      return Delivered.Close;
    default:
      return Delivered.Bad;
  }
}
