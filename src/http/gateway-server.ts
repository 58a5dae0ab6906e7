import type { Server } from "bun";
import type { TokenVerifier } from "../auth/token-verifier";
import { CloseCode } from "../device/close-codes";
import type { AudioParams } from "../device/device-message";
import { describeError } from "../errors";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import type { DeviceSession, WsData } from "../session/device-session";
import { SessionRegistry } from "../session/session-registry";
import { createWebSocketHandler } from "../session/websocket-handler";
import type { Upstream } from "../upstream/upstream";
import { errorResponse, jsonResponse } from "./json-response";
import { upgradeDevice } from "./upgrade-device";

export interface GatewayServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly upstream: Upstream;
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly helloTimeoutMs: number;
  readonly idleTimeoutSeconds: number;
  readonly maxFrameBytes: number;
  readonly maxJsonBytes: number;
  readonly serverAudio: AudioParams;
  readonly logger: Logger;
  readonly metrics: Metrics;
}

export interface GatewayServer {
  readonly server: Server<WsData>;
  readonly port: number;
  /** `http://host:port` as reachable from this machine. */
  readonly url: string;
  readonly registry: SessionRegistry<DeviceSession>;
  /** Closes every device socket (1001, retryable) and stops listening. */
  stop(): Promise<void>;
}

const WS_PATHS = new Set(["/", "/ws", "/ws/", "/xiaozhi/v1", "/xiaozhi/v1/"]);

/** The gateway's Bun.serve: device WebSocket upgrades plus health endpoints. */
export function startGatewayServer(opts: GatewayServerOptions): GatewayServer {
  const registry = new SessionRegistry<DeviceSession>();
  const sessions = {
    upstream: opts.upstream,
    registry,
    settings: {
      helloTimeoutMs: opts.helloTimeoutMs,
      maxFrameBytes: opts.maxFrameBytes,
      maxJsonBytes: opts.maxJsonBytes,
      serverAudio: opts.serverAudio,
    },
    logger: opts.logger,
    metrics: opts.metrics,
  };
  const upgradeOpts = { verifier: opts.verifier, authRequired: opts.authRequired, session: sessions, logger: opts.logger };
  const startedAt = Date.now();

  const server: Server<WsData> = Bun.serve<WsData>({
    hostname: opts.host,
    port: opts.port,
    websocket: createWebSocketHandler({
      // Bun refuses bigger messages itself; the session applies the exact per-kind limits.
      maxPayloadBytes: Math.max(opts.maxFrameBytes, opts.maxJsonBytes),
      idleTimeoutSeconds: opts.idleTimeoutSeconds,
    }),
    async fetch(req, srv) {
      const url = new URL(req.url);
      const path = url.pathname;
      try {
        if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
          if (WS_PATHS.has(path)) return await upgradeDevice(req, url, srv, upgradeOpts);
          return errorResponse(404, "ERR_NOT_FOUND", `no WebSocket endpoint at ${path}`);
        }
        switch (path) {
          case "/health":
            return jsonResponse({ status: "ok", uptimeSeconds: Math.round((Date.now() - startedAt) / 1000) });
          case "/alive":
            return jsonResponse({ status: "alive" });
          case "/api/status":
            return jsonResponse(status());
          case "/ready":
            return opts.upstream.ready()
              ? jsonResponse({ status: "ready" })
              : jsonResponse({ status: "not-ready", reason: "the AI service is not reachable" }, 503);
          case "/":
          case "/ws":
          case "/xiaozhi/v1/":
            return jsonResponse({ name: "xiaozhi-im", websocket: "/ws", health: "/health" }, path === "/" ? 200 : 426);
          default:
            return errorResponse(404, "ERR_NOT_FOUND", `no route ${req.method} ${path}`);
        }
      } catch (err) {
        opts.logger.error({ err: describeError(err), path }, "request failed");
        return errorResponse(500, "ERR_INTERNAL", "internal error");
      }
    },
  });

  function status() {
    const byProtocol: Record<string, number> = { v1: 0, v2: 0, v3: 0 };
    let active = 0;
    for (const s of registry.all()) {
      if (!s.isActive) continue;
      active++;
      byProtocol[`v${s.protocolVersion}`]!++;
    }
    return {
      status: "ok",
      connectionCount: registry.all().size,
      sessionCount: active,
      sessionsByProtocol: byProtocol,
      uptimeSeconds: Math.round((Date.now() - startedAt) / 1000),
      upstream: { ready: opts.upstream.ready() },
    };
  }

  const port = server.port ?? opts.port;
  const host = opts.host === "0.0.0.0" || opts.host === "::" ? "127.0.0.1" : opts.host;
  return {
    server,
    port,
    url: `http://${host}:${port}`,
    registry,
    async stop() {
      for (const s of [...registry.all()]) s.close(CloseCode.GoingAway, "server shutting down");
      await server.stop(true);
    },
  };
}
