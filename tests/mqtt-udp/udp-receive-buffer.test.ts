import { afterEach, expect, test } from "bun:test";
import { createLogger } from "../../src/log";
import { UdpAudioSocket } from "../../src/session/mqtt-udp/udp-audio-socket";
import { until } from "../helpers/until";

// The audio of every MQTT + UDP device arrives on one socket: what overflows its receive
// buffer is dropped by the kernel, before the gateway can see it. These tests hold that the
// buffer is the size asked for, that a smaller grant is said at start, and that what the
// kernel drops is counted all the same.

let sockets: UdpAudioSocket[] = [];
afterEach(() => {
  for (const s of sockets) s.stop();
  sockets = [];
});

async function bind(receiveBufferBytes: number, lines: Record<string, unknown>[] = []): Promise<UdpAudioSocket> {
  const logger = createLogger("info", "test", { write: (line: string) => void lines.push(JSON.parse(line)) });
  const s = await UdpAudioSocket.bind("127.0.0.1", 0, receiveBufferBytes, logger);
  sockets.push(s);
  return s;
}

test("the socket gets the receive buffer it asks for", async () => {
  const small = await bind(64 * 1024);
  const larger = await bind(128 * 1024);
  expect(small.receiveBufferBytes).toBe(64 * 1024);
  expect(larger.receiveBufferBytes).toBe(128 * 1024);
});

test("a buffer past what the kernel allows is said at start, with both sizes", async () => {
  const lines: Record<string, unknown>[] = [];
  const s = await bind(1024 * 1024 * 1024, lines);
  expect(s.receiveBufferBytes).toBeLessThan(1024 * 1024 * 1024);
  expect(lines).toContainEqual(
    expect.objectContaining({
      level: 40,
      askedBytes: 1024 * 1024 * 1024,
      grantedBytes: s.receiveBufferBytes,
      msg: expect.stringContaining("net.core.rmem_max"),
    }),
  );
});

test("datagrams the kernel drops on a full buffer are counted: every datagram sent is accounted for", async () => {
  const s = await bind(64 * 1024);
  const sender = await Bun.udpSocket({});
  const sent = 3000;
  // Sent without yielding, so that the gateway's socket cannot read any of them meanwhile:
  // its 64 KiB buffer holds far fewer than 3,000.
  for (let i = 0; i < sent; i++) sender.send(new Uint8Array([i & 0xff]), s.port, "127.0.0.1");
  sender.close();
  const total = () => Object.values(s.losses()).reduce((a, b) => a + (b ?? 0), 0);
  await until(() => total() === sent, { what: `all ${sent} datagrams counted (${JSON.stringify(s.losses())})` });
  const losses = s.losses();
  expect(losses["receive-buffer-full"]).toBeGreaterThan(0);
  // Those that got in were read, and refused as too short: nothing vanished uncounted.
  expect(losses.short).toBe(sent - (losses["receive-buffer-full"] ?? 0));
});
