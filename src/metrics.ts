/**
 * Process counters, cheap enough for the per-frame path (plain number fields, no labels
 * allocated per increment). Prometheus exposition is built from these on scrape.
 */

/** Why a frame or message was dropped instead of forwarded. Stable names: they are metric
 * labels and log fields. */
export type DropReason =
  | "before-hello"
  | "frame-short"
  | "frame-size-mismatch"
  | "upstream-backlog"
  | "upstream-closed"
  | "upstream-bad-event"
  | "device-send-failed"
  | "device-closed"
  /** Audio for a device whose socket is under backpressure (it is not reading fast enough). */
  | "device-backpressure"
  /** Audio from a device while the gateway is over its memory budget (IM_MEMORY_BUDGET_MB). */
  | "memory-budget"
  /** MQTT + UDP: audio for a device whose UDP address is not known yet (it has sent none). */
  | "udp-no-peer"
  /** MQTT + UDP: a datagram of a known session refused (replayed or late sequence). */
  | "udp-stale"
  /** MQTT + UDP: a datagram for a session from another address than its MQTT connection's. */
  | "udp-foreign-address";

/** Why a device's WebSocket upgrade was refused before any work. Stable metric labels. */
export type UpgradeRefusal = "max-connections" | "connect-rate" | "draining" | "memory-budget";

/**
 * A fixed-bucket latency histogram (seconds), Prometheus-style: observe() is a few
 * comparisons and increments, no allocation, so it can sit on a per-batch path.
 */
export class LatencyBuckets {
  /** Upper bounds (seconds), ascending; +Inf is implicit. */
  readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(seconds: number): void {
    let i = 0;
    while (i < this.bounds.length && seconds > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

/** What the MQTT + UDP transport reports, read at scrape time (set when it runs). */
export interface MqttUdpMetrics {
  /** MQTT connections open now. */
  readonly connections: () => number;
  /** MQTT connections refused, by reason (admission, CONNACK refusals). */
  readonly refused: () => Readonly<Record<string, number>>;
  /** MQTT packets or connections dropped, by reason. */
  readonly dropped: () => Readonly<Record<string, number>>;
  /** UDP datagrams dropped before reaching a session, by reason. */
  readonly udpDropped: () => Readonly<Record<string, number>>;
}

/** Buckets of the voice pipeline's stage timings, seconds: provider calls take 0.1 to a few s. */
const VOICE_BOUNDS = [0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

/**
 * Per-turn timings of the reference AI service's voice pipeline, each from its own start:
 * speech recognition (the request), the LLM's first token (from the question), the speech
 * endpoint's first byte (per sentence), and the first answer frame sent (from the end of the
 * device's speech, or from a typed question): the time to first audio, less the network.
 */
export class VoiceTurnMetrics {
  readonly asrSeconds = new LatencyBuckets(VOICE_BOUNDS);
  readonly llmFirstTokenSeconds = new LatencyBuckets(VOICE_BOUNDS);
  readonly ttsFirstByteSeconds = new LatencyBuckets(VOICE_BOUNDS);
  readonly firstAudioSeconds = new LatencyBuckets(VOICE_BOUNDS);
}

export class Metrics {
  /** The MQTT + UDP transport, when it runs. */
  mqttUdp: MqttUdpMetrics | undefined;
  /** The embedded reference AI service's voice pipeline (zero when it has none). */
  readonly voice = new VoiceTurnMetrics();
  framesIn = 0;
  bytesIn = 0;
  framesOut = 0;
  bytesOut = 0;
  jsonIn = 0;
  jsonOut = 0;
  connectionsOpened = 0;
  connectionsClosed = 0;
  upstreamStreamsOpened = 0;
  upstreamStreamFailures = 0;
  upstreamReconnects = 0;
  /** Relay streams the AI service ended with OK (rotated); their sessions moved silently. */
  upstreamStreamRotations = 0;
  /** The last upstream heartbeat round trip (ms), any stream. */
  upstreamHeartbeatRttMs = 0;
  /** RelayRequests sent, and the events they carried (their ratio is the batching). */
  relayBatches = 0;
  relayEvents = 0;
  readonly dropped: Record<DropReason, number> = {
    "before-hello": 0,
    "frame-short": 0,
    "frame-size-mismatch": 0,
    "upstream-backlog": 0,
    "upstream-closed": 0,
    "upstream-bad-event": 0,
    "device-send-failed": 0,
    "udp-no-peer": 0,
    "udp-stale": 0,
    "udp-foreign-address": 0,
    "device-closed": 0,
    "device-backpressure": 0,
    "memory-budget": 0,
  };
  /** Upgrades refused with 503 before any work, by reason. */
  /** Device handshakes refused, by reason: the admission reasons above and the handshake's
   * own (`per_ip_rate`, `per_ip_limit`, `per_device_limit`, token reasons, ...), a closed set
   * of fixed strings. */
  readonly upgradesRefused: Record<string, number> = { "max-connections": 0, "connect-rate": 0, draining: 0 };
  /** Sessions closed (1013) to bring the gateway back under its memory budget. */
  budgetShedCloses = 0;
  /** Bytes the gateway holds for devices (the memory budget's total at the last sample). */
  budgetHeldBytes = 0;
  /** HTTP API calls refused by the per-address or per-token rate limit (429). */
  apiRateLimited = 0;

  refuseUpgrade(reason: string): void {
    this.upgradesRefused[reason] = (this.upgradesRefused[reason] ?? 0) + 1;
  }

  /** Devices closed for not reading (4002). */
  slowConsumerCloses = 0;
  /** How long device events waited in the gateway before their Relay batch was written: the
   * gateway's own share of a frame's upstream latency (one observation per batch). */
  readonly relayBatchDelaySeconds = new LatencyBuckets([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
  /** HTTP requests by `<route> <status>` (routes from a fixed set: no path cardinality). */
  readonly httpRequests = new Map<string, number>();

  http(route: string, status: number): void {
    const key = `${route} ${status}`;
    this.httpRequests.set(key, (this.httpRequests.get(key) ?? 0) + 1);
  }
  /** Devices closed for sending faster than the inbound limits (4003). */
  floodCloses = 0;

  drop(reason: DropReason, n = 1): void {
    this.dropped[reason] += n;
  }
}
