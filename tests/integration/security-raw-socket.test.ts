import { describe, expect, test } from "bun:test";
import { type Stack, startStack } from "../helpers/start-stack";
import { until } from "../helpers/until";
import { frame, Opcode, RawWs } from "../security/raw-ws";

/**
 * Hostile bytes on the device socket, sent with raw TCP against the running gateway. The
 * WebSocket framing is Bun's (uWebSockets): it refuses these itself, before any gateway code
 * runs, by sending a close frame with the code below and dropping the TCP connection (the
 * session then sees 1006 and cleans up like any dropped device):
 *
 * | input | Bun sends |
 * |---|---|
 * | unmasked client frame | 1002 "Received an incorrectly masked frame" |
 * | invalid UTF-8 in a text frame | 1007 "Received invalid UTF-8" |
 * | ping with a payload over 125 bytes | 1002 "Received too big control frame" |
 * | a new data frame inside a fragmented message | 1002 "Received new message inside a fragmented message" |
 * | a length over the largest message (IM_MAX_FRAME_BYTES / IM_MAX_JSON_BYTES) | 1009 "Received too big message", at the header |
 * | a length within it, then silence | no close frame: TCP closed by the idle timeout |
 * | half a handshake, then silence | no answer: TCP closed by Bun's HTTP idle timeout (10 s) |
 *
 * Each closes only that connection; a device conversing meanwhile never notices.
 */

const MAX_FRAME_BYTES = 1024;
const MAX_JSON_BYTES = 4096;

async function stackForRawTests(idleTimeoutSeconds = 120): Promise<Stack> {
  return startStack({ gateway: { maxFrameBytes: MAX_FRAME_BYTES, maxJsonBytes: MAX_JSON_BYTES, idleTimeoutSeconds } });
}

/** A device that keeps a real-time echo conversation going (a 60 ms frame cadence) until
 * stopped; stop() says how many frames came back and whether anything went wrong. */
async function conversing(stack: Stack) {
  const dev = await stack.device("c0:ff:ee:00:00:01", 3);
  await dev.hello();
  dev.sendJson({ type: "listen", state: "start", mode: "realtime" });
  let stopped = false;
  let echoed = 0;
  let failure: unknown;
  let waiters: (() => void)[] = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  const loop = (async () => {
    for (let n = 1; !stopped; n++) {
      const id = n & 0xffff;
      dev.sendAudio(new Uint8Array([0x78, id >> 8, id & 0xff]));
      await dev.waitFor((r) => r.kind === "audio" && r.payload[1] === id >> 8 && r.payload[2] === (id & 0xff), 5000);
      echoed++;
      notify();
      await Bun.sleep(60);
    }
  })().catch((err: unknown) => {
    failure = err;
    notify();
  });
  return {
    /** Resolves after `n` more echoes (or at the first failure). */
    async more(n: number): Promise<void> {
      const target = echoed + n;
      while (echoed < target && failure === undefined) {
        const { promise, resolve } = Promise.withResolvers<void>();
        waiters.push(resolve);
        await promise;
      }
    },
    async stop(): Promise<{ echoed: number; failure: unknown; open: boolean }> {
      stopped = true;
      await loop;
      return { echoed, failure, open: dev.isOpen };
    },
  };
}

/** A raw connection upgraded as a real device (valid token), ready for hostile frames. */
async function rawDevice(stack: Stack, deviceId: string): Promise<RawWs> {
  const raw = await RawWs.connect(stack.gateway.port);
  raw.sendHandshake("/ws", { Authorization: `Bearer ${await stack.token(deviceId)}`, "Device-Id": deviceId, "Protocol-Version": "3" });
  expect(await raw.responseHead()).toStartWith("HTTP/1.1 101");
  return raw;
}

const text = (s: string) => new TextEncoder().encode(s);

const cases: [name: string, bytes: Uint8Array, code: number, reason: string][] = [
  ["an unmasked client frame", frame(Opcode.Text, text('{"type":"ping"}'), { masked: false }), 1002, "Received an incorrectly masked frame"],
  ["invalid UTF-8 in a text frame", frame(Opcode.Text, new Uint8Array([0x7b, 0xc3, 0x28, 0x7d])), 1007, "Received invalid UTF-8"],
  ["a ping over 125 bytes", frame(Opcode.Ping, new Uint8Array(126)), 1002, "Received too big control frame"],
  [
    "a fragmented message interleaved with another data frame",
    new Uint8Array([...frame(Opcode.Text, text('{"type":'), { fin: false }), ...frame(Opcode.Binary, new Uint8Array([1, 2, 3]))]),
    1002,
    "Received new message inside a fragmented message",
  ],
  ["a frame that claims 2^40 bytes and stops", frame(Opcode.Binary, new Uint8Array([1, 2, 3]), { claimedLength: 1n << 40n }), 1009, "Received too big message"],
  [
    "a frame that claims one byte over the largest message",
    frame(Opcode.Binary, new Uint8Array(16), { claimedLength: BigInt(MAX_JSON_BYTES + 1) }),
    1009,
    "Received too big message",
  ],
];

