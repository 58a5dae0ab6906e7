import { createHash, timingSafeEqual } from "node:crypto";
import { mintToken } from "../auth/mint-token";
import { ErrorCode, GatewayError } from "../errors";
import type { Logger } from "../log";
import { TokenBucket } from "../token-bucket";
import { errorResponse } from "./error-response";
import { jsonResponse } from "./json-response";
import { readBoundedBody } from "./read-bounded-body";

/** The paths the firmware's default OTA URL and its variants use. */
export const OTA_PATHS: readonly string[] = ["/xiaozhi/ota/", "/xiaozhi/ota"];

/**
 * Who gets a token from the provisioning endpoint (IM_OTA_POLICY):
 * - `debug-only`: any device, but only while the gateway runs with `debug`; otherwise the
 *   answer carries no token (200).
 * - `open`: any device.
 * - `allowlist`: the devices in `allowedDevices`; any other gets 403.
 * - `secret`: callers presenting `provisionSecret` in `X-Provision-Secret`; others get 403.
 * - `off`: never; the answer carries the websocket URL only (200).
 */
export type OtaPolicy = "debug-only" | "open" | "allowlist" | "secret" | "off";

export interface OtaRouteOptions {
  /** HS256 secret the issued tokens are signed with (the gateway's JWT_SECRET). */
  readonly jwtSecret: string;
  /** The WebSocket URL handed out; "" or undefined: derived from each request. */
  readonly publicWsUrl?: string;
  readonly policy: OtaPolicy;
  /** `allowlist`: the Device-Ids provisioned, as a comma-separated string or a list; compared
   * lower-case. */
  readonly allowedDevices?: string | readonly string[];
  /** `secret`: the value callers must present in `X-Provision-Secret`. Never logged. */
  readonly provisionSecret?: string;
  /** Lifetime of issued tokens, seconds. */
  readonly tokenTtlSeconds: number;
  /** `websocket.version`: the binary protocol version (1, 2 or 3) devices are told to speak. */
  readonly protocolVersion: number;
  /** Provisioning requests per minute per client address; the burst is the same number. */
  readonly issuesPerMinute: number;
  /** The gateway runs in debug mode (the `debug-only` policy issues tokens then). */
  readonly debug: boolean;
  readonly logger: Logger;
  /** Client addresses whose rate-limit state is kept at once. Default 10000; past it, idle
   * (full) buckets and then the least recently used ones are dropped. */
  readonly maxTrackedClients?: number;
  /** Monotonic clock of the rate limit, ms. Default `performance.now`. */
  readonly nowMs?: () => number;
  /** The MQTT + UDP transport, when the gateway serves it: which devices are sent to it. */
  readonly mqtt?: OtaMqttOptions;
}

/** How /xiaozhi/ota/ hands out the `mqtt` section (firmware: main/ota.cc). */
export interface OtaMqttOptions {
  /** `mqtt`: every device gets the MQTT + UDP transport; `websocket`: only `devices`. */
  readonly transport: "websocket" | "mqtt";
  /** Device-Ids (lower case) sent to MQTT + UDP whatever `transport` says. */
  readonly devices: ReadonlySet<string>;
  /** The host devices reach the MQTT listener at; "": the OTA request's Host. */
  readonly publicHost: string;
  /** The MQTT listener's port (read per answer: it may be picked at start-up). */
  readonly port: () => number;
  readonly keepaliveSeconds: number;
}

/** Handles one request to an {@link OTA_PATHS} path; `clientAddress` is the peer's IP (from
 * `server.requestIP(req)`), the key of the rate limit. */
export type OtaRoute = (req: Request, clientAddress: string) => Promise<Response>;

