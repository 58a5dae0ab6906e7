#!/usr/bin/env bun
/**
 * xiaozhi-im: the composition root and CLI (`serve`, `ai`, `token`). Nothing imports this
 * file; it wires config, logger, upstream, the embedded AI service and the HTTP server, and
 * owns signals.
 */
import path from "node:path";
import { parseArgs } from "node:util";
import { createOpenAiAnswerer } from "./ai/openai-answerer";
import type { OpusFrameDurationMs, OpusSampleRateHz } from "./ai/opus-tone";
import { ConversationMemory } from "./ai/voice/conversation-memory";
import { openAiSpeechToText, openAiTextToSpeech } from "./ai/voice/speech-stages";
import { type AiServerOptions, startAiServer } from "./ai/start-ai-server";
import { mintToken } from "./auth/mint-token";
import { createVerifierFromConfig } from "./auth/verifier-from-config";
import { type Config, configSchema, DEFAULT_JWT_SECRET, type HostPort } from "./config/config-schema";
import { configHelp, loadConfig, settingsFile } from "./config/load-config";
import { describeError, isGatewayError } from "./errors";
import { createFanout } from "./fanout/create-fanout";
import { HubLink, processHubPort } from "./fanout/hub-link";
import { WorkerHub } from "./fanout/worker-hub";
import { startGatewayServer } from "./http/gateway-server";
import { createVoiceMetricsRoute } from "./http/metrics-route";
import { handshakeFromConfig } from "./http/handshake-guard";
import { perAddressLimits } from "./http/per-address-limits";
import { TrustedProxies } from "./http/trusted-proxies";
import { portInUse } from "./port-check";
import { defaultMemoryBudgetBytes, MemoryBudget } from "./memory-budget";
import { createOtaRoute, type OtaRoute } from "./http/ota-route";
import { createLogDestination, type LogDestination } from "./log-destination";
import { createLogger, type Logger, type LogLevel } from "./log";
import { Metrics, VoiceTurnMetrics } from "./metrics";
import { runLoadtestWorkerShare, runLoadtestWorkers, WORKER_FLAG } from "./loadtest/loadtest-workers";
import { formatReport, LOADTEST_USAGE, parseLoadtestArgs, runLoadtest } from "./loadtest/run-loadtest";
import { inboundLimitsOf } from "./session/inbound-limiter";
import { type MqttUdpTransport, startMqttUdpTransport } from "./session/mqtt-udp/mqtt-udp-transport";
import { createUpstream } from "./upstream/create-upstream";
import { superviseWorkers, WorkerEnv } from "./workers/worker-supervisor";

const USAGE = `Usage: xiaozhi-im <command> [flags]

Commands:
  serve   the gateway (default); with AI_SERVICE_GRPC_ADDR=embedded (the default) the
          reference AI service runs in-process on loopback over real gRPC
  ai      the reference AI service alone (gRPC over h2c on AI_SERVER_PORT, default 50051)
  token   mint a token signed with JWT_SECRET:
          --device-id <mac>  a device token: that device's socket and camera only
          --scope api        an operator token: the HTTP API (--devices a,b limits it)
          --sub <user>  --ttl <30d | 12h | seconds>
  healthcheck  exit 0 when the gateway on IM_SERVER_PORT answers /alive (for containers)
  loadtest  a device fleet speaking the real protocol against a gateway
          (\`xiaozhi-im loadtest --help\`)

Flags: --config <settings.yaml>  --help
`;

const booleanFlags = new Set(Object.values(configSchema).flatMap((s) => (typeof s.default === "boolean" && "flag" in s && s.flag ? [s.flag] : [])));

/** `--debug` alone means `--debug=true`. */
function normaliseArgv(argv: readonly string[]): string[] {
  return argv.map((a, i) => {
    const name = a.startsWith("--") && !a.includes("=") ? a.slice(2) : undefined;
    if (name === undefined || !booleanFlags.has(name)) return a;
    const next = argv[i + 1];
    return next === undefined || next.startsWith("--") ? `${a}=true` : a;
  });
}

function parseCli(argv: readonly string[]) {
  const options: Record<string, { type: "string" | "boolean" }> = { config: { type: "string" }, help: { type: "boolean" } };
  for (const spec of Object.values(configSchema)) if ("flag" in spec && spec.flag) options[spec.flag] = { type: "string" };
  for (const f of ["device-id", "sub", "ttl", "scope", "devices"]) options[f] = { type: "string" };
  const { values, positionals } = parseArgs({ args: normaliseArgv(argv), options, allowPositionals: true, strict: true });
  return { values: values as Record<string, string | boolean | undefined>, command: positionals[0] ?? "serve" };
}

