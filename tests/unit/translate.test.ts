import { describe, expect, test } from "bun:test";
import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  DeviceEventSchema,
  EndReason as PbEndReason,
  ListenMode as PbListenMode,
  ListenState as PbListenState,
  ServerEventSchema,
  TtsState as PbTtsState,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../../src/device/device-message";
import type { ServerMessage } from "../../src/device/server-message";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "../../src/upstream/translate";
import type { SessionHello, UpstreamSink, UpstreamStatus } from "../../src/upstream/upstream";

type Call =
  | { readonly t: "audio"; readonly opus: Uint8Array; readonly timestampMs: number }
  | { readonly t: "message"; readonly message: ServerMessage }
  | { readonly t: "close"; readonly reason: string }
  | { readonly t: "status"; readonly status: UpstreamStatus }
  | { readonly t: "fatal"; readonly reason: string };

class RecordingSink implements UpstreamSink {
  readonly calls: Call[] = [];
  onAudio(opus: Uint8Array, timestampMs: number): void {
    this.calls.push({ t: "audio", opus, timestampMs });
  }
  onMessage(message: ServerMessage): void {
    this.calls.push({ t: "message", message });
  }
  onClose(reason: string): void {
    this.calls.push({ t: "close", reason });
  }
  onStatus(status: UpstreamStatus): void {
    this.calls.push({ t: "status", status });
  }
  onFatal(reason: string): void {
    this.calls.push({ t: "fatal", reason });
  }
}

type EventInit = MessageInitShape<typeof ServerEventSchema>["event"];

function run(event: EventInit): { result: Delivered; calls: Call[] } {
  const sink = new RecordingSink();
  const result = deliver(create(ServerEventSchema, { sessionKey: 3, event }), sink);
  return { result, calls: sink.calls };
}

/** Delivers and expects exactly one device JSON message. */
function message(event: EventInit): ServerMessage {
  const { result, calls } = run(event);
  expect(result).toBe(Delivered.Ok);
  expect(calls.length).toBe(1);
  const c = calls[0];
  if (c?.t !== "message") throw new Error(`expected a message, got ${JSON.stringify(c)}`);
  return c.message;
}

describe("deliver: ServerEvent -> device", () => {
  test("audio reaches onAudio with its timestamp", () => {
    const opus = Uint8Array.of(0x58, 1, 2, 3);
    const { result, calls } = run({ case: "audio", value: { opus, seq: 9, timestampMs: 1260 } });
    expect(result).toBe(Delivered.Ok);
    expect(calls.length).toBe(1);
    const c = calls[0];
    if (c?.t !== "audio") throw new Error("expected audio");
    expect(Array.from(c.opus)).toEqual([0x58, 1, 2, 3]);
    expect(c.timestampMs).toBe(1260);
  });

  test("stt", () => {
    expect(message({ case: "stt", value: { text: "你好" } })).toEqual({ type: "stt", text: "你好" });
  });

  test("llm keeps its emotion; an empty one becomes neutral", () => {
    expect(message({ case: "llm", value: { text: "😀", emotion: "happy" } })).toEqual({ type: "llm", text: "😀", emotion: "happy" });
    expect(message({ case: "llm", value: { text: "🙂" } })).toEqual({ type: "llm", text: "🙂", emotion: "neutral" });
  });

  test("tts start and stop carry no text; sentence_start carries it", () => {
    expect(message({ case: "tts", value: { state: PbTtsState.START, text: "ignored" } })).toEqual({ type: "tts", state: "start" });
    expect(message({ case: "tts", value: { state: PbTtsState.STOP } })).toEqual({ type: "tts", state: "stop" });
    expect(message({ case: "tts", value: { state: PbTtsState.SENTENCE_START, text: "Hello there." } })).toEqual({
      type: "tts",
      state: "sentence_start",
      text: "Hello there.",
    });
  });

  test("tts unspecified or unknown enum -> Bad, nothing sent", () => {
    for (const state of [PbTtsState.UNSPECIFIED, 42 as PbTtsState]) {
      const { result, calls } = run({ case: "tts", value: { state } });
      expect(result).toBe(Delivered.Bad);
      expect(calls).toEqual([]);
    }
  });

  test("mcp payload is sent as an object", () => {
    const payload = { jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "self.light.on", arguments: {} } };
    expect(message({ case: "mcp", value: { payloadJson: JSON.stringify(payload) } })).toEqual({ type: "mcp", payload });
  });

  test("custom payload is sent as an object", () => {
    expect(message({ case: "custom", value: { payloadJson: '{"k":[1,2]}' } })).toEqual({ type: "custom", payload: { k: [1, 2] } });
  });

  test("mcp/custom with invalid JSON or a non-object -> Bad, nothing sent", () => {
    for (const payloadJson of ["{not json", "", "42", '"text"', "null"]) {
      for (const kind of ["mcp", "custom"] as const) {
        const { result, calls } = run({ case: kind, value: { payloadJson } });
        expect(result).toBe(Delivered.Bad);
        expect(calls).toEqual([]);
      }
    }
  });

  test("system command", () => {
    expect(message({ case: "system", value: { command: "reboot" } })).toEqual({ type: "system", command: "reboot" });
  });

  test("system with an empty command -> Bad", () => {
    const { result, calls } = run({ case: "system", value: { command: "" } });
    expect(result).toBe(Delivered.Bad);
    expect(calls).toEqual([]);
  });

  test("alert keeps all three strings", () => {
    expect(message({ case: "alert", value: { status: "error", message: "AI offline", emotion: "sad" } })).toEqual({
      type: "alert",
      status: "error",
      message: "AI offline",
      emotion: "sad",
    });
  });

  test("alert with empty emotion/status gets defaults (the firmware reads all three)", () => {
    const m = message({ case: "alert", value: { message: "hi" } });
    expect(m).toEqual({ type: "alert", status: "info", message: "hi", emotion: "neutral" });
  });

  test("heartbeat -> Heartbeat, nothing sent", () => {
    const { result, calls } = run({ case: "heartbeat", value: { sentAtMs: 123n } });
    expect(result).toBe(Delivered.Heartbeat);
    expect(calls).toEqual([]);
  });

  test("close -> onClose with the reason, Close", () => {
    const { result, calls } = run({ case: "close", value: { reason: "conversation over" } });
    expect(result).toBe(Delivered.Close);
    expect(calls).toEqual([{ t: "close", reason: "conversation over" }]);
  });

  test("an empty oneof -> Bad", () => {
    const { result, calls } = run({ case: undefined });
    expect(result).toBe(Delivered.Bad);
    expect(calls).toEqual([]);
  });

  test("a ServerEvent that went over the wire delivers the same", () => {
    const wire = toBinary(ServerEventSchema, create(ServerEventSchema, { event: { case: "stt", value: { text: "over the wire" } } }));
    const sink = new RecordingSink();
    expect(deliver(fromBinary(ServerEventSchema, wire), sink)).toBe(Delivered.Ok);
    expect(sink.calls).toEqual([{ t: "message", message: { type: "stt", text: "over the wire" } }]);
  });
});

