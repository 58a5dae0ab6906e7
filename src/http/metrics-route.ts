import { AggregatorRegistry, Counter, Gauge, type MetricObjectWithValues, type MetricValue, Registry } from "prom-client";
import type { Fanout } from "../fanout/create-fanout";
import type { DropReason, LatencyBuckets, Metrics, VoiceTurnMetrics } from "../metrics";
import type { DeviceSession } from "../session/device-session";
import type { SessionRegistry } from "../session/session-registry";
import type { Upstream } from "../upstream/upstream";

export interface MetricsRouteOptions {
  readonly metrics: Metrics;
  readonly registry: SessionRegistry<DeviceSession>;
  readonly upstream: Upstream;
  readonly fanout: Fanout;
}

/** A counter whose value is read from our plain counters at scrape time. */
function counterFrom(reg: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [reg],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A labelled counter read at scrape time. */
function labelledCounterFrom(reg: Registry, name: string, help: string, label: string, read: () => Iterable<[string, number]>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [reg],
    collect() {
      this.reset();
      for (const [value, n] of read()) this.inc({ [label]: value }, n);
    },
  });
}

function gaugeFrom(reg: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [reg],
    collect() {
      this.set(read());
    },
  });
}

/** Exposes one of our fixed-bucket histograms in Prometheus' histogram format. */
function histogramFrom(reg: Registry, name: string, help: string, h: LatencyBuckets): void {
  reg.registerMetric({
    name,
    help,
    type: "histogram",
    aggregator: "sum",
    get: async () => {
      let cumulative = 0;
      const values = h.bounds.map((le, i) => {
        cumulative += h.counts[i]!;
        return { value: cumulative, labels: { le }, metricName: `${name}_bucket` };
      });
      values.push({ value: h.count, labels: { le: "+Inf" as unknown as number }, metricName: `${name}_bucket` });
      return {
        name,
        help,
        type: "histogram",
        aggregator: "sum",
        values: [...values, { value: h.sum, labels: {}, metricName: `${name}_sum` }, { value: h.count, labels: {}, metricName: `${name}_count` }],
      };
    },
    reset: () => {},
  } as unknown as Parameters<Registry["registerMetric"]>[0]);
}

/** The reference AI's voice turn timings (the embedded one's in the gateway's /metrics;
 * `xiaozhi-im ai` serves them alone, see {@link createVoiceMetricsRoute}). */
function registerVoiceMetrics(reg: Registry, v: VoiceTurnMetrics): void {
  histogramFrom(reg, "xiaozhi_ai_asr_seconds", "Reference AI: speech recognition requests, per utterance.", v.asrSeconds);
  histogramFrom(reg, "xiaozhi_ai_llm_first_token_seconds", "Reference AI: question to the LLM's first token.", v.llmFirstTokenSeconds);
  histogramFrom(reg, "xiaozhi_ai_tts_first_byte_seconds", "Reference AI: speech synthesis request to its first byte, per sentence.", v.ttsFirstByteSeconds);
  histogramFrom(
    reg,
    "xiaozhi_ai_first_audio_seconds",
    "Reference AI: end of the device's speech (or a typed question) to the answer's first frame sent.",
    v.firstAudioSeconds,
  );
}

/** `GET /metrics` of the reference AI service run alone: its voice turn timings. */
export function createVoiceMetricsRoute(v: VoiceTurnMetrics): () => Promise<Response> {
  const reg = new Registry();
  registerVoiceMetrics(reg, v);
  return async () => new Response(await reg.metrics(), { headers: { "content-type": reg.contentType } });
}

/**
 * `GET /metrics` in the Prometheus text format (prom-client). The hot path only bumps plain
 * number fields of Metrics; everything here is read at scrape time, so a scrape costs a walk
 * over the sessions and nothing per frame.
 */
