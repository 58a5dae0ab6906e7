import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type DeviceEvent,
  type Hello,
  type Image,
  type Listen,
  ListenMode,
  ListenState,
  type ServerEvent,
  ServerEventSchema,
  TtsState,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import { describeError } from "../errors";
import type { Logger } from "../log";
import type { Answerer, Question } from "./answerer";
import { McpHandshake } from "./mcp-handshake";
import { type ToneOptions, toneFrames } from "./opus-tone";
import { PacedPlayback } from "./paced-playback";
import { realScheduler, type Scheduler } from "./scheduler";
import { isWakeWord } from "./wake-word";

/** Receives every event a session sends to its device, in order, synchronously. */
export type EmitServerEvent = (event: ServerEvent) => void;

/** Tuning of an {@link AiSession}; every field has a default. */
export interface AiSessionOptions {
  /**
   * Spacing of the parrot playback (the device's own frames played back), ms per frame.
   * Default: the Hello's `audio_params.frame_duration_ms`, else 60.
   */
  frameDurationMs?: number;
  /** Frames sent at once before real-time pacing (see PacedPlayback). Default 2. */
  prebufferFrames?: number;
  /**
   * AUTO mode: a run of this many DTX/silence packets (<= 8 bytes) after speech ends the
   * utterance. Default 10 (600 ms at 60 ms frames).
   */
  silenceFrames?: number;
  /** An utterance ends (in any mode) once it holds this many frames. Default 500 (30 s at 60 ms). */
  maxUtteranceFrames?: number;
  /** ... or this many bytes: 500 frames of a client sending 64 KiB frames would be 32 MiB
   * per session. Default 1 MiB (real Opus: 30 s is about 150 KB). */
  maxUtteranceBytes?: number;
  /** Counts the bytes every session holds in utterances being collected, shared across the
   * sessions of a service (its `bufferedBytes()`, which an embedding gateway's memory budget
   * samples). */
  held?: { bytes: number };
  /**
   * The tone that speaks text answers; its frames are paced at its own `frameDurationMs`.
   * Default 440 Hz, 720 ms, 24000 Hz, 60 ms frames (what the gateway announces to devices).
   */
  tone?: ToneOptions;
  /** Time and timers; tests pass a manual one. Default: the real clock. */
  scheduler?: Scheduler;
  /**
   * Answers the device's text (chat, typed queries) and images, e.g. an LLM provider. The
   * answer is spoken with the tone and shown as the subtitle. Default: none, and the session
   * answers deterministically ("You said: ...").
   */
  answerer?: Answerer;
}

/** Opus packets up to this size are DTX or digital silence (a 60 ms speech frame is ~100+). */
const SILENT_PACKET_MAX_BYTES = 8;
/**
 * Packets up to this size are not speech either: DTX's comfort-noise refresh (~20 bytes every
 * 400 ms) and non-DTX silence. They neither count as silence nor break a run of it.
 */
const QUIET_PACKET_MAX_BYTES = 32;

const HAPPY = { text: "😊", emotion: "happy" } as const;
const PARROT_SENTENCE = "Here is what I heard.";

type ListenPhase =
  | { t: "idle" }
  | { t: "realtime" }
  | {
      t: "collecting";
      mode: "auto" | "manual";
      frames: Uint8Array[];
      /** The bytes of `frames`. */
      bytes: number;
      /** -1 until a speech-sized packet arrives; AUTO mode drops silence before it. */
      lastSpeechIndex: number;
      silentRun: number;
    };

type SessionLifecycle = { t: "open"; playback: PacedPlayback | undefined } | { t: "disposed" };

type ServerEventCase = NonNullable<MessageInitShape<typeof ServerEventSchema>["event"]>;

/**
 * The reference AI behaviour for one device session, shared by the Converse and Relay
 * transports: echoes audio in realtime mode, parrots a finished utterance back paced at real
 * time, answers text, images and detect queries with a deterministic sentence spoken as a tone,
 * and runs the MCP handshake when the device announces MCP. `handle()` never throws (bad input
 * is logged and ignored); nothing is emitted after `dispose()`.
 */
