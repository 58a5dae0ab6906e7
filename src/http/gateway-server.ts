import type { Server } from "bun";
import type { TokenVerifier } from "../auth/token-verifier";
import type { AudioParams } from "../device/device-message";
import { describeError, ErrorCode } from "../errors";
import type { Fanout } from "../fanout/create-fanout";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import type { DeviceSession, SessionContext, WsData } from "../session/device-session";
import { inboundLimitsOf } from "../session/inbound-limiter";
import { LinkTopics } from "../session/link-topics";
import { SessionRegistry } from "../session/session-registry";
import { createWebSocketHandler } from "../session/websocket-handler";
import type { Upstream } from "../upstream/upstream";
import { AdmissionControl, type Refusal } from "./admission-control";
// Embedded at build time: the single binary carries the page.
import testPageText from "../web/test-websocket.html" with { type: "text" };
import { LogLimiter } from "../log-limiter";
import type { MemoryBudget } from "../memory-budget";
import { authenticateApiCall, bearerToken } from "./api-auth";
import { errorResponse } from "./error-response";
import { jsonResponse } from "./json-response";
import { timingSafeEqual } from "node:crypto";
import { createDevTokenRoute } from "./dev-token-route";
import { createImageRoute } from "./image-route";
import { ClusterLink } from "../cluster/cluster-link";
import { createDevicePushRoute, DEVICE_PUSH_PATH } from "./device-push-route";
import { createMetricsRoute } from "./metrics-route";
import { MessageDispatch } from "../cluster/message-dispatch";
import { createMessageRoute } from "./message-route";
import type { OtaRoute } from "./ota-route";
import { createVisionRoute } from "./vision-route";
import { clientKey, HandshakeGuard, type HandshakeOptions } from "./handshake-guard";
import { KeyedRateLimit } from "./keyed-rate-limit";
import { configSchema } from "../config/config-schema";
import { TrustedProxies } from "./trusted-proxies";
import { upgradeDevice } from "./upgrade-device";

export interface GatewayServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Share the port with the other workers of `serve --workers N` (SO_REUSEPORT). */
  readonly reusePort?: boolean;
  readonly upstream: Upstream;
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  /** Origin policy, per-address and per-device connection limits, request size limits of
   * device handshakes; defaults when absent. */
  readonly handshake?: HandshakeOptions;
  readonly helloTimeoutMs: number;
  readonly idleTimeoutSeconds: number;
  readonly maxFrameBytes: number;
  readonly maxJsonBytes: number;
  /** Largest image accepted (text dialect, /api/image, /api/vision). */
  readonly maxImageBytes: number;
  /** Fan-out and device directory: in-process, or across instances on Redis. */
  readonly fanout: Fanout;
  /** Provisioning (`/xiaozhi/ota/`): made by main from the IM_OTA_* settings. */
  readonly ota: OtaRoute;
  /** Mints dev tokens for the test page while the built-in development secret is in use. */
  readonly devTokens: { readonly enabled: boolean; readonly secret: string };
  readonly serverAudio: AudioParams;
  /** Connections held at once; more upgrades get 503 + Retry-After. */
  readonly maxConnections: number;
  /** New connections per second (burst: one second's worth); more get 503 + Retry-After. */
  readonly maxConnectsPerSecond: number;
  /** Messages per second a connection may send, sustained; more closes it (4003). */
  readonly maxFramesPerSecond: number;
  /** Bytes per second a connection may send, sustained; more closes it (4003). */
  readonly maxBytesPerSecond: number;
  /** Burst allowance of the two inbound limits, in seconds of their rate. */
  readonly inboundBurstSeconds: number;
  /** More than this queued for a device closes it (4002); Bun queues at most twice this. */
  readonly slowConsumerBytes: number;
  /** Backpressure without write progress for this long closes a device (4002). */
  readonly slowConsumerMs: number;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Who may scrape /metrics besides an operator token: a static Bearer token, and a
   * listener of its own (no token) for a private network. Both optional. */
  /** Calls per second to /api/* per token and per client address (burst: twice that), and
   * the gateway-wide interval between broadcasts. Defaults: the settings' defaults. */
  readonly apiLimits?: { readonly perTokenPerSecond: number; readonly perIpPerSecond: number; readonly broadcastIntervalMs: number };
  /** The process-wide memory budget (IM_MEMORY_BUDGET_MB); none: unbounded. */
  readonly budget?: MemoryBudget;
  /** How often the budget's slower sources are sampled, ms. Default 100. */
  readonly budgetSampleMs?: number;
  /** IM_TRUSTED_PROXIES: peers whose X-Forwarded-For / X-Real-IP name the client. */
  readonly trustedProxies?: TrustedProxies;
  readonly metricsAccess?: { readonly token?: string; readonly listener?: { readonly host: string; readonly port: number } };
}

