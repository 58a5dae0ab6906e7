import { createHmac, timingSafeEqual } from "node:crypto";
import { grantOf } from "../../auth/token-grant";
import type { TokenVerifier } from "../../auth/token-verifier";
import { isGatewayError } from "../../errors";
import type { MqttAuthenticate, MqttIdentity, MqttRefusal } from "./mqtt-listener";

const MAC_WITH_UNDERSCORES = /^[0-9a-f]{2}(_[0-9a-f]{2}){5}$/i;

/**
 * The device a client id names. The deployed convention is `<group>@@@<mac with _>@@@<uuid>`
 * (or without the uuid part); the MAC is the device's Device-Id.
 */
export function deviceOfClientId(clientId: string): string | undefined {
  const parts = clientId.split("@@@");
  const mac = parts.length === 2 || parts.length === 3 ? parts[1]! : undefined;
  if (mac === undefined || !MAC_WITH_UNDERSCORES.test(mac)) return undefined;
  return mac.replaceAll("_", ":").toLowerCase();
}

/** The password the deployed xiaozhi MQTT gateways check: base64 HMAC-SHA256 of
 * `clientId|username` under their shared signature key. */
export function legacySignature(clientId: string, username: string, key: string): string {
  return createHmac("sha256", key).update(`${clientId}|${username}`).digest("base64");
}

/**
 * Verifies a CONNECT: the password is a device token (the same verifier as WebSocket
 * handshakes) whose `device_id` is the client id's MAC; with `signatureKey` set, the legacy
 * HMAC password of existing fleets is accepted too. Refusals never carry the credentials.
 */
export function mqttAuthenticator(o: { readonly verifier: TokenVerifier; readonly signatureKey?: string }): MqttAuthenticate {
  return async ({ clientId, username, password }): Promise<MqttIdentity | MqttRefusal> => {
    const deviceId = deviceOfClientId(clientId);
    if (deviceId === undefined) return { refused: "bad-client-id", reason: "the client id names no MAC (<group>@@@<mac with _>@@@<uuid>)" };
    if (password === "") return { refused: "not-authorized", reason: "no password" };
    if (o.signatureKey !== undefined && o.signatureKey !== "") {
      const expected = Buffer.from(legacySignature(clientId, username, o.signatureKey));
      const given = Buffer.from(password);
      if (expected.length === given.length && timingSafeEqual(expected, given)) return { clientId, deviceId };
    }
    try {
      const token = await o.verifier.verify(password, { deviceId });
      const grant = grantOf(token);
      // Bound to this very device: a client or operator token is not a device credential.
      if (grant.t !== "device" || grant.deviceId.toLowerCase() !== deviceId)
        return { refused: "not-authorized", reason: "the token is not bound to this device" };
      return { clientId, deviceId };
    } catch (err) {
      return { refused: "not-authorized", reason: isGatewayError(err) ? err.code : "token refused" };
    }
  };
}
