import { OFFLINE_NOTE } from "../../src/ai/echo-answerer";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type Client, createClient } from "@connectrpc/connect";
import { createWritableIterable } from "@connectrpc/connect/protocol";
import { createGrpcTransport } from "@connectrpc/connect-node";
import OpusScript from "opusscript";
import {
  AiService,
  type DeviceEvent,
  type DeviceEventSchema,
  ListenMode,
  ListenState,
  type RelayRequestSchema,
  type RelayResponse,
  type ServerEvent,
  TtsState,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import { silenceFrames, toneFrames } from "../../src/ai/opus-tone";
import { type AiServer, startAiServer } from "../../src/ai/start-ai-server";
import { CapturedLog, deviceEvent, hello, Inbox } from "./helpers";

/** Short frames keep paced answers quick. */
const FRAME_MS = 20;
const TONE = { durationMs: 400, frameDurationMs: FRAME_MS } as const; // 20 frames

let server: AiServer;
let client: Client<typeof AiService>;
const log = new CapturedLog("info");

beforeAll(async () => {
  server = await startAiServer({ port: 0, logger: log.logger, frameDurationMs: FRAME_MS, tone: TONE, closeGraceMs: 200 });
  client = createClient(AiService, createGrpcTransport({ baseUrl: server.url }));
});

afterAll(async () => {
  await server.close();
});

type DeviceEventInit = MessageInitShape<typeof DeviceEventSchema>;

/** One Converse call: `send` writes device events, `inbox` receives server events. */
function converse() {
  const requests = createWritableIterable<DeviceEventInit>();
  const inbox = new Inbox<ServerEvent>(client.converse(requests));
  return {
    inbox,
    send: (...events: DeviceEvent[]) => Promise.all(events.map((e) => requests.write(e))),
    close: () => requests.close(),
  };
}

function kind(e: ServerEvent): string {
  const v = e.event;
  if (v.case === "tts") return `tts:${TtsState[v.value.state]}`;
  return v.case ?? "empty";
}

function opusOf(e: ServerEvent): Uint8Array {
  if (e.event.case !== "audio") throw new Error(`expected audio, got ${kind(e)}`);
  return e.event.value.opus;
}

const audio = (opus: Uint8Array, seq: number) => deviceEvent({ case: "audio", value: { opus, seq, timestampMs: seq * FRAME_MS } });
const listen = (state: ListenState, mode = ListenMode.UNSPECIFIED) => deviceEvent({ case: "listen", value: { state, mode, text: "" } });

describe("Converse", () => {
  test("a stream opened with a heartbeat is a probe: each heartbeat comes back with its sentAtMs", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "heartbeat", value: { sentAtMs: 42n } }));
    const first = await c.inbox.next();
    expect(first.event.case === "heartbeat" && first.event.value.sentAtMs).toBe(42n);
    await c.send(deviceEvent({ case: "heartbeat", value: { sentAtMs: 1732200000123n } }));
    const second = await c.inbox.next();
    expect(second.event.case === "heartbeat" && second.event.value.sentAtMs).toBe(1732200000123n);
    c.close();
    expect(await c.inbox.nextOrEnd()).toEqual({ t: "end" });
    expect(c.inbox.error).toBeUndefined();
  });

  test("a first event other than hello or heartbeat is InvalidArgument", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "chat", value: { text: "hi" } }));
    expect(await c.inbox.nextOrEnd()).toEqual({ t: "end" });
    expect(ConnectError.from(c.inbox.error).code).toBe(Code.InvalidArgument);
  });

  test("realtime: every frame is echoed at once, identical and in order", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello() }), listen(ListenState.START, ListenMode.REALTIME));
    const frames = toneFrames({ sampleRateHz: 16000, frameDurationMs: 60, durationMs: 300 });
    expect(frames).toHaveLength(5);
    // One at a time: each echo must come back before the next frame is sent (full duplex).
    for (const [i, frame] of frames.entries()) {
      await c.send(audio(frame, i));
      const back = await c.inbox.next();
      expect(opusOf(back)).toEqual(frame);
      expect(back.event.case === "audio" && back.event.value.timestampMs).toBe(i * FRAME_MS);
    }
    c.close();
    expect(await c.inbox.nextOrEnd()).toEqual({ t: "end" });
  });

  test("manual: stt, llm, tts start, subtitle, the utterance's own frames paced, tts stop", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello() }), listen(ListenState.START, ListenMode.MANUAL));
    const frames = toneFrames({ sampleRateHz: 16000, frameDurationMs: 20, durationMs: 600, frequencyHz: 300 });
    expect(frames).toHaveLength(30);
    await c.send(...frames.map((f, i) => audio(f, i)));
    await c.send(listen(ListenState.STOP));

    const stt = await c.inbox.next();
    expect(stt.event.case === "stt" && stt.event.value.text).toBe("(heard 0.6 s of audio in 30 frames)");
    expect((await c.inbox.next()).event).toMatchObject({ case: "llm", value: { emotion: "happy" } });
    expect(kind(await c.inbox.next())).toBe("tts:START");
    const subtitle = await c.inbox.next();
    expect(subtitle.event).toMatchObject({ case: "tts", value: { state: TtsState.SENTENCE_START } });
    const arrivals: number[] = [];
    for (const frame of frames) {
      expect(opusOf(await c.inbox.next())).toEqual(frame);
      arrivals.push(performance.now());
    }
    expect(kind(await c.inbox.next())).toBe("tts:STOP");
    // After the 2-frame prebuffer one frame per 20 ms: 28 intervals, allowing timer slack.
    const pacedMs = arrivals.at(-1)! - arrivals[1]!;
    expect(pacedMs).toBeGreaterThanOrEqual(28 * FRAME_MS * 0.8);
    expect(pacedMs).toBeLessThan(28 * FRAME_MS * 3);
    c.close();
  });

  test("auto: the end of speech is detected from DTX silence, without listen stop", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello() }), listen(ListenState.START, ListenMode.AUTO));
    const speech = toneFrames({ sampleRateHz: 16000, frameDurationMs: 60, durationMs: 240 });
    const quiet = silenceFrames(30);
    await c.send(...[...quiet.slice(0, 5), ...speech, ...quiet].map((f, i) => audio(f, i)));
    const stt = await c.inbox.next();
    expect(stt.event.case === "stt" && stt.event.value.text).toBe(`(heard 0.1 s of audio in ${speech.length} frames)`);
    const answer: ServerEvent[] = [];
    for (;;) {
      const e = await c.inbox.next();
      answer.push(e);
      if (kind(e) === "tts:STOP") break;
    }
    expect(answer.filter((e) => e.event.case === "audio").map(opusOf)).toEqual([...speech]);
    c.close();
  });

  test("chat: a tone answer of valid Opus; abort mid-answer sends tts stop and no more audio", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello() }), deviceEvent({ case: "chat", value: { text: "hello" } }));
    expect(kind(await c.inbox.next())).toBe("llm");
    expect(kind(await c.inbox.next())).toBe("tts:START");
    expect((await c.inbox.next()).event).toMatchObject({
      case: "tts",
      value: { state: TtsState.SENTENCE_START, text: "You said: hello" },
    });
    const first = opusOf(await c.inbox.next());
    const decoder = new OpusScript(24000, 1);
    try {
      const pcm = decoder.decode(Buffer.from(first));
      // 20 ms at 24 kHz, 16-bit mono.
      expect(pcm.length).toBe(480 * 2);
    } finally {
      decoder.delete();
    }
    opusOf(await c.inbox.next());
    opusOf(await c.inbox.next());
    await c.send(deviceEvent({ case: "abort", value: { reason: "wake_word_detected" } }));
    // Frames already on the wire may precede the stop; none may follow it.
    let e = await c.inbox.next();
    let inFlight = 0;
    while (e.event.case === "audio") {
      inFlight++;
      e = await c.inbox.next();
    }
    expect(inFlight).toBeLessThanOrEqual(2);
    expect(kind(e)).toBe("tts:STOP");
    const after = await c.inbox.collectFor(6 * FRAME_MS);
    expect(after.map(kind)).toEqual([]);
    c.close();
    expect(await c.inbox.nextOrEnd()).toEqual({ t: "end" });
  });

  test("a wake word alone answers nothing; a typed query is answered with stt", async () => {
    const c = converse();
    await c.send(
      deviceEvent({ case: "hello", value: hello() }),
      deviceEvent({ case: "listen", value: { state: ListenState.DETECT, text: "你好小智" } }),
      deviceEvent({ case: "heartbeat", value: { sentAtMs: 7n } }),
    );
    // The heartbeat's answer is the first event: the wake word produced nothing before it.
    expect(kind(await c.inbox.next())).toBe("heartbeat");
    await c.send(deviceEvent({ case: "listen", value: { state: ListenState.DETECT, text: "tell me a joke" } }));
    const stt = await c.inbox.next();
    expect(stt.event.case === "stt" && stt.event.value.text).toBe("tell me a joke");
    c.close();
  });

  test("End ends the stream", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello() }), deviceEvent({ case: "chat", value: { text: "long answer" } }));
    await c.inbox.next();
    await c.send(deviceEvent({ case: "end", value: { reason: 1 } }));
    for (;;) {
      const next = await c.inbox.nextOrEnd();
      if (next.t === "end") break;
    }
    expect(c.inbox.error).toBeUndefined();
    c.close();
  });

  test("mcp: initialize, then tools/list on its result, tools logged", async () => {
    const c = converse();
    await c.send(deviceEvent({ case: "hello", value: hello({ sessionId: "mcp-1", features: { mcp: true } }) }));
    const init = await c.inbox.next();
    expect(init.event.case).toBe("mcp");
    const initRequest = JSON.parse(init.event.case === "mcp" ? init.event.value.payloadJson : "null");
    expect(initRequest).toMatchObject({ jsonrpc: "2.0", id: 1, method: "initialize" });
    expect(initRequest.params.protocolVersion).toBe("2024-11-05");
    const mcp = (payload: unknown) => c.send(deviceEvent({ case: "mcp", value: { payloadJson: JSON.stringify(payload) } }));
    await c.send(deviceEvent({ case: "mcp", value: { payloadJson: "}{" } }));
    await mcp({ jsonrpc: "2.0", id: 1, result: { protocolVersion: "2024-11-05", capabilities: { tools: {} } } });
    const list = await c.inbox.next();
    expect(JSON.parse(list.event.case === "mcp" ? list.event.value.payloadJson : "null")).toEqual({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/list",
      params: {},
    });
    await mcp({ jsonrpc: "2.0", id: 2, result: { tools: [{ name: "self.camera.take_photo", inputSchema: {} }] } });
    const line = await log.waitFor("mcp tools of the device");
    expect(line.tools).toEqual(["self.camera.take_photo"]);
    expect(line.sessionId).toBe("mcp-1");
    c.close();
  });
});

