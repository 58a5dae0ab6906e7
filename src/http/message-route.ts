import type { TokenVerifier } from "../auth/token-verifier";
import { ErrorCode } from "../errors";
import { authenticateApiCall, authorize, authorizeKind } from "./api-auth";
import { errorResponse, jsonResponse } from "./json-response";
import type { Dispatched, MessageDispatch } from "./message-dispatch";
import { readBoundedBody } from "./read-bounded-body";

export interface MessageRouteOptions {
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly dispatch: MessageDispatch;
  readonly maxBodyBytes: number;
}

/** The HTTP answer for where a message went; the AI's answer itself streams separately. */
export function dispatchedResponse(d: Dispatched): Response {
  switch (d.t) {
    case "device":
      return jsonResponse({ code: 200, message: "delivered to the device; the answer streams to it", id: d.id });
    case "broadcast":
      return jsonResponse({
        code: 200,
        message: d.coalesced ? "the same broadcast is under way; its answer streams to every connected client" : "accepted; the answer streams to every connected client",
        id: d.id,
        coalesced: d.coalesced,
      });
    case "throttled": {
      const seconds = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
      return errorResponse(429, ErrorCode.RateLimited, "another broadcast went out moments ago; retry after Retry-After", { "retry-after": String(seconds) });
    }
    case "not-found":
      return jsonResponse({ code: 404, message: "that device is not connected" }, 404);
    case "not-ready":
      return jsonResponse({ code: 409, message: "that device is connected but has not started a session yet" }, 409);
    case "unreachable":
      return jsonResponse({ code: 503, message: "the other gateway instances cannot be reached (Redis is down)" }, 503);
  }
}

/**
 * `POST /api/message` with `{"content": "...", "device_id"?: "..."}`: the AI's answer streams
 * to that device, or to every connected client; the reply comes at once.
 */
export function createMessageRoute(o: MessageRouteOptions): (req: Request) => Promise<Response> {
  return async (req) => {
    const caller = await authenticateApiCall(req, o.verifier, o.authRequired);
    if (caller instanceof Response) return caller;
    const kind = authorizeKind(caller, "api");
    if (kind !== undefined) return kind;
    // Bounded before anything is buffered: a huge body costs the gateway nothing.
    const read = await readBoundedBody(req, o.maxBodyBytes);
    if (read.t === "too-large") return errorResponse(413, ErrorCode.MessageTooLarge, `body over ${o.maxBodyBytes} bytes`);
    if (read.t === "failed") return errorResponse(400, ErrorCode.MessageMalformed, "the request body broke off");
    const text = new TextDecoder().decode(read.bytes);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return errorResponse(400, ErrorCode.MessageMalformed, "the body must be JSON: {\"content\": \"...\", \"device_id\"?: \"...\"}");
    }
    const b = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const content = b.content;
    if (typeof content !== "string" || content.trim() === "") return errorResponse(400, ErrorCode.MessageMalformed, "`content` must be a non-empty string");
    const deviceId = b.device_id ?? b.deviceId;
    if (deviceId !== undefined && (typeof deviceId !== "string" || deviceId.trim() === "")) {
      return errorResponse(400, ErrorCode.MessageMalformed, "`device_id` must be a non-empty string when given");
    }
    const target = typeof deviceId === "string" ? deviceId.trim() : undefined;
    const denied = authorize(caller, "api", target);
    if (denied !== undefined) return denied;
    const userId = caller.t === "token" ? caller.token.subject : "";
    return dispatchedResponse(await o.dispatch.dispatch({ text: content, userId }, target));
  };
}
