import { ErrorCode, GatewayError } from "../errors";
import { type AudioParams, DEFAULT_CLIENT_AUDIO, type DeviceMessage, type ListenMode, type ListenState } from "./device-message";

type Obj = Record<string, unknown>;

const LISTEN_STATES: readonly ListenState[] = ["start", "stop", "detect"];
const LISTEN_MODES: readonly ListenMode[] = ["auto", "manual", "realtime"];

function malformed(message: string): GatewayError {
  return new GatewayError(ErrorCode.MessageMalformed, message);
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Obj, ...names: string[]): string | undefined {
  for (const n of names) {
    const v = o[n];
    if (typeof v === "string") return v;
  }
  return undefined;
}

/** The first of `names` holding an integer in 1..max; else `fallback`. Out-of-range values
 * fall back like missing ones: they would not fit the AI contract's uint32 fields, and no
 * real client sends them. */
function boundedInt(o: Obj, names: readonly string[], max: number, fallback: number): number {
  for (const n of names) {
    const v = o[n];
    const num = typeof v === "string" ? Number(v) : v;
    if (typeof num === "number" && Number.isInteger(num) && num > 0 && num <= max) return num;
  }
  return fallback;
}

function audioParams(o: Obj): AudioParams {
  const p = o.audio_params ?? o.audioParams;
  if (!isObj(p)) return DEFAULT_CLIENT_AUDIO;
  return {
    format: typeof p.format === "string" && p.format !== "" ? p.format : DEFAULT_CLIENT_AUDIO.format,
    sampleRate: boundedInt(p, ["sample_rate", "sampleRate"], 384_000, DEFAULT_CLIENT_AUDIO.sampleRate),
    channels: boundedInt(p, ["channels"], 8, DEFAULT_CLIENT_AUDIO.channels),
    frameDurationMs: boundedInt(p, ["frame_duration", "frameDuration", "frame_duration_ms"], 1000, DEFAULT_CLIENT_AUDIO.frameDurationMs),
  };
}

function features(o: Obj): Record<string, boolean> {
  const f = o.features;
  const out: Record<string, boolean> = {};
  if (!isObj(f)) return out;
  for (const [k, v] of Object.entries(f)) if (typeof v === "boolean") out[k] = v;
  return out;
}

/** Base64 (standard or URL-safe) or a `data:<mime>;base64,` URL. */
function decodeBase64(field: string, value: string): { data: Uint8Array; mime: string | undefined } {
  let mime: string | undefined;
  let b64 = value;
  const m = /^data:([^;,]+)?(;base64)?,/.exec(value);
  if (m) {
    if (!m[2]) throw malformed(`${field}: a data URL must be base64`);
    mime = m[1];
    b64 = value.slice(m[0].length);
  }
  const clean = b64.replace(/\s+/g, "");
  // A length of 1 mod 4 cannot be base64; "==" alone decodes to nothing.
  if (clean === "" || clean.length % 4 === 1 || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(clean)) throw malformed(`${field}: not base64`);
  const data = Buffer.from(clean, clean.includes("-") || clean.includes("_") ? "base64url" : "base64");
  if (data.length === 0) throw malformed(`${field}: empty`);
  return { data, mime };
}

/**
 * Parses one JSON text message of any dialect seen in the wild (docs/device-protocol.md-4):
 * firmware messages, camelCase variants, and the `{type, data: {...}, timestamp}` envelope.
 * Throws GatewayError ERR_MESSAGE_MALFORMED or ERR_MESSAGE_UNKNOWN_TYPE.
 */
export function parseDeviceMessage(text: string): DeviceMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw malformed("not valid JSON");
  }
  if (!isObj(raw)) throw malformed("a message must be a JSON object");
  // The envelope form keeps the fields under `data`; top-level `type` names the message.
  const o: Obj = isObj(raw.data) ? { ...raw, ...raw.data } : raw;
  const type = o.type;
  if (typeof type !== "string" || type === "") throw malformed("missing `type`");

  switch (type) {
    case "hello": {
      const v = o.version;
      return {
        type,
        version: typeof v === "number" && Number.isInteger(v) ? v : undefined,
        transport: str(o, "transport") ?? "websocket",
        features: features(o),
        audioParams: audioParams(o),
      };
    }
    case "listen": {
      const state = o.state;
      if (typeof state !== "string" || !LISTEN_STATES.includes(state as ListenState)) {
        throw malformed("listen: `state` must be start, stop or detect");
      }
      const mode = o.mode;
      if (mode !== undefined && (typeof mode !== "string" || !LISTEN_MODES.includes(mode as ListenMode))) {
        throw malformed("listen: `mode` must be auto, manual or realtime");
      }
      return { type, state: state as ListenState, mode: mode as ListenMode | undefined, text: str(o, "text") };
    }
    case "abort":
      return { type, reason: str(o, "reason") ?? "" };
    case "mcp": {
      if (!isObj(o.payload)) throw malformed("mcp: `payload` must be a JSON-RPC object");
      return { type, payloadJson: JSON.stringify(o.payload) };
    }
    case "chat":
    case "text": {
      const t = str(o, "text", "content", "message");
      if (t === undefined || t.trim() === "") throw malformed(`${type}: \`text\` must be a non-empty string`);
      return { type: "chat", text: t };
    }
    case "image":
    case "vision": {
      const b64 = str(o, "image", "data", "content", "image_data", "imageData");
      if (b64 === undefined) throw malformed(`${type}: \`image\` must be base64 image data`);
      const { data, mime } = decodeBase64(type, b64);
      return {
        type: "image",
        data,
        mimeType: mime ?? str(o, "mime_type", "mimeType") ?? "image/jpeg",
        prompt: str(o, "prompt", "question", "text") ?? "",
      };
    }
    case "audio": {
      const b64 = str(o, "data", "audio", "opus");
      if (b64 === undefined) throw malformed("audio: `data` must be base64 Opus");
      return { type, data: decodeBase64("audio", b64).data };
    }
    case "ping":
      return { type };
    default:
      throw new GatewayError(ErrorCode.MessageUnknownType, `unknown message type ${JSON.stringify(type.slice(0, 40))}`);
  }
}
