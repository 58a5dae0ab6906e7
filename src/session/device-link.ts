import type { ProtocolVersion } from "../device/frame-codec";
import type { BufferedSocket } from "./outbound-pressure";

/**
 * What a device session needs of the connection it runs on, whatever carries it: the
 * WebSocket (one socket for control and audio) or MQTT + UDP (control over MQTT, audio in
 * AES-CTR datagrams). The session's state machine, upstream, limits and metrics are the same
 * on both; only this link knows the wire.
 *
 * Sends return Bun's `ServerWebSocket.send` contract: > 0 sent, -1 queued under
 * backpressure, 0 dropped.
 */
export interface DeviceLink extends BufferedSocket {
  /** The server hello's transport-specific fields: `transport`, and UDP's `udp` object. */
  helloFields(): Readonly<Record<string, unknown>>;
  /** One JSON message. */
  sendText(text: string): number;
  /** One Opus packet, framed as `version` says where the transport frames audio itself. */
  sendAudio(opus: Uint8Array, timestampMs: number, version: ProtocolVersion): number;
  /** Ends the device's session with `code` (a WebSocket close code; MQTT + UDP says goodbye). */
  close(code: number, reason: string): void;
  /** Local broadcast topics (Topic.clients.*). */
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
}
