import { createTokenVerifier } from "../../src/auth/token-verifier";
import { type MqttUdpTransport, startMqttUdpTransport } from "../../src/session/mqtt-udp/mqtt-udp-transport";
import { type Stack, TEST_SECRET } from "../helpers/start-stack";

/** The MQTT + UDP transport on a test stack's sessions, as `serve` wires it, on free ports. */
export function startTestMqttUdp(stack: Stack, o: { tls?: { port: number; cert: string; key: string } } = {}): Promise<MqttUdpTransport> {
  return startMqttUdpTransport({
    ...(o.tls === undefined ? {} : { tls: o.tls }),
    sessions: stack.gateway.sessionContext,
    verifier: createTokenVerifier({ secret: TEST_SECRET }),
    mqttHost: "127.0.0.1",
    mqttPort: 0,
    udpHost: "127.0.0.1",
    udpPort: 0,
    udpReceiveBufferBytes: 1024 * 1024,
    publicHost: "127.0.0.1",
    maxPacketBytes: 64 * 1024,
    admit: (ip) => stack.gateway.admitConnection(ip),
  });
}
