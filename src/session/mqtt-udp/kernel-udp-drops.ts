import { readFileSync } from "node:fs";

/**
 * Datagrams the kernel dropped for the UDP socket bound to local `port` (its receive buffer
 * was full), from the `drops` column of /proc/net/udp and udp6. These never reach the
 * gateway, so this is the only place they can be counted. Undefined where there is no
 * /proc (not Linux).
 */
export function kernelUdpDrops(port: number): number | undefined {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let drops: number | undefined;
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops
      if (cols.length < 13 || !cols[1]!.endsWith(hexPort)) continue;
      drops = (drops ?? 0) + Number(cols[12]);
    }
  }
  return drops;
}
