import { afterEach, expect, test } from "bun:test";
import { EndReason } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { startStack } from "../helpers/start-stack";
import { type HostileAi, startHostileAi } from "../security/hostile-ai";

let ais: HostileAi[] = [];
afterEach(async () => {
  for (const ai of ais) await ai.close();
  ais = [];
});

test("relay: after an outage the sessions spread back over the streams as they recover, without a word to the devices", async () => {
  const ai = await startHostileAi();
  ais.push(ai);
  await using stack = await startStack({
    ai: false,
    targets: [{ host: "127.0.0.1", port: ai.port }],
    upstream: { maxConnections: 3, reconnectBaseMs: 50, reconnectMaxMs: 200 },
  });
  await ai.until(() => ai.relayStreams() >= 3);
  const devices = await Promise.all(Array.from({ length: 9 }, (_, i) => stack.device(`5b:00:00:00:00:0${i}`, 3)));
  await Promise.all(devices.map((d) => d.hello()));
  await ai.until(() => ai.hellos.length === 9);
  expect(ai.relaySessionCounts().sort()).toEqual([3, 3, 3]);

  // An outage: every stream fails, and new ones are refused for a while.
  ai.refuse({ http: 503 });
  ai.endRelayStreams("end-50%");
  await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "error")));
  await ai.until(() => ai.refused() >= 3);
  ai.refuse(undefined);
  await Promise.all(devices.map((d) => d.waitJson((m) => m.type === "alert" && m.status === "info")));

  // Whichever stream came back first took every session; the others take their share.
  await ai.until(() => {
    const counts = ai.relaySessionCounts();
    return counts.length === 3 && Math.max(...counts) - Math.min(...counts) <= 1 && counts.reduce((a, b) => a + b, 0) === 9;
  });
  expect(ai.endReasons.filter((r) => r === EndReason.MOVED).length).toBeGreaterThan(0);
  // Moving is silent: each device heard of the outage once, and of the return once.
  for (const d of devices) {
    const alerts = d.received.flatMap((r) => (r.kind === "json" && r.msg.type === "alert" ? [r.msg.status] : []));
    expect(alerts).toEqual(["error", "info"]);
  }
  for (const [i, d] of devices.entries()) d.sendAudio(new Uint8Array([i, 1]));
  await Promise.all(devices.map((d, i) => d.waitFor((r) => r.kind === "audio" && r.payload[0] === i)));
}, 30_000);