function logLevel(config: Config): LogLevel {
  if (config.logLevel !== "auto") return config.logLevel;
  return config.debug ? "debug" : "info";
}

/** How long closing the upstream and the embedded AI may take after the drain. */
const SHUTDOWN_GRACE_MS = 5000;

/** Set in a worker of `serve --workers N`: its number (1..N) and N. */
interface WorkerRole {
  readonly index: number;
  readonly count: number;
}

function workerRole(): WorkerRole | undefined {
  const index = Number(process.env[WorkerEnv.index] ?? "");
  const count = Number(process.env[WorkerEnv.count] ?? "");
  return Number.isInteger(index) && index >= 1 && Number.isInteger(count) && count >= index ? { index, count } : undefined;
}

/**
 * A worker's settings: the ports the supervisor reserved (shared), a UDP port of its own
 * (each device is told its worker's), a name per worker, and its share of the box's budgets.
 */
function workerConfig(config: Config, role: WorkerRole): Config {
  const port = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
  return {
    ...config,
    port: port(WorkerEnv.port, config.port),
    mqttPort: port(WorkerEnv.mqttPort, config.mqttPort),
    mqttTlsPort: port(WorkerEnv.mqttTlsPort, config.mqttTlsPort),
    udpPort: config.udpPort === 0 ? 0 : config.udpPort + role.index - 1,
    instanceId: config.instanceId === "" ? "" : `${config.instanceId}-w${role.index}`,
    maxConnections: Math.ceil(config.maxConnections / role.count),
  };
}

async function serve(config: Config, logger: Logger, logs: LogDestination): Promise<void> {
  const role = workerRole();
  if (role !== undefined) return serveWorker(workerConfig(config, role), logger.child({ worker: role.index }), logs, role);
  await checkPortsFree(config);
  if (config.workers > 1) {
    return superviseWorkers({
      router: new WorkerHub(),
      count: config.workers,
      command: [...selfCommand(), ...process.argv.slice(2)],
      env: process.env,
      host: config.host,
      port: config.port,
      ...(config.mqttEnabled
        ? { mqtt: { host: config.mqttHost, port: config.mqttPort, ...(config.mqttTlsCert === "" ? {} : { tlsPort: config.mqttTlsPort }) } }
        : {}),
      drainMs: (config.shutdownTimeoutSeconds * 1000 + SHUTDOWN_GRACE_MS) * 1.5,
      logger,
    });
  }
  return serveWorker(config, logger, logs, undefined);
}

/** Refuses to start (exit 2) when a port is taken: with SO_REUSEPORT a second gateway could
 * otherwise share it silently. */
async function checkPortsFree(config: Config): Promise<void> {
  for (const [port, host, how] of [
    [config.port, config.host, "--port or IM_SERVER_PORT"],
    [config.metricsPort, config.metricsHost, "IM_METRICS_PORT"],
    [config.mqttEnabled ? config.mqttPort : 0, config.mqttHost, "IM_MQTT_PORT"],
    [config.mqttEnabled && config.mqttTlsCert !== "" ? config.mqttTlsPort : 0, config.mqttHost, "IM_MQTT_TLS_PORT"],
  ] as const) {
    if (port > 0 && (await portInUse(host, port))) {
      process.stderr.write(`xiaozhi-im: port ${port} is in use (another xiaozhi-im?): use ${how}\n`);
      process.exit(2);
    }
  }
}

