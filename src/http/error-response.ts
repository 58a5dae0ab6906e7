import { ErrorCode } from "../errors";
import { jsonResponse } from "./json-response";

/**
 * The HTTP status of every error code: the one table the HTTP edge answers by (handshake
 * refusals, the API, provisioning, the camera route). A code means one status everywhere.
 */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.ConfigInvalid]: 500,
  [ErrorCode.TokenMissing]: 401,
  [ErrorCode.TokenInvalid]: 401,
  [ErrorCode.TokenExpired]: 401,
  [ErrorCode.DeviceIdMissing]: 400,
  [ErrorCode.ProtocolVersionInvalid]: 400,
  [ErrorCode.MessageMalformed]: 400,
  [ErrorCode.MessageUnknownType]: 400,
  [ErrorCode.MessageTooLarge]: 413,
  [ErrorCode.FrameMalformed]: 400,
  [ErrorCode.StateViolation]: 409,
  [ErrorCode.UpstreamUnavailable]: 503,
  [ErrorCode.UpstreamProtocol]: 502,
  [ErrorCode.Overloaded]: 503,
  [ErrorCode.ShuttingDown]: 503,
  [ErrorCode.TokenKeysUnavailable]: 503,
  [ErrorCode.OriginNotAllowed]: 403,
  [ErrorCode.TooManyConnections]: 429,
  [ErrorCode.RateLimited]: 429,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.UpstreamTimeout]: 504,
  [ErrorCode.ProvisioningRefused]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.NotWebSocket]: 400,
  [ErrorCode.DeviceNotConnected]: 404,
  [ErrorCode.DeviceNotReady]: 409,
  [ErrorCode.ClusterUnreachable]: 503,
  [ErrorCode.DeviceTimeout]: 504,
  [ErrorCode.RequestTooLarge]: 431,
  [ErrorCode.Internal]: 500,
};

/** The error body every refused request gets, `{"error":{"code","message"}}`, with the
 * status of its code; `extra` adds fields (a handshake's `reason`). */
export function errorResponse(code: ErrorCode, message: string, headers?: Record<string, string>, extra?: Readonly<Record<string, string>>): Response {
  return jsonResponse({ error: { code, ...extra, message } }, HTTP_STATUS[code], headers);
}