export interface GatewayServer {
  readonly server: Server<WsData>;
  readonly port: number;
  /** `http://host:port` as reachable from this machine. */
  readonly url: string;
  readonly registry: SessionRegistry<DeviceSession>;
  /** What device sessions run with (registry, upstream, limits, metrics): other device
   * transports (MQTT + UDP) make their sessions with it, so that they are sessions like any. */
  readonly sessionContext: SessionContext;
  /**
   * Admission of a device connection of another transport (an MQTT connection): the same
   * address connect rate and connection count, memory budget and gateway-wide gates as a
   * WebSocket upgrade, in the same order. The place is held until `release()`.
   */
  admitConnection(ip: string): { release(): void } | { refused: string };
  /** The port of the separate /metrics listener, when one was asked for. */
  readonly metricsPort: number | undefined;
  /** True once drain() or stop() began: /ready says 503 and upgrades are refused. */
  readonly draining: boolean;
  /**
   * Graceful shutdown, part one: stops admitting devices (/ready 503 "draining", upgrades
   * 503 + Retry-After), closes idle sessions at once (1001) and every other right after the
   * tts stop of the answer it is speaking; at `timeoutMs` closes whatever is left. Resolves
   * once no device is connected. Keeps listening, so that balancers see the 503s; stop()
   * then closes the listener.
   */
  drain(timeoutMs: number): Promise<void>;
  /** Closes every device socket now (1001, retryable) and stops listening. */
  stop(): Promise<void>;
}

/** Where the server is in its life: admitting, draining for a shutdown, or stopped. */
type Lifecycle = { readonly t: "serving" } | { readonly t: "draining" } | { readonly t: "stopped" };

/** Retry-After of upgrades refused while draining: another instance should take them now. */
const DRAINING_RETRY_AFTER_SECONDS = 1;

/** Bun's types call an .html import an HTML bundle; imported `with { type: "text" }` it is
 * the file's text (checked by the browser and binary tests). */
const testPage = testPageText as unknown as string;

const WS_PATHS = new Set(["/", "/ws", "/ws/", "/xiaozhi/v1", "/xiaozhi/v1/"]);

