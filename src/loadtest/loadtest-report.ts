import type { LoadtestTransport } from "./loadtest-options";
import type { ProtocolVersion } from "../device/frame-codec";
import type { LatencySummary } from "./latency-histogram";
import type { Scenario } from "./loadtest-options";

/** Which latency a run is about: shown live and judged by the SLO. */
export type HeadlineMetric = "roundTrip" | "firstAnswer" | "hello";

/** Each scenario's headline latency. */
export const HEADLINE_METRIC = {
  stream: "roundTrip",
  conversation: "firstAnswer",
  idle: "hello",
  churn: "hello",
} as const satisfies Record<Scenario, HeadlineMetric>;

/** Connection counts of a run. */
export interface ConnectionCounts {
  /** WebSocket handshakes started (devices, plus every reconnect in churn). */
  readonly attempts: number;
  /** Devices that completed hello at least once. */
  readonly connected: number;
  /** Attempts that never completed hello: refused handshake, timeout, closed first. */
  readonly failed: number;
  /** Devices with a live session when the measured phase ended. */
  readonly held: number;
  /** Churn: sessions opened by a device after its first. */
  readonly reconnections: number;
  /** Live sessions the gateway closed (any code) before the run closed them. */
  readonly unexpectedCloses: number;
}

/** Audio frame counts of a run. */
export interface FrameCounts {
  /** Frames sent by devices. */
  readonly sent: number;
  /** Stream: echoes matched to a sent frame. Conversation: answer audio frames. */
  readonly received: number;
  /** Sent frames that never came back (stream: no echo after the drain; conversation:
   * frames missing from an answer, or of an answer that never finished). */
  readonly lost: number;
  /** Frames received that match nothing sent: duplicates, echoes out of order or too late. */
  readonly unexpected: number;
}

/** The conversation scenario's turn counts. */
export interface ConversationCounts {
  /** Utterances sent (listen start ... listen stop). */
  readonly utterances: number;
  /** Answers that ended with tts stop. */
  readonly answers: number;
  /** Utterances whose answer did not finish within its deadline or the drain. */
  readonly answersTimedOut: number;
  /** Devices that got at least one whole answer. */
  readonly devicesAnswered: number;
}

/** Latencies of a run, ms (see LatencySummary). */
export interface LatencyFigures {
  /** Start of the WebSocket handshake until the socket is open. */
  readonly connect: LatencySummary;
  /** Our hello sent until the server hello arrived. */
  readonly hello: LatencySummary;
  /** Stream: a frame sent until its echo arrived. */
  readonly roundTrip: LatencySummary;
  /** Conversation: listen stop sent until the answer's first audio frame arrived (the time
   * to first audio: with a voice pipeline, recognition + LLM + synthesis + the network). */
  readonly firstAnswer: LatencySummary;
  /** Conversation: listen stop sent until the `stt` message (speech recognized). */
  readonly speechRecognized: LatencySummary;
  /** Conversation: |gap between answer frames - frame duration|, after the 2-frame pre-buffer. */
  readonly jitter: LatencySummary;
  /** How late the load generator sent frames against its schedule (its own health). */
  readonly sendLag: LatencySummary;
}

/** Churn: connections of the k-th wave (every device's k-th connect). */
export interface ChurnWave {
  /** 1 for the first connect of each device. */
  readonly wave: number;
  readonly attempts: number;
  readonly failed: number;
  readonly connect: LatencySummary;
  readonly hello: LatencySummary;
}

/** The verdict of `--slo-p99-ms`. */
export interface SloVerdict {
  /** The p99 allowed, ms. */
  readonly p99Ms: number;
  /** Which latency it applies to. */
  readonly metric: HeadlineMetric;
  /** That latency's p99, ms; null when nothing was measured. */
  readonly observedP99Ms: number | null;
  readonly breached: boolean;
  /** Why it was breached, one line each; empty when it held. */
  readonly reasons: readonly string[];
}

/** Everything a run measured. Plain data: JSON.stringify/parse round-trips it. */
export interface LoadtestReport {
  readonly scenario: Scenario;
  readonly url: string;
  readonly transport: LoadtestTransport;
  readonly protocolVersion: ProtocolVersion;
  readonly devices: number;
  /** Processes the fleet ran in (`--workers`). */
  readonly workers: number;
  readonly rampS: number;
  readonly durationS: number;
  readonly frameMs: number;
  /** Size of the Opus packets sent, bytes (mean of the encoded set). */
  readonly frameBytes: number;
  /** When the run started (ISO 8601). */
  readonly startedAt: string;
  /** Wall time of the whole run: ramp, measured phase, drain and close, seconds. */
  readonly elapsedS: number;
  readonly connections: ConnectionCounts;
  readonly frames: FrameCounts;
  /** Null unless the scenario is conversation. */
  readonly conversation: ConversationCounts | null;
  readonly latency: LatencyFigures;
  /** Null unless the scenario is churn. */
  readonly waves: readonly ChurnWave[] | null;
  /**
   * Failures by kind: `http <status>` (handshake refused), `connect timeout`, `connect error`,
   * `hello timeout`, `close <code>` (a session closed by the gateway with a code other than
   * 1000), `server error <ERR_*>` and `alert <status>` (messages the gateway sent).
   */
  readonly errors: Readonly<Record<string, number>>;
  /** Null without `--slo-p99-ms`. */
  readonly slo: SloVerdict | null;
  /** True when an SLO was given and breached (the command then exits 1). */
  readonly sloBreached: boolean;
  /** Things that make the figures less trustworthy (e.g. the generator fell behind). */
  readonly warnings: readonly string[];
}