/** A MAC-like Device-Id: six hex octets separated by `:` (the firmware's form) or `-`. */
const DEVICE_ID = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/;
/** A version the firmware can compare (it splits on dots and parses numbers). */
const FIRMWARE_VERSION = /^\d[0-9A-Za-z.+_-]{0,63}$/;
/** A host[:port] safe to put into a URL we hand out. */
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;
/** The firmware's system-info JSON is ~1-2 KiB; a bigger body is not read. */
const MAX_BODY_BYTES = 64 * 1024;
const WS_PATH = "/xiaozhi/v1/";
/** Rate-limit refusals are logged at most this often (a storm must not flood the log). */
const REFUSAL_LOG_INTERVAL_MS = 10_000;

const CORS_HEADERS: Readonly<Record<string, string>> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "GET, POST, OPTIONS",
  "access-control-allow-headers": "client-id, device-id, authorization, content-type, activation-version, x-provision-secret, accept-language",
  "access-control-max-age": "600",
};
/** Every answer may carry a token (or says whether one was refused): never cached. */
const ANSWER_HEADERS: Readonly<Record<string, string>> = { "access-control-allow-origin": "*", "cache-control": "no-store" };

function configError(message: string): GatewayError {
  return new GatewayError(ErrorCode.ConfigInvalid, message);
}

function parseAllowedDevices(v: string | readonly string[] | undefined): Set<string> {
  const list = typeof v === "string" ? v.split(",") : (v ?? []);
  const out = new Set<string>();
  for (const raw of list) {
    const id = raw.trim().toLowerCase();
    if (id === "") continue;
    if (!DEVICE_ID.test(id)) throw configError(`IM_OTA_ALLOWED_DEVICES: "${id}" is not a MAC-like device id (aa:bb:cc:dd:ee:ff)`);
    out.add(id);
  }
  return out;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s, "utf8").digest();
}

/** Equal digests, compared in constant time: neither the content nor the length leaks. */
function secretMatches(presented: string, expectedDigest: Buffer): boolean {
  return timingSafeEqual(sha256(presented), expectedDigest);
}

/** The first value of a possibly comma-joined proxy header. */
function firstValue(h: string | null): string | undefined {
  const v = h?.split(",")[0]?.trim();
  return v === undefined || v === "" ? undefined : v;
}

/** `ws(s)://<host>/xiaozhi/v1/` as the caller reached us (through a proxy, if any). */
function usesMqtt(o: OtaMqttOptions, deviceId: string): boolean {
  return o.transport === "mqtt" || o.devices.has(deviceId);
}

/**
 * The `mqtt` section the firmware stores key by key: the endpoint always with its port (the
 * firmware assumes 8883, TLS, without one), a client id naming the device's MAC, its device
 * token as password, the topics the gateway serves, and the keepalive.
 */
function mqttAnswer(o: OtaMqttOptions, req: Request, deviceId: string, token: string): Record<string, string | number> {
  const host = o.publicHost !== "" ? o.publicHost : requestHost(req).replace(/:\d+$/, "");
  const topicMac = deviceId.replaceAll(":", "_");
  return {
    endpoint: `${host}:${o.port()}`,
    client_id: `GID_xiaozhi@@@${topicMac}@@@${crypto.randomUUID()}`,
    username: deviceId,
    password: token,
    publish_topic: "device-server",
    subscribe_topic: `devices/p2p/${topicMac}`,
    keepalive: o.keepaliveSeconds,
  };
}

function requestHost(req: Request): string {
  const candidates = [firstValue(req.headers.get("x-forwarded-host")), firstValue(req.headers.get("host"))];
  return candidates.find((h) => h !== undefined && HOST.test(h)) ?? new URL(req.url).host;
}

export function deriveWsUrl(req: Request): string {
  const url = new URL(req.url);
  const proto = firstValue(req.headers.get("x-forwarded-proto"))?.toLowerCase();
  const secure = proto !== undefined ? proto === "https" || proto === "wss" : url.protocol === "https:";
  const candidates = [firstValue(req.headers.get("x-forwarded-host")), firstValue(req.headers.get("host"))];
  const host = candidates.find((h) => h !== undefined && HOST.test(h)) ?? url.host;
  return `${secure ? "wss" : "ws"}://${host}${WS_PATH}`;
}

