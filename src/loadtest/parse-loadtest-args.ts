import { parseArgs } from "node:util";
import { ErrorCode, GatewayError } from "../errors";
import { randomDevicePrefix } from "./device-ids";
import { LOADTEST_DEFAULTS, type LoadtestAuth, type LoadtestOptions, type LoadtestTransport, SCENARIOS, type Scenario } from "./loadtest-options";
import { OPUS_FRAME_DURATIONS_MS, OPUS_MAX_PACKET_BYTES, type OpusFrameDurationMs } from "./opus-test-packets";

const D = LOADTEST_DEFAULTS;

/** Help text of `xiaozhi-im loadtest`. */
export const LOADTEST_USAGE = `Usage: xiaozhi-im loadtest [flags]

Simulates a fleet of xiaozhi devices against one gateway, speaking the firmware's protocol
(headers, hello, listen, binary Opus frames), and reports latency percentiles and losses.

Scenarios (--scenario):
  stream        (default) listen in realtime mode; every device sends one frame per
                --frame-ms, devices spread evenly over the frame period; the AI echoes each
                frame: round trip per frame, frames lost
  conversation  listen (manual), --utterance-frames frames, listen stop, await the answer
                (stt, tts start, audio, tts stop), repeat: first-answer latency, jitter
  idle          connect, hello, hold until the end: connections held
  churn         connect, hello, hold ${D.churnHoldMinMs / 1000}-${D.churnHoldMaxMs / 1000} s, close, reconnect, until the end:
                connect and hello latency per wave

Flags:
  --url URL               gateway device endpoint (default ${D.url}; with --transport
                          mqtt-udp the MQTT listener, default mqtt://127.0.0.1:1883)
  --transport T           websocket (default) or mqtt-udp: the firmware's MQTT control
                          channel and AES-128-CTR UDP audio (the gateway's IM_MQTT_ENABLED)
  --devices N             simulated devices (default ${D.devices})
  --ramp S                seconds over which first connects are spread evenly (default ${D.rampMs / 1000})
  --duration S            seconds of the measured phase after the ramp (default ${D.durationMs / 1000})
  --protocol-version V    binary protocol 1, 2 or 3 (default ${D.protocolVersion})
  --scenario NAME         conversation | stream | idle | churn (default ${D.scenario})
  --jwt-secret SECRET     mint one HS256 token per device (device_id claim)
  --token TOKEN           one token for every device (instead of --jwt-secret)
  --frame-ms MS           audio frame duration: ${OPUS_FRAME_DURATIONS_MS.join(", ")} (default ${D.frameMs})
  --frame-bytes N         target Opus packet size, 8-${OPUS_MAX_PACKET_BYTES} (default ${D.frameBytes})
  --utterance-frames N    frames per utterance, conversation (default ${D.utteranceFrames})
  --device-prefix P       Device-Ids are P:xx:yy:zz (default: a random MAC prefix per run)
  --churn-hold-ms MIN-MAX churn: how long each connection is held (default ${D.churnHoldMinMs}-${D.churnHoldMaxMs})
  --drain S               seconds to await frames and answers still in flight (default ${D.drainMs / 1000})
  --concurrency N         WebSocket handshakes in flight at most (default ${D.concurrency})
  --slo-p99-ms X          exit 1 when the p99 round trip (conversation: first answer; idle,
                          churn: hello) exceeds X ms, or any frame was lost
  --workers N             spread the fleet over N processes (auto: one per core) and merge
                          their figures: one process saturates before a gateway does
  --json                  print the report as JSON
  --help                  this text
`;

/** Flags that take a value, as parseArgs wants them. */
const VALUE_FLAGS = [
  "url",
  "transport",
  "devices",
  "ramp",
  "duration",
  "protocol-version",
  "scenario",
  "jwt-secret",
  "token",
  "frame-ms",
  "frame-bytes",
  "utterance-frames",
  "device-prefix",
  "churn-hold-ms",
  "drain",
  "concurrency",
  "slo-p99-ms",
  "workers",
] as const;

