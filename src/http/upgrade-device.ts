import type { Server } from "bun";
import type { TokenVerifier, VerifiedToken } from "../auth/token-verifier";
import { readDeviceIdentity } from "../auth/device-identity";
import { parseProtocolVersion } from "../device/frame-codec";
import { ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import { DeviceSession, type SessionContext, type WsData } from "../session/device-session";
import { errorResponse } from "./json-response";

export interface UpgradeOptions {
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly session: SessionContext;
  readonly logger: Logger;
}

/**
 * Authenticates a device handshake and upgrades it. Every refusal is an HTTP error with a
 * JSON reason, before any upgrade (the firmware treats anything but 101 as failure).
 * Returns undefined once upgraded.
 */
export async function upgradeDevice(req: Request, url: URL, server: Server<WsData>, opts: UpgradeOptions): Promise<Response | undefined> {
  const id = readDeviceIdentity(req.headers, url.searchParams);
  const version = parseProtocolVersion(id.protocolVersion);
  if (id.protocolVersion !== undefined && version === undefined) {
    return errorResponse(400, ErrorCode.ProtocolVersionInvalid, "Protocol-Version must be 1, 2 or 3");
  }

  let verified: VerifiedToken | undefined;
  if (id.token !== undefined) {
    try {
      verified = await opts.verifier.verify(id.token);
    } catch (err) {
      if (!isGatewayError(err)) throw err;
      opts.logger.info({ code: err.code, reason: err.message, deviceId: id.deviceId }, "handshake refused");
      return errorResponse(401, err.code, err.message);
    }
  } else if (opts.authRequired) {
    opts.logger.info({ code: ErrorCode.TokenMissing, deviceId: id.deviceId }, "handshake refused");
    return errorResponse(401, ErrorCode.TokenMissing, "a token is required (Authorization: Bearer <token>, or ?token=)");
  }

  const deviceId = id.deviceId ?? verified?.deviceId;
  if (verified?.deviceId !== undefined && id.deviceId !== undefined && verified.deviceId !== id.deviceId) {
    opts.logger.info({ code: ErrorCode.TokenInvalid, deviceId: id.deviceId }, "handshake refused: token is for another device");
    return errorResponse(403, ErrorCode.TokenInvalid, "the token is bound to another Device-Id");
  }
  if (verified === undefined && deviceId === undefined) {
    return errorResponse(401, ErrorCode.DeviceIdMissing, "without a token a Device-Id is required");
  }

  const session = new DeviceSession(
    {
      deviceId,
      clientId: id.clientId,
      userId: verified?.subject ?? "",
      claims: verified?.claims ?? {},
      protocolVersion: version,
      dialect: url.searchParams.get("dialect") === "text" ? "text" : undefined,
    },
    opts.session,
  );
  if (server.upgrade(req, { data: { session } })) return undefined;
  return errorResponse(400, "ERR_NOT_WEBSOCKET", "expected a WebSocket upgrade");
}