export class AiSession {
  private lifecycle: SessionLifecycle = { t: "open", playback: undefined };
  private listen: ListenPhase = { t: "idle" };
  private readonly parentLogger: Logger;
  private childLogger: Logger | undefined;
  private readonly mcp: McpHandshake | undefined;
  private readonly frameDurationMs: number;
  private readonly prebufferFrames: number;
  private readonly silenceFrames: number;
  private readonly maxUtteranceFrames: number;
  private readonly maxUtteranceBytes: number;
  private readonly held: { bytes: number };
  private readonly tone: ToneOptions;
  private readonly scheduler: Scheduler;
  private ignoredFrames = 0;
  private readonly answerer: Answerer | undefined;
  /** The answer being fetched from the answerer, cancelled by abort or the next question. */
  private answering: AbortController | undefined;

  /**
   * Emits the MCP `initialize` request synchronously when `hello.features.mcp` is true.
   * @param emit receives the session's events; for Relay the caller sets `sessionKey` on them.
   */
  constructor(
    readonly hello: Hello,
    private readonly emit: EmitServerEvent,
    logger: Logger,
    options: AiSessionOptions = {},
  ) {
    this.parentLogger = logger;
    this.frameDurationMs = positive(options.frameDurationMs) ?? positive(hello.audioParams?.frameDurationMs) ?? 60;
    this.prebufferFrames = Math.max(1, Math.floor(options.prebufferFrames ?? 2));
    this.silenceFrames = Math.max(1, Math.floor(options.silenceFrames ?? 10));
    this.maxUtteranceFrames = Math.max(1, Math.floor(options.maxUtteranceFrames ?? 500));
    this.maxUtteranceBytes = Math.max(1, Math.floor(options.maxUtteranceBytes ?? 1024 * 1024));
    this.held = options.held ?? { bytes: 0 };
    this.tone = options.tone ?? {};
    this.scheduler = options.scheduler ?? realScheduler;
    this.answerer = options.answerer;
    // A resumed session is worth seeing (the upstream failed); a new one is routine at fleet scale.
    const opened = { audioParams: hello.audioParams, features: hello.features };
    if (hello.resumed) this.logger.info(opened, "session resumed");
    else this.logger.debug(opened, "session opened");
    if (hello.features.mcp === true) {
      this.mcp = new McpHandshake((payloadJson) => this.send({ case: "mcp", value: { payloadJson } }), this.logger);
      this.mcp.start();
    }
  }

  /** The session's logger, made on first use: a child logger per session was a visible share
   * of the cost of opening sessions at fleet scale, and most sessions never log. */
  private get logger(): Logger {
    this.childLogger ??= this.parentLogger.child({ sessionId: this.hello.sessionId, deviceId: this.hello.deviceId });
    return this.childLogger;
  }

  /** False once disposed. */
  get open(): boolean {
    return this.lifecycle.t === "open";
  }

  /** The device's MCP tool names, once listed. */
  get mcpTools(): readonly string[] | undefined {
    return this.mcp?.tools;
  }

  /** Takes one event from the device. Never throws. */
  handle(event: DeviceEvent): void {
    if (this.lifecycle.t !== "open") return;
    try {
      this.dispatch(event);
    } catch (err) {
      this.logger.error({ err: describeError(err), event: event.event.case }, "device event failed; ignored");
    }
  }

  /** Stops every timer and pending answer; afterwards nothing is emitted. Idempotent. */
  dispose(): void {
    const s = this.lifecycle;
    if (s.t !== "open") return;
    this.lifecycle = { t: "disposed" };
    this.cancelAnswer();
    s.playback?.stop();
    this.setListen({ t: "idle" });
    this.logger.debug({ ignoredFrames: this.ignoredFrames }, "session disposed");
  }

