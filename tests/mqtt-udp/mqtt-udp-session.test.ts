import { afterEach, describe, expect, test } from "bun:test";
import { createSocket } from "node:dgram";
import mqtt from "mqtt";
import type { MqttUdpTransport } from "../../src/session/mqtt-udp/mqtt-udp-transport";
import { type Stack, startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";
import { FirmwareDevice } from "./firmware-device";
import { selfSignedCert } from "./self-signed-cert";
import { startTestMqttUdp } from "./start-mqtt-udp";

let devices: FirmwareDevice[] = [];
let transports: MqttUdpTransport[] = [];
afterEach(() => {
  for (const d of devices) d.close();
  for (const t of transports) t.stop();
  devices = [];
  transports = [];
});

async function withMqttUdp(stack: Stack): Promise<MqttUdpTransport> {
  const t = await startTestMqttUdp(stack);
  transports.push(t);
  return t;
}

async function firmware(stack: Stack, t: MqttUdpTransport, mac: string): Promise<FirmwareDevice> {
  const d = await FirmwareDevice.connect(t.mqttPort, mac, await stack.token(mac));
  devices.push(d);
  return d;
}

/** A manual listen start, once the session has taken it (it travels on MQTT, apart from audio). */
async function listenStart(stack: Stack, d: FirmwareDevice): Promise<void> {
  const jsonIn = stack.metrics.jsonIn;
  d.publish({ session_id: d.sessionId, type: "listen", state: "start", mode: "manual" });
  await until(() => stack.metrics.jsonIn > jsonIn, { what: "the listen start to reach the session" });
}

const frame = (i: number) => new Uint8Array(120).fill(i & 0xff).map((v, j) => (j === 0 ? 0x58 : v));

describe("MQTT + UDP devices are device sessions like any", () => {
  test("hello over MQTT gets the UDP endpoint, key and nonce; 50 realtime frames come back decrypted, in order", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:01");
    const hello = await d.hello();
    expect(hello).toMatchObject({ type: "hello", transport: "udp", udp: { server: "127.0.0.1", port: t.udpPort } });
    expect(String((hello.udp as { key: string }).key)).toMatch(/^[0-9a-f]{32}$/);
    expect(String((hello.udp as { nonce: string }).nonce)).toMatch(/^01[0-9a-f]{30}$/);
    expect(hello.session_id).toBeString();
    expect(stack.gateway.registry.get("aa:bb:cc:00:00:01")?.isActive).toBe(true);

    d.publish({ session_id: d.sessionId, type: "listen", state: "start", mode: "realtime" });
    const sent = Array.from({ length: 50 }, (_, i) => frame(i + 1));
    for (const f of sent) d.sendAudio(f);
    const got = await d.waitForAudio(50);
    expect(got).toEqual(sent);
  });

  test("a listen stop that overtakes the utterance's last datagrams does not cut them off", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:0c");
    await d.hello();
    await listenStart(stack, d);
    const utterance = Array.from({ length: 8 }, (_, i) => frame(100 + i));
    for (const f of utterance.slice(0, 6)) d.sendAudio(f);
    // The stop goes out before the last two frames, as when the device's send queue still
    // holds them: they arrive after it, within a frame's time.
    d.publish({ session_id: d.sessionId, type: "listen", state: "stop" });
    await Bun.sleep(10);
    for (const f of utterance.slice(6)) d.sendAudio(f);
    // The reference AI plays the utterance back: all of it, not the first six frames.
    await d.waitFor((m) => m.type === "tts" && m.state === "stop");
    expect(d.audio).toEqual(utterance);
  });

  test("the first frames that overtake their listen start are part of the utterance", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:0d");
    await d.hello();
    const utterance = Array.from({ length: 6 }, (_, i) => frame(120 + i));
    // The wake word's first frames arrive before the start that precedes them on the device.
    for (const f of utterance.slice(0, 2)) d.sendAudio(f);
    await Bun.sleep(10);
    await listenStart(stack, d);
    for (const f of utterance.slice(2)) d.sendAudio(f);
    await until(() => stack.metrics.framesIn >= 6, { what: "all six frames to reach the session" });
    d.publish({ session_id: d.sessionId, type: "listen", state: "stop" });
    await d.waitFor((m) => m.type === "tts" && m.state === "stop");
    expect(d.audio).toEqual(utterance);
  });

  test("UDP garbage, a wrong ssrc and a replayed datagram cost only their sender; audio keeps flowing", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:02");
    await d.hello();
    d.publish({ session_id: d.sessionId, type: "listen", state: "start", mode: "realtime" });
    const first = d.sendAudio(frame(1));
    await d.waitForAudio(1);
    d.sendRaw(new Uint8Array([1, 2, 3]));
    const foreign = Buffer.from(first);
    foreign.writeUInt32BE((foreign.readUInt32BE(4) + 1) >>> 0, 4);
    d.sendRaw(foreign);
    d.sendRaw(first);
    // A well-framed datagram with the session's ssrc, from another address (a sprayer
    // guessing ssrcs): refused, and the session keeps its address.
    const sprayer = createSocket("udp4");
    await new Promise<void>((resolve) => sprayer.bind(0, "127.0.0.2", () => resolve()));
    const spoof = Buffer.from(first);
    spoof.writeUInt32BE(1_000_000, 12);
    await new Promise<void>((resolve) => sprayer.send(spoof, t.udpPort, "127.0.0.1", () => resolve()));
    sprayer.close();
    d.sendAudio(frame(2));
    const got = await d.waitForAudio(2);
    expect(got[1]).toEqual(frame(2));
    expect(t.udp.dropped).toMatchObject({ short: 1, "unknown-ssrc": 1 });
    expect(stack.metrics.dropped["udp-stale"]).toBe(1);
    expect(stack.metrics.dropped["udp-foreign-address"]).toBe(1);
    // And an operator sees them in /metrics, by reason.
    const scrape = await (await fetch(`${stack.gateway.url}/metrics`, { headers: { Authorization: `Bearer ${await stack.apiToken()}` } })).text();
    expect(scrape).toContain('xiaozhi_udp_dropped_total{reason="short"} 1');
    expect(scrape).toContain('xiaozhi_udp_dropped_total{reason="unknown-ssrc"} 1');
    expect(scrape).toContain('xiaozhi_frames_dropped_total{reason="udp-stale"} 1');
    expect(scrape).toMatch(/xiaozhi_mqtt_connections 1\b/);
  });

  test("goodbye from the device ends the audio session, not the MQTT connection; a new hello opens another", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:03");
    await d.hello();
    const first = d.sessionId;
    const audioSession = stack.gateway.registry.get("aa:bb:cc:00:00:03");
    d.publish({ session_id: first, type: "goodbye" });
    // The audio session ends; the device stays present, idle (reachable over MQTT).
    await until(() => stack.gateway.registry.get("aa:bb:cc:00:00:03") !== audioSession, { what: "the audio session to end" });
    expect(stack.gateway.registry.get("aa:bb:cc:00:00:03")?.isActive).toBe(false);
    expect(d.mqtt.connected).toBe(true);
    await d.hello();
    expect(d.sessionId).not.toBe(first);
    expect(stack.gateway.registry.get("aa:bb:cc:00:00:03")?.isActive).toBe(true);
  });

  test("an answer is played over UDP paced, and abort stops it at once: tts stop, then no more audio", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:0e");
    await d.hello();
    // A manual utterance of 12 frames, which the reference AI plays back: the gateway sends
    // them one per 60 ms. Sent at once, all 12 would be here before the abort below. (Audio
    // is sent as the firmware does, before any answer: the gateway learns the device's UDP
    // address from its first datagram.)
    await listenStart(stack, d);
    for (let i = 0; i < 12; i++) d.sendAudio(frame(40 + i));
    await until(() => stack.metrics.framesIn >= 12, { what: "the utterance to reach the session" });
    d.publish({ session_id: d.sessionId, type: "listen", state: "stop" });
    await d.waitForAudio(3);
    d.publish({ session_id: d.sessionId, type: "abort", reason: "wake_word_detected" });
    await d.waitFor((m) => m.type === "tts" && m.state === "stop");
    const framesAtStop = d.audio.length;
    expect(framesAtStop).toBeLessThan(12);
    // Had abort not stopped the playback, its frames would keep coming in its remaining time.
    const from = d.messages.length;
    d.publish({ session_id: d.sessionId, type: "ping" });
    await d.waitFor((m) => m.type === "pong", from);
    await Bun.sleep(400);
    expect(d.audio.length).toBe(framesAtStop);
  });

  test("a device whose MQTT socket dies loses its session; it reconnects, says hello and talks again", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const mac = "aa:bb:cc:00:00:0f";
    const d = await firmware(stack, t, mac);
    await d.hello();
    const lost = stack.gateway.registry.get(mac);
    expect(lost?.isActive).toBe(true);
    // The Wi-Fi drops: no DISCONNECT, the TCP connection is simply gone.
    d.mqtt.stream.destroy();
    await until(() => stack.gateway.registry.get(mac) !== lost && t.mqtt.size === 0, { what: "the gateway to notice the dead socket" });
    expect(stack.gateway.registry.get(mac)).toBeUndefined();

    const again = await firmware(stack, t, mac);
    await again.hello();
    expect(again.sessionId).not.toBe(d.sessionId);
    again.publish({ session_id: again.sessionId, type: "listen", state: "start", mode: "realtime" });
    const sent = Array.from({ length: 5 }, (_, i) => frame(200 + i));
    for (const f of sent) again.sendAudio(f);
    expect(await again.waitForAudio(5)).toEqual(sent);
    expect(stack.gateway.registry.get(mac)?.isActive).toBe(true);
  });

  test("an idle MQTT device (no audio session) is reached by the HTTP API: an alert, and an MCP call answered", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:05");
    const api = await stack.apiToken();
    const push = (body: unknown) =>
      fetch(`${stack.gateway.url}/api/devices/aa:bb:cc:00:00:05/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${api}`, "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    const alert = await push({ type: "alert", status: "info", message: "battery low", emotion: "neutral" });
    expect(alert.status).toBe(200);
    expect(await d.waitFor((m) => m.type === "alert")).toMatchObject({ message: "battery low" });
    // The device answers the MCP call over MQTT, with the id it was given.
    d.mqtt.on("message", (_t, payload) => {
      const m = JSON.parse(payload.toString()) as { type: string; payload?: { id: unknown; method?: string } };
      if (m.type === "mcp" && m.payload?.method === "tools/call")
        d.publish({ type: "mcp", payload: { jsonrpc: "2.0", id: m.payload.id, result: { volume: 30 } } });
    });
    const call = await push({
      type: "mcp",
      payload: { jsonrpc: "2.0", id: 7, method: "tools/call", params: { name: "self.audio_speaker.set_volume", arguments: { volume: 30 } } },
    });
    expect(call.status).toBe(200);
    expect(await call.json()).toMatchObject({ reply: { id: 7, result: { volume: 30 } } });
    expect(stack.gateway.registry.get("aa:bb:cc:00:00:05")?.isActive).toBe(false);
  });

  test("a broadcast (/api/message) reaches MQTT devices too, idle or in a session", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const idle = await firmware(stack, t, "aa:bb:cc:00:00:06");
    const talking = await firmware(stack, t, "aa:bb:cc:00:00:07");
    await talking.hello();
    const res = await fetch(`${stack.gateway.url}/api/message`, {
      method: "POST",
      headers: { Authorization: `Bearer ${await stack.apiToken()}`, "Content-Type": "application/json" },
      body: JSON.stringify({ content: "everyone: the office closes at six" }),
    });
    expect(res.status).toBe(200);
    for (const d of [idle, talking]) expect(await d.waitFor((m) => m.type === "alert")).toMatchObject({ type: "alert" });
  });

  test("MQTT connections count toward the same per-address limit as WebSocket ones, and give their place back", async () => {
    await using stack = await startStack({ gateway: { handshake: { maxConnectionsPerIp: 2 } } });
    const t = await withMqttUdp(stack);
    await firmware(stack, t, "aa:bb:cc:00:00:08");
    const ws = await stack.device("aa:bb:cc:00:00:09", 3);
    await expect(firmware(stack, t, "aa:bb:cc:00:00:0a")).rejects.toThrow();
    expect(t.mqtt.stats.refused.per_ip_limit).toBe(1);
    ws.close();
    await ws.closed;
    // The WebSocket's place is given back once the gateway has seen it close: retried until then.
    let refusal: unknown;
    await until(
      () =>
        firmware(stack, t, "aa:bb:cc:00:00:0a").then(
          () => true,
          (err: unknown) => {
            refusal = err;
            return false;
          },
        ),
      { what: () => `the closed WebSocket's place to be given back (last refusal: ${refusal})`, intervalMs: 20 },
    );
  });

  test("newest wins across the plain and the TLS listener: the older MQTT connection is closed", async () => {
    await using stack = await startStack();
    const tls = { port: 0, ...selfSignedCert() };
    const t = await startTestMqttUdp(stack, { tls });
    transports.push(t);
    const plain = await firmware(stack, t, "aa:bb:cc:00:00:0b");
    const plainClosed = new Promise<void>((resolve) => plain.mqtt.once("close", () => resolve()));
    const secure = mqtt.connect(`mqtts://127.0.0.1:${t.mqttTlsPort}`, {
      clientId: `GID_test@@@aa_bb_cc_00_00_0b@@@${crypto.randomUUID()}`,
      username: "{}",
      password: await stack.token("aa:bb:cc:00:00:0b"),
      protocolVersion: 4,
      reconnectPeriod: 0,
      rejectUnauthorized: false,
    });
    await new Promise<void>((resolve, reject) => {
      secure.once("connect", () => resolve());
      secure.once("error", reject);
    });
    await plainClosed;
    expect(secure.connected).toBe(true);
    secure.end(true);
  });

  test("newest wins across transports: a WebSocket connection of the same device says goodbye to the MQTT session", async () => {
    await using stack = await startStack();
    const t = await withMqttUdp(stack);
    const d = await firmware(stack, t, "aa:bb:cc:00:00:04");
    await d.hello();
    const from = d.messages.length;
    const ws = await stack.device("aa:bb:cc:00:00:04", 3);
    await ws.hello();
    const bye = await d.waitFor((m) => m.type === "goodbye", from);
    expect(bye.session_id).toBe(d.sessionId);
    expect(d.mqtt.connected).toBe(true);
    expect(stack.gateway.registry.get("aa:bb:cc:00:00:04")?.isActive).toBe(true);
    ws.close();
  });
});
