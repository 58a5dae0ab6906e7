import { availableParallelism } from "node:os";
import { ErrorCode, GatewayError } from "../errors";
/**
 * Every configuration key: its default, where it comes from and what it means. One schema
 * drives loading (defaults < settings.yaml < env < flags), validation and `--help`.
 *
 * Sources per key: the env names (the original service's names first), the YAML key (the
 * first env name in lower case, e.g. `im_server_port`) and the CLI flag.
 */

/** One key's description. `parse` gets a YAML value or an env/flag string and returns the
 * value, or throws a plain string saying what is allowed. */
export interface KeySpec<T> {
  readonly env: readonly string[];
  readonly flag?: string;
  readonly default: T;
  readonly doc: string;
  readonly allowed: string;
  /** True for keys whose values must never be echoed (errors, --help, logs). */
  readonly secret?: boolean;
  readonly parse: (raw: unknown) => T;
}

/** A value outside what a key allows: `load-config` turns it into the one-line error naming
 * the key and the value. */
function fail(allowed: string): never {
  throw new GatewayError(ErrorCode.ConfigInvalid, allowed);
}

function intKey(env: readonly string[], def: number, min: number, max: number, doc: string, flag?: string): KeySpec<number> {
  const allowed = `an integer from ${min} to ${max}`;
  return {
    env,
    flag,
    default: def,
    doc,
    allowed,
    parse(raw) {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
      if (!Number.isInteger(n) || n < min || n > max) fail(allowed);
      return n;
    },
  };
}

/** A duration in (possibly fractional) seconds: tests use small values, fleets whole ones. */
function secondsKey(env: readonly string[], def: number, max: number, doc: string, flag?: string): KeySpec<number> {
  const allowed = `a number of seconds greater than 0 and at most ${max}`;
  return {
    env,
    flag,
    default: def,
    doc,
    allowed,
    parse(raw) {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : Number.NaN;
      if (!Number.isFinite(n) || n <= 0 || n > max) fail(allowed);
      return n;
    },
  };
}

function boolKey(env: readonly string[], def: boolean, doc: string, flag?: string): KeySpec<boolean> {
  const allowed = "true or false (also 1/0, yes/no, on/off)";
  return {
    env,
    flag,
    default: def,
    doc,
    allowed,
    parse(raw) {
      if (typeof raw === "boolean") return raw;
      const s = String(raw).trim().toLowerCase();
      if (["true", "1", "yes", "on"].includes(s)) return true;
      if (["false", "0", "no", "off"].includes(s)) return false;
      return fail(allowed);
    },
  };
}

function stringKey(env: readonly string[], def: string, doc: string, opts: { flag?: string; secret?: boolean; nonEmpty?: boolean } = {}): KeySpec<string> {
  const allowed = opts.nonEmpty ? "a non-empty string" : "a string";
  return {
    env,
    flag: opts.flag,
    secret: opts.secret,
    default: def,
    doc,
    allowed,
    parse(raw) {
      if (typeof raw !== "string" && typeof raw !== "number") fail(allowed);
      const s = String(raw);
      if (opts.nonEmpty && s.trim() === "") fail(allowed);
      return s;
    },
  };
}

function enumKey<const V extends string>(env: readonly string[], values: readonly V[], def: V, doc: string, flag?: string): KeySpec<V> {
  const allowed = `one of ${values.join(", ")}`;
  return {
    env,
    flag,
    default: def,
    doc,
    allowed,
    parse(raw) {
      const s = String(raw).trim().toLowerCase();
      const v = values.find((x) => x === s);
      if (v === undefined) fail(allowed);
      return v;
    },
  };
}

