import { afterEach, describe, expect, test } from "bun:test";
import { connect as tcpConnect, type Socket } from "node:net";
import mqtt, { type MqttClient } from "mqtt";
import * as mqttPacket from "mqtt-packet";
import { mintToken } from "../../src/auth/mint-token";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { legacySignature, mqttAuthenticator } from "../../src/session/mqtt-udp/mqtt-credentials";
import { type MqttDeviceConnection, type MqttListener, startMqttListener } from "../../src/session/mqtt-udp/mqtt-listener";
import { selfSignedCert } from "./self-signed-cert";
import { until } from "../helpers/until";

const SECRET = "mqtt-listener-test-secret-0123456789abcdef";
const verifier = createTokenVerifier({ secret: SECRET });

interface Harness {
  readonly listener: MqttListener;
  readonly connections: MqttDeviceConnection[];
  readonly messages: { deviceId: string; json: string }[];
  readonly closed: { deviceId: string; reason: string }[];
}

let harnesses: Harness[] = [];
let clients: MqttClient[] = [];
let sockets: Socket[] = [];
afterEach(async () => {
  for (const c of clients) c.end(true);
  for (const s of sockets) s.destroy();
  for (const h of harnesses) h.listener.stop();
  harnesses = [];
  clients = [];
  sockets = [];
});

function start(o: { signatureKey?: string; maxPacketBytes?: number } = {}): Harness {
  const h: Harness = {
    listener: undefined as unknown as MqttListener,
    connections: [],
    messages: [],
    closed: [],
  };
  const listener = startMqttListener({
    host: "127.0.0.1",
    port: 0,
    maxPacketBytes: o.maxPacketBytes ?? 64 * 1024,
    authenticate: mqttAuthenticator({ verifier, signatureKey: o.signatureKey }),
    connected(conn) {
      h.connections.push(conn);
      const deviceId = conn.identity.deviceId;
      return {
        message: (json) => h.messages.push({ deviceId, json }),
        closed: (reason) => h.closed.push({ deviceId, reason }),
      };
    },
  });
  (h as { listener: MqttListener }).listener = listener;
  harnesses.push(h);
  return h;
}

const clientId = (mac: string) => `GID_test@@@${mac.replaceAll(":", "_")}@@@${crypto.randomUUID()}`;

/** An mqtt.js client as the firmware connects: MQTT 3.1.1, QoS 0, no reconnect here. */
async function device(port: number, mac: string, password?: string, o: { keepalive?: number } = {}): Promise<MqttClient> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
    clientId: clientId(mac),
    username: "{}",
    password: password ?? (await mintToken({ secret: SECRET, deviceId: mac })),
    protocolVersion: 4,
    reconnectPeriod: 0,
    keepalive: o.keepalive ?? 60,
  });
  clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  return client;
}

function refusal(port: number, id: string, password: string): Promise<number | undefined> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: id, username: "{}", password, protocolVersion: 4, reconnectPeriod: 0 });
  clients.push(client);
  return new Promise((resolve) => {
    client.once("connect", () => resolve(0));
    client.once("error", (err: Error & { code?: number }) => resolve(err.code));
  });
}

/** A raw TCP connection, for what no MQTT client would send. */
function raw(port: number): Promise<{ socket: Socket; ended: Promise<Buffer> }> {
  return new Promise((resolve) => {
    const socket = tcpConnect(port, "127.0.0.1", () => {
      const chunks: Buffer[] = [];
      const ended = new Promise<Buffer>((done) => {
        socket.on("data", (c: Buffer) => chunks.push(c));
        socket.on("close", () => done(Buffer.concat(chunks)));
      });
      resolve({ socket, ended });
    });
    socket.on("error", () => {});
    sockets.push(socket);
  });
}