describe("forwardedEvent: device message -> DeviceEvent", () => {
  test("listen states and modes map to the enums", () => {
    const cases: [ForwardedMessage, PbListenState, PbListenMode][] = [
      [{ type: "listen", state: "start", mode: "auto", text: undefined }, PbListenState.START, PbListenMode.AUTO],
      [{ type: "listen", state: "start", mode: "manual", text: undefined }, PbListenState.START, PbListenMode.MANUAL],
      [{ type: "listen", state: "start", mode: "realtime", text: undefined }, PbListenState.START, PbListenMode.REALTIME],
      [{ type: "listen", state: "stop", mode: undefined, text: undefined }, PbListenState.STOP, PbListenMode.UNSPECIFIED],
      [{ type: "listen", state: "detect", mode: undefined, text: "你好小智" }, PbListenState.DETECT, PbListenMode.UNSPECIFIED],
    ];
    for (const [m, state, mode] of cases) {
      const ev = forwardedEvent(m, 5);
      expect(ev.sessionKey).toBe(5);
      if (ev.event.case !== "listen") throw new Error("expected listen");
      expect(ev.event.value.state).toBe(state);
      expect(ev.event.value.mode).toBe(mode);
      expect(ev.event.value.text).toBe(m.type === "listen" ? (m.text ?? "") : "");
    }
  });

  test("abort, chat, mcp, image", () => {
    const abort = forwardedEvent({ type: "abort", reason: "wake_word_detected" });
    expect(abort.event.case === "abort" && abort.event.value.reason).toBe("wake_word_detected");

    const chat = forwardedEvent({ type: "chat", text: "hello" });
    expect(chat.event.case === "chat" && chat.event.value.text).toBe("hello");

    const mcp = forwardedEvent({ type: "mcp", payloadJson: '{"jsonrpc":"2.0","id":1,"result":{}}' });
    expect(mcp.event.case === "mcp" && mcp.event.value.payloadJson).toBe('{"jsonrpc":"2.0","id":1,"result":{}}');

    const image = forwardedEvent({ type: "image", data: Uint8Array.of(1, 2, 3), mimeType: "image/png", prompt: "what?" });
    if (image.event.case !== "image") throw new Error("expected image");
    expect(Array.from(image.event.value.data)).toEqual([1, 2, 3]);
    expect(image.event.value.mimeType).toBe("image/png");
    expect(image.event.value.prompt).toBe("what?");
  });

  test("survives the wire", () => {
    const ev = forwardedEvent({ type: "listen", state: "detect", mode: "manual", text: "hi" }, 7);
    const back = fromBinary(DeviceEventSchema, toBinary(DeviceEventSchema, ev));
    expect(back.sessionKey).toBe(7);
    if (back.event.case !== "listen") throw new Error("expected listen");
    expect(back.event.value.state).toBe(PbListenState.DETECT);
    expect(back.event.value.mode).toBe(PbListenMode.MANUAL);
    expect(back.event.value.text).toBe("hi");
  });
});

