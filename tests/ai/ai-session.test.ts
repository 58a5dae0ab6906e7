import { describe, expect, test } from "bun:test";
import { ListenMode, ListenState, type ServerEvent, TtsState } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { AiSession, type AiSessionOptions } from "../../src/ai/ai-session";
import { toneFrames } from "../../src/ai/opus-tone";
import { silentLogger } from "../../src/log";
import { CapturedLog, deviceEvent, hello, ManualScheduler } from "./helpers";

const TONE = { durationMs: 600, frameDurationMs: 60 } as const; // 10 frames

function setup(options: AiSessionOptions = {}, helloInit: Parameters<typeof hello>[0] = {}, log = silentLogger) {
  const clock = new ManualScheduler();
  const events: ServerEvent[] = [];
  const session = new AiSession(hello(helloInit), (e) => events.push(e), log, { scheduler: clock, tone: TONE, ...options });
  /** Takes and describes what was emitted since the last call. */
  const drain = (): string[] => events.splice(0).map(show);
  return { clock, events, session, drain };
}

function show(e: ServerEvent): string {
  const v = e.event;
  switch (v.case) {
    case "tts":
      return `tts:${TtsState[v.value.state]}${v.value.text === "" ? "" : `:${v.value.text}`}`;
    case "stt":
      return `stt:${v.value.text}`;
    case "llm":
      return `llm:${v.value.emotion}`;
    case "audio":
      return `audio:${v.value.opus.length}`;
    default:
      return v.case ?? "empty";
  }
}

const speech = (i: number) => new Uint8Array(100).fill(i);
const silence = () => new Uint8Array([0xf8]);

function audio(opus: Uint8Array, seq = 0) {
  return deviceEvent({ case: "audio", value: { opus, seq, timestampMs: seq * 60 } });
}
function listen(state: ListenState, mode = ListenMode.UNSPECIFIED, text = "") {
  return deviceEvent({ case: "listen", value: { state, mode, text } });
}