  private dispatch(event: DeviceEvent): void {
    const e = event.event;
    switch (e.case) {
      case "audio":
        this.onAudio(e.value.opus, e.value.timestampMs);
        return;
      case "heartbeat":
        this.send({ case: "heartbeat", value: { sentAtMs: e.value.sentAtMs } });
        return;
      case "listen":
        this.onListen(e.value);
        return;
      case "abort":
        this.cancelAnswer();
        if (!this.stopSpeaking()) this.logger.debug({ reason: e.value.reason }, "abort with no answer playing");
        return;
      case "chat":
        this.answerText(e.value.text, { withStt: false });
        return;
      case "image":
        this.onImage(e.value);
        return;
      case "mcp":
        if (this.mcp === undefined) {
          this.logger.debug("mcp from a device that did not announce mcp; ignored");
          return;
        }
        this.mcp.handle(e.value.payloadJson);
        return;
      case "end":
        this.logger.debug({ reason: e.value.reason, detail: e.value.detail }, "session ended by gateway");
        this.dispose();
        return;
      case "hello":
        this.logger.debug("second hello in a session; ignored");
        return;
      case undefined:
        this.logger.debug("empty device event; ignored");
        return;
    }
  }

  private onAudio(opus: Uint8Array, timestampMs: number): void {
    const l = this.listen;
    if (l.t === "realtime") {
      this.send({ case: "audio", value: { opus, timestampMs } });
      return;
    }
    if (l.t !== "collecting") {
      this.ignoredFrames++;
      return;
    }
    if (opus.length > QUIET_PACKET_MAX_BYTES) {
      this.collect(l, opus);
      l.lastSpeechIndex = l.frames.length - 1;
      l.silentRun = 0;
    } else if (l.mode === "manual" || l.lastSpeechIndex >= 0) {
      this.collect(l, opus);
      if (opus.length <= SILENT_PACKET_MAX_BYTES) l.silentRun++;
      if (l.mode === "auto" && l.silentRun >= this.silenceFrames) {
        this.finishUtterance("silence");
        return;
      }
    }
    if (l.frames.length >= this.maxUtteranceFrames || l.bytes >= this.maxUtteranceBytes) this.finishUtterance("max length");
  }

  private collect(l: Extract<ListenPhase, { t: "collecting" }>, opus: Uint8Array): void {
    l.frames.push(opus);
    l.bytes += opus.length;
    this.held.bytes += opus.length;
  }

  /** Changes the listen phase, giving back the bytes of an utterance being collected. */
  private setListen(next: ListenPhase): void {
    const l = this.listen;
    if (l.t === "collecting") this.held.bytes -= l.bytes;
    this.listen = next;
  }

  private onListen(listen: Listen): void {
    switch (listen.state) {
      case ListenState.START:
        this.cancelAnswer();
        this.stopSpeaking();
        if (this.listen.t === "collecting") this.logger.debug("listen start while collecting; restarted");
        this.setListen(
          listen.mode === ListenMode.REALTIME
            ? { t: "realtime" }
            : {
                t: "collecting",
                mode: listen.mode === ListenMode.MANUAL ? "manual" : "auto",
                frames: [],
                bytes: 0,
                lastSpeechIndex: -1,
                silentRun: 0,
              },
        );
        return;
      case ListenState.STOP:
        if (this.listen.t === "collecting") this.finishUtterance("listen stop");
        else this.setListen({ t: "idle" });
        return;
      case ListenState.DETECT:
        if (isWakeWord(listen.text)) {
          this.logger.debug({ text: listen.text }, "wake word");
          return;
        }
        this.answerText(listen.text, { withStt: true });
        return;
      default:
        this.logger.debug({ state: listen.state }, "listen without a known state; ignored");
    }
  }

  private finishUtterance(why: string): void {
    const l = this.listen;
    if (l.t !== "collecting") return;
    this.setListen({ t: "idle" });
    // AUTO: the trailing silence only proved the end of speech; playing it back is dead air.
    const frames = l.mode === "auto" ? l.frames.slice(0, l.lastSpeechIndex + 1) : l.frames;
    this.logger.debug({ why, frames: frames.length, mode: l.mode }, "utterance ended");
    this.stopSpeaking();
    if (frames.length === 0) {
      // Nothing to say, but the device waits in Speaking-to-be: start/stop returns it to listening.
      this.send({ case: "stt", value: { text: "(heard nothing)" } });
      this.speak(undefined, [], this.frameDurationMs);
      return;
    }
    const seconds = ((frames.length * this.frameDurationMs) / 1000).toFixed(1);
    this.send({ case: "stt", value: { text: `(heard ${seconds} s of audio in ${frames.length} frames)` } });
    this.send({ case: "llm", value: HAPPY });
    this.speak(PARROT_SENTENCE, frames, this.frameDurationMs);
  }

