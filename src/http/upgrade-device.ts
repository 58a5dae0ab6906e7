import type { Server } from "bun";
import { readDeviceIdentity } from "../auth/device-identity";
import type { TokenVerifier, VerifiedToken } from "../auth/token-verifier";
import { parseProtocolVersion } from "../device/frame-codec";
import { ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import { DeviceSession, type WsData } from "../session/device-session";
import type { ConnectionLease } from "./connection-limits";
import type { HandshakeGuard } from "./handshake-guard";
import { type HandshakeRefusal, tokenRefusal } from "./handshake-refusal";

/** The gateway-wide admission (connections held, connects per second), asked only once a
 * handshake has passed the checks of its own address. */
export interface InstanceGate {
  /** Takes a place (and a connect) for this upgrade, or answers the refusal. */
  admit(): Response | undefined;
  /** The upgrade is over (upgraded or refused): its place as an upgrade in flight is free. */
  done(): void;
}

export interface UpgradeOptions {
  readonly verifier: TokenVerifier;
  readonly authRequired: boolean;
  readonly logger: Logger;
  /** Size limits, origin policy, connection counts, and the session context (one per server). */
  readonly guard: HandshakeGuard;
  readonly instance: InstanceGate;
}

/**
 * Authenticates a device handshake and upgrades it. Every refusal is an HTTP error with a
 * JSON `{"error":{"code","reason","message"}}` before any upgrade (the firmware treats
 * anything but 101 as failure), checked in an order where nothing one client does can
 * refuse another: first what concerns the client's own address (its connect rate 429,
 * request size 431, Origin 403, its open connections 429), then the gateway-wide budget
 * (503), Protocol-Version (400), the token (401, 403 for another device's token, 503 when
 * the keys cannot be loaded), and only then the device's connections (429), so that forged
 * tokens naming a device cannot use up its places. Returns undefined once upgraded.
 */
export async function upgradeDevice(req: Request, url: URL, server: Server<WsData>, ip: string, opts: UpgradeOptions): Promise<Response | undefined> {
  const { guard } = opts;
  const limited = guard.admitRate(ip, performance.now());
  if (limited !== undefined) return guard.refuse(limited, { ip });
  const screened = guard.screen(req, url);
  if (screened !== undefined) return guard.refuse(screened, { ip });

  const admitted = guard.admitAddress(ip);
  if (!("release" in admitted)) return guard.refuse(admitted, { ip });
  const lease: ConnectionLease = admitted;
  let handedOver = false;
  try {
    const full = opts.instance.admit();
    if (full !== undefined) return full;
    try {
      const res = await authenticateAndUpgrade(req, url, server, opts, lease, ip);
      handedOver = res === undefined;
      return res;
    } finally {
      opts.instance.done();
    }
  } finally {
    // Refused, failed or thrown: the place is given back now. Upgraded: when the session
    // leaves the registry (its socket closed), which may already have happened.
    if (!handedOver) lease.release();
  }
}

async function authenticateAndUpgrade(
  req: Request,
  url: URL,
  server: Server<WsData>,
  opts: UpgradeOptions,
  lease: ConnectionLease,
  ip: string,
): Promise<Response | undefined> {
  const { guard } = opts;
  const id = readDeviceIdentity(req.headers, url.searchParams);
  const refuse = (r: HandshakeRefusal, deviceId = id.deviceId) => guard.refuse(r, { deviceId, ip });

  const version = parseProtocolVersion(id.protocolVersion);
  if (id.protocolVersion !== undefined && version === undefined) {
    return refuse({ code: ErrorCode.ProtocolVersionInvalid, reason: "protocol_version_invalid", message: "Protocol-Version must be 1, 2 or 3" });
  }
  let verified: VerifiedToken | undefined;
  if (id.token !== undefined) {
    try {
      verified = await opts.verifier.verify(id.token, id.deviceId === undefined ? undefined : { deviceId: id.deviceId });
    } catch (err) {
      if (!isGatewayError(err)) throw err;
      return refuse(tokenRefusal(err));
    }
  } else if (opts.authRequired) {
    return refuse({ code: ErrorCode.TokenMissing, reason: "missing", message: "a token is required (Authorization: Bearer <token>, or ?token=)" });
  }

  const deviceId = id.deviceId ?? verified?.deviceId;
  if (verified === undefined && deviceId === undefined) {
    return refuse({ code: ErrorCode.DeviceIdMissing, reason: "device_id_missing", message: "without a token a Device-Id is required" });
  }
  // Counted only now that the token is verified: forged tokens naming a device must not take
  // its places (a device in a reconnect loop is held back by its address's connect rate).
  if (deviceId !== undefined) {
    const refusal = guard.admitDevice(lease, deviceId);
    if (refusal !== undefined) return refuse(refusal, deviceId);
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
    guard.sessionContext,
    lease.addressBytes,
  );
  // Before upgrade(): Bun runs the open handler inside it, and a socket may close at once.
  guard.track(session, lease);
  if (server.upgrade(req, { data: { session } })) return undefined;
  // The client went away while it was being verified, or this was no WebSocket request.
  guard.untrack(session);
  return refuse({ code: ErrorCode.NotWebSocket, reason: "not_websocket", message: "expected a WebSocket upgrade" }, deviceId);
}