/** Reads at most MAX_BODY_BYTES of the body as JSON; anything else (absent, too big, not
 * JSON) is undefined: the body is informational and never fails the request. */
async function readSystemInfo(req: Request): Promise<unknown> {
  const body = await readBoundedBody(req, MAX_BODY_BYTES);
  if (body.t !== "ok" || body.bytes.length === 0) return undefined;
  try {
    return JSON.parse(new TextDecoder().decode(body.bytes));
  } catch {
    return undefined;
  }
}

/** The device's running firmware version: the body's `application.version`, else the
 * User-Agent's `<board>/<version>`. Undefined when neither holds a comparable version. */
function deviceFirmwareVersion(req: Request, systemInfo: unknown): string | undefined {
  if (typeof systemInfo === "object" && systemInfo !== null && "application" in systemInfo) {
    const app = systemInfo.application;
    if (typeof app === "object" && app !== null && "version" in app && typeof app.version === "string" && FIRMWARE_VERSION.test(app.version)) {
      return app.version;
    }
  }
  const ua = req.headers.get("user-agent") ?? "";
  const slash = ua.indexOf("/");
  if (slash < 0) return undefined;
  const v = (ua.slice(slash + 1).split(/\s/)[0] ?? "").trim();
  return FIRMWARE_VERSION.test(v) ? v : undefined;
}

/** The policy's verdict for one request. */
type Decision = { readonly t: "issue" } | { readonly t: "no-token"; readonly reason: string } | { readonly t: "refuse"; readonly reason: string };

/**
 * The provisioning endpoint, `POST`/`GET /xiaozhi/ota/` (docs/device-protocol.md):
 *
 * ```json
 * { "server_time": { "timestamp": 1732200000000, "timezone_offset": 480 },
 *   "firmware": { "version": "<the device's own>", "url": "" },
 *   "websocket": { "url": "ws://host/xiaozhi/v1/", "token": "<jwt>", "version": 1 } }
 * ```
 *
 * - Never an `mqtt` (the device would switch to MQTT) nor an `activation` key.
 * - `firmware.version` echoes the version the device runs, so no update is offered; it is
 *   left out entirely when the device did not say (a version the firmware cannot parse could
 *   upset its comparison; without `firmware` it skips the update check).
 * - `websocket.url`: `publicWsUrl`, else derived from the request (X-Forwarded-Proto/-Host,
 *   Host) with the path `/xiaozhi/v1/`. `timezone_offset` is the server's, minutes east of UTC.
 * - The token (HS256, `device_id` and `sub` = the Device-Id, `tokenTtlSeconds`) is minted only
 *   when {@link OtaPolicy} allows. Policy refusals are deliberately split: `allowlist` and
 *   `secret` answer 403 ERR_PROVISIONING_REFUSED, because the operator chose to provision
 *   some callers and this one is not among them (the firmware shows an error and retries);
 *   `off` and `debug-only` outside debug answer 200 with the URL and no token, because the
 *   operator chose not to provision through this endpoint at all, and a device can still
 *   connect when IM_AUTH_REQUIRED=false or with a token it got elsewhere.
 * - A missing or non-MAC Device-Id gets 400 ERR_DEVICE_ID_MISSING.
 * - Every GET/POST (issued or not) spends one token of a per-client-address bucket
 *   (`issuesPerMinute`, same burst), so that guessing a secret or an allow-listed id is as
 *   slow as issuing; over it: 429 ERR_OVERLOADED with Retry-After.
 * - Every issuance is logged at info (device, client, address, policy) and every refusal with
 *   its reason; never the token or the secret.
 * - `OPTIONS` answers 204 with CORS headers for browsers; other methods get 405.
 *
 * Options are checked at once: `secret` without a secret and an `allowlist` that is empty or
 * holds a non-MAC id throw ERR_CONFIG_INVALID (a policy that can never issue is a mistake).
 */
