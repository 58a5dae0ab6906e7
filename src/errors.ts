/**
 * The one error type of the gateway. Every boundary translates into it (a Connect code, a
 * jose error, a bad config value) and out of it (HTTP status, WebSocket close code, JSON
 * `error` message), so callers branch on `code`, never on message text.
 */
export const ErrorCode = {
  /** A configuration key has a bad value or is unknown. */
  ConfigInvalid: "ERR_CONFIG_INVALID",
  /** No token where one is required. */
  TokenMissing: "ERR_TOKEN_MISSING",
  /** A token failed verification (signature, algorithm, claims, shape). */
  TokenInvalid: "ERR_TOKEN_INVALID",
  /** A token's `exp` has passed. */
  TokenExpired: "ERR_TOKEN_EXPIRED",
  /** A device came without a Device-Id where one is needed. */
  DeviceIdMissing: "ERR_DEVICE_ID_MISSING",
  /** A Protocol-Version other than 1, 2 or 3. */
  ProtocolVersionInvalid: "ERR_PROTOCOL_VERSION_INVALID",
  /** A JSON message that does not parse or lacks what its type needs. */
  MessageMalformed: "ERR_MESSAGE_MALFORMED",
  /** A JSON message of a type the gateway does not know. */
  MessageUnknownType: "ERR_MESSAGE_UNKNOWN_TYPE",
  /** A message over the configured size. */
  MessageTooLarge: "ERR_MESSAGE_TOO_LARGE",
  /** A binary frame whose header disagrees with its length. */
  FrameMalformed: "ERR_FRAME_MALFORMED",
  /** A message the session's state does not allow (e.g. audio before hello). */
  StateViolation: "ERR_STATE_VIOLATION",
  /** The AI service cannot be reached. */
  UpstreamUnavailable: "ERR_UPSTREAM_UNAVAILABLE",
  /** The AI service answered with something the gateway cannot use. */
  UpstreamProtocol: "ERR_UPSTREAM_PROTOCOL",
  /** The gateway refuses new work for now (connection limits); retry after Retry-After. */
  Overloaded: "ERR_OVERLOADED",
  /** The gateway is shutting down; reconnect (to another instance) after Retry-After. */
  ShuttingDown: "ERR_SHUTTING_DOWN",
  /** The keys that verify tokens cannot be loaded (a JWKS endpoint down or answering
   * garbage): a server-side fault, verification fails closed; retry after Retry-After. */
  TokenKeysUnavailable: "ERR_TOKEN_KEYS_UNAVAILABLE",
  /** A browser Origin that is neither listed in IM_ALLOWED_ORIGINS nor the gateway's own. */
  OriginNotAllowed: "ERR_ORIGIN_NOT_ALLOWED",
  /** Over the open connections allowed per client address or per Device-Id. */
  TooManyConnections: "ERR_TOO_MANY_CONNECTIONS",
  /** Too many requests from this client or token; retry after Retry-After. */
  RateLimited: "ERR_RATE_LIMITED",
  /** A valid token that does not grant what the request asks (its scope or its devices). */
  Forbidden: "ERR_FORBIDDEN",
  /** A body that is not of a type the route takes (not an image, not multipart). */
  UnsupportedMediaType: "ERR_UNSUPPORTED_MEDIA_TYPE",
  /** The AI service did not answer in time. */
  UpstreamTimeout: "ERR_UPSTREAM_TIMEOUT",
  /** The provisioning policy does not hand this caller a token. */
  ProvisioningRefused: "ERR_PROVISIONING_REFUSED",
  /** No such route. */
  NotFound: "ERR_NOT_FOUND",
  /** The route exists, not with this method (see Allow). */
  MethodNotAllowed: "ERR_METHOD_NOT_ALLOWED",
  /** A plain HTTP request where a WebSocket upgrade was expected. */
  NotWebSocket: "ERR_NOT_WEBSOCKET",
  /** The device is connected to no instance of the gateway. */
  DeviceNotConnected: "ERR_DEVICE_NOT_CONNECTED",
  /** The device is connected but has not started a session (no hello yet). */
  DeviceNotReady: "ERR_DEVICE_NOT_READY",
  /** The other gateway instances cannot be reached (Redis is down or resubscribing). */
  ClusterUnreachable: "ERR_CLUSTER_UNREACHABLE",
  /** The device did not answer (an MCP request) in time. */
  DeviceTimeout: "ERR_DEVICE_TIMEOUT",
  /** A request whose URL or headers are over the handshake's size limits. */
  RequestTooLarge: "ERR_REQUEST_TOO_LARGE",
  /** Anything else: a bug. */
  Internal: "ERR_INTERNAL",
} as const;

export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/** True when `err` is a GatewayError, optionally of one code. */
export function isGatewayError(err: unknown, code?: ErrorCode): err is GatewayError {
  return err instanceof GatewayError && (code === undefined || err.code === code);
}

/** A short, safe text for any thrown value (for logs; never includes a stack or token). */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
