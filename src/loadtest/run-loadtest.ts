import { mintToken } from "../auth/mint-token";
import { ConnectGate } from "./connect-gate";
import { ConversationDevice } from "./conversation-device";
import { deviceIdOf } from "./device-ids";
import { FleetDevice, type FleetDeviceOptions } from "./fleet-device";
import { openMqttUdpWire } from "./mqtt-udp-wire";
import { FleetStats } from "./fleet-stats";
import { FramePacer } from "./frame-pacer";
import type { LoadtestOptions } from "./loadtest-options";
import { type ChurnWave, HEADLINE_METRIC, type LoadtestReport, type SloVerdict } from "./loadtest-report";
import { opusTestPackets } from "./opus-test-packets";
import { ProgressLine } from "./progress-line";
import { spreadStarts } from "./spread-starts";
import { StreamDevice } from "./stream-device";

export { formatReport } from "./format-report";
export type { LoadtestAuth, LoadtestOptions, Scenario } from "./loadtest-options";
export type { LoadtestReport } from "./loadtest-report";
export { LOADTEST_USAGE, parseLoadtestArgs } from "./parse-loadtest-args";

/** Where a run writes its live progress. */
export interface LoadtestIo {
  /** Receives progress text (only when `isTty`; the final report is the caller's to print). */
  readonly out: (s: string) => void;
  /** Draw the live progress line (a terminal); otherwise write nothing. */
  readonly isTty: boolean;
}

/** The generator falling behind its own schedule by more than this (p99, ms) taints the figures. */
const SEND_LAG_WARN_MS = 10;

/** How long an answer may take beyond its own playing time before it counts as timed out, ms. */
const ANSWER_DEADLINE_MS = 10_000;

/**
 * Runs one load test against `options.url` and reports what it measured. Connects
 * `options.devices` simulated devices spread over the ramp (at most `concurrency`
 * handshakes in flight), runs the scenario for the measured phase, waits at most
 * `drainMs` for work in flight, closes every socket and resolves. Every wait has a deadline,
 * so the run ends by itself; it never connects anywhere but `options.url`. Failures of
 * devices are counted in the report, never thrown.
 */
export async function runLoadtest(options: LoadtestOptions, io: LoadtestIo): Promise<LoadtestReport> {
  const run = await runFleet(options, io);
  return buildReport(options, run.stats, run);
}

/** What one process's fleet measured, before it is a report. */
export interface FleetRun {
  readonly stats: FleetStats;
  readonly startedAt: Date;
  readonly elapsedMs: number;
  /** Sessions open at the end of the measured phase. */
  readonly held: number;
  readonly packets: readonly Uint8Array[];
}