describe("Relay", () => {
  test("two interleaved sessions on one stream get their own answers, tagged with their key", async () => {
    const requests = createWritableIterable<MessageInitShape<typeof RelayRequestSchema>>();
    const inbox = new Inbox<RelayResponse>(client.relay(requests));
    const batch = (...events: DeviceEvent[]) => requests.write({ events });
    await batch(deviceEvent({ case: "heartbeat", value: { sentAtMs: 99n } }, 0));
    const hb = (await inbox.next()).events;
    expect(hb).toHaveLength(1);
    expect(hb[0]!.sessionKey).toBe(0);
    expect(hb[0]!.event.case === "heartbeat" && hb[0]!.event.value.sentAtMs).toBe(99n);

    const frameA = new Uint8Array(60).fill(0xa);
    const frameB = new Uint8Array(60).fill(0xb);
    await batch(
      deviceEvent({ case: "hello", value: hello({ sessionId: "a" }) }, 1),
      deviceEvent({ case: "hello", value: hello({ sessionId: "b" }) }, 2),
      deviceEvent({ case: "listen", value: { state: ListenState.START, mode: ListenMode.REALTIME } }, 1),
      deviceEvent({ case: "chat", value: { text: "from b" } }, 2),
      deviceEvent({ case: "audio", value: { opus: frameA, seq: 0, timestampMs: 5 } }, 1),
      deviceEvent({ case: "audio", value: { opus: frameB, seq: 0, timestampMs: 5 } }, 7),
    );
    const bySession = new Map<number, ServerEvent[]>([
      [1, []],
      [2, []],
    ]);
    let responses = 0;
    while (!bySession.get(2)!.some((e) => kind(e) === "tts:STOP")) {
      const response = await inbox.next();
      responses++;
      for (const e of response.events) {
        expect([1, 2]).toContain(e.sessionKey);
        bySession.get(e.sessionKey)!.push(e);
      }
    }
    const a = bySession.get(1)!;
    expect(a.map(kind)).toEqual(["audio"]);
    expect(opusOf(a[0]!)).toEqual(frameA);
    const b = bySession.get(2)!;
    expect(b.slice(0, 3).map(kind)).toEqual(["llm", "tts:START", "tts:SENTENCE_START"]);
    expect(b[2]!.event.case === "tts" && b[2]!.event.value.text).toBe("You said: from b");
    expect(b.filter((e) => e.event.case === "audio")).toHaveLength(toneFrames(TONE).length);
    // The first turn's events (a's echo, b's start and prebuffer) shared one response.
    expect(responses).toBeLessThan(a.length + b.length);

    // End removes a session: its later events are ignored, the other goes on.
    await batch(
      deviceEvent({ case: "end", value: { reason: 1 } }, 1),
      deviceEvent({ case: "heartbeat", value: { sentAtMs: 1n } }, 1),
      deviceEvent({ case: "heartbeat", value: { sentAtMs: 2n } }, 2),
    );
    const after = (await inbox.next()).events;
    expect(after.map((e) => [e.sessionKey, e.event.case === "heartbeat" ? e.event.value.sentAtMs : kind(e)])).toEqual([[2, 2n]]);
    requests.close();
    expect(await inbox.nextOrEnd()).toEqual({ t: "end" });
    expect(inbox.error).toBeUndefined();
  });
});

