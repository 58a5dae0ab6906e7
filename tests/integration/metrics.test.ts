import { expect, test } from "bun:test";
import { packets, startStack } from "../helpers/start-stack";

/** `name{labels} value` lines of a Prometheus text exposition, by series. */
function parse(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (-?[0-9.eE+-]+|NaN|[+-]Inf)$/.exec(line);
    if (!m) throw new Error(`not exposition format: ${line}`);
    series.set(m[1]!, Number(m[2]));
  }
  return series;
}

test("/metrics exposes what happened: connections by protocol, frames, drops, relay batches, HTTP, Redis state", async () => {
  await using stack = await startStack();
  const dev = await stack.device("ce:00:00:00:00:01", 3);
  await dev.hello();
  dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
  for (const p of packets(10)) dev.sendAudio(p);
  dev.sendRaw(new Uint8Array([0, 0])); // a truncated v3 frame: dropped, counted
  await dev.waitFor((r) => r.kind === "audio" && r.payload[2] === 9);
  await fetch(`${stack.gateway.url}/health`);
  const res = await fetch(`${stack.gateway.url}/metrics`, { headers: { authorization: `Bearer ${await stack.apiToken()}` } });
  expect(res.headers.get("content-type")).toContain("text/plain");
  const text = await res.text();
  const s = parse(text);
  expect(s.get('xiaozhi_connections{protocol="v3"}')).toBe(1);
  expect(s.get("xiaozhi_sessions")).toBe(1);
  expect(s.get("xiaozhi_frames_in_total")).toBe(10);
  expect(s.get("xiaozhi_frames_out_total")).toBe(10);
  expect(s.get('xiaozhi_frames_dropped_total{reason="frame-short"}')).toBe(1);
  expect(s.get("xiaozhi_upstream_ready")).toBe(1);
  const batches = s.get("xiaozhi_relay_batches_total") ?? 0;
  expect(batches).toBeGreaterThan(0);
  expect(s.get("xiaozhi_relay_events_total")).toBeGreaterThanOrEqual(12); // hello, listen, 10 frames
  expect(s.get("xiaozhi_relay_batch_delay_seconds_count")).toBe(batches);
  expect(s.get('xiaozhi_relay_batch_delay_seconds_bucket{le="+Inf"}')).toBe(batches);
  expect(s.get('xiaozhi_http_requests_total{route_status="/health 200"}')).toBe(1);
  expect(s.get('xiaozhi_redis_link{state="local"}')).toBe(1);
  expect(text).toContain("# TYPE xiaozhi_relay_batch_delay_seconds histogram");
});