export function createOtaRoute(options: OtaRouteOptions): OtaRoute {
  const { policy, logger } = options;
  const allowed = parseAllowedDevices(options.allowedDevices);
  if (policy === "allowlist" && allowed.size === 0) throw configError("IM_OTA_POLICY=allowlist needs IM_OTA_ALLOWED_DEVICES (comma-separated device ids)");
  const secret = options.provisionSecret ?? "";
  if (policy === "secret" && secret === "") throw configError("IM_OTA_POLICY=secret needs IM_OTA_SECRET");
  const secretDigest = sha256(secret);
  if (!Number.isInteger(options.issuesPerMinute) || options.issuesPerMinute < 1) throw configError("IM_OTA_ISSUES_PER_MINUTE must be an integer >= 1");
  if (!(options.tokenTtlSeconds > 0)) throw configError("IM_OTA_TOKEN_TTL_SECONDS must be > 0");
  const publicWsUrl = options.publicWsUrl?.trim() ?? "";
  const nowMs = options.nowMs ?? (() => performance.now());
  const limiter = createAddressLimiter(options.issuesPerMinute, options.maxTrackedClients ?? 10_000);
  let rateLogAtMs = Number.NEGATIVE_INFINITY;
  let rateRefusedSinceLog = 0;

  function decide(req: Request, deviceId: string): Decision {
    switch (policy) {
      case "open":
        return { t: "issue" };
      case "debug-only":
        return options.debug ? { t: "issue" } : { t: "no-token", reason: "policy debug-only and the gateway is not in debug mode" };
      case "off":
        return { t: "no-token", reason: "policy off" };
      case "allowlist":
        return allowed.has(deviceId) ? { t: "issue" } : { t: "refuse", reason: "device not in the allow-list" };
      case "secret": {
        const presented = req.headers.get("x-provision-secret");
        if (presented === null || presented === "") return { t: "refuse", reason: "no provisioning secret presented" };
        return secretMatches(presented, secretDigest) ? { t: "issue" } : { t: "refuse", reason: "wrong provisioning secret" };
      }
    }
  }

  return async function otaRoute(req, clientAddress) {
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS_HEADERS });
    if (req.method !== "GET" && req.method !== "POST") {
      return errorResponse(ErrorCode.MethodNotAllowed, `${req.method} is not allowed here; use GET or POST`, {
        ...ANSWER_HEADERS,
        allow: "GET, POST, OPTIONS",
      });
    }
    const now = nowMs();
    const waitMs = limiter.take(clientAddress, now);
    if (waitMs > 0) {
      rateRefusedSinceLog++;
      if (now - rateLogAtMs >= REFUSAL_LOG_INTERVAL_MS) {
        logger.warn({ clientAddress, refused: rateRefusedSinceLog, policy }, "ota: provisioning rate limit reached (429)");
        rateLogAtMs = now;
        rateRefusedSinceLog = 0;
      }
      const retryAfter = String(Math.max(1, Math.ceil(waitMs / 1000)));
      return errorResponse(ErrorCode.RateLimited, "too many provisioning requests from this address; retry later", {
        ...ANSWER_HEADERS,
        "retry-after": retryAfter,
      });
    }

    const url = new URL(req.url);
    const rawId = (req.headers.get("device-id") ?? url.searchParams.get("device-id") ?? url.searchParams.get("device_id") ?? "").trim().toLowerCase();
    const clientId = req.headers.get("client-id")?.trim().slice(0, 64) || undefined;
    if (!DEVICE_ID.test(rawId)) {
      logger.info({ clientAddress, clientId, policy, reason: rawId === "" ? "no Device-Id" : "malformed Device-Id" }, "ota: request refused (400)");
      return errorResponse(ErrorCode.DeviceIdMissing, "a Device-Id header with the device's MAC (aa:bb:cc:dd:ee:ff) is required", ANSWER_HEADERS);
    }
    const deviceId = rawId;
    const systemInfo = req.method === "POST" ? await readSystemInfo(req) : undefined;

    const decision = decide(req, deviceId);
    if (decision.t === "refuse") {
      logger.warn({ deviceId, clientId, clientAddress, policy, reason: decision.reason }, "ota: provisioning refused (403)");
      return errorResponse(ErrorCode.ProvisioningRefused, `this gateway does not provision this caller: ${decision.reason}`, ANSWER_HEADERS);
    }

    const websocket: { url: string; token?: string; version: number } = {
      url: publicWsUrl !== "" ? publicWsUrl : deriveWsUrl(req),
      version: options.protocolVersion,
    };
    if (decision.t === "issue") {
      websocket.token = await mintToken({ secret: options.jwtSecret, deviceId, subject: deviceId, ttl: options.tokenTtlSeconds });
      logger.info({ deviceId, clientId, clientAddress, policy, ttlSeconds: options.tokenTtlSeconds }, "ota: token issued");
    } else {
      logger.info({ deviceId, clientId, clientAddress, policy, reason: decision.reason }, "ota: answered without a token");
    }

    // A device told to use MQTT + UDP gets the `mqtt` section INSTEAD of `websocket`: the
    // firmware uses MQTT whenever it has an mqtt config, and needs its token as password.
    const mac = deviceId.replaceAll("-", ":");
    const mqttSection =
      decision.t === "issue" && options.mqtt !== undefined && usesMqtt(options.mqtt, mac)
        ? mqttAnswer(options.mqtt, req, mac, await mintToken({ secret: options.jwtSecret, deviceId: mac, subject: mac, ttl: options.tokenTtlSeconds }))
        : undefined;
    const version = deviceFirmwareVersion(req, systemInfo);
    const body = {
      server_time: { timestamp: Date.now(), timezone_offset: 0 - new Date().getTimezoneOffset() },
      ...(version !== undefined ? { firmware: { version, url: "" } } : {}),
      ...(mqttSection !== undefined ? { mqtt: mqttSection } : { websocket }),
      // For the person reading the answer (the firmware ignores unknown top-level keys; not
      // inside `websocket`, whose string keys newer firmware stores in its settings).
      ...(decision.t === "no-token" ? { token_not_issued: `${decision.reason} (see IM_OTA_POLICY)` } : {}),
    };
    return jsonResponse(body, 200, ANSWER_HEADERS);
  };
}

