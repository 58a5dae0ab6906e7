import { describe, expect, test } from "bun:test";
import path from "node:path";
import { type Spawned, spawnUntil } from "../helpers/spawn-until";
import { startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";

/**
 * /ready tells the truth on both transports: 503 at once when the AI service dies (one failed
 * stream makes the pool re-check every connection, not only the one that carried traffic),
 * and 200 within one reconnect interval of its return, however long the outage (a failed
 * connection is re-probed every interval, and what waited re-opens when a probe succeeds).
 * The AI service is a real `xiaozhi-im ai` process, killed with SIGKILL.
 */

const root = path.join(import.meta.dir, "../..");
const HEARTBEAT_MS = 30_000;
const RECONNECT_MS = 500;

function startAi(port: number): Promise<Spawned> {
  return spawnUntil(
    ["bun", "src/main.ts", "ai"],
    { cwd: root, env: { ...process.env, AI_SERVER_PORT: String(port), AI_METRICS_PORT: "0", LOG_LEVEL: "info" } },
    "reference AI service listening",
  );
}

/** Polls /ready until it answers `status`; resolves with the milliseconds it took. */
async function readyBecomes(url: string, status: number, timeoutMs: number): Promise<number> {
  const started = performance.now();
  await until(async () => (await fetch(url)).status === status, { what: `/ready to answer ${status}`, timeoutMs });
  return performance.now() - started;
}

for (const transport of ["relay", "converse"] as const) {
  describe(`${transport}: /ready follows the AI service`, () => {
    test("503 at once after SIGKILL (heartbeat 30 s), 200 within one reconnect interval of its return after a long outage; devices keep their sockets", async () => {
      let ai = await startAi(0);
      const port = Number(ai.line.port);
      try {
        await using stack = await startStack({
          transport,
          ai: false,
          targets: [{ host: "127.0.0.1", port }],
          // Six connections, and one device whose stream rides only one of them.
          upstream: { maxConnections: 6, heartbeatMs: HEARTBEAT_MS, reconnectBaseMs: RECONNECT_MS, reconnectMaxMs: 30_000 },
        });
        const readyUrl = stack.wsUrl.replace("ws://", "http://").replace("/ws", "/ready");
        expect((await fetch(readyUrl)).status).toBe(200);
        const dev = await stack.device("ad:00:00:00:00:01", 3);
        await dev.hello();
        dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
        dev.sendAudio(new Uint8Array([1, 2, 3]));
        await dev.waitFor((r) => r.kind === "audio");

        ai.proc.kill("SIGKILL");
        await ai.proc.exited;
        const downMs = await readyBecomes(readyUrl, 503, HEARTBEAT_MS);
        // Well inside one heartbeat: the pool did not wait for its next probe.
        expect(downMs).toBeLessThan(1000);
        await dev.waitJson((m) => m.type === "alert" && m.status === "error");

        // A long outage: a growing backoff (0.5, 1, 2, 4 s...) would now wait seconds more.
        await Bun.sleep(4000);
        ai = await startAi(port);
        const upMs = await readyBecomes(readyUrl, 200, 30_000);
        expect(upMs).toBeLessThan(RECONNECT_MS + 1000);
        // The session resumed on the new process and works; the device never reconnected.
        await dev.waitJson((m) => m.type === "alert" && m.status === "info");
        dev.sendAudio(new Uint8Array([4, 5, 6]));
        await dev.waitFor((r) => r.kind === "audio" && r.payload[0] === 4);
        expect(dev.isOpen).toBe(true);
        expect(stack.metrics.connectionsOpened).toBe(1);
      } finally {
        ai.proc.kill("SIGKILL");
        await ai.proc.exited;
      }
    }, 60_000);
  });
}
