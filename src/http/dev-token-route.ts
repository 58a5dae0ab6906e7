import { mintToken } from "../auth/mint-token";
import { ErrorCode } from "../errors";
import type { Logger } from "../log";
import { errorResponse } from "./error-response";
import { jsonResponse } from "./json-response";

/** The path of the development token endpoint. */
export const DEV_TOKEN_PATH = "/api/dev-token";

export interface DevTokenRouteOptions {
  /**
   * Serve tokens at all. The gateway enables this only while it signs with the built-in
   * development secret (DEFAULT_JWT_SECRET), which is public anyway: anyone could mint the
   * same tokens offline, so the endpoint gives nothing away. With a real secret it must stay
   * off; then every request gets 404, as if the route did not exist.
   */
  readonly enabled: boolean;
  /** HS256 secret the tokens are signed with. */
  readonly secret: string;
  /** Lifetime of the tokens, seconds. Default 3600. */
  readonly ttlSeconds?: number;
  readonly logger: Logger;
}

/** Handles one request to {@link DEV_TOKEN_PATH}. */
export type DevTokenRoute = (req: Request) => Promise<Response>;

const DEVICE_ID = /^[0-9a-f]{2}([:-])[0-9a-f]{2}(?:\1[0-9a-f]{2}){4}$/;

/** `02:xx:xx:xx:xx:xx`: a random locally administered unicast MAC, never a real device's. */
export function randomDeviceId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return ["02", ...Array.from(bytes, (b) => b.toString(16).padStart(2, "0"))].join(":");
}

/**
 * `GET /api/dev-token[?device_id=aa:bb:cc:dd:ee:ff]` -> `{"token":"<jwt>","device_id":"..."}`
 * for the browser test page and local tries: a token bound to the asked device id (lower
 * case), or to a fresh {@link randomDeviceId} when none is asked; `sub` is the device id.
 * A device id that is not MAC-like gets 400; methods other than GET 405; everything 404 while
 * disabled. Each issuance is logged at info without the token.
 */
export function createDevTokenRoute(options: DevTokenRouteOptions): DevTokenRoute {
  const ttlSeconds = options.ttlSeconds ?? 3600;
  const { logger } = options;
  return async function devTokenRoute(req) {
    if (!options.enabled) return errorResponse(ErrorCode.NotFound, `no route ${req.method} ${new URL(req.url).pathname}`);
    if (req.method !== "GET") return errorResponse(ErrorCode.MethodNotAllowed, `${req.method} is not allowed here; use GET`, { allow: "GET" });
    const url = new URL(req.url);
    const asked = (url.searchParams.get("device_id") ?? url.searchParams.get("device-id") ?? "").trim().toLowerCase();
    if (asked !== "" && !DEVICE_ID.test(asked)) {
      return errorResponse(ErrorCode.DeviceIdMissing, "device_id must be a MAC-like id (aa:bb:cc:dd:ee:ff)");
    }
    const deviceId = asked === "" ? randomDeviceId() : asked;
    const token = await mintToken({ secret: options.secret, deviceId, subject: deviceId, ttl: ttlSeconds });
    logger.info({ deviceId, ttlSeconds }, "dev-token: development token issued");
    return jsonResponse({ token, device_id: deviceId }, 200, { "cache-control": "no-store" });
  };
}