/** One gateway process: the only one, or worker `role.index` of `serve --workers N`. */
async function serveWorker(config: Config, logger: Logger, logs: LogDestination, role: WorkerRole | undefined): Promise<void> {
  const hub = role === undefined ? undefined : new HubLink(processHubPort(), { worker: role.index, logger: logger.child({ component: "workers" }) });
  if (config.deviceTransport === "mqtt" && !config.mqttEnabled) {
    process.stderr.write("xiaozhi-im: IM_DEVICE_TRANSPORT=mqtt needs the MQTT + UDP transport: set IM_MQTT_ENABLED=true\n");
    process.exit(2);
  }
  // Started after the gateway; the OTA answers read its port when they are made.
  let mqttUdp: MqttUdpTransport | undefined;
  let ota: OtaRoute;
  try {
    ota = createOtaRoute({
      jwtSecret: config.jwtSecret,
      publicWsUrl: config.publicWsUrl || undefined,
      policy: config.otaPolicy,
      allowedDevices: config.otaAllowedDevices,
      provisionSecret: config.otaSecret || undefined,
      tokenTtlSeconds: config.otaTokenTtlSeconds,
      protocolVersion: config.otaProtocolVersion,
      issuesPerMinute: config.otaIssuesPerMinute,
      debug: config.debug,
      logger: logger.child({ component: "ota" }),
      ...(config.mqttEnabled
        ? {
            mqtt: {
              transport: config.deviceTransport,
              devices: new Set(
                config.mqttDevices
                  .split(",")
                  .map((d) => d.trim().toLowerCase().replaceAll("-", ":"))
                  .filter(Boolean),
              ),
              publicHost: config.publicHost,
              port: () => mqttUdp?.mqttPort ?? config.mqttPort,
              keepaliveSeconds: config.mqttKeepaliveSeconds,
            },
          }
        : {}),
    });
  } catch (err) {
    process.stderr.write(`xiaozhi-im: ${describeError(err)}\n`);
    process.exit(2);
  }
  if (config.debug) {
    logger.warn("debug mode: any browser Origin may open the device WebSocket (IM_ALLOWED_ORIGINS is ignored) and per-address limits are off; never expose it");
  }
  // Only when the secret is what verifies tokens: with a public key or a JWKS it is unused.
  if (config.jwtSecret === DEFAULT_JWT_SECRET && config.jwtPublicKey === "" && config.jwtJwksUrl === "") {
    logger.warn("JWT_SECRET is the built-in development secret: anyone can mint tokens for this gateway. Set JWT_SECRET before exposing it.");
  }
  let trustedProxies: TrustedProxies;
  try {
    trustedProxies = TrustedProxies.parse(config.trustedProxies);
  } catch (err) {
    process.stderr.write(`xiaozhi-im: ${describeError(err)}\n`);
    process.exit(2);
  }
  const metrics = new Metrics();
  // The box's budget, shared out among the workers.
  const budget = new MemoryBudget((config.memoryBudgetMb > 0 ? config.memoryBudgetMb * 1024 * 1024 : defaultMemoryBudgetBytes()) / (role?.count ?? 1));
  const inbound = inboundLimitsOf(config);
  const perAddress = perAddressLimits({
    maxConnectionsPerIp: config.maxConnectionsPerIp,
    maxConnectsPerIpPerSecond: config.maxConnectsPerIpPerSecond,
    maxBytesPerIpPerSecond: config.maxBytesPerIpPerSecond,
    inbound,
    budgetBytes: budget.limitBytes,
    debug: config.debug,
  });
  if (perAddress.warning !== undefined) logger.warn(perAddress.warning);
  let targets: readonly HostPort[];
  let ai: Awaited<ReturnType<typeof startAiServer>> | undefined;
  if (config.aiServiceGrpcAddr.t === "embedded") {
    const aiLogger = logger.child({ component: "ai" });
    ai = await startAiServer({
      host: "127.0.0.1",
      port: 0,
      logger: aiLogger,
      relayBatchWindowMs: config.aiRelayBatchWindowMs,
      ...aiProviders(config, aiLogger, metrics.voice),
    });
    // In-process, its utterance buffers are this process's memory too.
    const embedded = ai;
    budget.addSource(() => embedded.bufferedBytes());
    targets = [{ host: "127.0.0.1", port: ai.port }];
    logger.info({ aiPort: ai.port }, "embedded reference AI service started");
  } else {
    targets = config.aiServiceGrpcAddr.targets;
  }
  const upstream = createUpstream({
    budget,
    targets,
    transport: config.aiServiceTransport,
    // Relay: few busy streams batch more frames per write. Converse holds a stream per
    // device: it keeps the ten connections it always had.
    maxConnections: config.grpcMaxConnections || Math.max(config.aiServiceTransport === "relay" ? 2 : 10, targets.length),
    heartbeatMs: config.grpcHeartbeatSeconds * 1000,
    reconnectBaseMs: config.grpcReconnectSeconds * 1000,
    reconnectMaxMs: config.grpcReconnectMaxSeconds * 1000,
    bufferMs: config.upstreamBufferMs,
    batchWindowMs: config.relayBatchWindowMs,
    logger,
    metrics,
  });
  // Connections counted for the cluster's instance list; the gateway exists by the time it asks.
  let connections = () => 0;
  const fanout = createFanout({
    redisUrl: config.redisUrl || undefined,
    instanceId: config.instanceId || undefined,
    connections: () => connections(),
    logger: logger.child({ component: "fanout" }),
    ...(hub === undefined ? {} : { hub }),
  });
  // Only while the built-in secret is what verifies: with a public key or JWKS a minted
  // token would be refused.
  const devTokensOn = config.jwtSecret === DEFAULT_JWT_SECRET && config.jwtPublicKey === "" && config.jwtJwksUrl === "";
  const verifier = createVerifierFromConfig(config, logger);
  const gateway = startGatewayServer({
    host: config.host,
    port: config.port,
    reusePort: role !== undefined,
    upstream,
    verifier,
    handshake: handshakeFromConfig(config, perAddress),
    authRequired: config.authRequired,
    helloTimeoutMs: config.helloTimeoutSeconds * 1000,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    maxFrameBytes: config.maxFrameBytes,
    maxJsonBytes: config.maxJsonBytes,
    maxImageBytes: config.maxImageBytes,
    fanout,
    ota,
    devTokens: { enabled: devTokensOn, secret: config.jwtSecret },
    serverAudio: {
      format: config.audioFormat,
      sampleRate: config.audioSampleRate,
      channels: config.audioChannels,
      frameDurationMs: config.audioFrameDurationMs,
    },
    maxConnections: config.maxConnections,
    maxConnectsPerSecond: config.maxConnectsPerSecond,
    maxFramesPerSecond: config.maxFramesPerSecond,
    maxBytesPerSecond: config.maxBytesPerSecond,
    inboundBurstSeconds: config.inboundBurstSeconds,
    slowConsumerBytes: config.slowConsumerBytes,
    slowConsumerMs: config.slowConsumerSeconds * 1000,
    logger,
    metrics,
    trustedProxies,
    budget,
    apiLimits: {
      perTokenPerSecond: config.apiRequestsPerSecond,
      perIpPerSecond: config.apiRequestsPerIpPerSecond,
      broadcastIntervalMs: config.broadcastIntervalMs,
    },
    metricsAccess: {
      token: config.metricsToken,
      listener: config.metricsPort > 0 ? { host: config.metricsHost, port: config.metricsPort } : undefined,
    },
  });
  connections = () => gateway.registry.all().size;
  if (config.mqttEnabled) {
    try {
      const tls =
        config.mqttTlsCert === ""
          ? undefined
          : { port: config.mqttTlsPort, cert: await Bun.file(config.mqttTlsCert).text(), key: await Bun.file(config.mqttTlsKey).text() };
      mqttUdp = await startMqttUdpTransport({
        ...(tls === undefined ? {} : { tls }),
        sessions: gateway.sessionContext,
        verifier,
        signatureKey: config.mqttSignatureKey,
        mqttHost: config.mqttHost,
        mqttPort: config.mqttPort,
        reusePort: role !== undefined,
        udpHost: config.mqttHost,
        udpPort: config.udpPort,
        udpReceiveBufferBytes: config.udpReceiveBufferBytes,
        publicHost: config.publicHost,
        // A JSON message as large as the WebSocket allows, plus the packet's own header.
        maxPacketBytes: config.maxJsonBytes + 4096,
        admit: (ip) => gateway.admitConnection(ip),
        logger,
      });
    } catch (err) {
      process.stderr.write(
        `xiaozhi-im: the MQTT + UDP transport cannot start: ${describeError(err)} (IM_MQTT_PORT ${config.mqttPort}, IM_UDP_PORT ${config.udpPort})\n`,
      );
      process.exit(2);
    }
  }
  logger.info(
    {
      port: gateway.port,
      instanceId: fanout.instanceId,
      redis: config.redisUrl !== "",
      url: `${gateway.url.replace("http", "ws")}/ws`,
      ai: config.aiServiceGrpcAddr.t,
      transport: config.aiServiceTransport,
      memoryBudgetMiB: Math.round(budget.limitBytes / 1024 / 1024),
      maxConnectionsPerIp: perAddress.maxConnectionsPerIp,
      ...(mqttUdp === undefined ? {} : { mqttPort: mqttUdp.mqttPort, mqttTlsPort: mqttUdp.mqttTlsPort, udpPort: mqttUdp.udpPort }),
      testPage: `${gateway.url}/test-websocket.html`,
      tokens: devTokensOn
        ? "the test page gets a development token by itself; for a device: xiaozhi-im token --device-id <mac>"
        : "xiaozhi-im token --device-id <mac> (signed with JWT_SECRET)",
    },
    "gateway listening",
  );
  hub?.send({ t: "ready", instanceId: fanout.instanceId, port: gateway.port });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      // A worker may get SIGTERM twice (from its supervisor, and from a service manager that
      // signals the whole group): only an operator's second signal means "now".
      if (role !== undefined) return;
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    const timeoutMs = config.shutdownTimeoutSeconds * 1000;
    logger.info({ signal, timeoutMs }, "shutting down: draining devices");
    // A close that hangs (an AI service that never answers) must not keep the process up.
    setTimeout(() => {
      logger.error({ timeoutMs: timeoutMs + SHUTDOWN_GRACE_MS }, "shutdown did not finish in time: exiting");
      process.exit(1);
    }, timeoutMs + SHUTDOWN_GRACE_MS).unref();
    try {
      await gateway.drain(timeoutMs);
      mqttUdp?.stop();
      await gateway.stop();
      // Sessions have sent their End by now; this ends the streams cleanly.
      await upstream.close();
      await fanout.close();
      await ai?.close();
    } catch (err) {
      logger.error({ err: describeError(err) }, "shutdown failed");
      process.exit(1);
    }
    logger.info("shut down");
    await logs.close();
    process.exit(0);
  };
  // A worker's Ctrl-C reaches its supervisor too (one process group), which sends SIGTERM.
  process.on("SIGINT", () => (role === undefined ? void stop("SIGINT") : undefined));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  // The supervisor is gone (killed): nobody would restart or stop this worker.
  hub?.onDisconnect(() => void stop("supervisor gone"));
}