const MAX_DEVICES = 100_000;

function invalid(message: string): GatewayError {
  return new GatewayError(ErrorCode.ConfigInvalid, message);
}

/**
 * `--devices -1` would make parseArgs call the value ambiguous (it looks like a flag), hiding
 * the real problem; joined as `--devices=-1` it reaches validation and gets an exact message.
 */
function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const flag = a.startsWith("--") ? a.slice(2) : "";
    if ((VALUE_FLAGS as readonly string[]).includes(flag) && next !== undefined && /^-[\d.]/.test(next)) {
      out.push(`${a}=${next}`);
      i++;
    } else {
      out.push(a);
    }
  }
  return out;
}

function number(flag: string, raw: string | undefined, fallback: number, o: { min: number; max: number; integer?: boolean; minExclusive?: boolean }): number {
  if (raw === undefined) return fallback;
  const what = `${o.integer ? "an integer" : "a number"} ${o.minExclusive ? `above ${o.min}` : `from ${o.min}`} to ${o.max}`;
  const n = raw.trim() === "" ? Number.NaN : Number(raw);
  const ok = Number.isFinite(n) && (o.minExclusive ? n > o.min : n >= o.min) && n <= o.max && (!o.integer || Number.isInteger(n));
  if (!ok) throw invalid(`--${flag} must be ${what}, got ${JSON.stringify(raw)}`);
  return n;
}

function oneOf<T extends string | number>(flag: string, raw: string | undefined, allowed: readonly T[], fallback: T): T {
  if (raw === undefined) return fallback;
  const found = allowed.find((a) => String(a) === raw.trim());
  if (found === undefined) throw invalid(`--${flag} must be one of ${allowed.join(", ")}, got ${JSON.stringify(raw)}`);
  return found;
}

/** The default MQTT listener of `--transport mqtt-udp`. */
const DEFAULT_MQTT_URL = "mqtt://127.0.0.1:1883";

function parseUrl(raw: string | undefined, transport: LoadtestTransport): string {
  const mqtt = transport === "mqtt-udp";
  const value = raw ?? (mqtt ? DEFAULT_MQTT_URL : D.url);
  const want = mqtt ? "an mqtt:// or mqtts:// URL (the MQTT listener)" : "a ws:// or wss:// URL";
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid(`--url must be ${want}, got ${JSON.stringify(value)}`);
  }
  const ok = mqtt ? url.protocol === "mqtt:" || url.protocol === "mqtts:" : url.protocol === "ws:" || url.protocol === "wss:";
  if (!ok) throw invalid(`--url must be ${want}, got ${JSON.stringify(value)}`);
  return url.toString();
}

function parseAuth(secret: string | undefined, token: string | undefined): LoadtestAuth {
  // Never echo either value: they are credentials.
  if (secret !== undefined && token !== undefined) throw invalid("give --jwt-secret or --token, not both");
  if (secret !== undefined) {
    if (secret === "") throw invalid("--jwt-secret must not be empty");
    return { t: "jwt-secret", secret };
  }
  if (token !== undefined) {
    if (token.trim() === "") throw invalid("--token must not be empty");
    return { t: "token", token: token.trim() };
  }
  return { t: "none" };
}

function parsePrefix(raw: string | undefined): string {
  if (raw === undefined) return randomDevicePrefix();
  if (!/^[0-9A-Za-z][0-9A-Za-z:._-]{0,47}$/.test(raw)) {
    throw invalid(`--device-prefix must be 1-48 letters, digits, ':', '.', '_' or '-' (e.g. 02:aa:bb), got ${JSON.stringify(raw)}`);
  }
  return raw.toLowerCase().replace(/:$/, "");
}

/** `--workers N` or `auto` (one per core, the gateway's share of the machine being the operator's to leave). */
function parseWorkers(raw: string | undefined): number {
  if (raw === "auto") return Math.max(1, navigator.hardwareConcurrency);
  return number("workers", raw, 1, { min: 1, max: 256, integer: true });
}