/** Per-address token buckets, bounded: full buckets are dropped (a fresh one is the same),
 * then the least recently used ones. */
interface AddressLimiter {
  /** Spends one token of `address`'s bucket: 0 when allowed, else ms until one is held. */
  take(address: string, nowMs: number): number;
}

function createAddressLimiter(perMinute: number, maxTracked: number): AddressLimiter {
  const ratePerSecond = perMinute / 60;
  const buckets = new Map<string, TokenBucket>();

  function evict(nowMs: number): void {
    for (const [k, b] of buckets) if (b.available(nowMs) >= b.capacity) buckets.delete(k);
    // Still full of active clients: drop the least recently used tenth (Map order is least
    // recently used first, take() re-inserts), so the next new addresses cost no sweep.
    const target = Math.floor(maxTracked * 0.9);
    for (const k of buckets.keys()) {
      if (buckets.size <= target) break;
      buckets.delete(k);
    }
  }

  return {
    take(address, nowMs) {
      let bucket = buckets.get(address);
      if (bucket === undefined) {
        if (buckets.size >= maxTracked) evict(nowMs);
        bucket = new TokenBucket(ratePerSecond, perMinute, nowMs);
      } else {
        buckets.delete(address);
      }
      buckets.set(address, bucket);
      return bucket.take(1, nowMs) ? 0 : Math.max(1, bucket.msUntil(1, nowMs));
    },
  };
}
