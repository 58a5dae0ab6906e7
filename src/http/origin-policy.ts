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

/** IM_ALLOWED_ORIGINS, parsed. */
export interface AllowedOrigins {
  /** `*`: every Origin may open the socket. Safe here because the socket is authorised by a
   * bearer token the page must hold, never by a cookie the browser adds by itself. */
  readonly any: boolean;
  /** `null` listed: pages opened from a file (and sandboxed frames) may open the socket. */
  readonly opaque: boolean;
  /** Exact origins `scheme://host[:port]`. */
  readonly origins: ReadonlySet<string>;
}

/**
 * Parses IM_ALLOWED_ORIGINS (a comma list, or an array): exact origins
 * `scheme://host[:port]`, normalised the way browsers send them (lower case, default port
 * dropped), `*` for any, `null` for the opaque origin of files and sandboxed frames. Throws
 * ERR_CONFIG_INVALID for anything else (a path, a query, credentials, a partial wildcard).
 */
export function parseAllowedOrigins(value: string | readonly string[]): AllowedOrigins {
  const entries = (typeof value === "string" ? value.split(",") : value).map((s) => s.trim()).filter((s) => s !== "");
  const origins = new Set<string>();
  let any = false;
  let opaque = false;
  for (const entry of entries) {
    if (entry === "*") {
      any = true;
      continue;
    }
    if (entry.toLowerCase() === "null") {
      opaque = true;
      continue;
    }
    const origin = normaliseOrigin(entry);
    if (origin === undefined) {
      throw new GatewayError(
        ErrorCode.ConfigInvalid,
        `IM_ALLOWED_ORIGINS: ${JSON.stringify(entry.slice(0, 100))} is not an origin; use exact scheme://host[:port] values, "*" or "null", comma-separated (no path, no partial wildcard)`,
      );
    }
    origins.add(origin);
  }
  return { any, opaque, origins };
}

/**
 * The policy: no Origin passes; with `anyOrigin` (debug mode) or `*` every Origin passes; an
 * Origin listed passes (`null` only when listed); an Origin whose host[:port] is the
 * request's own Host passes (the test page the gateway serves itself); anything else,
 * including unparseable values, is refused.
 */
export function createOriginPolicy(allowed: string | readonly string[], anyOrigin = false): OriginPolicy {
  const parsed = parseAllowedOrigins(allowed);
  const any = anyOrigin || parsed.any;
  return {
    allows(origin, host) {
      if (origin === null || any) return true;
      if (origin.trim().toLowerCase() === "null") return parsed.opaque;
      const normalised = normaliseOrigin(origin);
      if (normalised === undefined) return false;
      if (parsed.origins.has(normalised)) return true;
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
  // A partial wildcard (`https://*.example.com`) is no origin: browsers never send one.
  if (url.host === "" || url.hostname.includes("*")) return undefined;
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
