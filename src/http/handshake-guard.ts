import { exitOnConfigError } from "../auth/verifier-from-config";
import { type Config, configSchema } from "../config/config-schema";
import { ErrorCode, GatewayError } from "../errors";
import type { Logger } from "../log";
import type { DeviceSession, SessionContext } from "../session/device-session";
import type { LogLimiter } from "../log-limiter";
import type { Metrics } from "../metrics";
import { type ConnectionLease, ConnectionLimits } from "./connection-limits";
import { KeyedRateLimit } from "./keyed-rate-limit";
import { HTTP_STATUS } from "./error-response";
import { type HandshakeRefusal, refusalResponse } from "./handshake-refusal";
import type { PerAddressLimits } from "./per-address-limits";
import { createOriginPolicy, type OriginPolicy, parseAllowedOrigins } from "./origin-policy";

/** What a device handshake must satisfy besides its token. Every field has a default. */
export interface HandshakeOptions {
  /** IM_ALLOWED_ORIGINS: exact browser origins allowed besides the gateway's own, `*` or
   * `null`. Default none. */
  readonly allowedOrigins?: string | readonly string[];
  /** Debug mode: every Origin may open the socket (the test clients people use are pages
   * served from another port, or opened as files). */
  readonly anyOrigin?: boolean;
  /** IM_MAX_CONNECTIONS_PER_IP, as `perAddressLimits` resolved it (default here 1000): open
   * connections per client address; more get 429. */
  readonly maxConnectionsPerIp?: number;
  /** IM_MAX_CONNECTS_PER_IP_PER_SECOND (default 50, burst twice that): new connections per
   * second per client address; more get 429 before anything else is checked. */
  readonly maxConnectsPerIpPerSecond?: number;
  /** IM_MAX_BYTES_PER_IP_PER_SECOND and its burst: bytes all connections of one address may
   * send together; over it the connection that sends is closed (4003). Default none. */
  readonly bytesPerIp?: { readonly ratePerSecond: number; readonly burst: number };
  /** IM_MAX_CONNECTIONS_PER_DEVICE (default 2): open connections per Device-Id; more get 429. */
  readonly maxConnectionsPerDevice?: number;
  /** Longest request target (path and query) in bytes; longer gets 431. Default 8192. */
  readonly maxUrlBytes?: number;
  /** Most header bytes (names and values); more gets 431. Default 16384 (Bun refuses a
   * request head over 16 KiB itself, with a bare 431). */
  readonly maxHeaderBytes?: number;
}

export const DEFAULT_MAX_URL_BYTES = 8 * 1024;
/** When the guard is built without settings (tests); `serve` derives it from the budget. */
export const DEFAULT_MAX_CONNECTIONS_PER_IP = 1000;
export const DEFAULT_MAX_HEADER_BYTES = 16 * 1024;

/** Retry-After of a 429, jittered so that refused clients do not come back in one wave. */
const PER_IP_RETRY_AFTER_SECONDS = 10;
const PER_DEVICE_RETRY_AFTER_SECONDS = 5;
const RETRY_JITTER_SECONDS = 5;

/**
 * The handshake options the settings describe, for `serve`. A bad IM_ALLOWED_ORIGINS entry
 * ends start-up through `onConfigError` (one line on stderr, exit status 2).
 */
export function handshakeFromConfig(
  config: Pick<Config, "allowedOrigins" | "maxConnectionsPerDevice"> & { readonly debug?: boolean },
  perAddress: PerAddressLimits,
  onConfigError: (message: string) => never = exitOnConfigError,
): HandshakeOptions {
  try {
    parseAllowedOrigins(config.allowedOrigins);
  } catch (err) {
    if (err instanceof GatewayError) return onConfigError(err.message);
    throw err;
  }
  return {
    allowedOrigins: config.allowedOrigins,
    anyOrigin: config.debug === true,
    maxConnectionsPerIp: perAddress.maxConnectionsPerIp,
    maxConnectsPerIpPerSecond: perAddress.maxConnectsPerIpPerSecond,
    ...(perAddress.bytesPerIp === undefined ? {} : { bytesPerIp: perAddress.bytesPerIp }),
    maxConnectionsPerDevice: config.maxConnectionsPerDevice,
  };
}

