import { grantOf, type TokenGrant } from "../auth/token-grant";
import type { TokenVerifier, VerifiedToken } from "../auth/token-verifier";
import { ErrorCode, isGatewayError } from "../errors";
import { errorResponse } from "./error-response";
import { refusalResponse, tokenRefusal } from "./handshake-refusal";

/** Who called an API route: a verified token and what it grants, or nobody when auth is
 * not required (then every route is open, as in development). */
export type ApiCaller = { readonly t: "token"; readonly token: VerifiedToken; readonly grant: TokenGrant } | { readonly t: "anonymous" };

/** The token of `Authorization: Bearer <token>`, or "" when there is none. */
export function bearerToken(req: Request): string {
  const header = req.headers.get("authorization") ?? "";
  return /^bearer\s+/i.test(header) ? header.replace(/^bearer\s+/i, "").trim() : "";
}

/**
 * Authenticates an HTTP API call by its `Authorization: Bearer` token (or `?token=`), as the
 * device handshake does. Returns the caller, or the 401 response to send.
 */
export async function authenticateApiCall(req: Request, verifier: TokenVerifier, authRequired: boolean): Promise<ApiCaller | Response> {
  const token = bearerToken(req) || new URL(req.url).searchParams.get("token") || undefined;
  if (token === undefined) {
    return authRequired ? errorResponse(ErrorCode.TokenMissing, "a token is required (Authorization: Bearer <token>)") : { t: "anonymous" };
  }
  try {
    const verified = await verifier.verify(token);
    return { t: "token", token: verified, grant: grantOf(verified) };
  } catch (err) {
    // As at the handshake: 401 for a bad token, 503 + Retry-After while the keys cannot be
    // loaded (a server-side fault: the caller's token may be fine).
    if (isGatewayError(err)) return refusalResponse(tokenRefusal(err));
    throw err;
  }
}

/**
 * What a route needs of its caller (route-scopes.ts has the table):
 * - `api`: an operator token, for `device` (undefined: every device, a broadcast) within
 *   the token's `devices` when it names some;
 * - `device-or-api`: the device's own device token, or an operator token for it.
 */
export type ApiScope = "api" | "device-or-api";

/** The 403 for a caller whose token can never grant `scope`, whatever the target: checked
 * before the body is read. */
export function authorizeKind(caller: ApiCaller, scope: ApiScope): Response | undefined {
  if (caller.t === "anonymous" || caller.grant.t === "api" || (scope === "device-or-api" && caller.grant.t === "device")) return undefined;
  return authorize(caller, scope, undefined);
}

/** The 403 for a caller whose token does not grant `scope` on `device`, else undefined. */
export function authorize(caller: ApiCaller, scope: ApiScope, device: string | undefined): Response | undefined {
  if (caller.t === "anonymous") return undefined;
  const g = caller.grant;
  const target = device?.toLowerCase();
  if (g.t === "api") {
    if (g.devices === undefined || (target !== undefined && g.devices.has(target))) return undefined;
    return errorResponse(
      ErrorCode.Forbidden,
      target === undefined ? "this token is limited to some devices: it cannot address every client" : "this token may not address that device",
    );
  }
  if (scope === "device-or-api" && g.t === "device" && (target === undefined || target === g.deviceId)) return undefined;
  return errorResponse(
    ErrorCode.Forbidden,
    g.t === "device" && scope === "device-or-api"
      ? "a device token may only act for its own device"
      : 'this route needs an operator token (scope "api": xiaozhi-im token --scope api); device tokens open device sockets only',
  );
}
