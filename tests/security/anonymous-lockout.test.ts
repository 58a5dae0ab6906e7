import { describe, expect, test } from "bun:test";
import { mintToken } from "../../src/auth/mint-token";
import { handshake, startStack } from "../helpers/start-stack";

/**
 * Found before: one client sending handshakes with a forged token used the gateway-wide
 * connect budget, and a real device at another address got 503 on 62% of its attempts;
 * forged tokens naming a victim's Device-Id got it refused 429 `per_device_limit` on 90%.
 * Now the address's own checks come first and the device's places are taken only with a
 * verified token: the victim is never refused. The attacker is 127.0.0.1, the victim
 * 127.0.0.2 (both loopback addresses of this machine).
 */

const ATTACKER = "127.0.0.1";
const VICTIM = "127.0.0.2";
const VICTIM_ID = "7e:00:00:00:00:01";
const FLOOD = 600;
const CONCURRENCY = 40;

/** Fires `total` handshakes from `from`, `CONCURRENCY` at a time; resolves with their statuses. */
async function flood(url: string, total: number, headers: () => Record<string, string>): Promise<number[]> {
  const statuses: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < total) {
        next++;
        statuses.push((await handshake(url, headers(), { localAddress: ATTACKER })).status);
      }
    }),
  );
  return statuses;
}

/** The victim's attempts, one after another while the flood runs; their statuses. */
async function victim(url: string, token: string, attempts: number, running: () => boolean): Promise<number[]> {
  const statuses: number[] = [];
  while (statuses.length < attempts && running()) {
    statuses.push(
      (await handshake(url, { Authorization: `Bearer ${token}`, "Device-Id": VICTIM_ID, "Protocol-Version": "3" }, { localAddress: VICTIM })).status,
    );
  }
  return statuses;
}

describe("a flood from one address refuses nobody else", () => {
  for (const target of ["the gateway's connect budget", "a victim's Device-Id"] as const) {
    test(`forged tokens aimed at ${target}: the victim at another address is admitted every time`, async () => {
      await using stack = await startStack({
        // A budget the flood could exhaust alone: 100 connects/s for the whole gateway.
        gateway: { maxConnectsPerSecond: 100, handshake: { maxConnectsPerIpPerSecond: 20, maxConnectionsPerDevice: 2 } },
      });
      const forged = await mintToken({ secret: "not-the-gateway-secret", deviceId: VICTIM_ID });
      const token = await stack.token(VICTIM_ID);
      let flooding = true;
      const attack = flood(stack.wsUrl, FLOOD, () => ({
        Authorization: `Bearer ${forged}`,
        "Device-Id":
          target === "a victim's Device-Id"
            ? VICTIM_ID
            : `7e:00:00:00:${Math.floor(Math.random() * 256)
                .toString(16)
                .padStart(2, "0")}:02`,
      })).finally(() => {
        flooding = false;
      });
      const mine = await victim(stack.wsUrl, token, 20, () => flooding);
      const theirs = await attack;
      // The flood was real: most of it refused at its own address's rate (429), the rest 401.
      expect(theirs.filter((s) => s === 429).length).toBeGreaterThan(FLOOD / 2);
      expect(theirs.every((s) => s === 429 || s === 401)).toBe(true);
      expect(mine.length).toBeGreaterThan(0);
      expect(mine.filter((s) => s !== 101)).toEqual([]);
      expect(stack.metrics.upgradesRefused.per_ip_rate).toBeGreaterThan(FLOOD / 2);
      expect(stack.metrics.upgradesRefused["connect-rate"]).toBe(0);
    });
  }
});