describe("audioEvent", () => {
  test("round-trips through toBinary/fromBinary", () => {
    const opus = Uint8Array.of(0xfc, 0xff, 0xfe, 0, 1, 2, 3);
    const ev = audioEvent(opus, 17, 4_000_000_000, 11);
    const back = fromBinary(DeviceEventSchema, toBinary(DeviceEventSchema, ev));
    expect(back.sessionKey).toBe(11);
    if (back.event.case !== "audio") throw new Error("expected audio");
    expect(Array.from(back.event.value.opus)).toEqual(Array.from(opus));
    expect(back.event.value.seq).toBe(17);
    expect(back.event.value.timestampMs).toBe(4_000_000_000);
  });

  test("a payload view (e.g. a decoded frame) encodes only its own bytes", () => {
    const backing = Uint8Array.of(9, 9, 9, 9, 1, 2, 3, 9);
    const ev = audioEvent(backing.subarray(4, 7), 1, 60);
    const back = fromBinary(DeviceEventSchema, toBinary(DeviceEventSchema, ev));
    if (back.event.case !== "audio") throw new Error("expected audio");
    expect(Array.from(back.event.value.opus)).toEqual([1, 2, 3]);
  });

  test("encodes byte-for-byte like create()", () => {
    const opus = Uint8Array.of(5, 6, 7);
    const viaCreate = create(DeviceEventSchema, { sessionKey: 2, event: { case: "audio", value: { opus, seq: 3, timestampMs: 120 } } });
    expect(Array.from(toBinary(DeviceEventSchema, audioEvent(opus, 3, 120, 2)))).toEqual(Array.from(toBinary(DeviceEventSchema, viaCreate)));
  });
});

describe("helloEvent, heartbeatEvent, endEvent", () => {
  const hello: SessionHello = {
    sessionId: "sess-1",
    deviceId: "aa:bb:cc:dd:ee:ff",
    clientId: "client-1",
    userId: "u1",
    claims: { plan: "pro" },
    protocolVersion: 3,
    audioParams: { format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 },
    features: { mcp: true, aec: false },
    transport: "websocket",
  };

  test("hello carries everything the AI service learns", () => {
    const back = fromBinary(DeviceEventSchema, toBinary(DeviceEventSchema, helloEvent(hello, true, 4)));
    expect(back.sessionKey).toBe(4);
    if (back.event.case !== "hello") throw new Error("expected hello");
    const v = back.event.value;
    expect(v.sessionId).toBe("sess-1");
    expect(v.deviceId).toBe("aa:bb:cc:dd:ee:ff");
    expect(v.clientId).toBe("client-1");
    expect(v.userId).toBe("u1");
    expect(v.claims).toEqual({ plan: "pro" });
    expect(v.protocolVersion).toBe(3);
    expect(v.audioParams?.format).toBe("opus");
    expect(v.audioParams?.sampleRate).toBe(16000);
    expect(v.audioParams?.channels).toBe(1);
    expect(v.audioParams?.frameDurationMs).toBe(60);
    expect(v.features).toEqual({ mcp: true, aec: false });
    expect(v.transport).toBe("websocket");
    expect(v.resumed).toBe(true);
  });

  test("heartbeat carries the send time", () => {
    const ev = heartbeatEvent(1732200000123);
    expect(ev.event.case === "heartbeat" && ev.event.value.sentAtMs).toBe(1732200000123n);
  });

  test("end reasons map to the enum", () => {
    const reasons = [
      ["device-gone", PbEndReason.DEVICE_GONE],
      ["replaced", PbEndReason.REPLACED],
      ["shutdown", PbEndReason.SHUTDOWN],
    ] as const;
    for (const [r, pb] of reasons) {
      const ev = endEvent(r);
      expect(ev.event.case === "end" && ev.event.value.reason).toBe(pb);
    }
  });
});
