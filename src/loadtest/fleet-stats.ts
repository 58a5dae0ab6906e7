import { type HistogramData, LatencyHistogram } from "./latency-histogram";
import type { HeadlineMetric } from "./loadtest-report";

/** The counters a run adds up. */
const COUNTERS = [
  "attempts",
  "failed",
  "connectedDevices",
  "reconnections",
  "unexpectedCloses",
  "framesSent",
  "framesReceived",
  "framesUnexpected",
  "framesLost",
  "utterances",
  "answers",
  "answersTimedOut",
  "devicesAnswered",
] as const;
type CounterName = (typeof COUNTERS)[number];

/** The histograms a run merges. */
const HISTOGRAMS = ["connect", "hello", "roundTrip", "firstAnswer", "speechRecognized", "jitter", "sendLag"] as const;
type HistogramName = (typeof HISTOGRAMS)[number];

/** A run's figures as plain data (see FleetStats.snapshot). */
export interface FleetStatsSnapshot {
  readonly counters: Readonly<Record<CounterName, number>>;
  readonly histograms: Readonly<Record<HistogramName, HistogramData>>;
  readonly waves: readonly { attempts: number; failed: number; connect: HistogramData; hello: HistogramData }[];
  readonly errors: Readonly<Record<string, number>>;
}

/** Connect and hello latencies of one churn wave. */
export interface WaveStats {
  attempts: number;
  failed: number;
  readonly connect: LatencyHistogram;
  readonly hello: LatencyHistogram;
}

/** Churn waves beyond this share the last one's figures (memory stays bounded). */
export const MAX_WAVES = 64;

/**
 * Everything a run measures, shared by all its devices: plain counters and histograms that
 * the per-frame path bumps without allocating. Also tracks work still in flight (frames
 * awaiting their echo, answers awaiting their end) so the drain can wait on an event instead
 * of polling.
 */
export class FleetStats {
  readonly connect = new LatencyHistogram();
  readonly hello = new LatencyHistogram();
  readonly roundTrip = new LatencyHistogram();
  readonly firstAnswer = new LatencyHistogram();
  readonly speechRecognized = new LatencyHistogram();
  readonly jitter = new LatencyHistogram();
  readonly sendLag = new LatencyHistogram();
  /** The headline latency since the progress line last read it (only fed when live). */
  readonly window = new LatencyHistogram();
  readonly waves: WaveStats[] = [];
  readonly errors = new Map<string, number>();

  attempts = 0;
  failed = 0;
  /** Devices that completed hello at least once. */
  connectedDevices = 0;
  /** Sessions currently open (hello done, not closed). */
  liveSessions = 0;
  reconnections = 0;
  unexpectedCloses = 0;

  framesSent = 0;
  framesReceived = 0;
  framesUnexpected = 0;
  /** Frames known lost: conversation answers that ended short; stream frames whose echo was
   * skipped by a later one (final stream loss is sent - received after the drain). */
  framesLost = 0;

  utterances = 0;
  answers = 0;
  answersTimedOut = 0;
  devicesAnswered = 0;

  private inFlight = 0;
  private settledWaiter: (() => void) | undefined;

  constructor(
    readonly headline: HeadlineMetric,
    /** Feed {@link window} (for the live progress line). */
    readonly live: boolean,
  ) {}

  /** Counts one failure of kind `key` (see LoadtestReport.errors). */
  error(key: string): void {
    this.errors.set(key, (this.errors.get(key) ?? 0) + 1);
  }

  /** The figures of churn wave `index` (0-based), created on first use. */
  wave(index: number): WaveStats {
    const i = Math.min(index, MAX_WAVES - 1);
    while (this.waves.length <= i) {
      this.waves.push({ attempts: 0, failed: 0, connect: new LatencyHistogram(), hello: new LatencyHistogram() });
    }
    return this.waves[i]!;
  }

  recordHelloMs(ms: number): void {
    this.hello.recordMs(ms);
    if (this.live && this.headline === "hello") this.window.recordMs(ms);
  }

  recordRoundTripMs(ms: number): void {
    this.roundTrip.recordMs(ms);
    if (this.live && this.headline === "roundTrip") this.window.recordMs(ms);
  }

  recordFirstAnswerMs(ms: number): void {
    this.firstAnswer.recordMs(ms);
    if (this.live && this.headline === "firstAnswer") this.window.recordMs(ms);
  }

  /** The headline histogram of the whole run. */
  headlineHistogram(): LatencyHistogram {
    return this[this.headline];
  }

  /** `n` more things in flight (frames awaiting echo, answers awaiting their end). */
  begin(n = 1): void {
    this.inFlight += n;
  }

  /** `n` things in flight came back or were given up. */
  end(n = 1): void {
    this.inFlight -= n;
    if (this.inFlight <= 0 && this.settledWaiter !== undefined) this.settledWaiter();
  }

  /** Every count and histogram as plain data, for the process that merges the workers' runs. */
  snapshot(): FleetStatsSnapshot {
    const counters = {} as Record<CounterName, number>;
    for (const k of COUNTERS) counters[k] = this[k];
    const histograms = {} as Record<HistogramName, HistogramData>;
    for (const k of HISTOGRAMS) histograms[k] = this[k].toJSON();
    return {
      counters,
      histograms,
      waves: this.waves.map((w) => ({ attempts: w.attempts, failed: w.failed, connect: w.connect.toJSON(), hello: w.hello.toJSON() })),
      errors: Object.fromEntries(this.errors),
    };
  }

  /** Adds a worker's {@link snapshot} into these figures. */
  absorb(s: FleetStatsSnapshot): void {
    for (const k of COUNTERS) this[k] += s.counters[k] ?? 0;
    for (const k of HISTOGRAMS) this[k].merge(LatencyHistogram.fromJSON(s.histograms[k]));
    s.waves.forEach((w, i) => {
      const mine = this.wave(i);
      mine.attempts += w.attempts;
      mine.failed += w.failed;
      mine.connect.merge(LatencyHistogram.fromJSON(w.connect));
      mine.hello.merge(LatencyHistogram.fromJSON(w.hello));
    });
    for (const [key, n] of Object.entries(s.errors)) this.errors.set(key, (this.errors.get(key) ?? 0) + n);
  }

  /** Things in flight now. */
  get pending(): number {
    return this.inFlight;
  }

  /** Resolves true once nothing is in flight, or false after `timeoutMs`. */
  async settled(timeoutMs: number): Promise<boolean> {
    if (this.inFlight <= 0) return true;
    if (timeoutMs <= 0) return false;
    const { promise, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => resolve(false), timeoutMs);
    this.settledWaiter = () => {
      clearTimeout(timer);
      resolve(true);
    };
    try {
      return await promise;
    } finally {
      this.settledWaiter = undefined;
    }
  }
}
