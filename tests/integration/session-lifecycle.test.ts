import { describe, expect, test } from "bun:test";
import { EndReason } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { V3_HEADER_BYTES } from "../../src/device/frame-codec";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { packets, startStack } from "../helpers/start-stack";
import { until, within } from "../helpers/until";
import { captureLogs } from "../security/capture-logs";

describe("session lifecycle", () => {
  test("newest wins: a second connection of the same Device-Id closes the first (4000)", async () => {
    await using stack = await startStack();
    const first = await stack.device("cc:00:00:00:00:01");
    await first.hello();
    const second = await stack.device("cc:00:00:00:00:01");
    expect((await first.closed).code).toBe(4000);
    await second.hello();
    second.sendJson({ type: "listen", state: "start", mode: "realtime" });
    second.sendAudio(new Uint8Array([9, 9, 9]));
    await second.waitFor((r) => r.kind === "audio");
    expect(stack.gateway.registry.size).toBe(1);
  });

  test("no hello in time closes the connection (4001); a hello in time keeps it", async () => {
    await using stack = await startStack({ gateway: { helloTimeoutMs: 150 } });
    const silent = await stack.device("cc:00:00:00:00:02");
    const polite = await stack.device("cc:00:00:00:00:03");
    await polite.hello();
    expect((await silent.closed).code).toBe(4001);
    polite.sendJson({ type: "ping" });
    await polite.waitJson((m) => m.type === "pong");
  });

  test("a device that drops its socket ends its upstream session and frees its slot", async () => {
    // The AI service's own log says when the gateway ended a session, and why.
    const aiLogs = captureLogs();
    await using stack = await startStack({ ai: { logger: aiLogs.logger } });
    const dev = await stack.device("cc:00:00:00:00:04");
    const hello = await dev.hello();
    const opened = await aiLogs.waitFor((l) => l.msg === "session opened" && l.sessionId === hello.session_id);
    expect(opened.deviceId).toBe("cc:00:00:00:00:04");
    dev.close();
    await dev.closed;
    // The AI side hears End (device gone) for exactly that session.
    const ended = await within(
      aiLogs.waitFor((l) => l.msg === "session ended by gateway" && l.sessionId === hello.session_id),
      5000,
      "the AI service to see the session end",
    );
    expect(ended.reason).toBe(EndReason.DEVICE_GONE);
    // Its slot is free: the registry lets go of it, and the same device gets a new session.
    await until(() => stack.gateway.registry.all().size === 0, { what: "the gateway to let go of the closed device" });
    expect(stack.metrics.connectionsClosed).toBe(1);
    const again = await stack.device("cc:00:00:00:00:04");
    const second = await again.hello();
    expect(second.session_id).not.toBe(hello.session_id);
    expect(stack.gateway.registry.all().size).toBe(1);
  });

  test("the AI service never waits: the server hello arrives even while the AI is down", async () => {
    await using stack = await startStack();
    await stack.ai!.close();
    const dev = await stack.device("cc:00:00:00:00:05");
    const hello = await dev.hello({}, 2000);
    expect(hello.transport).toBe("websocket");
  });
});

describe("bad input never costs the session or another device", () => {
  test("malformed JSON, unknown types and bad fields get an error reply and the session lives on", async () => {
    await using stack = await startStack();
    const dev = await stack.device("dd:00:00:00:00:01", 3);
    await dev.hello();
    dev.sendRaw("{not json");
    dev.sendRaw(JSON.stringify({ type: "teleport" }));
    dev.sendRaw(JSON.stringify({ type: "listen", state: "sideways" }));
    dev.sendRaw(JSON.stringify([1, 2, 3]));
    const errors = [];
    for (let i = 0; i < 4; i++) errors.push(await dev.waitJson((m) => m.type === "error"));
    expect(errors.map((e) => e.code)).toEqual(["ERR_MESSAGE_MALFORMED", "ERR_MESSAGE_UNKNOWN_TYPE", "ERR_MESSAGE_MALFORMED", "ERR_MESSAGE_MALFORMED"]);
    dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
    dev.sendAudio(new Uint8Array([1]));
    await dev.waitFor((r) => r.kind === "audio");
  });

  test("truncated and size-mismatched frames are dropped and counted; audio before hello too", async () => {
    await using stack = await startStack();
    const dev = await stack.device("dd:00:00:00:00:02", 3);
    dev.sendRaw(new Uint8Array([0, 0, 0, 1, 7])); // before hello
    await dev.hello();
    dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
    dev.sendRaw(new Uint8Array([0, 0])); // shorter than the v3 header
    const lying = new Uint8Array(V3_HEADER_BYTES + 10);
    lying[3] = 200; // claims 200 bytes, carries 10
    dev.sendRaw(lying);
    const good = packets(3);
    for (const p of good) dev.sendAudio(p);
    await dev.waitFor((r) => r.kind === "audio" && r.payload[2] === 2);
    expect(dev.audio()).toHaveLength(3);
    expect(stack.metrics.dropped["before-hello"]).toBe(1);
    expect(stack.metrics.dropped["frame-short"]).toBe(1);
    expect(stack.metrics.dropped["frame-size-mismatch"]).toBe(1);
  });

  test("an oversized frame closes that connection with 1009 and no other", async () => {
    await using stack = await startStack({ gateway: { maxFrameBytes: 1024 } });
    const bad = await stack.device("dd:00:00:00:00:03");
    const good = await stack.device("dd:00:00:00:00:04");
    await bad.hello();
    await good.hello();
    good.sendJson({ type: "listen", state: "start", mode: "realtime" });
    bad.sendRaw(new Uint8Array(4096));
    expect((await bad.closed).code).toBe(1009);
    good.sendAudio(new Uint8Array([5]));
    await good.waitFor((r) => r.kind === "audio");
  });

  test("messages before hello are refused politely; audio-only clients must say hello", async () => {
    await using stack = await startStack();
    const dev = await SimulatedDevice.connect({ url: stack.wsUrl, token: await stack.token("dd:00:00:00:00:05"), deviceId: "dd:00:00:00:00:05" });
    dev.sendJson({ type: "listen", state: "start", mode: "auto" });
    const err = await dev.waitJson((m) => m.type === "error");
    expect(err.code).toBe("ERR_STATE_VIOLATION");
    await dev.hello();
  });
});

describe("status", () => {
  test("/api/status counts connections and live sessions by protocol version", async () => {
    await using stack = await startStack();
    const a = await stack.device("ac:00:00:00:00:01", 3);
    const b = await stack.device("ac:00:00:00:00:02", 2);
    await a.hello();
    const res = await fetch(`${stack.gateway.url}/api/status`, { headers: { authorization: `Bearer ${await stack.apiToken()}` } });
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ status: "ok", connectionCount: 2, sessionCount: 1, sessionsByProtocol: { v1: 0, v2: 0, v3: 1 }, upstream: { ready: true } });
    b.close();
    await b.closed;
    a.close();
    await a.closed;
    const after = (await (await fetch(`${stack.gateway.url}/api/status`, { headers: { authorization: `Bearer ${await stack.apiToken()}` } })).json()) as Record<
      string,
      unknown
    >;
    expect(after.connectionCount).toBe(0);
  });
});
