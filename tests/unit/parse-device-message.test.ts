import { describe, expect, test } from "bun:test";
import { DEFAULT_CLIENT_AUDIO, type DeviceMessage } from "../../src/device/device-message";
import { parseDeviceMessage } from "../../src/device/parse-device-message";
import { ErrorCode, GatewayError } from "../../src/errors";

function parse(o: unknown): DeviceMessage {
  return parseDeviceMessage(typeof o === "string" ? o : JSON.stringify(o));
}

function errorOf(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw new Error(`expected a GatewayError, got ${String(err)}`);
  }
  throw new Error("expected a throw");
}

function expectMalformed(o: unknown): void {
  expect(errorOf(() => parse(o)).code).toBe(ErrorCode.MessageMalformed);
}

function narrow<T extends DeviceMessage["type"]>(m: DeviceMessage, type: T): Extract<DeviceMessage, { type: T }> {
  expect(m.type).toBe(type);
  return m as Extract<DeviceMessage, { type: T }>;
}

describe("hello", () => {
  test("firmware hello", () => {
    const m = parse({
      type: "hello",
      version: 1,
      features: { mcp: true, aec: true },
      transport: "websocket",
      audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
    });
    expect(m).toEqual({
      type: "hello",
      version: 1,
      transport: "websocket",
      features: { mcp: true, aec: true },
      audioParams: { format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 },
    });
  });

  test("audioParams with camelCase keys", () => {
    const m = narrow(
      parse({ type: "hello", transport: "websocket", audioParams: { format: "pcm", sampleRate: 24000, channels: 2, frameDuration: 20 } }),
      "hello",
    );
    expect(m.audioParams).toEqual({ format: "pcm", sampleRate: 24000, channels: 2, frameDurationMs: 20 });
  });

  test("no audio_params -> opus/16000/1/60", () => {
    const m = narrow(parse({ type: "hello", transport: "websocket" }), "hello");
    expect(m.audioParams).toEqual({ format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 });
    expect(m.audioParams).toEqual(DEFAULT_CLIENT_AUDIO);
  });

  test("partly missing audio_params fill in the defaults", () => {
    const m = narrow(parse({ type: "hello", audio_params: { sample_rate: 8000 } }), "hello");
    expect(m.audioParams).toEqual({ format: "opus", sampleRate: 8000, channels: 1, frameDurationMs: 60 });
  });

  test("extra keys are ignored, non-boolean features dropped", () => {
    const m = narrow(
      parse({
        type: "hello",
        version: 3,
        transport: "websocket",
        device_id: "aa:bb",
        device_name: "kitchen",
        token: "t",
        text_font: "x",
        features: { mcp: true, glyph_push: false, weird: "yes" },
        audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
      }),
      "hello",
    );
    expect(m.features).toEqual({ mcp: true, glyph_push: false });
    expect(m.version).toBe(3);
    expect(Object.keys(m).sort()).toEqual(["audioParams", "features", "transport", "type", "version"]);
  });

  test("version: absent or not an integer -> undefined", () => {
    expect(narrow(parse({ type: "hello" }), "hello").version).toBeUndefined();
    expect(narrow(parse({ type: "hello", version: "2" }), "hello").version).toBeUndefined();
    expect(narrow(parse({ type: "hello", version: 2 }), "hello").version).toBe(2);
  });

  test("missing transport defaults to websocket", () => {
    expect(narrow(parse({ type: "hello" }), "hello").transport).toBe("websocket");
  });
});

describe("listen", () => {
  test("start with each mode", () => {
    for (const mode of ["auto", "manual", "realtime"] as const) {
      expect(parse({ session_id: "S", type: "listen", state: "start", mode })).toEqual({
        type: "listen",
        state: "start",
        mode,
        text: undefined,
      });
    }
  });

  test("stop without mode", () => {
    expect(parse({ session_id: "S", type: "listen", state: "stop" })).toEqual({
      type: "listen",
      state: "stop",
      mode: undefined,
      text: undefined,
    });
  });

  test("detect with text", () => {
    const m = narrow(parse({ session_id: "S", type: "listen", state: "detect", text: "你好小智" }), "listen");
    expect(m.state).toBe("detect");
    expect(m.text).toBe("你好小智");
  });

  test("bad state -> malformed", () => {
    expectMalformed({ type: "listen", state: "begin" });
    expectMalformed({ type: "listen" });
    expectMalformed({ type: "listen", state: 1 });
  });

  test("bad mode -> malformed", () => {
    expectMalformed({ type: "listen", state: "start", mode: "always" });
    expectMalformed({ type: "listen", state: "start", mode: 2 });
  });
});

describe("abort", () => {
  test("with reason", () => {
    expect(parse({ session_id: "S", type: "abort", reason: "wake_word_detected" })).toEqual({
      type: "abort",
      reason: "wake_word_detected",
    });
  });

  test("without reason -> empty reason", () => {
    expect(parse({ type: "abort" })).toEqual({ type: "abort", reason: "" });
  });
});

describe("mcp", () => {
  test("payload kept: payloadJson parses back equal", () => {
    const payload = { jsonrpc: "2.0", id: 1, result: { tools: [{ name: "self.light.on", inputSchema: {} }] } };
    const m = narrow(parse({ session_id: "S", type: "mcp", payload }), "mcp");
    expect(JSON.parse(m.payloadJson)).toEqual(payload);
  });

  test("notification without id is kept too", () => {
    const payload = { jsonrpc: "2.0", method: "notifications/state_changed", params: { a: [1, "x", null] } };
    expect(JSON.parse(narrow(parse({ type: "mcp", payload }), "mcp").payloadJson)).toEqual(payload);
  });

  test("payload that is not an object -> malformed", () => {
    expectMalformed({ type: "mcp" });
    expectMalformed({ type: "mcp", payload: '{"jsonrpc":"2.0"}' });
    expectMalformed({ type: "mcp", payload: [1, 2] });
    expectMalformed({ type: "mcp", payload: null });
  });
});