/**
 * The reference AI service's providers from the settings: the LLM (with each device's
 * remembered conversation), speech recognition and speech synthesis. A stage is on when its
 * own or the shared base URL or key is set (a local server needs no key); without any, the
 * service answers offline and says so once.
 */
function aiProviders(config: Config, logger: Logger, metrics?: VoiceTurnMetrics): Partial<Pick<AiServerOptions, "answerer" | "voice">> {
  const shared = { baseUrl: config.aiBaseUrl, apiKey: config.aiApiKey };
  const stage = (baseUrl: string, apiKey: string) => ({ baseUrl: baseUrl || shared.baseUrl, apiKey: apiKey || shared.apiKey });
  const llm = stage(config.aiLlmBaseUrl, config.aiLlmApiKey);
  const asr = stage(config.aiAsrBaseUrl, config.aiAsrApiKey);
  const tts = stage(config.aiTtsBaseUrl, config.aiTtsApiKey);
  const on = (e: { baseUrl: string; apiKey: string }) => e.baseUrl !== "" || e.apiKey !== "";
  const where = (e: { baseUrl: string }) => e.baseUrl || "(OpenAI)";
  if (!on(llm) && !on(asr) && !on(tts)) {
    logger.info("no AI_BASE_URL or AI_API_KEY: the reference AI service answers offline (it plays speech back, and says typed text back)");
    return {};
  }
  logger.info(
    {
      llm: on(llm) ? `${config.aiModel} at ${where(llm)}` : "offline",
      asr: on(asr) ? `${config.aiAsrModel} at ${where(asr)}` : "offline",
      tts: on(tts) ? `${config.aiTtsModel} (${config.aiTtsVoice}) at ${where(tts)}` : "offline",
    },
    "AI providers",
  );
  const idleTimeoutMs = config.aiTimeoutSeconds * 1000;
  return {
    answerer: on(llm)
      ? createOpenAiAnswerer({
          ...llm,
          baseUrl: llm.baseUrl || undefined,
          model: config.aiModel,
          idleTimeoutMs,
          systemPrompt: config.aiSystemPrompt,
          memory: new ConversationMemory({
            maxTurns: config.aiMemoryTurns,
            maxTokens: config.aiMemoryTokens,
            idleMs: config.aiMemoryIdleMinutes * 60_000,
          }),
          logger,
        })
      : undefined,
    voice: {
      ...(on(asr) ? { stt: openAiSpeechToText({ ...asr, model: config.aiAsrModel, language: config.aiAsrLanguage }) } : {}),
      ...(on(tts) ? { tts: openAiTextToSpeech({ ...tts, model: config.aiTtsModel, voice: config.aiTtsVoice, sampleRateHz: config.aiTtsSampleRate }) } : {}),
      endOfSpeech: { thresholdDbfs: config.aiVadThresholdDbfs, minSpeechMs: config.aiVadMinSpeechMs, hangoverMs: config.aiVadHangoverMs },
      toolTimeoutMs: config.aiToolTimeoutSeconds * 1000,
      idleTimeoutMs,
      ...(metrics === undefined ? {} : { metrics }),
      sampleRateHz: opusRate(config.audioSampleRate),
      frameDurationMs: opusFrameMs(config.audioFrameDurationMs),
    },
  };
}