/** Runs the fleet of {@link runLoadtest} in this process. */
export async function runFleet(options: LoadtestOptions, io: LoadtestIo): Promise<FleetRun> {
  const o = options;
  const stats = new FleetStats(HEADLINE_METRIC[o.scenario], io.isTty);
  const packets = opusTestPackets({ frameMs: o.frameMs, targetBytes: o.frameBytes });
  const tokens = await deviceTokens(o);
  const gate = new ConnectGate(o.concurrency);
  // Answers take as long to play as the utterance took to say; the drain allows for one.
  const answerPlayMs = o.utteranceFrames * o.frameMs;
  const devices = Array.from({ length: o.devices }, (_, i) => {
    const d: FleetDeviceOptions = {
      url: o.url,
      ...(o.transport === "mqtt-udp" ? { openWire: openMqttUdpWire, audioApart: true } : {}),
      deviceId: deviceIdOf(o.devicePrefix, i),
      clientId: crypto.randomUUID(),
      token: tokens(i),
      protocolVersion: o.protocolVersion,
      frameMs: o.frameMs,
      connectTimeoutMs: o.connectTimeoutMs,
      helloTimeoutMs: o.helloTimeoutMs,
      stats,
      gate,
    };
    switch (o.scenario) {
      case "stream":
        return new StreamDevice(d, packets);
      case "conversation":
        return new ConversationDevice(d, packets, o.utteranceFrames, answerPlayMs + ANSWER_DEADLINE_MS);
      default:
        return new FleetDevice(d);
    }
  });

  const startedAt = new Date();
  const t0 = performance.now();
  const phaseStartMs = t0 + o.rampMs;
  const phaseEndMs = phaseStartMs + o.durationMs;
  const progress = io.isTty ? new ProgressLine(io.out, stats, o.devices, t0) : undefined;
  progress?.start();
  const opens: Promise<unknown>[] = [];
  let held = 0;
  try {
    switch (o.scenario) {
      case "stream":
      case "conversation": {
        const paced = devices as (StreamDevice | ConversationDevice)[];
        const ramp = spreadStarts(o.devices, t0, o.rampMs, (i) => opens.push(paced[i]!.open()));
        await new FramePacer(paced, o.frameMs, phaseStartMs, phaseEndMs).run();
        ramp.cancel();
        held = stats.liveSessions;
        await stats.settled(o.scenario === "conversation" ? o.drainMs + answerPlayMs : o.drainMs);
        if (o.scenario === "conversation") for (const d of paced as ConversationDevice[]) d.abandonAnswer();
        break;
      }
      case "idle": {
        const ramp = spreadStarts(o.devices, t0, o.rampMs, (i) => opens.push(devices[i]!.open()));
        await sleepUntil(phaseEndMs);
        ramp.cancel();
        held = stats.liveSessions;
        break;
      }
      case "churn": {
        const loops: Promise<void>[] = [];
        const ramp = spreadStarts(o.devices, t0, o.rampMs, (i) => loops.push(churn(devices[i]!, phaseEndMs, o)));
        await sleepUntil(phaseEndMs);
        ramp.cancel();
        held = stats.liveSessions;
        // A connect under way at the end normally completes in milliseconds; bounded anyway.
        await withDeadline(Promise.all(loops), o.drainMs);
        break;
      }
    }
  } finally {
    gate.close();
    await Promise.all(devices.map((d) => d.retire()));
    await Promise.allSettled(opens);
    progress?.stop();
  }
  return { stats, startedAt, elapsedMs: performance.now() - t0, held, packets };
}

/** The token of device `i`: minted per device (bound to its Device-Id), shared, or none. */
async function deviceTokens(o: LoadtestOptions): Promise<(i: number) => string | undefined> {
  const auth = o.auth;
  switch (auth.t) {
    case "none":
      return () => undefined;
    case "token":
      return () => auth.token;
    case "jwt-secret": {
      // Minted before the ramp, so signing does not compete with connecting for the CPU.
      const minted = await Promise.all(
        Array.from({ length: o.devices }, (_, i) => mintToken({ secret: auth.secret, deviceId: deviceIdOf(o.devicePrefix, i), ttl: "1d" })),
      );
      return (i) => minted[i];
    }
  }
}

/** One device's churn: connect, hello, hold a random while, close; again until `endMs`. */
async function churn(device: FleetDevice, endMs: number, o: LoadtestOptions): Promise<void> {
  while (performance.now() < endMs) {
    const ok = await device.open();
    const holdMs = o.churnHoldMinMs + Math.random() * (o.churnHoldMaxMs - o.churnHoldMinMs);
    // A failed connect waits too, so a refusing gateway is not hammered in a tight loop.
    await sleepUntil(Math.min(endMs, performance.now() + holdMs));
    if (performance.now() >= endMs) return;
    if (ok) await device.close();
  }
}

