import { ErrorCode, GatewayError } from "../errors";

/**
 * Which browser pages may open the device WebSocket (IM_ALLOWED_ORIGINS). A browser always
 * sends `Origin` on a WebSocket handshake and a page cannot forge it, so this is what stops
 * a page on another site from using a visitor's network position (a LAN gateway) or
 * credentials: cross-site WebSocket hijacking (OWASP). Devices and other non-browser
 * clients send no Origin and are not concerned.
 */
export interface OriginPolicy {
  /** True when a handshake with this `Origin` (null: none) and `Host` may proceed. */
  allows(origin: string | null, host: string | null): boolean;
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = { "http:": "80", "https:": "443", "ws:": "80", "wss:": "443" };

/**
 * Parses IM_ALLOWED_ORIGINS (a comma list, or an array) into exact origins
 * `scheme://host[:port]`, normalised the way browsers send them (lower case, default port
 * dropped). Throws ERR_CONFIG_INVALID for an entry that is not an origin: a path, a query,
 * credentials, a wildcard or `null` (the opaque origin of sandboxed frames and files, which
 * any page can produce).
 */
export function parseAllowedOrigins(value: string | readonly string[]): ReadonlySet<string> {
  const entries = (typeof value === "string" ? value.split(",") : value).map((s) => s.trim()).filter((s) => s !== "");
  const out = new Set<string>();
  for (const entry of entries) {
    const origin = normaliseOrigin(entry);
    if (origin === undefined) {
      throw new GatewayError(
        ErrorCode.ConfigInvalid,
        `IM_ALLOWED_ORIGINS: ${JSON.stringify(entry.slice(0, 100))} is not an origin; use exact scheme://host[:port] values, comma-separated (no path, no wildcard, no "null")`,
      );
    }
    out.add(origin);
  }
  return out;
}

/**
 * The policy: no Origin passes; an Origin listed in `allowed` passes; an Origin whose
 * host[:port] is the request's own Host passes (the test page the gateway serves itself);
 * anything else, including `null` and unparseable values, is refused.
 */
export function createOriginPolicy(allowed: string | readonly string[]): OriginPolicy {
  const origins = parseAllowedOrigins(allowed);
  return {
    allows(origin, host) {
      if (origin === null) return true;
      const normalised = normaliseOrigin(origin);
      if (normalised === undefined) return false;
      if (origins.has(normalised)) return true;
      return host !== null && isOwnOrigin(normalised, host.trim().toLowerCase());
    },
  };
}

/** `scheme://host[:port]` lower-cased without a default port, or undefined if not an origin. */
function normaliseOrigin(value: string): string | undefined {
  if (value.length > 2048) return undefined;
  const trimmed = value.trim();
  if (trimmed === "*" || trimmed.toLowerCase() === "null") return undefined;
  // An origin has no path; a trailing slash is a common way of writing one anyway.
  const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#@\s]+)\/?$/i.exec(trimmed);
  if (m === null) return undefined;
  const scheme = m[1]!.toLowerCase();
  let url: URL;
  try {
    url = new URL(`${scheme}://${m[2]}`);
  } catch {
    return undefined;
  }
  if (url.host === "") return undefined;
  // URL drops default ports for special schemes only; do it for every known one.
  const port = url.port !== "" && url.port !== DEFAULT_PORTS[`${scheme}:`] ? `:${url.port}` : "";
  return `${scheme}://${url.hostname.toLowerCase()}${port}`;
}

/** The Origin names the host the request was sent to (Host carries a port unless default). */
function isOwnOrigin(origin: string, host: string): boolean {
  const scheme = origin.slice(0, origin.indexOf(":"));
  const originHost = origin.slice(scheme.length + 3);
  if (originHost === host) return true;
  const port = DEFAULT_PORTS[`${scheme}:`];
  return port !== undefined && `${originHost}:${port}` === host;
}
