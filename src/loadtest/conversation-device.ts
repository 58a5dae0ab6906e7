import { FleetDevice, type FleetDeviceOptions } from "./fleet-device";
import { readFrameSeq, writeFrameSeq } from "./frame-seq";
import type { PacedDevice } from "./paced-device";

/**
 * Frames of an answer that arrive together by design before real-time pacing starts (the
 * pre-buffer docs/device-protocol.md recommends, and the reference AI uses): the gap between
 * them is not jitter.
 */
export const ANSWER_PREBUFFER_FRAMES = 2;

/**
 * How long an answer's audio may trail its `tts stop`: over MQTT + UDP they travel apart
 * (the stop on MQTT, the frames in datagrams), so the stop can overtake the last frames.
 * Over the WebSocket the stop is behind every frame and this never waits.
 */
const LATE_AUDIO_MS = 300;

/** Where a device is in its turn. */
type Turn =
  | { readonly t: "idle" }
  | { readonly t: "speaking"; readonly firstSeq: number; left: number }
  | {
      readonly t: "awaiting-answer";
      /** The utterance's frames, which the reference AI plays back. */
      readonly firstSeq: number;
      readonly frames: number;
      readonly stopAtMs: number;
      readonly deadlineMs: number;
      received: number;
      lastAtMs: number;
      /** When the tts stop came, if frames were still missing then. */
      stoppedAtMs: number | undefined;
      /** The answer is not the utterance played back but speech of its own (a voice
       * pipeline): its frames are counted, not matched, and none can be missing. */
      synthesized: boolean;
    };

/**
 * The conversation scenario's device, turn after turn: `listen start` (manual), an utterance
 * of real Opus frames paced by its slots, `listen stop`, then the answer (stt, tts start,
 * audio, tts stop). Measures listen stop -> stt and -> first answer frame (the time to first
 * audio), and the answer's inter-arrival jitter. The offline reference AI parrots the
 * utterance back, so missing frames count as lost; an answer whose first frame is not the
 * utterance's is a voice pipeline's speech, counted as it comes.
 */
export class ConversationDevice extends FleetDevice implements PacedDevice {
  private turn: Turn = { t: "idle" };
  private nextSeq = 0;
  private answered = false;
  private listenStart = "";
  private listenStop = "";

  constructor(
    o: FleetDeviceOptions,
    private readonly packets: readonly Uint8Array[],
    /** Frames per utterance. */
    private readonly utteranceFrames: number,
    /** How long an answer may take after listen stop before it counts as timed out, ms. */
    private readonly answerTimeoutMs: number,
  ) {
    super(o);
  }

  onSlot(_frameIndex: number, dueMs: number, nowMs: number): void {
    const t = this.turn;
    if (t.t === "awaiting-answer") {
      if (t.stoppedAtMs !== undefined && nowMs - t.stoppedAtMs > LATE_AUDIO_MS) this.answerDone(t);
      else if (nowMs > t.deadlineMs) this.giveUp(t);
      return;
    }
    if (!this.isReady) return;
    if (t.t === "idle") {
      this.sendText(this.listenStart);
      this.o.stats.utterances++;
      const speaking = { t: "speaking" as const, firstSeq: this.nextSeq, left: this.utteranceFrames };
      this.turn = speaking;
      // Audio apart from messages (UDP beside MQTT): the first frame waits one slot, as after
      // a wake word, so that it does not overtake the listen start.
      if (this.o.audioApart !== true) this.speak(speaking, dueMs, nowMs);
      return;
    }
    if (t.left <= 0) this.stopSpeaking(t, nowMs);
    else this.speak(t, dueMs, nowMs);
  }

  /** An utterance under way ends at once (shorter), and its answer is still awaited. */
  onPhaseEnd(nowMs: number): void {
    const t = this.turn;
    if (t.t === "speaking") this.stopSpeaking(t, nowMs);
  }

  /** Gives up the answer still awaited, if any (the drain is over): counted as timed out. */
  abandonAnswer(): void {
    const t = this.turn;
    if (t.t === "awaiting-answer") this.giveUp(t);
  }