export function createMetricsRoute(o: MetricsRouteOptions): () => Promise<Response> {
  const reg = new Registry();
  const m = o.metrics;
  new Gauge({
    name: "xiaozhi_connections",
    help: "Open device connections, by protocol (v1/v2/v3 device sessions, text dialect, pending: no hello yet).",
    labelNames: ["protocol"],
    registers: [reg],
    collect() {
      const by: Record<string, number> = { v1: 0, v2: 0, v3: 0, text: 0, pending: 0 };
      for (const s of o.registry.all()) {
        const d = s.dialect;
        const key = d === "device" ? `v${s.protocolVersion}` : d === "text" ? "text" : "pending";
        by[key] = (by[key] ?? 0) + 1;
      }
      for (const [protocol, n] of Object.entries(by)) this.set({ protocol }, n);
    },
  });
  gaugeFrom(reg, "xiaozhi_mqtt_connections", "MQTT connections open (the MQTT + UDP transport).", () => m.mqttUdp?.connections() ?? 0);
  labelledCounterFrom(reg, "xiaozhi_mqtt_refused_total", "MQTT connections refused, by reason.", "reason", () => Object.entries(m.mqttUdp?.refused() ?? {}));
  labelledCounterFrom(reg, "xiaozhi_mqtt_dropped_total", "MQTT packets or connections dropped, by reason.", "reason", () =>
    Object.entries(m.mqttUdp?.dropped() ?? {}),
  );
  labelledCounterFrom(
    reg,
    "xiaozhi_udp_dropped_total",
    "UDP audio datagrams lost, by reason: refused before reaching a session, not sent, or dropped by the kernel (receive-buffer-full: raise IM_UDP_RECEIVE_BUFFER_BYTES).",
    "reason",
    () => Object.entries(m.mqttUdp?.udpDropped() ?? {}),
  );
  gaugeFrom(reg, "xiaozhi_sessions", "Device sessions in progress (hello done).", () => {
    let n = 0;
    for (const s of o.registry.all()) if (s.isActive) n++;
    return n;
  });
  counterFrom(reg, "xiaozhi_connections_opened_total", "Device connections accepted.", () => m.connectionsOpened);
  counterFrom(reg, "xiaozhi_frames_in_total", "Audio frames received from devices.", () => m.framesIn);
  counterFrom(reg, "xiaozhi_frames_out_total", "Audio frames sent to devices.", () => m.framesOut);
  counterFrom(reg, "xiaozhi_bytes_in_total", "Audio payload bytes received from devices.", () => m.bytesIn);
  counterFrom(reg, "xiaozhi_bytes_out_total", "Audio payload bytes sent to devices.", () => m.bytesOut);
  counterFrom(reg, "xiaozhi_json_in_total", "JSON messages received from devices.", () => m.jsonIn);
  counterFrom(reg, "xiaozhi_json_out_total", "JSON messages sent to devices.", () => m.jsonOut);
  labelledCounterFrom(
    reg,
    "xiaozhi_frames_dropped_total",
    "Frames and messages dropped instead of forwarded, by reason.",
    "reason",
    () => Object.entries(m.dropped) as [DropReason, number][],
  );
  labelledCounterFrom(reg, "xiaozhi_upgrades_refused_total", "WebSocket upgrades refused before any work, by reason.", "reason", () =>
    Object.entries(m.upgradesRefused),
  );
  counterFrom(reg, "xiaozhi_budget_shed_closes_total", "Devices closed (1013) to bring the gateway under its memory budget.", () => m.budgetShedCloses);
  gaugeFrom(
    reg,
    "xiaozhi_budget_held_bytes",
    "Bytes the gateway holds for devices (queued for the AI, buffered towards devices and the AI).",
    () => m.budgetHeldBytes,
  );
  counterFrom(reg, "xiaozhi_api_rate_limited_total", "HTTP API calls refused with 429 by the per-address or per-token limit.", () => m.apiRateLimited);
  counterFrom(reg, "xiaozhi_slow_consumer_closes_total", "Devices closed for not reading (4002).", () => m.slowConsumerCloses);
  counterFrom(reg, "xiaozhi_flood_closes_total", "Devices closed for sending too fast (4003).", () => m.floodCloses);
  counterFrom(reg, "xiaozhi_upstream_streams_opened_total", "gRPC streams opened to the AI service.", () => m.upstreamStreamsOpened);
  counterFrom(reg, "xiaozhi_upstream_stream_failures_total", "gRPC streams to the AI service that failed.", () => m.upstreamStreamFailures);
  counterFrom(reg, "xiaozhi_upstream_reconnects_total", "Streams re-opened after a failure.", () => m.upstreamReconnects);
  counterFrom(
    reg,
    "xiaozhi_upstream_stream_rotations_total",
    "Relay streams the AI service ended with OK; their sessions moved without a device noticing.",
    () => m.upstreamStreamRotations,
  );
  gaugeFrom(reg, "xiaozhi_upstream_ready", "1 while an AI service connection is usable.", () => (o.upstream.ready() ? 1 : 0));
  gaugeFrom(reg, "xiaozhi_upstream_heartbeat_rtt_seconds", "The last upstream heartbeat round trip.", () => m.upstreamHeartbeatRttMs / 1000);
  counterFrom(reg, "xiaozhi_relay_batches_total", "Relay requests written (their events/batches ratio is the batching).", () => m.relayBatches);
  counterFrom(reg, "xiaozhi_relay_events_total", "Device events carried by Relay requests.", () => m.relayEvents);
  histogramFrom(
    reg,
    "xiaozhi_relay_batch_delay_seconds",
    "Time device events waited in the gateway before their Relay batch was written.",
    m.relayBatchDelaySeconds,
  );
  registerVoiceMetrics(reg, m.voice);
  labelledCounterFrom(reg, "xiaozhi_http_requests_total", "HTTP requests, by route and status.", "route_status", () => m.httpRequests.entries());
  new Gauge({
    name: "xiaozhi_redis_link",
    help: "The cross-instance link: 1 for the current state (local: no Redis configured).",
    labelNames: ["state"],
    registers: [reg],
    collect() {
      for (const state of ["local", "connecting", "ready", "down", "closed"]) this.set({ state }, o.fanout.stats.state === state ? 1 : 0);
    },
  });
  counterFrom(reg, "xiaozhi_redis_reconnects_total", "Reconnections to Redis.", () => o.fanout.stats.reconnects);
  counterFrom(reg, "xiaozhi_fanout_published_total", "Messages published on the fan-out.", () => o.fanout.stats.published);
  counterFrom(reg, "xiaozhi_fanout_publish_failures_total", "Publishes other instances did not get (Redis down).", () => o.fanout.stats.publishFailures);
  counterFrom(reg, "xiaozhi_fanout_received_total", "Messages received from other instances.", () => o.fanout.stats.received);
  counterFrom(reg, "xiaozhi_fanout_duplicates_total", "Duplicate deliveries detected and dropped.", () => o.fanout.stats.duplicates);
  const workers = o.fanout.workers;
  if (workers === undefined) return async () => new Response(await reg.metrics(), { headers: { "content-type": reg.contentType } });
  // One scrape covers every worker of the box, each sample labelled with its worker: the
  // labels keep them apart, so the aggregation's "sum" only concatenates.
  reg.setDefaultLabels({ worker: String(workers.worker) });
  workers.answer("metrics", () => reg.getMetricsAsJSON());
  return async () => {
    let text: string;
    try {
      const all = await workers.gather("metrics");
      text = await AggregatorRegistry.aggregate(
        all.flatMap((g) => (g.value === null ? [] : [g.value as MetricObjectWithValues<MetricValue<string>>[]])),
      ).metrics();
    } catch {
      // The supervisor cannot be asked (it is going away): this worker's own figures.
      text = await reg.metrics();
    }
    return new Response(text, { headers: { "content-type": reg.contentType } });
  };
}