describe("AiSession", () => {
  test("heartbeat is answered with the same sentAtMs", () => {
    const { session, events } = setup();
    session.handle(deviceEvent({ case: "heartbeat", value: { sentAtMs: 1234567890123n } }));
    expect(events).toHaveLength(1);
    const e = events[0]!.event;
    expect(e.case === "heartbeat" && e.value.sentAtMs).toBe(1234567890123n);
  });

  test("realtime: each frame is echoed at once with its timestamp", () => {
    const { session, events } = setup();
    session.handle(listen(ListenState.START, ListenMode.REALTIME));
    for (let i = 0; i < 3; i++) session.handle(audio(speech(i), i));
    expect(events.map((e) => (e.event.case === "audio" ? [e.event.value.opus[0], e.event.value.timestampMs] : e.event.case))).toEqual([
      [0, 0],
      [1, 60],
      [2, 120],
    ]);
  });

  test("manual: the utterance is described and played back paced at the frame duration", () => {
    const { session, events, clock, drain } = setup();
    session.handle(listen(ListenState.START, ListenMode.MANUAL));
    for (let i = 0; i < 30; i++) session.handle(audio(speech(i), i));
    expect(events).toEqual([]);
    session.handle(listen(ListenState.STOP));
    expect(drain()).toEqual([
      "stt:(heard 1.8 s of audio in 30 frames)",
      "llm:happy",
      "tts:START",
      "tts:SENTENCE_START:Here is what I heard.",
      "audio:100",
      "audio:100",
    ]);
    clock.advance(60);
    expect(drain()).toEqual(["audio:100"]);
    clock.advance(27 * 60);
    const played = events.splice(0);
    expect(played).toHaveLength(27);
    expect(played.map((e) => (e.event.case === "audio" ? e.event.value.opus[0] : -1))).toEqual(Array.from({ length: 27 }, (_, i) => i + 3));
    // tts stop once the device has played all 30 frames (30 x 60 ms after the start).
    clock.advance(60 * 30 - 60 * 28 - 1);
    expect(drain()).toEqual([]);
    clock.advance(1);
    expect(drain()).toEqual(["tts:STOP"]);
  });

  test("auto: leading silence is dropped, a run of silence ends the utterance, trailing silence is not played", () => {
    const { session, clock, drain, events } = setup({ silenceFrames: 4 });
    session.handle(listen(ListenState.START, ListenMode.AUTO));
    for (let i = 0; i < 5; i++) session.handle(audio(silence()));
    for (let i = 0; i < 3; i++) session.handle(audio(speech(i)));
    session.handle(audio(silence()));
    session.handle(audio(speech(3)));
    // A comfort-noise refresh neither counts as silence nor breaks the run.
    for (const size of [1, 1, 20, 1]) session.handle(audio(new Uint8Array(size)));
    expect(events).toEqual([]);
    session.handle(audio(silence()));
    expect(drain().slice(0, 2)).toEqual(["stt:(heard 0.3 s of audio in 5 frames)", "llm:happy"]);
    clock.advance(10_000);
    expect(drain()).toEqual(["audio:100", "audio:1", "audio:100", "tts:STOP"]);
  });

  test("the utterance ends at maxUtteranceFrames in manual mode too", () => {
    const { session, drain } = setup({ maxUtteranceFrames: 5 });
    session.handle(listen(ListenState.START, ListenMode.MANUAL));
    for (let i = 0; i < 5; i++) session.handle(audio(speech(i)));
    expect(drain()[0]).toBe("stt:(heard 0.3 s of audio in 5 frames)");
    // Later frames and the device's stop find the session idle.
    session.handle(audio(speech(9)));
    session.handle(listen(ListenState.STOP));
    expect(drain()).toEqual([]);
  });

  test("an empty utterance answers (heard nothing) with tts start and stop", () => {
    const { session, drain } = setup();
    session.handle(listen(ListenState.START, ListenMode.MANUAL));
    session.handle(listen(ListenState.STOP));
    expect(drain()).toEqual(["stt:(heard nothing)", "tts:START", "tts:STOP"]);
  });

  test("chat: a tone answer paced at the tone's frame duration; abort stops it at once", () => {
    const { session, clock, drain } = setup();
    session.handle(deviceEvent({ case: "chat", value: { text: " hello " } }));
    const first = drain();
    expect(first.slice(0, 3)).toEqual(["llm:happy", "tts:START", "tts:SENTENCE_START:You said: hello"]);
    expect(first.slice(3).every((d) => d.startsWith("audio:"))).toBe(true);
    expect(first).toHaveLength(5);
    clock.advance(120);
    expect(drain()).toHaveLength(2);
    session.handle(deviceEvent({ case: "abort", value: { reason: "wake_word_detected" } }));
    expect(drain()).toEqual(["tts:STOP"]);
    clock.advance(10_000);
    expect(drain()).toEqual([]);
    expect(clock.pending).toBe(0);
    // Nothing playing: abort is ignored.
    session.handle(deviceEvent({ case: "abort", value: { reason: "" } }));
    expect(drain()).toEqual([]);
  });

  test("a new chat or listen start stops the answer first", () => {
    const { session, clock, drain } = setup();
    session.handle(deviceEvent({ case: "chat", value: { text: "one" } }));
    drain();
    session.handle(deviceEvent({ case: "chat", value: { text: "two" } }));
    expect(drain().slice(0, 4)).toEqual(["tts:STOP", "llm:happy", "tts:START", "tts:SENTENCE_START:You said: two"]);
    session.handle(listen(ListenState.START, ListenMode.AUTO));
    expect(drain()).toEqual(["tts:STOP"]);
    clock.advance(10_000);
    expect(drain()).toEqual([]);
  });

  test("a tone answer runs to its end with valid length", () => {
    const { session, clock, drain } = setup();
    session.handle(deviceEvent({ case: "chat", value: { text: "x" } }));
    clock.advance(10_000);
    const all = drain();
    expect(all.filter((d) => d.startsWith("audio:"))).toHaveLength(toneFrames(TONE).length);
    expect(all.at(-1)).toBe("tts:STOP");
  });

  test("detect: a wake word alone answers nothing, a query answers with stt", () => {
    const { session, drain } = setup();
    for (const text of ["你好小智", "小智", "Hi XiaoZhi", " hey xiaozhi! ", "你好，小智", ""]) {
      session.handle(listen(ListenState.DETECT, ListenMode.UNSPECIFIED, text));
    }
    expect(drain()).toEqual([]);
    session.handle(listen(ListenState.DETECT, ListenMode.UNSPECIFIED, "what time is it"));
    expect(drain().slice(0, 4)).toEqual(["stt:what time is it", "llm:happy", "tts:START", "tts:SENTENCE_START:You said: what time is it"]);
  });

  test("image: described deterministically", () => {
    const { session, drain } = setup();
    session.handle(deviceEvent({ case: "image", value: { data: new Uint8Array(12345), mimeType: "image/png", prompt: "what is it?" } }));
    expect(drain().slice(0, 3)).toEqual(["llm:happy", "tts:START", "tts:SENTENCE_START:I got a 12345-byte image/png image and the question: what is it?"]);
  });

  test("dispose (or End) clears every timer; nothing is emitted afterwards", () => {
    const { session, clock, drain } = setup();
    session.handle(deviceEvent({ case: "chat", value: { text: "x" } }));
    drain();
    session.handle(deviceEvent({ case: "end", value: { reason: 1 } }));
    expect(session.open).toBe(false);
    expect(clock.pending).toBe(0);
    clock.advance(10_000);
    session.handle(deviceEvent({ case: "heartbeat", value: { sentAtMs: 1n } }));
    session.dispose();
    expect(drain()).toEqual([]);
  });

  test("never throws: a failing emit and an empty event are logged", () => {
    const log = new CapturedLog();
    const session = new AiSession(
      hello(),
      () => {
        throw new Error("boom");
      },
      log.logger,
      { scheduler: new ManualScheduler() },
    );
    expect(() => session.handle(deviceEvent({ case: "heartbeat", value: { sentAtMs: 1n } }))).not.toThrow();
    expect(() => session.handle(deviceEvent({ case: undefined }))).not.toThrow();
    expect(log.lines.some((l) => l.msg === "emit failed; event dropped")).toBe(true);
  });

  test("mcp: initialize, tools/list with paging, tool names logged; junk ignored", async () => {
    const log = new CapturedLog();
    const { session, drain, events } = setup({}, { features: { mcp: true } }, log.logger);
    const mcpOut = () => events.splice(0).map((e) => (e.event.case === "mcp" ? JSON.parse(e.event.value.payloadJson) : e.event.case));
    expect(mcpOut()).toEqual([
      {
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2024-11-05", capabilities: {}, clientInfo: { name: "xiaozhi-im-ai", version: "0.1.0" } },
      },
    ]);
    const mcp = (payload: unknown) =>
      session.handle(deviceEvent({ case: "mcp", value: { payloadJson: typeof payload === "string" ? payload : JSON.stringify(payload) } }));
    mcp("{not json");
    mcp("[1,2]");
    mcp({ jsonrpc: "2.0", method: "notifications/state_changed" });
    expect(drain()).toEqual([]);
    mcp({ jsonrpc: "2.0", id: 1, result: { protocolVersion: "2024-11-05", serverInfo: { name: "board" } } });
    expect(mcpOut()).toEqual([{ jsonrpc: "2.0", id: 2, method: "tools/list", params: {} }]);
    mcp({ jsonrpc: "2.0", id: 2, result: { tools: [{ name: "self.get_device_status" }], nextCursor: "p2" } });
    expect(mcpOut()).toEqual([{ jsonrpc: "2.0", id: 3, method: "tools/list", params: { cursor: "p2" } }]);
    mcp({ jsonrpc: "2.0", id: 3, result: { tools: [{ name: "self.audio_speaker.set_volume" }] } });
    expect(drain()).toEqual([]);
    expect(session.mcpTools).toEqual(["self.get_device_status", "self.audio_speaker.set_volume"]);
    const line = await log.waitFor("mcp tools of the device");
    expect(line.level).toBe(30);
    expect(line.tools).toEqual(["self.get_device_status", "self.audio_speaker.set_volume"]);
    expect(log.lines.some((l) => l.msg === "mcp payload is not JSON; ignored")).toBe(true);
  });

  test("no mcp feature: no initialize", () => {
    const { events } = setup({}, { features: { aec: true } });
    expect(events).toEqual([]);
  });
});
