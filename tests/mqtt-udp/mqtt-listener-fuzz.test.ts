import { afterAll, expect, test } from "bun:test";
import { connect as tcpConnect } from "node:net";
import fc from "fast-check";
import mqtt from "mqtt";
import * as mqttPacket from "mqtt-packet";
import { mintToken } from "../../src/auth/mint-token";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { mqttAuthenticator } from "../../src/session/mqtt-udp/mqtt-credentials";
import { startMqttListener } from "../../src/session/mqtt-udp/mqtt-listener";
import { until } from "../helpers/until";

const SECRET = "mqtt-fuzz-secret-0123456789abcdef0123";
const messages: string[] = [];
const listener = startMqttListener({
  host: "127.0.0.1",
  port: 0,
  maxPacketBytes: 8192,
  connectTimeoutMs: 2000,
  authenticate: mqttAuthenticator({ verifier: createTokenVerifier({ secret: SECRET }) }),
  connected: () => ({ message: (json) => messages.push(json), closed() {} }),
});
afterAll(() => listener.stop());

/** Sends `bytes` on a fresh connection; resolves once the gateway closed it or 50 ms passed. */
function probe(bytes: Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    const socket = tcpConnect(listener.port, "127.0.0.1", () => socket.write(bytes));
    const done = () => {
      socket.destroy();
      resolve();
    };
    socket.on("close", done);
    socket.on("error", done);
    // A partial packet waits for its rest: such a connection is left to the connect timeout.
    setTimeout(done, 50);
  });
}

/** Byte strings an MQTT parser meets: random, or a real packet cut, grown or flipped. */
const connect = mqttPacket.generate({
  cmd: "connect",
  protocolId: "MQTT",
  protocolVersion: 4,
  clean: true,
  keepalive: 60,
  clientId: "GID@@@aa_bb_cc_dd_ee_ff@@@x",
  username: "u",
  password: Buffer.from("x"),
});
const publish = mqttPacket.generate({ cmd: "publish", topic: "device-server", payload: "{}", qos: 0, dup: false, retain: false });
const inputs = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc
    .tuple(fc.constantFrom(connect, publish), fc.nat(), fc.uint8Array({ maxLength: 40 }))
    .map(([p, cut, tail]) => new Uint8Array([...p.subarray(0, cut % (p.length + 1)), ...tail])),
  fc.tuple(fc.constantFrom(connect, publish), fc.nat(), fc.integer({ min: 0, max: 255 })).map(([p, at, v]) => {
    const b = new Uint8Array(p);
    b[at % b.length] = v;
    return b;
  }),
);

test("fuzz: no byte string takes the listener down or reaches the application unauthenticated; a real device still works after", async () => {
  await fc.assert(
    fc.asyncProperty(inputs, (bytes) => probe(bytes)),
    { numRuns: Number(process.env.FUZZ_RUNS ?? 200) },
  );
  expect(messages).toHaveLength(0);
  const client = mqtt.connect(`mqtt://127.0.0.1:${listener.port}`, {
    clientId: "GID@@@aa_bb_cc_dd_ee_01@@@fuzz",
    username: "fuzz",
    password: await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:01" }),
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  await new Promise<void>((resolve, reject) => {
    client.once("connect", () => resolve());
    client.once("error", reject);
  });
  client.publish("device-server", '{"type":"ping"}');
  await until(() => messages.length > 0, { what: "the well-formed device's message after the fuzzing" });
  expect(messages).toEqual(['{"type":"ping"}']);
  client.end(true);
}, 60_000);
