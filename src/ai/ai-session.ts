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
import type { VoiceTurnMetrics } from "../metrics";
import type { Answerer, Question } from "./answerer";
import type { LiveDevices } from "./live-devices";
import { McpHandshake } from "./mcp-handshake";
import { type OpusFrameDurationMs, type OpusSampleRateHz, type ToneOptions, toneFrames } from "./opus-tone";
import { PacedPlayback } from "./paced-playback";
import { realScheduler, type Scheduler } from "./scheduler";
import type { ChatTool } from "./voice/chat-turn";
import { deviceTools } from "./voice/device-tools";
import { concatPcm } from "./voice/concat-pcm";
import { EndOfSpeechDetector, type EndOfSpeechOptions } from "./voice/end-of-speech";
import { OpusFrameDecoder } from "./voice/opus-frame-decoder";
import type { SpeechToText, TextToSpeech } from "./voice/speech-stages";
import { speakAnswer } from "./voice/spoken-answer";
import { StreamingPlayback } from "./voice/streaming-playback";
import { isWakeWord } from "./wake-word";

/** The voice pipeline's stages and tuning; each stage missing keeps its offline stand-in. */
export interface VoiceOptions {
  /** Speech recognition; without it an utterance is played back (the parrot). */
  stt?: SpeechToText;
  /** Speech synthesis; without it each sentence is heard as the tone. */
  tts?: TextToSpeech;
  /** AUTO listening ends an utterance by the decoded audio's level (needs `stt`); without it,
   * by the size of the Opus packets. */
  endOfSpeech?: EndOfSpeechOptions;
  /** Longest wait for a device's answer to an MCP tool call the LLM made, ms. Default 10,000. */
  toolTimeoutMs?: number;
  /** Longest wait for a provider's first or next bytes (ASR, TTS), ms. Default 30,000. */
  idleTimeoutMs?: number;
  /** The server's audio as the gateway announces it to devices. Default 24000 Hz, 60 ms. */
  sampleRateHz?: OpusSampleRateHz;
  frameDurationMs?: OpusFrameDurationMs;
  /** Where each turn's stage timings are recorded. Default: nowhere. */
  metrics?: VoiceTurnMetrics;
}

/** What the user hears when their speech could not be understood. */
export const NOT_UNDERSTOOD_ANSWER = "Sorry, I did not catch that. Could you say it again?";
/** What the user hears when speech recognition failed. */
export const ASR_FAILED_ANSWER = "Sorry, I cannot understand speech right now. Please try again in a moment.";

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
  /** Speech in and out; default none (the parrot and the tone). */
  voice?: VoiceOptions;
  /** The service's sessions by Device-Id, which this one joins while open (for Ask's tools). */
  devices?: LiveDevices;
}

/** Opus packets up to this size are DTX or digital silence (a 60 ms speech frame is ~100+). */
const SILENT_PACKET_MAX_BYTES = 8;
/**
 * Packets up to this size are not speech either: DTX's comfort-noise refresh (~20 bytes every
 * 400 ms) and non-DTX silence. They neither count as silence nor break a run of it.
 */
const QUIET_PACKET_MAX_BYTES = 32;

const HAPPY = { text: "😊", emotion: "happy" } as const;
/** The rate the device's audio is decoded at for recognition, whatever it was sent at
 * (libopus decodes any packet at any of its rates): what speech recognition expects. */
const RECOGNITION_RATE_HZ: OpusSampleRateHz = 16000;
/** Audio kept from before speech was confirmed (AUTO mode with an end-of-speech detector). */
const PREROLL_MS = 300;
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
      /** The frames decoded, when speech recognition will hear them. */
      pcm: Int16Array[];
      /** AUTO mode's end of speech from the decoded audio, when configured. */
      detector: EndOfSpeechDetector | undefined;
    };

/** What is playing to the device: a finished list of frames, or an answer being spoken. */
type Playing = PacedPlayback | StreamingPlayback;

