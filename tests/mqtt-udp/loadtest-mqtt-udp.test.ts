import { afterAll, beforeAll, expect, test } from "bun:test";
import { parseLoadtestArgs, runLoadtest } from "../../src/loadtest/run-loadtest";
import type { MqttUdpTransport } from "../../src/session/mqtt-udp/mqtt-udp-transport";
import { type Stack, startStack, TEST_SECRET } from "../helpers/start-stack";
import { startTestMqttUdp } from "./start-mqtt-udp";

/** `xiaozhi-im loadtest --transport mqtt-udp` drives a fleet over MQTT + UDP, every scenario. */

let stack: Stack;
let transport: MqttUdpTransport;
beforeAll(async () => {
  stack = await startStack();
  transport = await startTestMqttUdp(stack);
});
afterAll(async () => {
  transport.stop();
  await stack[Symbol.asyncDispose]();
});

const run = (scenario: string) =>
  runLoadtest(
    parseLoadtestArgs([
      "--transport",
      "mqtt-udp",
      "--url",
      `mqtt://127.0.0.1:${transport.mqttPort}`,
      "--jwt-secret",
      TEST_SECRET,
      "--devices",
      "10",
      "--ramp",
      "0.3",
      "--duration",
      "1.5",
      "--scenario",
      scenario,
    ]),
    { out: () => {}, isTty: false },
  );

test("stream: every frame echoed back over UDP, none lost", async () => {
  const r = await run("stream");
  expect(r.transport).toBe("mqtt-udp");
  expect(r.connections).toMatchObject({ connected: 10, failed: 0, unexpectedCloses: 0 });
  expect(r.frames.sent).toBeGreaterThan(100);
  expect(r.frames.lost).toBe(0);
  expect(r.latency.roundTrip.count).toBe(r.frames.sent);
}, 30_000);

test("conversation: every utterance answered with all its frames", async () => {
  const r = await run("conversation");
  expect(r.conversation?.answers).toBeGreaterThan(0);
  expect(r.conversation?.answersTimedOut).toBe(0);
  expect(r.frames.lost).toBe(0);
  expect(r.frames.unexpected).toBe(0);
}, 30_000);

test("idle and churn: connections held, and reconnections made", async () => {
  const idle = await run("idle");
  expect(idle.connections).toMatchObject({ connected: 10, held: 10, failed: 0 });
  const churn = await run("churn");
  expect(churn.connections.reconnections).toBeGreaterThan(0);
  expect(churn.connections.failed).toBe(0);
}, 30_000);