describe("envelope {type, data, timestamp}", () => {
  test("listen inside data", () => {
    expect(parse({ type: "listen", data: { state: "start", mode: "manual" }, timestamp: 1732200000000 })).toEqual({
      type: "listen",
      state: "start",
      mode: "manual",
      text: undefined,
    });
  });

  test("mcp payload inside data", () => {
    const payload = { jsonrpc: "2.0", id: 7, result: {} };
    const m = narrow(parse({ type: "mcp", data: { payload }, timestamp: 1 }), "mcp");
    expect(JSON.parse(m.payloadJson)).toEqual(payload);
  });

  test("chat text inside data", () => {
    expect(parse({ type: "chat", data: { text: "hi there" }, timestamp: 1 })).toEqual({ type: "chat", text: "hi there" });
  });

  test("hello audio params inside data", () => {
    const m = narrow(parse({ type: "hello", data: { audio_params: { format: "pcm", sample_rate: 8000 } }, timestamp: 2 }), "hello");
    expect(m.audioParams.format).toBe("pcm");
    expect(m.audioParams.sampleRate).toBe(8000);
  });
});

describe("ping, chat, text", () => {
  test("ping", () => {
    expect(parse({ type: "ping" })).toEqual({ type: "ping" });
  });

  test("chat", () => {
    expect(parse({ type: "chat", text: "what time is it" })).toEqual({ type: "chat", text: "what time is it" });
  });

  test("`text` type with content -> chat", () => {
    expect(parse({ type: "text", content: "tell me a joke" })).toEqual({ type: "chat", text: "tell me a joke" });
  });

  test("chat with empty or missing text -> malformed", () => {
    expectMalformed({ type: "chat" });
    expectMalformed({ type: "chat", text: "   " });
    expectMalformed({ type: "text", content: 5 });
  });
});

describe("image / vision", () => {
  const raw = Uint8Array.of(0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0xfb, 0xef, 0xbe);
  const b64 = Buffer.from(raw).toString("base64");
  const b64url = Buffer.from(raw).toString("base64url");

  test("base64 image", () => {
    const m = narrow(parse({ type: "image", image: b64, prompt: "what is this?" }), "image");
    expect(Array.from(m.data)).toEqual(Array.from(raw));
    expect(m.mimeType).toBe("image/jpeg");
    expect(m.prompt).toBe("what is this?");
  });

  test("vision is an image too; explicit mime_type and question", () => {
    const m = narrow(parse({ type: "vision", data: b64, mime_type: "image/webp", question: "describe" }), "image");
    expect(Array.from(m.data)).toEqual(Array.from(raw));
    expect(m.mimeType).toBe("image/webp");
    expect(m.prompt).toBe("describe");
  });

  test("data URL: mime taken from it", () => {
    const m = narrow(parse({ type: "image", image: `data:image/png;base64,${b64}`, mime_type: "image/gif" }), "image");
    expect(Array.from(m.data)).toEqual(Array.from(raw));
    expect(m.mimeType).toBe("image/png");
  });

  test("data URL that is not base64 -> malformed", () => {
    expectMalformed({ type: "image", image: "data:image/png,hello" });
  });

  test("url-safe base64", () => {
    expect(b64url).toMatch(/[-_]/);
    const m = narrow(parse({ type: "image", image: b64url }), "image");
    expect(Array.from(m.data)).toEqual(Array.from(raw));
  });

  test("base64 with line breaks", () => {
    const wrapped = `${b64.slice(0, 4)}\n${b64.slice(4)}`;
    expect(Array.from(narrow(parse({ type: "image", image: wrapped }), "image").data)).toEqual(Array.from(raw));
  });

  test("bad base64 -> malformed", () => {
    expectMalformed({ type: "image", image: "not base64!!" });
    expectMalformed({ type: "image", image: "" });
    expectMalformed({ type: "vision" });
  });
});

describe("audio in JSON", () => {
  test("base64 Opus", () => {
    const opus = Uint8Array.of(0x58, 0x01, 0x02, 0xfe);
    const m = narrow(parse({ type: "audio", data: Buffer.from(opus).toString("base64") }), "audio");
    expect(Array.from(m.data)).toEqual(Array.from(opus));
  });

  test("bad or missing data -> malformed", () => {
    expectMalformed({ type: "audio" });
    expectMalformed({ type: "audio", data: "@@@" });
  });
});

describe("errors", () => {
  test("unknown type -> ERR_MESSAGE_UNKNOWN_TYPE", () => {
    const err = errorOf(() => parse({ type: "goodbye" }));
    expect(err.code).toBe(ErrorCode.MessageUnknownType);
    expect(err.message).toContain("goodbye");
  });

  test("not JSON -> malformed", () => {
    expectMalformed("{type: hello");
    expectMalformed("");
  });

  test("array, string, null -> malformed", () => {
    expectMalformed("[]");
    expectMalformed('[{"type":"ping"}]');
    expectMalformed('"ping"');
    expectMalformed("null");
  });

  test("missing or empty type -> malformed", () => {
    expectMalformed({ state: "start" });
    expectMalformed({ type: "" });
    expectMalformed({ type: 5 });
  });
});