/** The gateway's Bun.serve: device WebSocket upgrades plus health endpoints. */
export function startGatewayServer(opts: GatewayServerOptions): GatewayServer {
  const registry = new SessionRegistry<DeviceSession>();
  const linkTopics = new LinkTopics();
  const sessions = {
    upstream: opts.upstream,
    registry,
    linkTopics,
    settings: {
      helloTimeoutMs: opts.helloTimeoutMs,
      maxFrameBytes: opts.maxFrameBytes,
      maxJsonBytes: opts.maxJsonBytes,
      maxImageBytes: opts.maxImageBytes,
      serverAudio: opts.serverAudio,
      inbound: inboundLimitsOf(opts),
      slowConsumer: { slowConsumerBytes: opts.slowConsumerBytes, slowConsumerMs: opts.slowConsumerMs },
    },
    logger: opts.logger,
    metrics: opts.metrics,
    logLimiter: new LogLimiter(opts.logger),
    budget: opts.budget,
  };
  const guard = new HandshakeGuard(opts.handshake, sessions, opts.logger, opts.metrics);
  const startedAt = Date.now();
  const admission = new AdmissionControl({ maxConnections: opts.maxConnections, maxConnectsPerSecond: opts.maxConnectsPerSecond }, performance.now());
  let lifecycle: Lifecycle = { t: "serving" };
  /** Upgrades admitted and still being verified: they hold a connection slot too. */
  let upgradesInFlight = 0;

  /** A 503 with Retry-After, counted; logged once per reason per interval (a storm must not
   * flood the log). */
  function refuse(refusal: Refusal): Response {
    opts.metrics.refuseUpgrade(refusal.reason);
    sessions.logLimiter.log(
      opts.logger,
      "warn",
      `admission:${refusal.reason}`,
      { reason: refusal.reason, connections: registry.all().size },
      "refusing device upgrades (503)",
    );
    const code = refusal.reason === "draining" ? ErrorCode.ShuttingDown : ErrorCode.Overloaded;
    return errorResponse(code, refusal.message, { "retry-after": String(refusal.retryAfterSeconds) });
  }

  /** The gateway-wide budget, spent only by handshakes that passed their address's checks
   * (upgrade-device.ts): a flood from one address cannot exhaust it for everyone. Bun runs
   * the open handler inside server.upgrade(), so an upgraded session is in the registry
   * before its place as an upgrade in flight is given back. */
  const instance = {
    admit(): Response | undefined {
      if (opts.budget?.over === true) {
        return refuse({
          reason: "memory-budget",
          retryAfterSeconds: 5 + Math.floor(Math.random() * 6),
          message: "the gateway is over its memory budget; retry later",
        });
      }
      const refusal = admission.admit(registry.all().size + upgradesInFlight, performance.now());
      if (refusal !== undefined) return refuse(refusal);
      upgradesInFlight++;
      return undefined;
    },
    done(): void {
      upgradesInFlight--;
    },
  };
  const upgradeOpts = { verifier: opts.verifier, authRequired: opts.authRequired, logger: opts.logger, guard, instance };

  async function upgrade(req: Request, url: URL, srv: Server<WsData>, ip: string): Promise<Response | undefined> {
    if (lifecycle.t !== "serving") {
      return refuse({ reason: "draining", retryAfterSeconds: DRAINING_RETRY_AFTER_SECONDS, message: "the gateway is shutting down; reconnect" });
    }
    return await upgradeDevice(req, url, srv, ip, upgradeOpts);
  }

  // The HTTP API's answers reach clients through Bun pub/sub on this very server.
  let serverRef: Server<WsData> | undefined;
  const cluster = new ClusterLink(opts.fanout, registry, () => serverRef!, linkTopics, opts.logger);
  const apiLimits = opts.apiLimits ?? {
    perTokenPerSecond: configSchema.apiRequestsPerSecond.default,
    perIpPerSecond: configSchema.apiRequestsPerIpPerSecond.default,
    broadcastIntervalMs: configSchema.broadcastIntervalMs.default,
  };
  const apiPerIp = new KeyedRateLimit(apiLimits.perIpPerSecond, 2 * apiLimits.perIpPerSecond);
  const apiPerToken = new KeyedRateLimit(apiLimits.perTokenPerSecond, 2 * apiLimits.perTokenPerSecond);
  const dispatch = new MessageDispatch({ registry, upstream: opts.upstream, cluster, logger: opts.logger, broadcastIntervalMs: apiLimits.broadcastIntervalMs });
  const metricsRoute = createMetricsRoute({ metrics: opts.metrics, registry, upstream: opts.upstream, fanout: opts.fanout });
  const devicePushRoute = createDevicePushRoute({ verifier: opts.verifier, authRequired: opts.authRequired, cluster, maxBodyBytes: opts.maxJsonBytes });
  const messageRoute = createMessageRoute({ verifier: opts.verifier, authRequired: opts.authRequired, dispatch, maxBodyBytes: opts.maxJsonBytes });
  const devTokenRoute = createDevTokenRoute({ enabled: opts.devTokens.enabled, secret: opts.devTokens.secret, logger: opts.logger });
  const imageRoute = createImageRoute({ verifier: opts.verifier, authRequired: opts.authRequired, dispatch, maxImageBytes: opts.maxImageBytes });
  const visionRoute = createVisionRoute({
    verifier: opts.verifier,
    upstream: opts.upstream,
    authRequired: opts.authRequired,
    maxImageBytes: opts.maxImageBytes,
    logger: opts.logger,
  });

  const server: Server<WsData> = Bun.serve<WsData>({
    hostname: opts.host,
    reusePort: opts.reusePort === true,
    port: opts.port,
    websocket: createWebSocketHandler({
      // Bun refuses bigger messages itself; the session applies the exact per-kind limits.
      maxPayloadBytes: Math.max(opts.maxFrameBytes, opts.maxJsonBytes),
      idleTimeoutSeconds: opts.idleTimeoutSeconds,
      // Twice the slow-consumer limit: the session closes a socket past the limit itself (so
      // there is room for the close frame); Bun drops anything beyond this meanwhile.
      backpressureLimitBytes: 2 * opts.slowConsumerBytes,
    }),
    async fetch(req, srv) {
      const res = await route(req, srv);
      opts.metrics.http(routeLabel(new URL(req.url).pathname), res?.status ?? 101);
      return res;
    },
  });

  const proxies = opts.trustedProxies ?? TrustedProxies.parse("");

  async function route(req: Request, srv: Server<WsData>): Promise<Response | undefined> {
    const url = new URL(req.url);
    const path = url.pathname;
    // The address every per-client limit and log line uses (the proxy's client's, when
    // the peer is a trusted proxy).
    const ip = proxies.clientAddress(req.headers, srv.requestIP(req)?.address ?? "unknown");
    try {
      if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
        if (WS_PATHS.has(path)) return await upgrade(req, url, srv, ip);
        return errorResponse(ErrorCode.NotFound, `no WebSocket endpoint at ${path}`);
      }
      if (path.startsWith("/api/") && path !== "/api/health") {
        const limited = apiRateLimited(req, url, ip);
        if (limited !== undefined) return limited;
      }
      switch (path) {
        case "/health":
          return jsonResponse({ status: "ok", uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) });
        case "/alive":
          return jsonResponse({ status: "alive" });
        case "/api/status": {
          // Scope `public-summary`: instance names, hosts and counts are for operators.
          const caller =
            req.headers.has("authorization") || url.searchParams.has("token") ? await authenticateApiCall(req, opts.verifier, opts.authRequired) : undefined;
          if (caller instanceof Response) return caller;
          const full = caller === undefined ? !opts.authRequired : caller.t === "anonymous" || caller.grant.t === "api";
          const summary = await boxStatus();
          return jsonResponse(full ? { ...summary, cluster: await clusterStatus() } : { status: summary.status, connectionCount: summary.connectionCount });
        }
        case "/test-websocket.html":
          return new Response(testPage, { headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" } });
        case "/metrics": {
          const denied = await metricsDenied(req);
          return denied ?? (await metricsRoute());
        }
        case "/api/health":
          return jsonResponse({ status: "ok", message: "xiaozhi-im gateway is running" });
        case "/api/message":
          return req.method === "POST" ? await messageRoute(req) : methodNotAllowed("POST");
        case "/api/image":
          return req.method === "POST" ? await imageRoute(req) : methodNotAllowed("POST");
        case "/api/vision":
        case "/mcp/vision/explain":
          return await visionRoute(req);
        case "/xiaozhi/ota/":
        case "/xiaozhi/ota":
          return await opts.ota(req, ip);
        case "/api/dev-token":
          return await devTokenRoute(req);
        case "/ready":
          if (lifecycle.t !== "serving") return jsonResponse({ status: "not-ready", reason: "draining" }, 503);
          return opts.upstream.ready()
            ? jsonResponse({ status: "ready" })
            : jsonResponse({ status: "not-ready", reason: "the AI service is not reachable" }, 503);
        case "/":
        case "/ws":
        case "/xiaozhi/v1/":
          return jsonResponse({ name: "xiaozhi-im", websocket: "/ws", health: "/health" }, path === "/" ? 200 : 426);
        default: {
          const push = DEVICE_PUSH_PATH.exec(path);
          if (push !== null) return req.method === "POST" ? await devicePushRoute(req, push[1]!) : methodNotAllowed("POST");
          return errorResponse(ErrorCode.NotFound, `no route ${req.method} ${path}`);
        }
      }
    } catch (err) {
      opts.logger.error({ err: describeError(err), path }, "request failed");
      return errorResponse(ErrorCode.Internal, "internal error");
    }
  }

  /**
   * Samples the budget's slower sources (answers waiting in device sockets, bytes buffered
   * towards the AI service) every `budgetSampleMs`; over the budget, closes the sessions that
   * hold the most (retryable 1013, each holding at least a 64th of it) until the estimate is
   * under 80% of it, while new devices get 503 and device audio is dropped (counted) until
   * the gateway is under it again.
   */
  function watchBudget(budget: MemoryBudget): ReturnType<typeof setInterval> {
    budget.addSource(() => {
      let sum = 0;
      for (const s of registry.all()) sum += s.outboundBytes;
      return sum;
    });
    budget.addSource(() => opts.upstream.bufferedBytes());
    const timer = setInterval(() => {
      opts.metrics.budgetHeldBytes = budget.sample();
      if (budget.over) shedLargest(budget);
    }, opts.budgetSampleMs ?? 100);
    timer.unref?.();
    return timer;
  }

  function shedLargest(budget: MemoryBudget): void {
    const upstreamHeld = opts.upstream.heldBytes();
    // Only sessions that hold a real share are closed: bytes already written towards the AI
    // service belong to no session, and closing small holders would not bring them back.
    const minShare = Math.max(64 * 1024, budget.limitBytes / 64);
    const holders: { session: DeviceSession; bytes: number }[] = [];
    for (const session of registry.all()) {
      const up = session.upstreamSession;
      const bytes = session.outboundBytes + (up === undefined ? 0 : (upstreamHeld.get(up) ?? 0));
      if (bytes >= minShare) holders.push({ session, bytes });
    }
    holders.sort((a, b) => b.bytes - a.bytes);
    let excess = budget.total - 0.8 * budget.limitBytes;
    let closed = 0;
    for (const h of holders) {
      if (excess <= 0) break;
      h.session.shed(h.bytes);
      opts.metrics.budgetShedCloses++;
      excess -= h.bytes;
      closed++;
    }
    sessions.logLimiter.log(
      opts.logger,
      "warn",
      "budget:over",
      { heldBytes: budget.total, limitBytes: budget.limitBytes, closed },
      "over the memory budget: shedding the largest holders, refusing new devices",
    );
  }

  /**
   * The API's rate limits, before any work: per client address, then per token (the raw
   * token's hash: checked before verification, so a flood of forged tokens is held by the
   * address's limit and cannot grow the table past its bound). 429 + Retry-After.
   */
  function apiRateLimited(req: Request, url: URL, ip: string): Response | undefined {
    const now = performance.now();
    let waitMs = apiPerIp.take(clientKey(ip), now);
    if (waitMs === 0) {
      const token = bearerToken(req) || url.searchParams.get("token") || "";
      if (token !== "") waitMs = apiPerToken.take(String(Bun.hash(token)), now);
    }
    if (waitMs === 0) return undefined;
    opts.metrics.apiRateLimited++;
    sessions.logLimiter.log(opts.logger, "info", "api:rate-limited", { ip }, "API call refused: over the rate limit (429)");
    return errorResponse(ErrorCode.RateLimited, "too many API calls; retry after Retry-After", {
      "retry-after": String(Math.max(1, Math.ceil(waitMs / 1000))),
    });
  }

  /**
   * Scope `metrics`: IM_METRICS_TOKEN as a Bearer token, or an unrestricted operator token
   * (anyone while auth is not required). The answer to refuse, else undefined.
   */
  async function metricsDenied(req: Request): Promise<Response | undefined> {
    if (!opts.authRequired) return undefined;
    const bearer = bearerToken(req);
    const expected = opts.metricsAccess?.token ?? "";
    if (expected !== "" && bearer !== "" && sameSecret(bearer, expected)) return undefined;
    const caller = await authenticateApiCall(req, opts.verifier, true);
    if (caller instanceof Response) return caller;
    if (caller.t === "token" && caller.grant.t === "api" && caller.grant.devices === undefined) return undefined;
    return errorResponse(ErrorCode.Forbidden, "/metrics needs IM_METRICS_TOKEN or an operator token (scope api)");
  }

  /** This instance's view of the cluster: the link to Redis and every live instance. */
  async function clusterStatus() {
    const instances = await opts.fanout.directory.instances();
    return {
      instanceId: opts.fanout.instanceId,
      link: opts.fanout.broker.state,
      complete: instances.t === "cluster",
      instances: instances.instances.map((i) => ({ instanceId: i.instanceId, connections: i.connections })),
    };
  }

  /**
   * This gateway's status; with `serve --workers N`, the whole box's: counts summed over the
   * workers, each worker's own counts under `workers`, and "draining" while any one drains.
   */
  async function boxStatus() {
    const own = status();
    const hub = opts.fanout.workers;
    if (hub === undefined) return own;
    const all = await hub.gather("status").catch(() => [{ worker: hub.worker, value: own }]);
    const each = all.flatMap((g) => (g.value === null ? [] : [{ worker: g.worker, ...(g.value as Status) }]));
    const byProtocol: Record<string, number> = { v1: 0, v2: 0, v3: 0 };
    for (const w of each) for (const [p, n] of Object.entries(w.sessionsByProtocol)) byProtocol[p] = (byProtocol[p] ?? 0) + n;
    return {
      ...own,
      status: each.some((w) => w.status !== "ok") ? "draining" : own.status,
      connectionCount: each.reduce((n, w) => n + w.connectionCount, 0),
      sessionCount: each.reduce((n, w) => n + w.sessionCount, 0),
      sessionsByProtocol: byProtocol,
      upstream: { ready: each.every((w) => w.upstream.ready) },
      workers: each.map((w) => ({ worker: w.worker, status: w.status, connectionCount: w.connectionCount, sessionCount: w.sessionCount })),
    };
  }

  type Status = ReturnType<typeof status>;
  opts.fanout.workers?.answer("status", () => status());

  function status() {
    const byProtocol: Record<string, number> = { v1: 0, v2: 0, v3: 0 };
    let active = 0;
    for (const s of registry.all()) {
      if (!s.isActive) continue;
      active++;
      byProtocol[`v${s.protocolVersion}`]!++;
    }
    return {
      status: lifecycle.t === "serving" ? "ok" : "draining",
      connectionCount: registry.all().size,
      sessionCount: active,
      sessionsByProtocol: byProtocol,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      upstream: { ready: opts.upstream.ready() },
    };
  }

  serverRef = server;
  cluster.start();
  const budgetTimer = opts.budget === undefined ? undefined : watchBudget(opts.budget);
  // A listener of its own for scrapers on a private network: /metrics only, no token.
  const metricsListener = opts.metricsAccess?.listener
    ? Bun.serve({
        hostname: opts.metricsAccess.listener.host,
        reusePort: opts.reusePort === true,
        port: opts.metricsAccess.listener.port,
        fetch: async (req) =>
          new URL(req.url).pathname === "/metrics" ? await metricsRoute() : errorResponse(ErrorCode.NotFound, "only /metrics is served here"),
      })
    : undefined;
  const port = server.port ?? opts.port;
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  return {
    server,
    port,
    url: `http://${host}:${port}`,
    registry,
    sessionContext: guard.sessionContext,
    admitConnection(ip) {
      const limited = guard.admitRate(ip, performance.now());
      if (limited !== undefined) return { refused: limited.reason };
      const lease = guard.admitAddress(ip);
      if (!("release" in lease)) return { refused: lease.reason };
      if (lifecycle.t !== "serving") {
        lease.release();
        return { refused: "draining" };
      }
      const full = instance.admit();
      if (full !== undefined) {
        lease.release();
        return { refused: "instance-full" };
      }
      instance.done();
      return lease;
    },
    metricsPort: metricsListener?.port,
    get draining() {
      return lifecycle.t !== "serving";
    },
    drain,
    async stop() {
      lifecycle = { t: "stopped" };
      for (const s of [...registry.all()]) s.goAway(false);
      await server.stop(true);
      await metricsListener?.stop(true);
      clearInterval(budgetTimer);
      sessions.logLimiter.close();
      cluster.close();
    },
  };

  async function drain(timeoutMs: number): Promise<void> {
    if (lifecycle.t === "serving") lifecycle = { t: "draining" };
    const connected = registry.all().size;
    for (const s of [...registry.all()]) s.goAway(true);
    const waiting = registry.all().size;
    opts.logger.info({ connected, closedAtOnce: connected - waiting, finishingAnswers: waiting, timeoutMs }, "draining: devices told to reconnect (1001)");
    if (waiting === 0) return;
    const { promise: timedOut, resolve } = Promise.withResolvers<boolean>();
    const timer = setTimeout(() => resolve(true), timeoutMs);
    const emptied = registry.whenEmpty().then(() => false);
    const late = await Promise.race([emptied, timedOut]);
    clearTimeout(timer);
    if (!late) {
      opts.logger.info("drained: every answer finished");
      return;
    }
    const left = registry.all().size;
    for (const s of [...registry.all()]) s.goAway(false);
    opts.logger.warn({ closed: left, timeoutMs }, "drain timed out: closed devices whose answers had not finished");
  }
}

/** Compares two secrets in constant time (no early exit on the first differing byte). */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function methodNotAllowed(allow: string): Response {
  return errorResponse(ErrorCode.MethodNotAllowed, `use ${allow}`, { allow });
}

const ROUTES = new Set([
  "/",
  "/ws",
  "/xiaozhi/v1/",
  "/health",
  "/alive",
  "/ready",
  "/metrics",
  "/test-websocket.html",
  "/api/status",
  "/api/health",
  "/api/message",
  "/api/image",
  "/api/vision",
  "/api/dev-token",
  "/xiaozhi/ota/",
]);

/** The metrics label of a request path: known routes as they are, the rest folded. */
function routeLabel(path: string): string {
  if (ROUTES.has(path)) return path;
  if (path === "/xiaozhi/ota" || path === "/xiaozhi/v1") return `${path}/`;
  if (DEVICE_PUSH_PATH.test(path)) return "/api/devices/:id/messages";
  return "other";
}
