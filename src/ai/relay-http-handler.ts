import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import {
  AiService,
  DeviceEventSchema,
  type RelayRequest,
  RelayRequestSchema,
  RelayResponseSchema,
  type ServerEvent,
  ServerEventSchema,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import { Code } from "@connectrpc/connect";
import { parseContentType } from "@connectrpc/connect/protocol-grpc";
import { GrpcFrameReader, MAX_MESSAGE_BYTES } from "../grpc-frames";
import { type CallStatus, grpcTrailers, STATUS_OK, statusError } from "../grpc-status";
import type { Logger } from "../log";
import { relayBatchCodec } from "../relay-codec";
import { FlushPacer } from "../flush-pacer";
import type { AiSessionOptions } from "./ai-session";
import { RelaySessions } from "./relay-sessions";

/** Relay's batches by the hand codec (the gateway's side uses the same one). */
const REQUESTS = relayBatchCodec(RelayRequestSchema, DeviceEventSchema);
const RESPONSES = relayBatchCodec(RelayResponseSchema, ServerEventSchema);

/** Events per RelayResponse at most, by default: a batch stays well under the message cap. */
export const RELAY_BATCH_MAX_EVENTS = 256;

/** `/xiaozhi.ai.v1.AiService/Relay`, from the generated service. */
export const RELAY_PATH = `/${AiService.typeName}/${AiService.method.relay.name}`;

export interface RelayHandlerOptions {
  readonly logger: Logger;
  readonly sessionOptions: AiSessionOptions;
  readonly maxBatchEvents: number;
  /** On a busy stream, at most one response write per this many ms (FlushPacer). */
  readonly batchWindowMs: number;
  /** Aborted when the server shuts down: open streams end with UNAVAILABLE. */
  readonly shutdown: AbortSignal;
}

/**
 * Serves Relay straight on the HTTP/2 request and response, gRPC framing by hand (the same
 * wire as any gRPC server), with plain events instead of a chain of async iterables per
 * message. Relay carries every frame of every device; the rest of the service stays on
 * Connect. Answers leave batched as the gateway's events do (FlushPacer: one write per turn,
 * or per batch window on a busy stream); while the response stream is backed up they wait
 * for drain and batch.
 */
export function handleRelay(req: Http2ServerRequest, res: Http2ServerResponse, o: RelayHandlerOptions): void {
  // PROTOCOL-HTTP2.md: a request that is not gRPC (protobuf) gets HTTP 415.
  if (parseContentType(req.headers["content-type"] ?? null)?.binary !== true) {
    res.writeHead(415, { "content-type": "text/plain" });
    res.end("relay expects application/grpc+proto");
    return;
  }
  let pendingOut: ServerEvent[] = [];
  let writable = true;
  let ended = false;
  const sessions = new RelaySessions(
    (event) => {
      if (ended) return;
      pendingOut.push(event);
      if (pendingOut.length >= o.maxBatchEvents) flush();
      else pacer.request();
    },
    o.logger,
    o.sessionOptions,
  );

  const pacer = new FlushPacer(o.batchWindowMs, () => flush());

  function flush(): void {
    while (writable && pendingOut.length > 0 && !ended) {
      let events = pendingOut;
      if (events.length > o.maxBatchEvents) {
        pendingOut = events.slice(o.maxBatchEvents);
        events = events.slice(0, o.maxBatchEvents);
      } else {
        pendingOut = [];
      }
      writable = res.write(RESPONSES.encodeFrame(events));
      pacer.wrote();
    }
  }

  function finish(status: CallStatus): void {
    if (ended) return;
    flush();
    ended = true;
    sessions.close();
    o.shutdown.removeEventListener("abort", onShutdown);
    if (res.writableEnded || res.destroyed) return;
    res.addTrailers(grpcTrailers(status));
    res.end();
    if (sessions.unknownKeyEvents > 0) o.logger.info({ unknownKeyEvents: sessions.unknownKeyEvents }, "relay stream ended");
  }

  // The contract: a service that shuts down ends its streams with UNAVAILABLE, so the
  // gateway resumes the sessions elsewhere (OK would read as a rotation).
  const onShutdown = () => finish(statusError("ai service shutting down", Code.Unavailable));
  if (o.shutdown.aborted) {
    res.writeHead(200, { "content-type": "application/grpc+proto" });
    onShutdown();
    return;
  }
  o.shutdown.addEventListener("abort", onShutdown, { once: true });
  res.writeHead(200, { "content-type": "application/grpc+proto" });
  res.on("drain", () => {
    writable = true;
    flush();
  });

  const reader = new GrpcFrameReader(MAX_MESSAGE_BYTES);
  req.on("data", (chunk: Buffer) => {
    const error = reader.push(chunk, (body) => {
      let request: RelayRequest;
      try {
        request = REQUESTS.decode(body);
      } catch (err) {
        finish(statusError(`undecodable request: ${(err as Error).message}`, Code.Internal));
        return false;
      }
      sessions.take(request);
      return !ended;
    });
    if (error !== undefined) finish(statusError(error.t === "compressed" ? "compression not supported" : `message of ${error.bytes} bytes`, Code.Internal));
  });
  // The gateway half-closed: answer what is pending, then end with OK.
  req.on("end", () => finish(STATUS_OK));
  req.on("error", () => finish(statusError("request stream failed", Code.Unavailable)));
  res.on("close", () => {
    // Cancelled or reset by the gateway: nothing more can be sent.
    ended = true;
    sessions.close();
    o.shutdown.removeEventListener("abort", onShutdown);
  });
}