/** A host:port pair as the upstream pool dials it. */
/** `--workers`: a number of processes, or `auto` for one per core. */
const workersKey: KeySpec<number> = {
  env: ["IM_WORKERS"],
  flag: "workers",
  default: 1,
  doc: "Gateway processes sharing the port (SO_REUSEPORT), supervised: a dead one is restarted, SIGTERM drains all. They behave as one gateway (newest wins across them, broadcasts and pushes reach every one, one /metrics and /api/status); the memory budget and IM_MAX_CONNECTIONS are shared out among them. auto: one per core.",
  allowed: "an integer from 1 to 256, or auto (one per core)",
  parse(raw) {
    if (String(raw).trim().toLowerCase() === "auto") return availableParallelism();
    const n = typeof raw === "number" ? raw : typeof raw === "string" && /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN;
    if (!Number.isInteger(n) || n < 1 || n > 256) fail(this.allowed);
    return n;
  },
};

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `embedded`, or a comma-separated list of host:port (IPv6 in brackets). */
export type AiAddress = { readonly t: "embedded" } | { readonly t: "remote"; readonly targets: readonly HostPort[] };

function parseHostPort(s: string): HostPort | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65535) return undefined;
  return { host: m[1]!, port };
}

const aiAddressKey: KeySpec<AiAddress> = {
  env: ["AI_SERVICE_GRPC_ADDR"],
  flag: "ai-addr",
  default: { t: "embedded" },
  doc: "Where the AI service listens: `embedded` runs the reference AI service in-process on loopback over real gRPC; else host:port[,host:port] of external AI services (h2c).",
  allowed: "`embedded` or host:port[,host:port] with ports 1-65535",
  parse(raw) {
    const s = String(raw).trim();
    if (s.toLowerCase() === "embedded") return { t: "embedded" };
    const targets = s.split(",").map(parseHostPort);
    if (targets.length === 0 || targets.some((t) => t === undefined)) fail(aiAddressKey.allowed);
    return { t: "remote", targets: targets as HostPort[] };
  },
};

/** The built-in JWT secret: fine on a laptop, refused nowhere yet but warned about loudly. */
export const DEFAULT_JWT_SECRET = "xiaozhi-im-insecure-dev-secret-change-me";