function parseHold(raw: string | undefined): { min: number; max: number } {
  if (raw === undefined) return { min: D.churnHoldMinMs, max: D.churnHoldMaxMs };
  const m = /^\s*(\d+)\s*-\s*(\d+)\s*$/.exec(raw);
  const min = Number(m?.[1]);
  const max = Number(m?.[2]);
  if (!m || min > max || max > 3_600_000) {
    throw invalid(`--churn-hold-ms must be MIN-MAX in whole ms, MIN <= MAX <= 3600000 (e.g. 500-2000), got ${JSON.stringify(raw)}`);
  }
  return { min, max };
}

/**
 * Parses the flags of `xiaozhi-im loadtest` (the arguments after the command) strictly:
 * an unknown flag, a missing value or a value out of range throws a GatewayError
 * (ERR_CONFIG_INVALID) whose message names the flag, what is allowed and what was given.
 */
export function parseLoadtestArgs(argv: string[]): LoadtestOptions {
  const options = Object.fromEntries(VALUE_FLAGS.map((f) => [f, { type: "string" as const }]));
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: joinNegativeValues(argv),
      options: { ...options, json: { type: "boolean" }, help: { type: "boolean" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
    throw invalid(`${message} (see xiaozhi-im loadtest --help)`);
  }
  const str = (f: (typeof VALUE_FLAGS)[number]): string | undefined => {
    const v = values[f];
    return typeof v === "string" ? v : undefined;
  };
  const hold = parseHold(str("churn-hold-ms"));
  const slo = str("slo-p99-ms");
  const transport = oneOf<LoadtestTransport>("transport", str("transport"), ["websocket", "mqtt-udp"], D.transport);
  return {
    transport,
    url: parseUrl(str("url"), transport),
    devices: number("devices", str("devices"), D.devices, { min: 1, max: MAX_DEVICES, integer: true }),
    rampMs: Math.round(number("ramp", str("ramp"), D.rampMs / 1000, { min: 0, max: 3600 }) * 1000),
    durationMs: Math.max(1, Math.round(number("duration", str("duration"), D.durationMs / 1000, { min: 0, max: 86_400, minExclusive: true }) * 1000)),
    protocolVersion: oneOf("protocol-version", str("protocol-version"), [1, 2, 3] as const, D.protocolVersion),
    scenario: oneOf<Scenario>("scenario", str("scenario"), SCENARIOS, D.scenario),
    auth: parseAuth(str("jwt-secret"), str("token")),
    frameMs: oneOf<OpusFrameDurationMs>("frame-ms", str("frame-ms"), OPUS_FRAME_DURATIONS_MS, D.frameMs),
    frameBytes: number("frame-bytes", str("frame-bytes"), D.frameBytes, { min: 8, max: OPUS_MAX_PACKET_BYTES, integer: true }),
    // The reference AI ends an utterance at 500 frames by itself.
    utteranceFrames: number("utterance-frames", str("utterance-frames"), D.utteranceFrames, { min: 1, max: 500, integer: true }),
    devicePrefix: parsePrefix(str("device-prefix")),
    json: values.json === true,
    sloP99Ms: slo === undefined ? undefined : number("slo-p99-ms", slo, 0, { min: 0, max: 3_600_000, minExclusive: true }),
    concurrency: number("concurrency", str("concurrency"), D.concurrency, { min: 1, max: MAX_DEVICES, integer: true }),
    churnHoldMinMs: hold.min,
    churnHoldMaxMs: hold.max,
    drainMs: Math.round(number("drain", str("drain"), D.drainMs / 1000, { min: 0, max: 600 }) * 1000),
    connectTimeoutMs: D.connectTimeoutMs,
    helloTimeoutMs: D.helloTimeoutMs,
    help: values.help === true,
    workers: parseWorkers(str("workers")),
  };
}
