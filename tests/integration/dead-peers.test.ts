import { describe, expect, test } from "bun:test";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { startStack } from "../helpers/start-stack";

describe("dead peers and shutdown", () => {
  test("a device that stops answering pings (a dead TCP peer) is reaped after the idle timeout", async () => {
    await using stack = await startStack({ gateway: { idleTimeoutSeconds: 8 } });
    const token = await stack.token("ab:00:00:00:00:01");
    const closed = Promise.withResolvers<void>();
    let upgraded = false;
    // A raw client: completes the handshake and says hello, then never reads or answers a
    // ping, like a board that lost power behind a NAT that keeps the TCP connection open.
    const sock = await Bun.connect({
      hostname: "127.0.0.1",
      port: stack.gateway.port,
      socket: {
        data(s, chunk) {
          if (!upgraded && chunk.toString().startsWith("HTTP/1.1 101")) {
            upgraded = true;
            const hello = Buffer.from(JSON.stringify({ type: "hello", version: 1, transport: "websocket" }));
            const frame = Buffer.alloc(6 + hello.length);
            frame[0] = 0x81; // FIN + text
            frame[1] = 0x80 | hello.length; // masked, length < 126
            for (let i = 0; i < hello.length; i++) frame[6 + i] = hello[i]!; // mask key 0
            s.write(frame);
          }
        },
        close() {
          closed.resolve();
        },
      },
    });
    sock.write(
      `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\nDevice-Id: ab:00:00:00:00:01\r\n\r\n`,
    );
    await closed.promise;
    expect(upgraded).toBe(true);
    expect(stack.metrics.connectionsOpened).toBe(1);
    expect(stack.metrics.connectionsClosed).toBe(1);
    expect(stack.gateway.registry.size).toBe(0);
  }, 20_000);

  test("stopping the gateway tells every device to reconnect elsewhere (1001), with or without a Device-Id", async () => {
    await using stack = await startStack({ gateway: { authRequired: false } });
    const withId = await stack.device("ab:00:00:00:00:02");
    await withId.hello();
    const anonymous = await SimulatedDevice.connect({ url: stack.wsUrl, token: await stack.token("") });
    await anonymous.hello();
    await stack.gateway.stop();
    expect((await withId.closed).code).toBe(1001);
    expect((await anonymous.closed).code).toBe(1001);
  });
});
