import type { DeviceLocation } from "./device-directory";

/**
 * A device's directory entry as stored in Redis: `"<sinceMs> <instanceId> <sessionId>"`.
 * Plain text rather than JSON so that the Lua scripts can compare whole values (compare-and-
 * delete) and read `sinceMs` with one pattern; instance ids have no spaces, and the session id
 * comes last so it may hold anything.
 */
export function formatEntry(location: DeviceLocation): string {
  return `${location.sinceMs} ${location.instanceId} ${location.sessionId}`;
}

/** Reads what `formatEntry` wrote; `undefined` for anything else. */
export function parseEntry(value: string): DeviceLocation | undefined {
  const first = value.indexOf(" ");
  const second = first < 0 ? -1 : value.indexOf(" ", first + 1);
  if (second < 0) return undefined;
  const sinceMs = Number(value.slice(0, first));
  if (!Number.isSafeInteger(sinceMs)) return undefined;
  return { sinceMs, instanceId: value.slice(first + 1, second), sessionId: value.slice(second + 1) };
}