describe("Ask", () => {
  test("streams the answer in several chunks", async () => {
    const chunks: string[] = [];
    for await (const r of client.ask({ text: "what time is it" })) chunks.push(r.text);
    expect(chunks.length).toBeGreaterThan(1);
    expect(chunks.join("")).toBe(`You asked: what time is it${OFFLINE_NOTE}`);
  });

  test("mentions an image", async () => {
    let text = "";
    for await (const r of client.ask({ text: "what is this", image: new Uint8Array(321), imageMimeType: "image/jpeg" })) {
      text += r.text;
    }
    expect(text).toBe(`You asked: what is this (with a 321-byte image/jpeg image)${OFFLINE_NOTE}`);
  });

  test("no text and no image is InvalidArgument", async () => {
    const call = async () => {
      for await (const _ of client.ask({ text: "  " })) {
        // drain
      }
    };
    const err = await call().catch((e: unknown) => e);
    expect(ConnectError.from(err).code).toBe(Code.InvalidArgument);
  });
});

describe("startAiServer", () => {
  test("close() ends open streams and resolves", async () => {
    const own = await startAiServer({ port: 0, closeGraceMs: 300 });
    const ownClient = createClient(AiService, createGrpcTransport({ baseUrl: own.url }));
    expect(own.url).toBe(`http://127.0.0.1:${own.port}`);
    const requests = createWritableIterable<DeviceEventInit>();
    const inbox = new Inbox<ServerEvent>(ownClient.converse(requests));
    await requests.write(deviceEvent({ case: "hello", value: hello() }));
    await requests.write(deviceEvent({ case: "heartbeat", value: { sentAtMs: 3n } }));
    expect(kind(await inbox.next())).toBe("heartbeat");
    const started = performance.now();
    await own.close();
    expect(performance.now() - started).toBeLessThan(3000);
    expect(await inbox.nextOrEnd()).toEqual({ t: "end" });
    await own.close();
  });
});