/**
 * Everything a device handshake is checked against before its token, and the per-address
 * and per-device connection counts. One per gateway server.
 *
 * The counts are released when the session leaves the registry: the guard hands sessions a
 * view of the registry whose `remove` (called exactly once, when the socket closes) also
 * gives the connection's place back. That keeps the session code untouched and ties the
 * release to the one place every closing path already goes through.
 */
export class HandshakeGuard {
  readonly limits: ConnectionLimits;
  /** The session context upgraded sessions get: the gateway's, with the releasing registry. */
  readonly sessionContext: SessionContext;
  private readonly origins: OriginPolicy;
  private readonly maxUrlBytes: number;
  private readonly maxHeaderBytes: number;
  private readonly leases = new Map<DeviceSession, ConnectionLease>();
  private readonly connectRate: KeyedRateLimit;
  private readonly logLimiter: LogLimiter;

  constructor(
    options: HandshakeOptions | undefined,
    session: SessionContext,
    private readonly logger: Logger,
    private readonly metrics?: Metrics,
  ) {
    this.logLimiter = session.logLimiter;
    const o = options ?? {};
    const perIpRate = positive(o.maxConnectsPerIpPerSecond, configSchema.maxConnectsPerIpPerSecond.default, "maxConnectsPerIpPerSecond");
    this.connectRate = new KeyedRateLimit(perIpRate, 2 * perIpRate);
    this.origins = createOriginPolicy(o.allowedOrigins ?? "", o.anyOrigin === true);
    this.limits = new ConnectionLimits({
      maxConnectionsPerIp: positive(o.maxConnectionsPerIp, DEFAULT_MAX_CONNECTIONS_PER_IP, "maxConnectionsPerIp"),
      maxConnectionsPerDevice: positive(o.maxConnectionsPerDevice, configSchema.maxConnectionsPerDevice.default, "maxConnectionsPerDevice"),
      ...(o.bytesPerIp === undefined ? {} : { bytesPerIp: o.bytesPerIp }),
    });
    this.maxUrlBytes = positive(o.maxUrlBytes, DEFAULT_MAX_URL_BYTES, "maxUrlBytes");
    this.maxHeaderBytes = positive(o.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, "maxHeaderBytes");
    this.sessionContext = session;
    // A closed session gives its connection place back.
    session.registry.listen({
      removed: (s) => {
        const lease = this.leases.get(s);
        if (lease === undefined) return;
        this.leases.delete(s);
        lease.release();
      },
    });
  }

  /**
   * The first check of every handshake: the address's connect rate (429). A flood from one
   * address is refused here, before it can spend the gateway-wide connect budget or any
   * verification, so it cannot lock out devices at other addresses.
   */
  admitRate(address: string, nowMs: number): HandshakeRefusal | undefined {
    const waitMs = this.connectRate.take(clientKey(address), nowMs);
    if (waitMs === 0) return undefined;
    return {
      code: ErrorCode.TooManyConnections,
      reason: "per_ip_rate",
      message: `more than ${this.connectRate.ratePerSecond} new connections per second from this address; retry later`,
      retryAfterSeconds: Math.ceil(waitMs / 1000) + jitter(RETRY_JITTER_SECONDS),
    };
  }

  /** The checks that cost nothing: request size (431), then Origin (403). */
  screen(req: Request, url: URL): HandshakeRefusal | undefined {
    if (url.href.length - url.origin.length > this.maxUrlBytes) {
      return { code: ErrorCode.RequestTooLarge, reason: "url_too_long", message: `the request URL is over ${this.maxUrlBytes} bytes` };
    }
    let headerBytes = 0;
    for (const [name, value] of req.headers) headerBytes += name.length + value.length + 4;
    if (headerBytes > this.maxHeaderBytes) {
      return { code: ErrorCode.RequestTooLarge, reason: "headers_too_large", message: `the request headers are over ${this.maxHeaderBytes} bytes` };
    }
    if (!this.origins.allows(req.headers.get("origin"), req.headers.get("host"))) {
      return {
        code: ErrorCode.OriginNotAllowed,
        reason: "origin_not_allowed",
        message: "this Origin may not open the device WebSocket (see IM_ALLOWED_ORIGINS)",
      };
    }
    return undefined;
  }

