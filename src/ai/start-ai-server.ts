import type { Http2Session } from "node:http2";
import { createServer } from "node:http2";
import type { Socket } from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { AiService } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { type Logger, silentLogger } from "../log";
import { type AiServiceOptions, createAiServiceImpl, sessionOptionsOf } from "./ai-service";
import { LiveDevices } from "./live-devices";
import { handleRelay, RELAY_BATCH_MAX_EVENTS, RELAY_PATH } from "./relay-http-handler";

/** Where and how to run the reference AI service. */
export interface AiServerOptions extends AiServiceOptions {
  /** Interface to listen on. Default "127.0.0.1". */
  host?: string;
  /** TCP port; 0 picks a free one. Default 50051. */
  port?: number;
  /** Default: silent. */
  logger?: Logger;
  /** How long `close()` lets connections finish after asking them to, ms. Default 1000. */
  closeGraceMs?: number;
}

/** A running reference AI service. */
export interface AiServer {
  /** The port actually bound (useful with port 0). */
  readonly port: number;
  /** `http://host:port`, the base URL for a gRPC transport (h2c). */
  readonly url: string;
  /**
   * Ends every open call (Converse and Relay streams end, their sessions are disposed), closes
   * the listener and resolves; connections still open after `closeGraceMs` are destroyed.
   * Idempotent.
   */
  close(): Promise<void>;
  /** Bytes its sessions hold in utterances being collected (for an embedding gateway's
   * memory budget). */
  bufferedBytes(): number;
  /** `close()`, for `await using server = await startAiServer(...)`. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Starts the reference AI service: gRPC (also gRPC-web and Connect) over cleartext HTTP/2 on
 * `node:http2`, serving `xiaozhi.ai.v1.AiService`.
 */
export async function startAiServer(options: AiServerOptions = {}): Promise<AiServer> {
  const host = options.host ?? "127.0.0.1";
  const logger = options.logger ?? silentLogger;
  const closeGraceMs = options.closeGraceMs ?? 1000;
  const shutdown = new AbortController();
  const held = options.held ?? { bytes: 0 };
  // One registry for Converse, Relay and Ask alike: Ask reaches the tools of either's sessions.
  options = { ...options, held, devices: options.devices ?? new LiveDevices() };
  const impl = createAiServiceImpl({ ...options, logger });
  const connectHandler = connectNodeAdapter({
    routes: (router) => router.service(AiService, impl),
    shutdownSignal: shutdown.signal,
  });
  const relayOptions = {
    logger,
    sessionOptions: sessionOptionsOf(options),
    maxBatchEvents: options.relayBatchMaxEvents ?? RELAY_BATCH_MAX_EVENTS,
    batchWindowMs: options.relayBatchWindowMs ?? 0,
    shutdown: shutdown.signal,
  };
  // Relay, the per-frame path, is served on the HTTP/2 stream directly; all else by Connect.
  const server = createServer((req, res) => {
    if (req.method === "POST" && req.url === RELAY_PATH) handleRelay(req, res, relayOptions);
    else connectHandler(req, res);
  });
  const sessions = new Set<Http2Session>();
  // Nagle off: answers are small frames that must not wait for an ACK (see bun-notes).
  server.on("connection", (socket: Socket) => socket.setNoDelay(true));
  server.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    // A peer that vanishes mid-stream surfaces here; the calls on it end through their signals.
    session.on("error", (err) => logger.debug({ err: err.message }, "ai server: http2 session error"));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 50051, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (err) => logger.error({ err: err.message }, "ai server error"));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : (options.port ?? 50051);
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  logger.info({ url }, "ai service listening");

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      shutdown.abort(new ConnectError("ai service shutting down", Code.Unavailable));
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions) session.close();
      if (!(await settlesWithin(closed, closeGraceMs))) {
        for (const session of sessions) session.destroy();
        // Bounded too: close() must never hang a shutdown.
        if (!(await settlesWithin(closed, closeGraceMs))) logger.warn({ url }, "ai server did not confirm close");
      }
      logger.info({ url }, "ai service closed");
    })();
    return closing;
  };
  return { port, url, close, bufferedBytes: () => held.bytes, [Symbol.asyncDispose]: close };
}

/** Resolves true when `promise` settles within `ms`, else false. */
async function settlesWithin(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
