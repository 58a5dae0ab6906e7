import type { ServerWebSocket } from "bun";
import { FrameEncoder, type ProtocolVersion } from "../device/frame-codec";
import type { DeviceLink } from "./device-link";
import type { WsData } from "./device-session";

const HELLO_FIELDS = { transport: "websocket" } as const;

/** A device session's link over its WebSocket: audio in the binary protocol's frames. */
export class WebSocketLink implements DeviceLink {
  /** Made at the first audio frame sent, for the version the session speaks. */
  private encoder: FrameEncoder | undefined;

  constructor(private readonly ws: ServerWebSocket<WsData>) {}

  helloFields(): Readonly<Record<string, unknown>> {
    return HELLO_FIELDS;
  }

  sendText(text: string): number {
    return this.ws.send(text);
  }

  sendAudio(opus: Uint8Array, timestampMs: number, version: ProtocolVersion): number {
    if (this.encoder?.version !== version) this.encoder = new FrameEncoder(version);
    return this.ws.send(this.encoder.encode(opus, timestampMs));
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  getBufferedAmount(): number {
    return this.ws.getBufferedAmount();
  }

  subscribe(topic: string): void {
    this.ws.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    this.ws.unsubscribe(topic);
  }
}