  /** A place for one more connection from `address`, or the 429 refusal. */
  admitAddress(address: string): ConnectionLease | HandshakeRefusal {
    const lease = this.limits.lease(clientKey(address));
    if (lease !== undefined) return lease;
    return {
      code: ErrorCode.TooManyConnections,
      reason: "per_ip_limit",
      message: `more than ${this.limits.settings.maxConnectionsPerIp} open connections from this address; retry later`,
      retryAfterSeconds: PER_IP_RETRY_AFTER_SECONDS + jitter(RETRY_JITTER_SECONDS),
    };
  }

  /** Counts `lease` against `deviceId` too, or says why not (429). */
  admitDevice(lease: ConnectionLease, deviceId: string): HandshakeRefusal | undefined {
    if (lease.bindDevice(deviceId)) return undefined;
    return {
      code: ErrorCode.TooManyConnections,
      reason: "per_device_limit",
      message: `this Device-Id already holds ${this.limits.settings.maxConnectionsPerDevice} connections; retry later`,
      retryAfterSeconds: PER_DEVICE_RETRY_AFTER_SECONDS + jitter(RETRY_JITTER_SECONDS),
    };
  }

  /** From now on `lease` is released when `session` leaves the registry. */
  track(session: DeviceSession, lease: ConnectionLease): void {
    this.leases.set(session, lease);
  }

  /** The upgrade did not happen after all: forget the session (the caller releases). */
  untrack(session: DeviceSession): void {
    this.leases.delete(session);
  }

  /**
   * The refusal's response, logged: every refusal at debug; at info (503s at warn) the first
   * of each reason per 10 s with how many were not logged since, so that a scanner or a
   * broken fleet cannot flood the log. `fields` must never carry a token.
   */
  refuse(r: HandshakeRefusal, fields: { readonly deviceId?: string | undefined; readonly ip?: string | undefined }): Response {
    this.metrics?.refuseUpgrade(r.reason);
    const status = HTTP_STATUS[r.code];
    const line = { status, code: r.code, reason: r.reason, deviceId: fields.deviceId?.slice(0, 64), ip: fields.ip };
    this.logger.debug(line, "handshake refused");
    if (status === 503) {
      this.logLimiter.log(
        this.logger,
        "warn",
        `handshake:${r.reason}`,
        line,
        "handshake refused: token keys unavailable (the JWKS endpoint is down or answers garbage); failing closed",
      );
    } else {
      this.logLimiter.log(this.logger, "info", `handshake:${r.reason}`, line, "handshake refused");
    }
    return refusalResponse(r);
  }
}

/**
 * The key an address is counted under: IPv4 as is (also when mapped into IPv6), IPv6 by its
 * /64, the block one subscriber usually gets (counting single IPv6 addresses would let one
 * client take 2^64 places).
 */
export function clientKey(address: string): string {
  const lower = address.toLowerCase();
  if (!lower.includes(":")) return lower;
  if (lower.startsWith("::ffff:") && lower.includes(".")) return lower.slice(7);
  const groups = expandIpv6(lower);
  return groups === undefined ? lower : `${groups.slice(0, 4).join(":")}::/64`;
}

function expandIpv6(address: string): string[] | undefined {
  const zoneless = address.split("%")[0]!;
  const halves = zoneless.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0]!.split(":");
  const tail = halves.length === 2 && halves[1] !== "" ? halves[1]!.split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (missing < 0 || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...Array<string>(missing).fill("0"), ...tail];
  if (groups.some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return undefined;
  return groups.map((g) => g.replace(/^0+(?=.)/, ""));
}

function jitter(max: number): number {
  return Math.floor(Math.random() * (max + 1));
}

function positive(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw new GatewayError(ErrorCode.ConfigInvalid, `${name} must be a positive integer, got ${v}`);
  return v;
}
