import type { ProtocolVersion } from "../device/frame-codec";
import type { OpusFrameDurationMs } from "./opus-test-packets";

/** What each simulated device does once connected. */
export const SCENARIOS = ["conversation", "stream", "idle", "churn"] as const;
export type Scenario = (typeof SCENARIOS)[number];

/** How devices authenticate: one minted HS256 token each, one shared token, or none. */
export type LoadtestAuth = { readonly t: "none" } | { readonly t: "jwt-secret"; readonly secret: string } | { readonly t: "token"; readonly token: string };

/**
 * A load test, fully specified (parseLoadtestArgs fills the defaults once). Times are ms here;
 * the command line takes seconds where it says so.
 */
/** The device transport a load test drives. */
export type LoadtestTransport = "websocket" | "mqtt-udp";

export interface LoadtestOptions {
  /** The gateway's device endpoint, ws:// or wss://; the only address the run connects to. */
  readonly url: string;
  /** How the devices connect: the WebSocket, or the firmware's MQTT + UDP. */
  readonly transport: LoadtestTransport;
  /** Simulated devices. */
  readonly devices: number;
  /** Span over which first connects are spread evenly, ms (0: all at once, within `concurrency`). */
  readonly rampMs: number;
  /** The measured phase after the ramp, ms. */
  readonly durationMs: number;
  readonly protocolVersion: ProtocolVersion;
  readonly scenario: Scenario;
  readonly auth: LoadtestAuth;
  /** A device sends one audio frame per this many ms. */
  readonly frameMs: OpusFrameDurationMs;
  /** Wanted Opus packet size, bytes (the encoded packets' real size is in the report). */
  readonly frameBytes: number;
  /** Frames per utterance in the conversation scenario. */
  readonly utteranceFrames: number;
  /** Device-Ids are `<prefix>:xx:yy:zz` with the device's index in hex. */
  readonly devicePrefix: string;
  /** Print the report as JSON (for main; runLoadtest itself prints only progress). */
  readonly json: boolean;
  /** Service level: breached when the headline latency's p99 exceeds this (ms) or a frame was lost. */
  readonly sloP99Ms: number | undefined;
  /** Most WebSocket handshakes in flight at once. */
  readonly concurrency: number;
  /** Churn: each connection is held for a uniformly random time in [min, max] ms. */
  readonly churnHoldMinMs: number;
  readonly churnHoldMaxMs: number;
  /** After the measured phase, how long answers still in flight are awaited, ms. */
  readonly drainMs: number;
  /** Deadline of a WebSocket handshake, ms (the firmware's is 10 s). */
  readonly connectTimeoutMs: number;
  /** Deadline of the server hello after ours, ms (the firmware's is 10 s). */
  readonly helloTimeoutMs: number;
  /** `--help` was given: print LOADTEST_USAGE instead of running. */
  readonly help: boolean;
  /** Processes the fleet is spread over (`--workers`); 1: this one. */
  readonly workers: number;
}

/** Every default, in the units of {@link LoadtestOptions}. */
export const LOADTEST_DEFAULTS = {
  url: "ws://127.0.0.1:8081/ws",
  transport: "websocket",
  devices: 10,
  rampMs: 1000,
  durationMs: 10_000,
  protocolVersion: 3,
  scenario: "stream",
  frameMs: 60,
  frameBytes: 120,
  utteranceFrames: 25,
  concurrency: 200,
  churnHoldMinMs: 500,
  churnHoldMaxMs: 2000,
  drainMs: 2000,
  connectTimeoutMs: 10_000,
  helloTimeoutMs: 10_000,
} as const satisfies Partial<LoadtestOptions>;
