/**
 * A Device-Id prefix unique to this run: a locally administered unicast MAC's first three
 * bytes (locally administered bit set, multicast bit clear), so ids look like the firmware's lower-case MACs and two runs
 * against one gateway do not replace each other's sessions.
 */
export function randomDevicePrefix(): string {
  const b = crypto.getRandomValues(new Uint8Array(3));
  b[0] = (b[0]! & 0xfc) | 0x02;
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/** The Device-Id of device `index` (0-based) under `prefix`. */
export function deviceIdOf(prefix: string, index: number): string {
  const hex = (x: number) => (x & 0xff).toString(16).padStart(2, "0");
  return `${prefix}:${hex(index >>> 16)}:${hex(index >>> 8)}:${hex(index)}`;
}