  protected override onReady(): void {
    this.listenStart = this.jsonText({ type: "listen", state: "start", mode: "manual" });
    this.listenStop = this.jsonText({ type: "listen", state: "stop" });
  }

  protected override sessionEnded(): void {
    const t = this.turn;
    if (t.t === "awaiting-answer") this.giveUp(t);
    this.turn = { t: "idle" };
  }

  protected override onJson(msg: Readonly<Record<string, unknown>>, atMs: number): void {
    const t = this.turn;
    if (t.t !== "awaiting-answer") return;
    if (msg.type === "stt") this.o.stats.speechRecognized.recordMs(atMs - t.stopAtMs);
    if (msg.type !== "tts" || msg.state !== "stop") return;
    // Frames still on their way apart from the stop (UDP): wait for them a moment.
    if (!t.synthesized && t.received < t.frames) t.stoppedAtMs = atMs;
    else this.answerDone(t);
  }

  private answerDone(t: Extract<Turn, { t: "awaiting-answer" }>): void {
    const { stats } = this.o;
    stats.answers++;
    if (!this.answered) {
      this.answered = true;
      stats.devicesAnswered++;
    }
    if (!t.synthesized && t.received < t.frames) stats.framesLost += t.frames - t.received;
    this.turn = { t: "idle" };
    stats.end();
  }

  protected override onAudio(payload: Uint8Array, atMs: number): void {
    const t = this.turn;
    const { stats } = this.o;
    if (t.t === "awaiting-answer" && t.received === 0 && readFrameSeq(payload) !== t.firstSeq >>> 0) t.synthesized = true;
    // Audio outside an awaited answer is the tail of one given up: it matches nothing.
    if (t.t !== "awaiting-answer" || (!t.synthesized && readFrameSeq(payload) !== (t.firstSeq + t.received) >>> 0)) {
      stats.framesUnexpected++;
      return;
    }
    if (t.received === 0) stats.recordFirstAnswerMs(atMs - t.stopAtMs);
    else if (t.received >= ANSWER_PREBUFFER_FRAMES) {
      stats.jitter.recordMs(Math.abs(atMs - t.lastAtMs - this.o.frameMs));
    }
    t.received++;
    t.lastAtMs = atMs;
    stats.framesReceived++;
    if (t.stoppedAtMs !== undefined && t.received >= t.frames) this.answerDone(t);
  }

  private speak(t: Extract<Turn, { t: "speaking" }>, dueMs: number, nowMs: number): void {
    const seq = this.nextSeq;
    const packet = this.packets[seq % this.packets.length]!;
    // ws.send copies synchronously, so stamping the shared packet right before it is safe.
    writeFrameSeq(packet, seq);
    if (!this.sendAudio(packet, (seq * this.o.frameMs) >>> 0)) return;
    this.nextSeq = seq + 1;
    this.o.stats.framesSent++;
    this.o.stats.sendLag.recordMs(nowMs - dueMs);
    t.left--;
    // Likewise the listen stop waits a slot behind the last frame when they travel apart.
    if (t.left <= 0 && this.o.audioApart !== true) this.stopSpeaking(t, nowMs);
  }

  private stopSpeaking(t: Extract<Turn, { t: "speaking" }>, nowMs: number): void {
    const frames = this.nextSeq - t.firstSeq;
    this.sendText(this.listenStop);
    this.turn = {
      t: "awaiting-answer",
      firstSeq: t.firstSeq,
      frames,
      stopAtMs: nowMs,
      deadlineMs: nowMs + this.answerTimeoutMs,
      received: 0,
      lastAtMs: nowMs,
      stoppedAtMs: undefined,
      synthesized: false,
    };
    this.o.stats.begin();
  }

  private giveUp(t: Extract<Turn, { t: "awaiting-answer" }>): void {
    const { stats } = this.o;
    stats.answersTimedOut++;
    if (!t.synthesized) stats.framesLost += t.frames - t.received;
    this.turn = { t: "idle" };
    stats.end();
  }
}