/** Waits for `work`, but at most `ms`. */
async function withDeadline(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: Timer | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  try {
    await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves at `atMs` (performance.now() time): the run's own schedule, not synchronisation. */
function sleepUntil(atMs: number): Promise<void> {
  const ms = atMs - performance.now();
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The report of a run: one process's, or the workers' merged. */
export function buildReport(
  o: LoadtestOptions,
  stats: FleetStats,
  run: { startedAt: Date; elapsedMs: number; held: number; packets: readonly Uint8Array[] },
): LoadtestReport {
  const isStream = o.scenario === "stream";
  // Stream: whatever was not echoed by the end of the drain is lost (in-order gaps seen
  // live are a subset). Conversation: counted per answer as it ended or was given up.
  const lost = isStream ? stats.framesSent - stats.framesReceived : stats.framesLost;
  const latency = {
    connect: stats.connect.summary(),
    hello: stats.hello.summary(),
    roundTrip: stats.roundTrip.summary(),
    firstAnswer: stats.firstAnswer.summary(),
    speechRecognized: stats.speechRecognized.summary(),
    jitter: stats.jitter.summary(),
    sendLag: stats.sendLag.summary(),
  };
  const warnings: string[] = [];
  const lagP99 = latency.sendLag.p99Ms;
  if (lagP99 !== null && lagP99 > SEND_LAG_WARN_MS) {
    warnings.push(
      `the load generator sent frames late (p99 ${lagP99} ms behind schedule): it is saturated, so latencies include its own delays; spread it with --workers, or use fewer devices`,
    );
  }
  if (stats.framesUnexpected > 0) {
    warnings.push(`${stats.framesUnexpected} frames arrived that match nothing sent (duplicated, reordered or later than 10 s)`);
  }
  const waves: ChurnWave[] | null =
    o.scenario === "churn"
      ? stats.waves.map((w, i) => ({
          wave: i + 1,
          attempts: w.attempts,
          failed: w.failed,
          connect: w.connect.summary(),
          hello: w.hello.summary(),
        }))
      : null;
  const slo = o.sloP99Ms === undefined ? null : sloVerdict(o.sloP99Ms, stats, lost);
  return {
    scenario: o.scenario,
    url: o.url,
    transport: o.transport,
    protocolVersion: o.protocolVersion,
    devices: o.devices,
    workers: o.workers,
    rampS: o.rampMs / 1000,
    durationS: o.durationMs / 1000,
    frameMs: o.frameMs,
    frameBytes: Math.round(run.packets.reduce((sum, p) => sum + p.length, 0) / Math.max(1, run.packets.length)),
    startedAt: run.startedAt.toISOString(),
    elapsedS: Math.round(run.elapsedMs) / 1000,
    connections: {
      attempts: stats.attempts,
      connected: stats.connectedDevices,
      failed: stats.failed,
      held: run.held,
      reconnections: stats.reconnections,
      unexpectedCloses: stats.unexpectedCloses,
    },
    frames: { sent: stats.framesSent, received: stats.framesReceived, lost, unexpected: stats.framesUnexpected },
    conversation:
      o.scenario === "conversation"
        ? {
            utterances: stats.utterances,
            answers: stats.answers,
            answersTimedOut: stats.answersTimedOut,
            devicesAnswered: stats.devicesAnswered,
          }
        : null,
    latency,
    waves,
    errors: Object.fromEntries([...stats.errors].sort((a, b) => a[0].localeCompare(b[0]))),
    slo,
    sloBreached: slo?.breached ?? false,
    warnings,
  };
}

function sloVerdict(p99Ms: number, stats: FleetStats, lost: number): SloVerdict {
  const metric = stats.headline;
  const observed = stats.headlineHistogram().summary().p99Ms;
  const reasons: string[] = [];
  if (observed === null) reasons.push(`no ${metric} latency was measured`);
  else if (observed > p99Ms) reasons.push(`p99 ${observed} ms > ${p99Ms} ms`);
  if (lost > 0) reasons.push(`${lost} frames lost`);
  return { p99Ms, metric, observedP99Ms: observed, breached: reasons.length > 0, reasons };
}