describe("raw bytes on the device socket close only that connection, with the code Bun sends", () => {
  for (const [name, bytes, code, reason] of cases) {
    test(`${name}: closed with ${code}; another device keeps conversing`, async () => {
      await using stack = await stackForRawTests();
      const talk = await conversing(stack);
      await talk.more(2);
      const raw = await rawDevice(stack, "ba:d0:00:00:00:01");
      expect(stack.gateway.registry.all().size).toBe(2);
      raw.write(bytes);
      const end = await raw.ended;
      expect({ code: end.closeCode, reason: end.closeReason }).toEqual({ code, reason });
      // The session went with its socket: only the conversing device is left.
      await until(() => stack.gateway.registry.all().size === 1, { what: "the gateway to let go of the closed connection's session" });
      await talk.more(3);
      const result = await talk.stop();
      expect(result.failure).toBeUndefined();
      expect(result.open).toBe(true);
      expect(stack.metrics.connectionsClosed).toBe(1);
    });
  }

  test("many hostile connections at once, while a device converses: all closed, none affects it", async () => {
    await using stack = await stackForRawTests();
    const talk = await conversing(stack);
    const raws = await Promise.all(cases.map((_, i) => rawDevice(stack, `ba:d0:00:00:01:${String(i).padStart(2, "0")}`)));
    for (const [i, raw] of raws.entries()) raw.write(cases[i]![1]);
    const ends = await Promise.all(raws.map((r) => r.ended));
    expect(ends.map((e) => e.closeCode)).toEqual(cases.map((c) => c[2]));
    await talk.more(3);
    const result = await talk.stop();
    expect(result.failure).toBeUndefined();
    expect(result.open).toBe(true);
    expect(stack.gateway.registry.all().size).toBe(1);
  });

  test("half a handshake and a frame that stops half-way are closed by the timeouts; a device converses throughout", async () => {
    // Bun's idle timeout has a granularity of a few seconds: 2 s closes a silent socket in ~8.
    await using stack = await stackForRawTests(2);
    const talk = await conversing(stack);
    const halfHandshake = await RawWs.connect(stack.gateway.port);
    halfHandshake.sendHandshake("/ws", { "Device-Id": "ba:d0:00:00:00:02" }, false);
    const halfFrame = await rawDevice(stack, "ba:d0:00:00:00:03");
    // 100 bytes announced (well within the limit), 10 sent, then nothing.
    halfFrame.write(frame(Opcode.Binary, new Uint8Array(10), { claimedLength: 100n }));
    const [frameEnd, handshakeEnd] = await Promise.all([halfFrame.ended, halfHandshake.ended]);
    // The idle timeout closes the TCP connection without a close frame.
    expect(frameEnd.closeCode).toBeUndefined();
    expect(frameEnd.afterMs).toBeLessThan(15_000);
    // No HTTP answer ever, then the connection is dropped (Bun's HTTP idle timeout, 10 s).
    expect(halfHandshake.headSoFar).toBeUndefined();
    expect(handshakeEnd.afterMs).toBeGreaterThan(8_000);
    expect(handshakeEnd.afterMs).toBeLessThan(20_000);
    // Throughout: every echo came within its 5 s (else `failure`), the conversation going on
    // while both timeouts ran and after they struck. (How many echoes fit in those seconds
    // depends on the machine's load, not on the gateway.)
    await talk.more(3);
    const result = await talk.stop();
    expect(result.failure).toBeUndefined();
    expect(result.open).toBe(true);
    // The half handshake never became a session; the silent one was cleaned up.
    expect(stack.gateway.registry.all().size).toBe(1);
    expect(stack.metrics.connectionsOpened).toBe(2);
  }, 30_000);
});

describe("pings count toward the flood limits", () => {
  // Found before: 4 connections sent ~4.2 M pings/s for 10 s, none was closed, and a device
  // conversing beside them saw p99 150 ms.
  test("a connection that only pings, fast, is closed 4003 like any flood; another device keeps conversing", async () => {
    await using stack = await startStack({ gateway: { maxFramesPerSecond: 50, maxBytesPerSecond: 1_000_000, inboundBurstSeconds: 2 } });
    const talk = await conversing(stack);
    await talk.more(2);
    const raw = await rawDevice(stack, "ba:d0:00:00:02:01");
    // 1,000 pings in one write: 10 times the burst (100 messages), answered by pongs until then.
    const ping = frame(Opcode.Ping, new Uint8Array(8));
    const burst = new Uint8Array(ping.length * 1000);
    for (let i = 0; i < 1000; i++) burst.set(ping, i * ping.length);
    raw.write(burst);
    const end = await raw.ended;
    expect(end.closeCode).toBe(4003);
    expect(stack.metrics.floodCloses).toBe(1);
    await talk.more(3);
    const result = await talk.stop();
    expect(result.failure).toBeUndefined();
    expect(result.open).toBe(true);
  });
});
