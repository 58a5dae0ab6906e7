import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import { findTrailerError, parseContentType, requestHeader, setTrailerStatus, validateResponse } from "@connectrpc/connect/protocol-grpc";

/**
 * The status half of gRPC over HTTP/2 (PROTOCOL-HTTP2.md), for the calls whose framing is
 * written by hand (Relay on both ends, the pool's probes). Connect's own protocol functions
 * do the reading and writing; this module adapts them to node:http2's header objects and
 * adds what the spec asks of a decoder and Connect leaves out (a `grpc-message` that is not
 * valid percent-encoding must never fail the decoder). Runs when a stream opens and ends,
 * never per message.
 */

/** How a call ended: OK, or the error it ended with. */
export type CallStatus = { readonly t: "ok" } | { readonly t: "error"; readonly error: ConnectError };

export const STATUS_OK: CallStatus = { t: "ok" };

export function statusError(message: string, code: Code): CallStatus {
  return { t: "error", error: new ConnectError(message, code) };
}

/** Request headers of a gRPC call (protobuf, `te: trailers`), as node:http2 takes them. */
export function grpcRequestHeaders(userAgent: string): OutgoingHttpHeaders {
  return headersToObject(requestHeader(true, undefined, { "user-agent": userAgent }));
}

/** What a response's headers say about the call. */
export type ResponseVerdict =
  /** A gRPC response: messages and then trailers follow. */
  | { readonly t: "open" }
  /** The call is over already: a trailers-only response, or no gRPC response at all. */
  | { readonly t: "over"; readonly status: CallStatus };

/**
 * Validates a response's headers: HTTP status (401 Unauthenticated, 403 PermissionDenied,
 * 404 Unimplemented, 429/502/503/504 Unavailable, else Unknown), a gRPC protobuf
 * content-type, and a status in the headers (trailers-only).
 */
export function readResponseHeaders(headers: IncomingHttpHeaders): ResponseVerdict {
  const status = Number(headers[":status"]);
  const h = toHeaders(headers);
  try {
    const { foundStatus } = validateResponse(status, h);
    // validateResponse accepts application/grpc+json too; this link only speaks protobuf.
    if (parseContentType(h.get("content-type"))?.binary !== true) {
      return { t: "over", status: statusError(`unsupported content type ${h.get("content-type")}`, Code.Unknown) };
    }
    return foundStatus ? { t: "over", status: readTrailers(headers) } : { t: "open" };
  } catch (err) {
    return { t: "over", status: { t: "error", error: ConnectError.from(err, Code.Unknown) } };
  }
}

/**
 * The status in a response's trailers (or the headers of a trailers-only response). No
 * `grpc-status` at all is Internal, as in Connect. Never throws: a `grpc-message` that is not
 * valid percent-encoding (`load at 50%`, `%ZZ`, invalid UTF-8) is kept as it came, and
 * undecodable `grpc-status-details-bin` is ignored in favour of `grpc-status`.
 */
export function readTrailers(trailers: IncomingHttpHeaders): CallStatus {
  try {
    const h = toHeaders(trailers);
    if (!h.has("grpc-status")) return statusError("protocol error: missing status", Code.Internal);
    const raw = h.get("grpc-message");
    if (raw !== null) h.set("grpc-message", encodeURIComponent(decodeGrpcMessage(raw)));
    let error: ConnectError | undefined;
    try {
      error = findTrailerError(h);
    } catch {
      h.delete("grpc-status-details-bin");
      error = findTrailerError(h);
    }
    return error === undefined ? STATUS_OK : { t: "error", error };
  } catch (err) {
    // Nothing a peer sends may throw out of here (it runs in an HTTP/2 event listener).
    return statusError(`unreadable trailers (${err instanceof Error ? err.message : String(err)})`, Code.Internal);
  }
}

/** Percent-decodes a `grpc-message`; what does not decode is kept verbatim (the spec's
 * "at worst, the raw percent-encoded form"). */
export function decodeGrpcMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** The trailers that end a call with `status`, as node:http2 takes them (server side). */
export function grpcTrailers(status: CallStatus): OutgoingHttpHeaders {
  return headersToObject(setTrailerStatus(new Headers(), status.t === "ok" ? undefined : status.error));
}

/** The status of a stream reset with RST_STREAM `rstCode` before any status, mapped as
 * PROTOCOL-HTTP2.md says. */
export function resetStatus(rstCode: number, what: string): CallStatus {
  const message = `${what}: stream reset without a status (RST_STREAM ${rstCode})`;
  switch (rstCode) {
    case 7: // REFUSED_STREAM: the server did not process it; safe to retry
      return statusError(message, Code.Unavailable);
    case 8: // CANCEL
      return statusError(message, Code.Canceled);
    case 11: // ENHANCE_YOUR_CALM
      return statusError(message, Code.ResourceExhausted);
    case 12: // INADEQUATE_SECURITY
      return statusError(message, Code.PermissionDenied);
    default:
      return statusError(message, Code.Internal);
  }
}

function toHeaders(incoming: IncomingHttpHeaders): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(incoming)) {
    if (k.startsWith(":") || v === undefined) continue;
    if (Array.isArray(v)) for (const x of v) h.append(k, x);
    else h.set(k, String(v));
  }
  return h;
}

function headersToObject(h: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  h.forEach((v, k) => {
    out[k] = v;
  });
  return out;
}