/** The announced rate as libopus takes it (the nearest it has). */
function opusRate(hz: number): OpusSampleRateHz {
  const rates = [8000, 12000, 16000, 24000, 48000] as const;
  return rates.reduce((best, r) => (Math.abs(r - hz) < Math.abs(best - hz) ? r : best));
}

function opusFrameMs(ms: number): OpusFrameDurationMs {
  const durations = [10, 20, 40, 60] as const;
  return durations.reduce((best, d) => (Math.abs(d - ms) < Math.abs(best - ms) ? d : best));
}

async function runAi(config: Config, logger: Logger): Promise<void> {
  const voice = new VoiceTurnMetrics();
  const ai = await startAiServer({
    host: config.aiServerHost,
    port: config.aiServerPort,
    logger,
    relayBatchWindowMs: config.aiRelayBatchWindowMs,
    ...aiProviders(config, logger, voice),
  });
  logger.info({ port: ai.port, url: ai.url }, "reference AI service listening");
  // Its gRPC port speaks HTTP/2 only: Prometheus scrapes the turn timings on a port of its own.
  const metricsRoute = createVoiceMetricsRoute(voice);
  let metrics: ReturnType<typeof Bun.serve> | undefined;
  if (config.aiMetricsPort !== 0) {
    try {
      metrics = Bun.serve({
        hostname: config.aiServerHost,
        port: config.aiMetricsPort,
        fetch: (req) => (new URL(req.url).pathname === "/metrics" ? metricsRoute() : new Response("only /metrics is served here", { status: 404 })),
      });
      logger.info({ port: metrics.port }, "reference AI service metrics on /metrics");
    } catch (err) {
      // The AI service itself is up: its metrics are not worth refusing to serve devices.
      logger.warn({ port: config.aiMetricsPort, err: describeError(err) }, "reference AI service metrics not served: AI_METRICS_PORT unavailable");
    }
  }
  const stop = async () => {
    void metrics?.stop(true);
    await ai.close();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop());
  process.on("SIGTERM", () => void stop());
}