export const configSchema = {
  port: intKey(["IM_SERVER_PORT", "PORT"], 8081, 0, 65535, "Port of the device WebSocket and HTTP API (0 picks a free one).", "port"),
  host: stringKey(["IM_SERVER_HOST"], "0.0.0.0", "Address the gateway listens on.", { flag: "host", nonEmpty: true }),
  workers: workersKey,
  debug: boolKey(["IM_SERVER_DEBUG"], false, "Debug mode: debug-level logs.", "debug"),
  logLevel: enumKey(
    ["LOG_LEVEL"],
    ["auto", "trace", "debug", "info", "warn", "error", "silent"] as const,
    "auto",
    "Log level; `auto` is debug with IM_SERVER_DEBUG, else info.",
    "log-level",
  ),
  aiServiceGrpcAddr: aiAddressKey,
  aiServiceTransport: enumKey(
    ["AI_SERVICE_TRANSPORT"],
    ["relay", "converse"] as const,
    "relay",
    "How sessions travel to the AI service: `relay` batches the events of many sessions onto a few long-lived streams (one per pooled connection); `converse` is one gRPC stream per device session.",
    "ai-transport",
  ),
  grpcMaxConnections: intKey(
    ["GRPC_MAX_CONNECTIONS"],
    0,
    0,
    1000,
    "HTTP/2 connections pooled to the AI service(s), spread over the listed addresses; Relay carries its sessions on one stream per connection. 0: with Relay two (fewer, busier streams batch more frames per write: at 1,000 devices 2 cost a third less CPU per frame than 10), with Converse ten; at least one per listed address.",
    "grpc-max-connections",
  ),
  grpcHeartbeatSeconds: secondsKey(["GRPC_HEARTBEAT_SECONDS"], 30, 3600, "Interval of upstream heartbeats (connection probes and HTTP/2 pings)."),
  grpcReconnectSeconds: secondsKey(
    ["GRPC_RECONNECT_SECONDS"],
    5,
    3600,
    "First delay before re-opening a failed upstream stream; doubles (with jitter) up to GRPC_RECONNECT_MAX_SECONDS.",
  ),
  grpcReconnectMaxSeconds: secondsKey(["GRPC_RECONNECT_MAX_SECONDS"], 60, 3600, "Cap of the reconnect backoff."),
  relayBatchWindowMs: intKey(
    ["IM_RELAY_BATCH_WINDOW_MS"],
    1,
    0,
    50,
    "Relay: a busy stream to the AI service writes at most once per this many ms, carrying every frame queued meanwhile (a quiet one writes at once). Fewer, larger writes cost far less CPU; a frame waits at most this long. 0: one write per event-loop turn.",
  ),
  aiRelayBatchWindowMs: intKey(
    ["AI_RELAY_BATCH_WINDOW_MS"],
    1,
    0,
    50,
    "The reference AI service's side of IM_RELAY_BATCH_WINDOW_MS: how often a busy Relay stream writes its answers back.",
  ),
  upstreamBufferMs: intKey(
    ["IM_UPSTREAM_BUFFER_MS"],
    2000,
    0,
    60000,
    "Audio kept per session while its upstream stream is down or slow; older frames are dropped (counted).",
  ),
  jwtSecret: stringKey(["JWT_SECRET"], DEFAULT_JWT_SECRET, "HS256 secret that device tokens are signed with. Production MUST set its own.", {
    flag: "jwt-secret",
    secret: true,
    nonEmpty: true,
  }),
  authRequired: boolKey(
    ["IM_AUTH_REQUIRED"],
    true,
    "Require a valid token; when false a device without a token is admitted by Device-Id (a token that is present is still verified).",
    "auth-required",
  ),
  helloTimeoutSeconds: secondsKey(["IM_HELLO_TIMEOUT_SECONDS"], 10, 600, "A connection that sends no hello within this is closed (4001)."),
  idleTimeoutSeconds: intKey(
    ["IM_IDLE_TIMEOUT_SECONDS"],
    120,
    8,
    960,
    "A connection that sends nothing (not even a pong) for this long is closed (Bun idleTimeout; pings are sent in between).",
  ),
  maxFrameBytes: intKey(["IM_MAX_FRAME_BYTES"], 65536, 64, 16 * 1024 * 1024, "Largest binary (audio) message accepted; larger closes with 1009."),
  maxJsonBytes: intKey(
    ["IM_MAX_JSON_BYTES"],
    1024 * 1024,
    256,
    16 * 1024 * 1024,
    "Largest JSON text message accepted (images in JSON are base64); larger closes with 1009.",
  ),
  slowConsumerBytes: intKey(
    ["IM_SLOW_CONSUMER_BYTES"],
    256 * 1024,
    1024,
    64 * 1024 * 1024,
    "A device whose socket has more than this queued in the gateway is slow and is closed (4002); Bun itself buffers at most twice this per connection.",
  ),
  slowConsumerSeconds: secondsKey(
    ["IM_SLOW_CONSUMER_SECONDS"],
    5,
    600,
    "A device whose socket stays under backpressure with no write progress for this long is slow and is closed (4002); audio for it is dropped (counted) while under backpressure.",
  ),
  maxFramesPerSecond: intKey(
    ["IM_MAX_FRAMES_PER_SECOND"],
    200,
    1,
    1_000_000,
    "Messages (binary and text) a connection may send per second, sustained; a 60 ms stream is ~17/s. More closes it (4003).",
  ),
  maxBytesPerSecond: intKey(
    ["IM_MAX_BYTES_PER_SECOND"],
    64 * 1024,
    1024,
    1024 * 1024 * 1024,
    "Bytes a connection may send per second, sustained. More closes it (4003).",
  ),
  inboundBurstSeconds: secondsKey(
    ["IM_INBOUND_BURST_SECONDS"],
    5,
    600,
    "Burst allowance of the two limits above, in seconds of their rate (the byte burst is at least two of the largest messages allowed).",
  ),
  maxConnections: intKey(["IM_MAX_CONNECTIONS"], 20_000, 1, 10_000_000, "Device connections held at once; more upgrades are refused with 503 and Retry-After."),
  maxConnectsPerSecond: intKey(
    ["IM_MAX_CONNECTS_PER_SECOND"],
    2000,
    1,
    1_000_000,
    "New device connections accepted per second (burst: one second's worth), checked before any work; more are refused with 503 and Retry-After.",
  ),
  shutdownTimeoutSeconds: secondsKey(
    ["IM_SHUTDOWN_TIMEOUT_SECONDS"],
    10,
    3600,
    "On SIGTERM/SIGINT, how long answers being spoken may finish before every device is closed (1001).",
  ),
  audioFormat: enumKey(["IM_AUDIO_FORMAT"], ["opus", "pcm"] as const, "opus", "Format of the audio the server sends, announced in the server hello."),
  audioSampleRate: intKey(["IM_AUDIO_SAMPLE_RATE"], 24000, 8000, 48000, "Sample rate (Hz) announced in the server hello."),
  audioChannels: intKey(["IM_AUDIO_CHANNELS"], 1, 1, 2, "Channels announced in the server hello."),
  audioFrameDurationMs: intKey(["IM_AUDIO_FRAME_DURATION_MS"], 60, 10, 120, "Frame duration (ms) announced in the server hello."),
  aiServerHost: stringKey(["AI_SERVER_HOST"], "127.0.0.1", "`xiaozhi-im ai`: address the reference AI service listens on.", { nonEmpty: true }),
  aiServerPort: intKey(["AI_SERVER_PORT"], 50051, 0, 65535, "`xiaozhi-im ai`: port of the reference AI service."),
  aiMetricsPort: intKey(
    ["AI_METRICS_PORT"],
    50052,
    0,
    65535,
    "`xiaozhi-im ai`: port of its Prometheus `/metrics` (voice turn timings), on AI_SERVER_HOST; 0: none. (The embedded one's are in the gateway's /metrics.)",
  ),
  aiApiKey: stringKey(
    ["AI_API_KEY"],
    "",
    "API key of the OpenAI-compatible provider of the reference AI service, for all three stages (speech recognition, LLM, speech synthesis) unless a stage has its own. With neither a key nor a base URL the service answers offline (plays speech back, says typed text back).",
    {
      flag: "ai-api-key",
      secret: true,
    },
  ),
  aiBaseUrl: stringKey(
    ["AI_BASE_URL"],
    "",
    "Base URL of the OpenAI-compatible provider for all three stages unless a stage has its own (e.g. a local server's `http://host:port/v1`; no key needed); empty: OpenAI's.",
    {
      flag: "ai-base-url",
    },
  ),
  aiModel: stringKey(["AI_MODEL"], "gpt-4o-mini", "The LLM model; it must accept images for image questions, and function tools for device tools.", {
    flag: "ai-model",
    nonEmpty: true,
  }),
  aiTimeoutSeconds: secondsKey(["AI_TIMEOUT_SECONDS"], 30, 600, "Longest wait for the provider's first or next chunk before the answer becomes an apology."),
  aiLlmBaseUrl: stringKey(["AI_LLM_BASE_URL"], "", "Base URL of the LLM (chat completions) endpoint; empty: AI_BASE_URL. Ollama: `http://localhost:11434/v1`."),
  aiLlmApiKey: stringKey(["AI_LLM_API_KEY"], "", "API key of the LLM endpoint; empty: AI_API_KEY.", { secret: true }),
  aiAsrBaseUrl: stringKey(["AI_ASR_BASE_URL"], "", "Base URL of the speech recognition (audio transcriptions) endpoint; empty: AI_BASE_URL."),
  aiAsrApiKey: stringKey(["AI_ASR_API_KEY"], "", "API key of the speech recognition endpoint; empty: AI_API_KEY.", { secret: true }),
  aiAsrModel: stringKey(["AI_ASR_MODEL"], "whisper-1", "The speech recognition model.", { nonEmpty: true }),
  aiAsrLanguage: stringKey(["AI_ASR_LANGUAGE"], "", "The language spoken to the devices (ISO-639-1, e.g. `zh`); empty: the model detects it."),
  aiTtsBaseUrl: stringKey(["AI_TTS_BASE_URL"], "", "Base URL of the speech synthesis (audio speech) endpoint; empty: AI_BASE_URL."),
  aiTtsApiKey: stringKey(["AI_TTS_API_KEY"], "", "API key of the speech synthesis endpoint; empty: AI_API_KEY.", { secret: true }),
  aiTtsModel: stringKey(["AI_TTS_MODEL"], "tts-1", "The speech synthesis model.", { nonEmpty: true }),
  aiTtsVoice: stringKey(["AI_TTS_VOICE"], "alloy", "The voice of the speech synthesis.", { nonEmpty: true }),
  aiTtsSampleRate: intKey(
    ["AI_TTS_SAMPLE_RATE"],
    24000,
    8000,
    48000,
    "Sample rate (Hz) of the raw PCM the speech endpoint returns (`response_format: pcm`; OpenAI's is 24000); resampled to what devices are told.",
  ),
  aiSystemPrompt: stringKey(["AI_SYSTEM_PROMPT"], "", "The LLM's system prompt; empty: a short prompt for a voice assistant that answers briefly, aloud."),
  aiMemoryTurns: intKey(["AI_MEMORY_TURNS"], 10, 0, 1000, "Exchanges (question and answer) the LLM remembers per device; 0: none."),
  aiMemoryTokens: intKey(
    ["AI_MEMORY_TOKENS"],
    2000,
    0,
    1_000_000,
    "Bound of a device's remembered conversation, in tokens (estimated at 4 characters of English, 1 of Chinese, each).",
  ),
  aiMemoryIdleMinutes: intKey(["AI_MEMORY_IDLE_MINUTES"], 30, 1, 10_080, "A device's conversation is forgotten after this many minutes without a turn."),
  aiToolTimeoutSeconds: secondsKey(
    ["AI_TOOL_TIMEOUT_SECONDS"],
    10,
    120,
    "Longest wait for a device to answer an MCP tool call the LLM made; past it the LLM is told the call timed out.",
  ),
  aiVadThresholdDbfs: intKey(["AI_VAD_THRESHOLD_DBFS"], -45, -100, 0, "Auto listening: a frame louder than this (dBFS, decoded) is speech."),
  aiVadMinSpeechMs: intKey(
    ["AI_VAD_MIN_SPEECH_MS"],
    200,
    0,
    10_000,
    "Auto listening: speech shorter than this (ms) is a click, not the start of an utterance.",
  ),
  aiVadHangoverMs: intKey(["AI_VAD_HANGOVER_MS"], 700, 100, 10_000, "Auto listening: silence after speech (ms) that ends the utterance."),
  logDir: stringKey(["LOG_DIR"], "", "Also write logs to daily files LOG_DIR/YYYY-MM-DD.log; empty: stdout only.", { flag: "log-dir" }),
  logRetentionDays: intKey(
    ["IM_LOG_RETENTION_DAYS"],
    14,
    0,
    100_000,
    "Days the LOG_DIR daily files are kept (today's included); older ones are removed when a day's file is opened. 0: keep them all.",
  ),
  maxImageBytes: intKey(
    ["IM_MAX_IMAGE_BYTES"],
    5 * 1024 * 1024,
    1024,
    64 * 1024 * 1024,
    "Largest image accepted by /api/image, /api/vision and the text dialect.",
  ),
  publicWsUrl: stringKey(
    ["IM_PUBLIC_WS_URL"],
    "",
    "The device WebSocket URL handed out by /xiaozhi/ota/; empty: derived from the request (Host, X-Forwarded-Proto).",
  ),
  otaPolicy: enumKey(
    ["IM_OTA_POLICY"],
    ["debug-only", "open", "allowlist", "secret", "off"] as const,
    "debug-only",
    "Who gets a token from /xiaozhi/ota/: `debug-only` (any device, only with IM_SERVER_DEBUG), `open` (any device), `allowlist` (IM_OTA_ALLOWED_DEVICES), `secret` (callers presenting IM_OTA_SECRET), `off` (no token, websocket URL only).",
  ),
  otaAllowedDevices: stringKey(["IM_OTA_ALLOWED_DEVICES"], "", "Comma-separated Device-Ids (MACs) that IM_OTA_POLICY=allowlist provisions."),
  otaSecret: stringKey(["IM_OTA_SECRET"], "", "Shared provisioning secret for IM_OTA_POLICY=secret (header X-Provision-Secret).", { secret: true }),
  otaTokenTtlSeconds: intKey(["IM_OTA_TOKEN_TTL_SECONDS"], 30 * 24 * 3600, 60, 10 * 365 * 24 * 3600, "Lifetime of tokens handed out by /xiaozhi/ota/."),
  otaProtocolVersion: intKey(["IM_OTA_PROTOCOL_VERSION"], 1, 1, 3, "The binary protocol version /xiaozhi/ota/ tells devices to speak."),
  otaIssuesPerMinute: intKey(
    ["IM_OTA_ISSUES_PER_MINUTE"],
    60,
    1,
    100000,
    "Token issuances per minute per client address (burst: the same number); over it /xiaozhi/ota/ answers 429.",
  ),
  mqttEnabled: boolKey(
    ["IM_MQTT_ENABLED"],
    false,
    "Serve the firmware's MQTT + UDP transport too: an MQTT 3.1.1 listener on IM_MQTT_PORT for control and one UDP socket on IM_UDP_PORT for audio (AES-128-CTR).",
  ),
  mqttHost: stringKey(["IM_MQTT_HOST"], "0.0.0.0", "Address the MQTT listener and the UDP socket bind to.", { nonEmpty: true }),
  mqttPort: intKey(["IM_MQTT_PORT"], 1883, 0, 65535, "Port of the MQTT listener (0 picks a free one)."),
  mqttTlsPort: intKey(
    ["IM_MQTT_TLS_PORT"],
    8883,
    0,
    65535,
    "Port of the MQTT-over-TLS listener, served when IM_MQTT_TLS_CERT is set (a firmware endpoint without a port means 8883, TLS).",
  ),
  mqttTlsCert: stringKey(["IM_MQTT_TLS_CERT"], "", "PEM certificate chain file of the MQTT-over-TLS listener; empty: no TLS listener."),
  mqttTlsKey: stringKey(["IM_MQTT_TLS_KEY"], "", "PEM private key file of the MQTT-over-TLS listener."),
  udpPort: intKey(["IM_UDP_PORT"], 8884, 0, 65535, "Port of the UDP audio socket (0 picks a free one)."),
  udpReceiveBufferBytes: intKey(
    ["IM_UDP_RECEIVE_BUFFER_BYTES"],
    4 * 1024 * 1024,
    64 * 1024,
    1024 * 1024 * 1024,
    "Receive buffer of the UDP audio socket, where every device's audio waits while the gateway is busy; past it the kernel drops datagrams. Linux caps it at net.core.rmem_max (212,992 bytes unless raised): the gateway warns at start when it got less.",
  ),
  publicHost: stringKey(
    ["IM_PUBLIC_HOST"],
    "",
    "The host devices reach this gateway at: the MQTT endpoint /xiaozhi/ota/ hands out and the UDP server of each session's hello. Empty: the Host of the OTA request, and for UDP the address the device's MQTT connection came to.",
  ),
  deviceTransport: enumKey(
    ["IM_DEVICE_TRANSPORT"],
    ["websocket", "mqtt"] as const,
    "websocket",
    "What /xiaozhi/ota/ tells devices to use: `websocket`, or `mqtt` (an `mqtt` section; needs IM_MQTT_ENABLED). Devices listed in IM_MQTT_DEVICES get `mqtt` either way.",
  ),
  mqttDevices: stringKey(
    ["IM_MQTT_DEVICES"],
    "",
    "Comma-separated Device-Ids (MACs) that /xiaozhi/ota/ sends to MQTT + UDP whatever IM_DEVICE_TRANSPORT says.",
  ),
  mqttKeepaliveSeconds: intKey(
    ["IM_MQTT_KEEPALIVE_SECONDS"],
    240,
    10,
    3600,
    "The keepalive /xiaozhi/ota/ hands devices (the firmware's default is 240); the listener closes a connection silent for 1.5 times the one its CONNECT names.",
  ),
  mqttSignatureKey: stringKey(
    ["IM_MQTT_SIGNATURE_KEY"],
    "",
    "Also accept the MQTT password existing xiaozhi fleets carry: base64 HMAC-SHA256 of `client_id|username` under this key (the deployed gateways' mqtt_signature_key). Empty: only device tokens.",
    { secret: true },
  ),
  redisUrl: stringKey(
    ["REDIS_URL"],
    "",
    "Redis for running several gateways as one (fan-out, device directory, cluster status); empty: a single instance, all in-process.",
    {
      flag: "redis-url",
      secret: true,
    },
  ),
  instanceId: stringKey(["IM_INSTANCE_ID"], "", "This gateway's name in the cluster; empty: hostname plus a random suffix."),
  jwtPublicKey: stringKey(
    ["JWT_PUBLIC_KEY"],
    "",
    "Verify device tokens with this public key instead of JWT_SECRET: a PEM (SPKI or certificate), JWK or JWK Set file path (RS*, PS*, ES*, EdDSA).",
  ),
  jwtJwksUrl: stringKey(
    ["JWT_JWKS_URL"],
    "",
    "Verify device tokens with the keys at this JWKS URL (https; cached, refetched for unknown kids with a cooldown); fails closed when unreachable.",
  ),
  jwtAlgorithms: stringKey(
    ["JWT_ALGORITHMS"],
    "",
    "Comma-separated algorithms accepted; empty: HS256 for JWT_SECRET, else the key type's family. `none` is never accepted.",
  ),
  jwtIssuer: stringKey(["JWT_ISSUER"], "", "Required `iss` (comma-separated to allow several); empty: not checked."),
  jwtAudience: stringKey(["JWT_AUDIENCE"], "", "Required `aud` (comma-separated to allow several); empty: not checked."),
  jwtRequireExp: boolKey(
    ["JWT_REQUIRE_EXP"],
    true,
    "Refuse tokens without `exp`; turn off only for legacy fleets with eternal tokens (an `exp` that is present is always enforced).",
  ),
  jwtClockToleranceSeconds: intKey(["JWT_CLOCK_TOLERANCE_SECONDS"], 30, 0, 3600, "Allowed clock skew for exp, nbf and iat."),
  apiRequestsPerSecond: intKey(
    ["IM_API_REQUESTS_PER_SECOND"],
    20,
    1,
    1_000_000,
    "HTTP API calls (/api/*) per second per token (burst: twice that); more get 429 with Retry-After.",
  ),
  apiRequestsPerIpPerSecond: intKey(
    ["IM_API_REQUESTS_PER_IP_PER_SECOND"],
    50,
    1,
    1_000_000,
    "HTTP API calls (/api/*) per second per client address, whatever the token (burst: twice that); more get 429 with Retry-After.",
  ),
  broadcastIntervalMs: intKey(
    ["IM_BROADCAST_INTERVAL_MS"],
    1000,
    0,
    3_600_000,
    "At most one broadcast (/api/message or /api/image without device_id) per interval for the whole gateway: the same content again joins the broadcast under way, another content gets 429 with Retry-After. 0: no limit.",
  ),
  memoryBudgetMb: intKey(
    ["IM_MEMORY_BUDGET_MB"],
    0,
    0,
    1_048_576,
    "Bytes the gateway may hold for devices across all connections (audio queued for the AI service, answers waiting in device sockets, HTTP/2 write buffers, the embedded AI's utterances), in MiB; past it the largest holders are closed (1013), new devices get 503 and device audio is dropped (counted). 0: a sixty-fourth of the machine's memory, between 32 and 256 MiB.",
  ),
  trustedProxies: stringKey(
    ["IM_TRUSTED_PROXIES"],
    "",
    "Comma-separated CIDRs or addresses of reverse proxies whose X-Forwarded-For / X-Real-IP name the client, for every per-address limit and log line; empty: the peer's address is the client's.",
  ),
  metricsToken: stringKey(
    ["IM_METRICS_TOKEN"],
    "",
    "A static Bearer token that may scrape /metrics (Prometheus `authorization: {credentials: ...}`); an operator JWT (scope api) may too. Empty: only an operator JWT.",
    {
      secret: true,
    },
  ),
  metricsPort: intKey(
    ["IM_METRICS_PORT"],
    0,
    0,
    65535,
    "Also serve /metrics without a token on this port (0: no such listener), bound to IM_METRICS_HOST: for a scraper on a private network.",
  ),
  metricsHost: stringKey(["IM_METRICS_HOST"], "127.0.0.1", "Address of the IM_METRICS_PORT listener.", { nonEmpty: true }),
  allowedOrigins: stringKey(
    ["IM_ALLOWED_ORIGINS"],
    "",
    "Comma-separated browser origins allowed to open the WebSocket (exact match; the gateway's own origin always is). Requests without Origin (devices) are always allowed; others get 403.",
  ),
  maxConnectionsPerIp: intKey(
    ["IM_MAX_CONNECTIONS_PER_IP"],
    0,
    0,
    1_000_000,
    "Open device connections per client address; over it the upgrade is refused with 429. 0: the memory budget divided by one connection's inbound byte burst (128 with the defaults on 16 GiB or more), so one address cannot fill the budget within its limits. Raise it behind a NAT or proxy that hides many devices behind one address (with IM_MEMORY_BUDGET_MB). Not applied in debug mode.",
  ),
  maxBytesPerIpPerSecond: intKey(
    ["IM_MAX_BYTES_PER_IP_PER_SECOND"],
    1024 * 1024,
    0,
    1024 * 1024 * 1024,
    "Bytes all device connections of one client address may send per second together (burst: IM_INBOUND_BURST_SECONDS of it, at least two of the largest messages); the connection that goes over is closed (4003). A device streams a few KiB/s, so the default serves hundreds behind one NAT. 0: no such limit. Not applied in debug mode.",
  ),
  maxConnectsPerIpPerSecond: intKey(
    ["IM_MAX_CONNECTS_PER_IP_PER_SECOND"],
    50,
    1,
    1_000_000,
    "New device connections per second from one client address (burst: two seconds' worth); more get 429 before any other check, so one address cannot spend the gateway's IM_MAX_CONNECTS_PER_SECOND. Raise it for a load test from one machine. Not applied in debug mode.",
  ),
  maxConnectionsPerDevice: intKey(
    ["IM_MAX_CONNECTIONS_PER_DEVICE"],
    2,
    1,
    100,
    "Connections one Device-Id may hold at once (newest wins closes the older; this bounds a device reconnecting in a loop).",
  ),
} as const satisfies Record<string, KeySpec<unknown>>;

export type ConfigSchema = typeof configSchema;
export type ConfigKey = keyof ConfigSchema;

/** The loaded configuration: one typed value per key. */
export type Config = { readonly [K in ConfigKey]: ConfigSchema[K] extends KeySpec<infer T> ? T : never };
