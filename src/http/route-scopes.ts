/**
 * Who may call each route: the one table the routes, the README and the authorization test
 * all follow. Scopes:
 * - `public`: anyone;
 * - `public-summary`: anyone gets a summary; an operator token gets everything;
 * - `provisioning`: anyone the IM_OTA_POLICY admits, rate-limited per address;
 * - `debug`: only while the built-in development secret is in use;
 * - `device-socket`: any valid token; a device token only for its own Device-Id;
 * - `device-or-api`: a device's own token (or an unbound client token for the Device-Id it
 *   names), or an operator token covering that device;
 * - `api`: an operator token (`scope: "api"`), within its `devices` claim when it has one
 *   (a broadcast needs a token without one);
 * - `metrics`: IM_METRICS_TOKEN as a Bearer token, or an unrestricted operator token; open
 *   on the separate IM_METRICS_PORT listener.
 * With IM_AUTH_REQUIRED=false (development) a request without a token may call everything.
 */
export type RouteScope = "public" | "public-summary" | "provisioning" | "debug" | "device-socket" | "device-or-api" | "api" | "metrics";

export interface RouteRule {
  readonly method: "GET" | "POST";
  readonly path: string;
  readonly scope: RouteScope;
}

export const ROUTE_RULES: readonly RouteRule[] = [
  { method: "GET", path: "/health", scope: "public" },
  { method: "GET", path: "/alive", scope: "public" },
  { method: "GET", path: "/ready", scope: "public" },
  { method: "GET", path: "/api/health", scope: "public" },
  { method: "GET", path: "/test-websocket.html", scope: "public" },
  { method: "GET", path: "/api/status", scope: "public-summary" },
  { method: "POST", path: "/xiaozhi/ota/", scope: "provisioning" },
  { method: "GET", path: "/api/dev-token", scope: "debug" },
  { method: "GET", path: "/ws", scope: "device-socket" },
  { method: "POST", path: "/api/vision", scope: "device-or-api" },
  { method: "POST", path: "/api/message", scope: "api" },
  { method: "POST", path: "/api/image", scope: "api" },
  { method: "POST", path: "/api/devices/{id}/messages", scope: "api" },
  { method: "GET", path: "/metrics", scope: "metrics" },
];