  private answerText(text: string, how: { withStt: boolean }): void {
    this.stopSpeaking();
    this.cancelAnswer();
    const trimmed = text.trim();
    if (how.withStt) this.send({ case: "stt", value: { text: trimmed } });
    if (this.answerer !== undefined) {
      this.answerWith(this.answerer, { text: trimmed, deviceId: this.hello.deviceId, userId: this.hello.userId });
      return;
    }
    this.send({ case: "llm", value: HAPPY });
    this.speakTone(trimmed === "" ? "You said nothing." : `You said: ${trimmed}`);
  }

  private onImage(image: Image): void {
    this.stopSpeaking();
    this.cancelAnswer();
    if (this.answerer !== undefined) {
      this.answerWith(this.answerer, {
        text: image.prompt,
        image: { data: image.data, mimeType: image.mimeType },
        deviceId: this.hello.deviceId,
        userId: this.hello.userId,
      });
      return;
    }
    const kind = image.mimeType === "" ? "" : ` ${image.mimeType}`;
    const prompt = image.prompt.trim();
    const asked = prompt === "" ? "" : ` and the question: ${prompt}`;
    this.send({ case: "llm", value: HAPPY });
    this.speakTone(`I got a ${image.data.length}-byte${kind} image${asked}`);
  }

  /** Fetches the whole answer (cancellable), then speaks it: llm, tts, subtitle, audio. */
  private answerWith(answerer: Answerer, question: Question): void {
    const ac = new AbortController();
    this.answering = ac;
    void (async () => {
      let text = "";
      for await (const chunk of answerer.answer(question, ac.signal)) text += chunk;
      if (ac.signal.aborted || this.answering !== ac) return;
      this.answering = undefined;
      this.send({ case: "llm", value: HAPPY });
      this.speakTone(text.trim());
    })().catch((err: unknown) => this.logger.error({ err: describeError(err) }, "answering failed"));
  }

  private cancelAnswer(): void {
    this.answering?.abort();
    this.answering = undefined;
  }

  private speakTone(sentence: string): void {
    this.speak(sentence, toneFrames(this.tone), this.tone.frameDurationMs ?? 60);
  }

  /** tts start, the subtitle, the frames paced, tts stop. Replaces any answer playing. */
  private speak(sentence: string | undefined, frames: readonly Uint8Array[], frameDurationMs: number): void {
    const s = this.lifecycle;
    if (s.t !== "open") return;
    this.send({ case: "tts", value: { state: TtsState.START } });
    if (sentence !== undefined) this.send({ case: "tts", value: { state: TtsState.SENTENCE_START, text: sentence } });
    const playback: PacedPlayback = new PacedPlayback(frames, {
      frameDurationMs,
      prebufferFrames: this.prebufferFrames,
      scheduler: this.scheduler,
      onFrame: (opus, index) => {
        this.send({ case: "audio", value: { opus, timestampMs: index * frameDurationMs } });
      },
      onEnd: () => {
        if (this.lifecycle.t === "open" && this.lifecycle.playback === playback) this.lifecycle.playback = undefined;
        this.send({ case: "tts", value: { state: TtsState.STOP } });
      },
    });
    s.playback = playback;
    playback.start();
  }

  /** Stops the answer playing, if any, with a tts stop; true when there was one. */
  private stopSpeaking(): boolean {
    const s = this.lifecycle;
    if (s.t !== "open" || s.playback === undefined) return false;
    const playback = s.playback;
    s.playback = undefined;
    if (!playback.stop()) return false;
    this.send({ case: "tts", value: { state: TtsState.STOP } });
    return true;
  }

  private send(event: ServerEventCase): void {
    if (this.lifecycle.t !== "open") return;
    try {
      this.emit(create(ServerEventSchema, { event }));
    } catch (err) {
      // Pacing timers call this too, where a throw would be an uncaught exception.
      this.logger.error({ err: describeError(err), event: event.case }, "emit failed; event dropped");
    }
  }
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && value > 0 ? value : undefined;
}
