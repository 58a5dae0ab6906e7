import type { TokenVerifier } from "../auth/token-verifier";
import { ErrorCode } from "../errors";
import { authenticateApiCall, authorize, authorizeKind } from "./api-auth";
import { errorResponse } from "./error-response";
import { jsonResponse } from "./json-response";
import type { Dispatched, MessageDispatch } from "../cluster/message-dispatch";
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
        message: d.coalesced
          ? "the same broadcast is under way; its answer streams to every connected client"
          : "accepted; the answer streams to every connected client",
        id: d.id,
        coalesced: d.coalesced,
      });
    case "throttled": {
      const seconds = Math.max(1, Math.ceil(d.retryAfterMs / 1000));
      return errorResponse(ErrorCode.RateLimited, "another broadcast went out moments ago; retry after Retry-After", { "retry-after": String(seconds) });
    }
    case "not-found":
      return errorResponse(ErrorCode.DeviceNotConnected, "that device is not connected");
    case "not-ready":
      return errorResponse(ErrorCode.DeviceNotReady, "that device is connected but has not started a session yet");
    case "unreachable":
      return errorResponse(ErrorCode.ClusterUnreachable, "the other gateway instances cannot be reached (Redis is down)", { "retry-after": "5" });
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
    if (read.t === "too-large") return errorResponse(ErrorCode.MessageTooLarge, `body over ${o.maxBodyBytes} bytes`);
    if (read.t === "failed") return errorResponse(ErrorCode.MessageMalformed, "the request body broke off");
    const text = new TextDecoder().decode(read.bytes);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return errorResponse(ErrorCode.MessageMalformed, 'the body must be JSON: {"content": "...", "device_id"?: "..."}');
    }
    const b = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
    const content = b.content;
    if (typeof content !== "string" || content.trim() === "") return errorResponse(ErrorCode.MessageMalformed, "`content` must be a non-empty string");
    const deviceId = b.device_id ?? b.deviceId;
    if (deviceId !== undefined && (typeof deviceId !== "string" || deviceId.trim() === "")) {
      return errorResponse(ErrorCode.MessageMalformed, "`device_id` must be a non-empty string when given");
    }
    const target = typeof deviceId === "string" ? deviceId.trim() : undefined;
    const denied = authorize(caller, "api", target);
    if (denied !== undefined) return denied;
    const userId = caller.t === "token" ? caller.token.subject : "";
    return dispatchedResponse(await o.dispatch.dispatch({ text: content, userId }, target));
  };
}