type SessionLifecycle = { t: "open"; playback: Playing | undefined } | { t: "disposed" };

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
  private readonly voice: VoiceOptions;
  private readonly devices: LiveDevices | undefined;
  /** Decodes the device's audio for speech recognition, made on first use. */
  private decoder: OpusFrameDecoder | undefined;
  /** The turn in progress (recognizing, answering, speaking), cancelled by abort or the next
   * question: its signal cancels the provider requests in flight. */
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
    this.voice = options.voice ?? {};
    this.devices = options.devices;
    this.devices?.add(hello.deviceId, this);
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
    this.mcp?.cancelAll();
    this.devices?.remove(this.hello.deviceId, this);
    this.decoder?.delete();
    this.decoder = undefined;
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
    if (this.voice.stt !== undefined) {
      this.collectDecoded(l, opus);
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

  /** A frame for speech recognition: decoded now, and in AUTO mode with an end-of-speech
   * detector, judged by its level (silence before speech is not kept). */
  private collectDecoded(l: Extract<ListenPhase, { t: "collecting" }>, opus: Uint8Array): void {
    const rate = RECOGNITION_RATE_HZ;
    this.decoder ??= new OpusFrameDecoder(rate);
    const pcm = this.decoder.decode(opus);
    if (pcm === undefined) return;
    this.collect(l, opus);
    this.collectPcm(l, pcm);
    if (l.detector !== undefined) {
      const verdict = l.detector.push(pcm, rate);
      if (verdict === "ended") {
        this.finishUtterance("end of speech");
        return;
      }
      // Before speech, only a short pre-roll is kept: the detector confirms speech some
      // frames after it began, and those first frames are part of what was said.
      if (verdict === "waiting") this.trimPreroll(l);
    }
    if (l.frames.length >= this.maxUtteranceFrames || l.bytes >= this.maxUtteranceBytes) this.finishUtterance("max length");
  }

  private trimPreroll(l: Extract<ListenPhase, { t: "collecting" }>): void {
    const keep = Math.ceil(((this.voice.endOfSpeech?.minSpeechMs ?? 0) + PREROLL_MS) / this.frameDurationMs);
    while (l.frames.length > keep) {
      const dropped = l.frames.shift()!.length + l.pcm.shift()!.byteLength;
      l.bytes -= dropped;
      this.held.bytes -= dropped;
    }
  }

  private collectPcm(l: Extract<ListenPhase, { t: "collecting" }>, pcm: Int16Array): void {
    l.pcm.push(pcm);
    l.bytes += pcm.byteLength;
    this.held.bytes += pcm.byteLength;
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
                pcm: [],
                detector:
                  listen.mode !== ListenMode.MANUAL && this.voice.stt !== undefined && this.voice.endOfSpeech !== undefined
                    ? new EndOfSpeechDetector(this.voice.endOfSpeech)
                    : undefined,
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
    if (this.voice.stt !== undefined) {
      this.logger.debug({ why, frames: l.frames.length, mode: l.mode }, "utterance ended");
      this.recognize(this.voice.stt, l.pcm);
      return;
    }
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
      this.answerAloud(this.answerer, { text: trimmed, deviceId: this.hello.deviceId, userId: this.hello.userId });
      return;
    }
    const said = trimmed === "" ? "You said nothing." : `You said: ${trimmed}`;
    if (this.voice.tts !== undefined) {
      this.answerAloud(undefined, said);
      return;
    }
    this.send({ case: "llm", value: HAPPY });
    this.speakTone(said);
  }

  private onImage(image: Image): void {
    this.stopSpeaking();
    this.cancelAnswer();
    if (this.answerer !== undefined) {
      this.answerAloud(this.answerer, {
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

  /**
   * The spoken turn: the utterance's audio to text (`stt`), then answered aloud. An empty
   * transcript or a failed recognition is answered with a spoken apology, never silence.
   */
  private recognize(stt: SpeechToText, chunks: readonly Int16Array[]): void {
    this.stopSpeaking();
    this.cancelAnswer();
    const ac = new AbortController();
    this.answering = ac;
    const pcm = concatPcm(chunks);
    const turnStartMs = this.scheduler.now();
    void (async () => {
      let text: string;
      try {
        text = pcm.length === 0 ? "" : await stt.transcribe(pcm, RECOGNITION_RATE_HZ, this.withIdleTimeout(ac.signal));
        if (pcm.length > 0) this.voice.metrics?.asrSeconds.observe((this.scheduler.now() - turnStartMs) / 1000);
      } catch (err) {
        if (ac.signal.aborted) return;
        this.logger.warn({ cause: describeError(err).slice(0, 300) }, "speech recognition failed; answering with an apology");
        this.send({ case: "stt", value: { text: "" } });
        this.answerAloud(undefined, ASR_FAILED_ANSWER, turnStartMs);
        return;
      }
      if (ac.signal.aborted || this.answering !== ac) return;
      this.send({ case: "stt", value: { text } });
      if (text === "") {
        this.answerAloud(undefined, NOT_UNDERSTOOD_ANSWER, turnStartMs);
        return;
      }
      if (this.answerer !== undefined) this.answerAloud(this.answerer, { text, deviceId: this.hello.deviceId, userId: this.hello.userId }, turnStartMs);
      else this.answerAloud(undefined, `You said: ${text}`, turnStartMs);
    })().catch((err: unknown) => this.logger.error({ err: describeError(err) }, "recognizing failed"));
  }

  /**
   * Answers aloud, sentence by sentence as the answer streams: `tts start`, then per sentence
   * its subtitle and audio (the `llm` emotion with the first), then `tts stop` once played.
   * `answerer` undefined: speaks `question` (a fixed sentence, e.g. an apology) as it is. The
   * LLM may call the device's MCP tools meanwhile. Abort or the next question cancels it all.
   */
  private answerAloud(answerer: Answerer, question: Question, turnStartMs?: number): void;
  private answerAloud(answerer: undefined, sentence: string, turnStartMs?: number): void;
  private answerAloud(answerer: Answerer | undefined, question: Question | string, turnStartMs = this.scheduler.now()): void {
    const s = this.lifecycle;
    if (s.t !== "open") return;
    const metrics = this.voice.metrics;
    this.stopSpeaking();
    this.cancelAnswer();
    const ac = new AbortController();
    this.answering = ac;
    const frameDurationMs = this.voice.frameDurationMs ?? this.tone.frameDurationMs ?? 60;
    this.send({ case: "tts", value: { state: TtsState.START } });
    const playback: StreamingPlayback = new StreamingPlayback({
      frameDurationMs,
      prebufferFrames: this.prebufferFrames,
      scheduler: this.scheduler,
      onFrame: (opus, index) => {
        if (index === 0) metrics?.firstAudioSeconds.observe((this.scheduler.now() - turnStartMs) / 1000);
        this.send({ case: "audio", value: { opus, timestampMs: index * frameDurationMs } });
      },
      onEnd: () => {
        if (this.lifecycle.t === "open" && this.lifecycle.playback === playback) this.lifecycle.playback = undefined;
        if (this.answering === ac) this.answering = undefined;
        this.send({ case: "tts", value: { state: TtsState.STOP } });
      },
    });
    s.playback = playback;
    const text =
      answerer === undefined || typeof question === "string"
        ? single(String(question))
        : timeFirst(answerer.answer({ ...question, tools: this.chatTools() }, ac.signal), this.scheduler, (ms) =>
            metrics?.llmFirstTokenSeconds.observe(ms / 1000),
          );
    void speakAnswer(text, {
      tts: this.voice.tts,
      sampleRateHz: this.voice.sampleRateHz ?? this.tone.sampleRateHz ?? 24000,
      frameDurationMs,
      tone: this.tone,
      playback,
      prebufferFrames: this.prebufferFrames,
      signal: ac.signal,
      idleTimeoutMs: this.voice.idleTimeoutMs ?? 30_000,
      ...(metrics === undefined ? {} : { ttsFirstByte: (ms: number) => metrics.ttsFirstByteSeconds.observe(ms / 1000) }),
      sentenceStarts: (sentence, first) => {
        if (first) this.send({ case: "llm", value: HAPPY });
        this.send({ case: "tts", value: { state: TtsState.SENTENCE_START, text: sentence } });
      },
      logger: this.logger,
    }).catch((err: unknown) => {
      this.logger.error({ err: describeError(err) }, "answering failed");
      playback.finish();
    });
  }

  /** The device's MCP tools as the LLM may call them (none before the device listed them). */
  chatTools(): ChatTool[] {
    const mcp = this.mcp;
    if (mcp === undefined) return [];
    const timeoutMs = this.voice.toolTimeoutMs ?? 10_000;
    return deviceTools(mcp.toolDefinitions, (name, args, signal) => mcp.call(name, args, timeoutMs, signal));
  }

  /** `signal`, also aborted when a provider goes quiet past the idle timeout. */
  private withIdleTimeout(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, AbortSignal.timeout(this.voice.idleTimeoutMs ?? 30_000)]);
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

/** `chunks` as they come, telling `first` how long the first one took (ms). */
async function* timeFirst(chunks: AsyncIterable<string>, clock: Scheduler, first: (ms: number) => void): AsyncGenerator<string> {
  const startMs = clock.now();
  let timed = false;
  for await (const chunk of chunks) {
    if (!timed) {
      timed = true;
      first(clock.now() - startMs);
    }
    yield chunk;
  }
}

/** One text as a stream of one chunk. */
async function* single(text: string): AsyncGenerator<string> {
  yield text;
}

function positive(value: number | undefined): number | undefined {
  return value !== undefined && value > 0 ? value : undefined;
}
