import type { VerifiedToken } from "./token-verifier";

/** The scope claim value that grants the HTTP API (`scope` is space-separated, as in OAuth). */
export const API_SCOPE = "api";

/**
 * What a verified token may do, read from its claims once:
 * - `device`: bound to one device (`device_id`, as OTA and `token --device-id` mint it): it
 *   opens that device's socket and posts that device's camera images, nothing else;
 * - `api`: an operator token (`scope` includes "api", `token --scope api`): the HTTP API,
 *   optionally only for the devices in its `devices` claim (then no broadcasts);
 * - `client`: neither (`token` with no options, the test page's dev tokens): it opens a
 *   device socket for the Device-Id it names, and no API route.
 */
export type TokenGrant =
  | { readonly t: "device"; readonly deviceId: string }
  | { readonly t: "api"; readonly devices: ReadonlySet<string> | undefined }
  | { readonly t: "client" };

export function grantOf(token: VerifiedToken): TokenGrant {
  const scopes = (token.claims.scope ?? "").split(/\s+/);
  if (scopes.includes(API_SCOPE)) return { t: "api", devices: deviceList(token.claims.devices) };
  if (token.deviceId !== undefined) return { t: "device", deviceId: token.deviceId };
  return { t: "client" };
}

/** The `devices` claim: a JSON array of Device-Ids or a comma-separated string. A claim that
 * is present but unreadable restricts to no device at all (never to every device). */
function deviceList(claim: string | undefined): ReadonlySet<string> | undefined {
  if (claim === undefined) return undefined;
  let ids: unknown;
  try {
    ids = JSON.parse(claim);
  } catch {
    ids = claim.split(",");
  }
  if (!Array.isArray(ids)) return new Set();
  return new Set(ids.filter((id): id is string => typeof id === "string" && id.trim() !== "").map((id) => id.trim().toLowerCase()));
}