/** How to start this program again: the compiled binary alone, or Bun with this script. */
function selfCommand(): string[] {
  const script = process.argv[1];
  return script === undefined || script.startsWith("/$bunfs/") ? [process.execPath] : [process.execPath, script];
}

/** `loadtest` has its own flags; devices get tokens minted with JWT_SECRET unless told. */
async function loadtest(argv: readonly string[]): Promise<void> {
  if (argv[0] === WORKER_FLAG) return runLoadtestWorkerShare();
  let options: ReturnType<typeof parseLoadtestArgs>;
  try {
    options = parseLoadtestArgs([...argv]);
  } catch (err) {
    process.stderr.write(`xiaozhi-im loadtest: ${describeError(err)}\n\n${LOADTEST_USAGE}\n`);
    process.exit(2);
  }
  if (options.help) {
    process.stdout.write(`${LOADTEST_USAGE}\n`);
    return;
  }
  if (options.auth.t === "none") {
    options = { ...options, auth: { t: "jwt-secret", secret: process.env.JWT_SECRET || DEFAULT_JWT_SECRET } };
  }
  const devSecret = options.auth.t === "jwt-secret" && options.auth.secret === DEFAULT_JWT_SECRET;
  if (devSecret) {
    process.stderr.write(
      "xiaozhi-im loadtest: signing tokens with the built-in development secret: only a --debug gateway accepts them (--jwt-secret or JWT_SECRET for another)\n",
    );
  }
  const io = {
    // Progress goes to stderr so that --json output on stdout stays clean.
    out: (s: string) => void process.stderr.write(s),
    isTty: process.stderr.isTTY === true && !options.json,
  };
  const report = options.workers > 1 ? await runLoadtestWorkers(options, selfCommand(), io) : await runLoadtest(options, io);
  process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatReport(report)}\n`);
  if (report.connections.connected === 0 && report.connections.attempts > 0) {
    const refusedAuth = Object.keys(report.errors).some((e) => e === "http 401" || e === "http 403");
    const hint = refusedAuth
      ? `the gateway refused the tokens: pass its secret with --jwt-secret (or JWT_SECRET)${devSecret ? "; these were signed with the built-in development secret" : ""}`
      : "is the gateway running at --url, and does it accept this address (429: raise its per-address limits)?";
    process.stderr.write(`xiaozhi-im loadtest: no device connected: ${hint}\n`);
    process.exit(1);
  }
  process.exit(report.sloBreached ? 1 : 0);
}

async function main(): Promise<void> {
  if (process.argv[2] === "loadtest") return loadtest(process.argv.slice(3));
  let cli: ReturnType<typeof parseCli>;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`xiaozhi-im: ${describeError(err)}\n\n${USAGE}`);
    process.exit(2);
  }
  const { values, command } = cli;
  if (values.help || command === "help") {
    process.stdout.write(`${USAGE}\n${configHelp()}\n`);
    return;
  }
  let config: Config;
  const yamlPath = typeof values.config === "string" ? values.config : process.env.XIAOZHI_CONFIG || undefined;
  try {
    config = loadConfig({ env: process.env, flags: values, yamlPath });
  } catch (err) {
    process.stderr.write(`xiaozhi-im: ${isGatewayError(err) ? err.message : describeError(err)}\n`);
    process.exit(2);
  }
  const logs = createLogDestination(config.logDir || undefined, { retentionDays: config.logRetentionDays });
  const logger = createLogger(logLevel(config), "xiaozhi-im", logs);
  if (command === "serve" || command === "ai") {
    const file = settingsFile({ yamlPath });
    logger.info({ settings: file === undefined ? "none (defaults, environment and flags)" : path.resolve(file) }, "settings loaded");
  }
  switch (command) {
    case "serve":
      return serve(config, logger, logs);
    case "ai":
      return runAi(config, logger.child({ component: "ai" }));
    case "token": {
      const ttlRaw = typeof values.ttl === "string" ? values.ttl : "30d";
      const ttl = /^\d+$/.test(ttlRaw) ? Number(ttlRaw) : ttlRaw;
      const deviceId = typeof values["device-id"] === "string" ? values["device-id"] : undefined;
      const subject = typeof values.sub === "string" ? values.sub : undefined;
      const claims: Record<string, unknown> = {};
      if (typeof values.scope === "string") claims.scope = values.scope;
      if (typeof values.devices === "string")
        claims.devices = values.devices
          .split(",")
          .map((d) => d.trim().toLowerCase())
          .filter(Boolean);
      if (claims.devices !== undefined && claims.scope === undefined) {
        process.stderr.write("xiaozhi-im token: --devices limits an operator token: use it with --scope api\n");
        process.exit(2);
      }
      if (config.jwtSecret === DEFAULT_JWT_SECRET) {
        process.stderr.write(
          "xiaozhi-im token: signed with the built-in development secret: only a --debug gateway accepts it; set JWT_SECRET to the gateway's\n",
        );
      }
      try {
        process.stdout.write(`${await mintToken({ secret: config.jwtSecret, deviceId, subject, ttl, claims })}\n`);
      } catch (err) {
        process.stderr.write(`xiaozhi-im token: ${describeError(err)} (ttl is seconds or a span like 30d, 12h)\n`);
        process.exit(2);
      }
      return;
    }
    case "healthcheck": {
      // For container HEALTHCHECKs: the runtime image has no curl, the binary checks itself.
      const res = await fetch(`http://127.0.0.1:${config.port}/alive`, { signal: AbortSignal.timeout(3000) }).catch(() => undefined);
      process.exit(res?.ok ? 0 : 1);
      return;
    }
    default:
      process.stderr.write(`xiaozhi-im: unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
      process.exit(2);
  }
}

await main();