describe("MQTT listener", () => {
  test("a device connects with its token, subscribes to its own topic, publishes JSON and is answered", async () => {
    const h = start();
    const client = await device(h.listener.port, "aa:bb:cc:dd:ee:01");
    expect((await client.subscribeAsync("devices/p2p/aa_bb_cc_dd_ee_01")).map((g) => g.qos)).toEqual([0]);
    // Another device's topic: refused (SUBACK 0x80, which mqtt.js reports as an error).
    expect(client.subscribeAsync("devices/p2p/aa_bb_cc_dd_ee_02")).rejects.toThrow();
    client.publish("device-server", JSON.stringify({ type: "hello", version: 3, transport: "udp" }));
    await until(() => h.messages.length === 1, { what: "the hello" });
    expect(h.messages[0]).toEqual({ deviceId: "aa:bb:cc:dd:ee:01", json: '{"type":"hello","version":3,"transport":"udp"}' });
    const got = new Promise<[string, string]>((resolve) => client.once("message", (topic, payload) => resolve([topic, payload.toString()])));
    expect(h.connections[0]?.publish('{"type":"hello","transport":"udp"}')).toBe(true);
    expect(await got).toEqual(["devices/p2p/aa_bb_cc_dd_ee_01", '{"type":"hello","transport":"udp"}']);
    expect(h.listener.stats.dropped["foreign-subscribe"]).toBe(1);
  });

  test("bad credentials get CONNACK 'not authorized' (5) and nothing else; a bad client id 'identifier rejected' (2)", async () => {
    const h = start();
    const port = h.listener.port;
    const other = await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:99" });
    const forged = await mintToken({ secret: "not-the-gateway-secret-0123456789abcdef", deviceId: "aa:bb:cc:dd:ee:03" });
    const unbound = await mintToken({ secret: SECRET });
    expect(await refusal(port, clientId("aa:bb:cc:dd:ee:03"), other)).toBe(5);
    expect(await refusal(port, clientId("aa:bb:cc:dd:ee:03"), forged)).toBe(5);
    expect(await refusal(port, clientId("aa:bb:cc:dd:ee:03"), unbound)).toBe(5);
    expect(await refusal(port, clientId("aa:bb:cc:dd:ee:03"), "")).toBe(5);
    expect(await refusal(port, "no-mac-here", other)).toBe(2);
    expect(h.connections).toHaveLength(0);
    expect(h.listener.stats.refused["not-authorized"]).toBe(4);
  });

  test("the legacy HMAC password of existing fleets is accepted when its key is set", async () => {
    const h = start({ signatureKey: "fleet-signature-key" });
    const id = clientId("aa:bb:cc:dd:ee:04");
    const client = mqtt.connect(`mqtt://127.0.0.1:${h.listener.port}`, {
      clientId: id,
      username: "eyJpcCI6IjEuMi4zLjQifQ==",
      password: legacySignature(id, "eyJpcCI6IjEuMi4zLjQifQ==", "fleet-signature-key"),
      protocolVersion: 4,
      reconnectPeriod: 0,
    });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    expect(h.connections[0]?.identity.deviceId).toBe("aa:bb:cc:dd:ee:04");
    expect(await refusal(h.listener.port, clientId("aa:bb:cc:dd:ee:05"), legacySignature(id, "x", "fleet-signature-key"))).toBe(5);
  });

  test("a publish to a foreign topic is dropped and counted; the device stays connected", async () => {
    const h = start();
    const client = await device(h.listener.port, "aa:bb:cc:dd:ee:06");
    client.publish("devices/p2p/aa_bb_cc_dd_ee_07", '{"type":"alert"}');
    client.publish("device-server", '{"type":"ping"}');
    await until(() => h.messages.length === 1, { what: "the message on the right topic" });
    expect(h.messages[0]?.json).toBe('{"type":"ping"}');
    expect(h.listener.stats.dropped["foreign-topic"]).toBe(1);
    expect(client.connected).toBe(true);
  });

  test("a newer connection of the same device closes the older one", async () => {
    const h = start();
    const first = await device(h.listener.port, "aa:bb:cc:dd:ee:08");
    const firstClosed = new Promise<void>((resolve) => first.once("close", () => resolve()));
    await device(h.listener.port, "aa:bb:cc:dd:ee:08");
    await firstClosed;
    expect(h.closed).toEqual([{ deviceId: "aa:bb:cc:dd:ee:08", reason: "replaced by a newer connection" }]);
  });

  test("garbage, a packet before CONNECT and an oversized packet each close only their sender", async () => {
    const h = start({ maxPacketBytes: 4096 });
    const good = await device(h.listener.port, "aa:bb:cc:dd:ee:09");
    const garbage = await raw(h.listener.port);
    garbage.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
    expect((await garbage.ended).length).toBe(0);
    const early = await raw(h.listener.port);
    early.socket.write(mqttPacket.generate({ cmd: "pingreq" }));
    await early.ended;
    const big = await raw(h.listener.port);
    big.socket.write(mqttPacket.generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clean: true, keepalive: 60, clientId: "x".repeat(10_000) }));
    await big.ended;
    expect(h.listener.stats.dropped).toMatchObject({ malformed: 1, "before-connect": 1, oversized: 1 });
    good.publish("device-server", '{"type":"still-here"}');
    await until(() => h.messages.length === 1, { what: "the good device's message" });
    expect(good.connected).toBe(true);
  });

  test("MQTT over TLS: a listener with a certificate serves the same devices", async () => {
    const received: string[] = [];
    const listener = startMqttListener({
      host: "127.0.0.1",
      port: 0,
      tls: selfSignedCert(),
      maxPacketBytes: 64 * 1024,
      authenticate: mqttAuthenticator({ verifier }),
      connected: () => ({ message: (json) => received.push(json), closed() {} }),
    });
    harnesses.push({ listener, connections: [], messages: [], closed: [] });
    const client = mqtt.connect(`mqtts://127.0.0.1:${listener.port}`, {
      clientId: clientId("aa:bb:cc:dd:ee:0b"),
      username: "{}",
      password: await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:0b" }),
      protocolVersion: 4,
      reconnectPeriod: 0,
      rejectUnauthorized: false,
    });
    clients.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    client.publish("device-server", '{"type":"hello"}');
    await until(() => received.length === 1, { what: "the message over TLS" });
    // The plain protocol on the TLS port gets nowhere.
    const plain = await refusal(listener.port, clientId("aa:bb:cc:dd:ee:0c"), "x").catch(() => undefined);
    expect(plain).not.toBe(0);
  });

  test("PINGREQ is answered; silence past 1.5 x keepalive ends the connection", async () => {
    const h = start();
    const token = await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:0a" });
    const c = await raw(h.listener.port);
    const replies: string[] = [];
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    parser.on("packet", (p: mqttPacket.Packet) => replies.push(p.cmd));
    c.socket.on("data", (d: Buffer) => parser.parse(d));
    c.socket.write(
      mqttPacket.generate({
        cmd: "connect",
        protocolId: "MQTT",
        protocolVersion: 4,
        clean: true,
        keepalive: 1,
        clientId: clientId("aa:bb:cc:dd:ee:0a"),
        username: "{}",
        password: Buffer.from(token),
      }),
    );
    c.socket.write(mqttPacket.generate({ cmd: "pingreq" }));
    await until(() => replies.includes("pingresp"), { what: "PINGRESP" });
    expect(replies).toEqual(["connack", "pingresp"]);
    const t0 = performance.now();
    await c.ended;
    // Checked once a second: closed between 1.5 s and 2.5 s of silence.
    expect(performance.now() - t0).toBeLessThan(4000);
    expect(h.listener.stats.dropped["keepalive-expired"]).toBe(1);
    expect(h.closed[0]?.reason).toBe("keepalive expired");
  });
});
