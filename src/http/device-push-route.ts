import type { TokenVerifier } from "../auth/token-verifier";
import { ErrorCode } from "../errors";
import { authenticateApiCall, authorize } from "./api-auth";
import type { ClusterLink, CommandOutcome } from "../cluster/cluster-link";
import { errorResponse } from "./error-response";
import { jsonResponse } from "./json-response";
import { readBoundedBody } from "./read-bounded-body";

/** `/api/devices/{id}/messages`; the id is a Device-Id (lower-case MAC, URL-encoded or not). */
export const DEVICE_PUSH_PATH = /^\/api\/devices\/([^/]+)\/messages\/?$/;

/** Device-protocol messages an operator may push (docs/device-protocol.md). */
const PUSHABLE = new Set(["alert", "system", "mcp", "custom", "llm", "tts", "stt"]);

export interface DevicePushRouteOptions {
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly cluster: ClusterLink;
  readonly maxBodyBytes: number;
  /** How long an MCP request waits for the device's reply. Default 10,000. */
  readonly mcpTimeoutMs?: number;
}

function outcomeResponse(outcome: Exclude<CommandOutcome, "delivered">): Response {
  switch (outcome) {
    case "absent":
      return errorResponse(ErrorCode.DeviceNotConnected, "that device is not connected anywhere");
    case "not-ready":
      return errorResponse(ErrorCode.DeviceNotReady, "that device is connected but has not started a session yet");
    case "unreachable":
      return errorResponse(ErrorCode.ClusterUnreachable, "the other gateway instances cannot be reached (Redis is down)", { "retry-after": "5" });
  }
}

/**
 * `POST /api/devices/{id}/messages` with a device-protocol JSON message (`alert`, `system`,
 * `mcp`, `custom`, ...): delivered to the device wherever it is connected in the cluster. An
 * MCP request (`payload` with `method` and `id`) waits for the device's reply and returns it
 * (`?timeout_ms=`, default 10 s; 504 without a reply).
 */
export function createDevicePushRoute(o: DevicePushRouteOptions): (req: Request, deviceId: string) => Promise<Response> {
  return async (req, deviceId) => {
    const caller = await authenticateApiCall(req, o.verifier, o.authRequired);
    if (caller instanceof Response) return caller;
    const id = decodeURIComponent(deviceId).toLowerCase();
    const denied = authorize(caller, "api", id);
    if (denied !== undefined) return denied;
    // Bounded before anything is buffered: a huge body costs the gateway nothing.
    const body = await readBoundedBody(req, o.maxBodyBytes);
    if (body.t === "too-large") return errorResponse(ErrorCode.MessageTooLarge, `body over ${o.maxBodyBytes} bytes`);
    if (body.t === "failed") return errorResponse(ErrorCode.MessageMalformed, "the request body broke off");
    const text = new TextDecoder().decode(body.bytes);
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not an object");
      message = parsed as Record<string, unknown>;
    } catch {
      return errorResponse(ErrorCode.MessageMalformed, 'the body must be a device-protocol JSON message, e.g. {"type":"alert",...}');
    }
    const type = message.type;
    if (typeof type !== "string" || !PUSHABLE.has(type)) {
      return errorResponse(ErrorCode.MessageUnknownType, `type must be one of ${[...PUSHABLE].join(", ")}`);
    }
    const payload = message.payload;
    const isMcpRequest =
      type === "mcp" &&
      typeof payload === "object" &&
      payload !== null &&
      typeof (payload as Record<string, unknown>).method === "string" &&
      (payload as Record<string, unknown>).id !== undefined;
    if (type === "mcp" && (typeof payload !== "object" || payload === null)) {
      return errorResponse(ErrorCode.MessageMalformed, "mcp needs a JSON-RPC object in `payload`");
    }
    if (!isMcpRequest) {
      const outcome = await o.cluster.send(id, message);
      return outcome === "delivered" ? jsonResponse({ code: 200, message: "delivered" }) : outcomeResponse(outcome);
    }
    const asked = Number(new URL(req.url).searchParams.get("timeout_ms"));
    const timeoutMs = Number.isFinite(asked) && asked > 0 ? Math.min(asked, 120_000) : (o.mcpTimeoutMs ?? 10_000);
    const r = await o.cluster.mcp(id, payload as Record<string, unknown>, timeoutMs);
    if (r.outcome !== "delivered") return outcomeResponse(r.outcome);
    if (r.reply === undefined) return errorResponse(ErrorCode.DeviceTimeout, `the device did not answer within ${timeoutMs} ms`);
    return jsonResponse({ code: 200, message: "the device answered", reply: r.reply });
  };
}
