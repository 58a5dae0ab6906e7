import { TokenError, TokenRejectReason } from "../auth/token-error";
import { ErrorCode, type GatewayError } from "../errors";
import { errorResponse } from "./error-response";

/**
 * Why a device handshake is refused, as the client is told: a stable `code` (ERR_*, whose
 * HTTP status is the one table's), a stable snake_case `reason` and a short fixed message.
 * Never the token, a header value or a URL.
 */
export interface HandshakeRefusal {
  readonly code: ErrorCode;
  readonly reason: string;
  readonly message: string;
  /** Whole seconds, for Retry-After (429, 503). */
  readonly retryAfterSeconds?: number;
}

/** Retry-After of a 503 for unavailable token keys: a JWKS fetch backs off for about a second
 * after a failure and times out after five. */
const KEYS_RETRY_AFTER_SECONDS = 5;

/**
 * A failed token verification as a refusal: 401 for a missing, malformed, expired or
 * otherwise invalid token; 403 for a valid token bound to another Device-Id; 503 when the
 * keys cannot be loaded (a server-side fault: the token may be fine, so the client is told
 * to retry, not to re-provision).
 */
export function tokenRefusal(err: GatewayError): HandshakeRefusal {
  const reason = err instanceof TokenError ? err.reason : err.code === ErrorCode.TokenMissing ? "missing" : TokenRejectReason.Unverifiable;
  if (reason === TokenRejectReason.KeySetUnavailable || err.code === ErrorCode.TokenKeysUnavailable) {
    return {
      code: ErrorCode.TokenKeysUnavailable,
      reason: TokenRejectReason.KeySetUnavailable,
      message: err.message,
      retryAfterSeconds: KEYS_RETRY_AFTER_SECONDS,
    };
  }
  if (reason === TokenRejectReason.DeviceMismatch) {
    // A valid token, for another device: forbidden, not unauthenticated.
    return { code: ErrorCode.Forbidden, reason, message: "the token is bound to another Device-Id" };
  }
  return { code: err.code, reason, message: err.message };
}

/** The refusal's response: `{"error":{"code","reason","message"}}`, Retry-After when given. */
export function refusalResponse(r: HandshakeRefusal): Response {
  return errorResponse(r.code, r.message, r.retryAfterSeconds === undefined ? undefined : { "retry-after": String(r.retryAfterSeconds) }, { reason: r.reason });
}
