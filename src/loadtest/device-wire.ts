import { type DecodedFrame, decodeFrame, FrameEncoder, FrameKind, newDecodedFrame, type ProtocolVersion } from "../device/frame-codec";

/** What a simulated device's connection reports to it. */
export interface WireEvents {
  /** Connected (WebSocket upgraded, MQTT CONNACK accepted): the device says hello now. */
  opened(): void;
  /** The connection could not be made; `why` is the error's label in the report. */
  failed(why: string): void;
  /** The connection (or, over MQTT + UDP, the audio session) ended with `code`. */
  closed(code: number): void;
  text(text: string, atMs: number): void;
  /** An audio packet; valid only during the call. */
  audio(payload: Uint8Array, atMs: number): void;
  /** Something the server sent that the firmware would refuse. */
  bad(why: string): void;
}

/** A simulated device's connection to the gateway, whichever transport carries it. */
export interface Wire {
  /** The hello's `transport`. */
  readonly transport: "websocket" | "udp";
  sendText(text: string): void;
  /** One Opus packet; the wire copies it, so it may be reused at once. */
  sendAudio(packet: Uint8Array, timestampMs: number): void;
  /** Ends the connection (normal close: 1000); `closed` follows. */
  close(code?: number): void;
}

export interface WireOptions {
  readonly url: string;
  readonly deviceId: string;
  readonly clientId: string;
  readonly token: string | undefined;
  readonly protocolVersion: ProtocolVersion;
}

const HANDSHAKE_STATUS = /status code:? (\d{3})/i;
const utf8 = new TextDecoder("utf-8", { fatal: false });

/** The firmware's WebSocket: its handshake headers, binary frames of its protocol version. */
export function openWebSocketWire(o: WireOptions, events: WireEvents): Wire {
  const headers: Record<string, string> = { "Device-Id": o.deviceId, "Client-Id": o.clientId, "Protocol-Version": String(o.protocolVersion) };
  if (o.token !== undefined) headers.Authorization = `Bearer ${o.token}`;
  // Grown on the first frame: an idle fleet of thousands should not hold a buffer each.
  const encoder = new FrameEncoder(o.protocolVersion, 0);
  const frame: DecodedFrame = newDecodedFrame();
  let opened = false;
  let ws: WebSocket;
  try {
    ws = new WebSocket(o.url, { headers });
  } catch {
    queueMicrotask(() => events.failed("connect error"));
    return { transport: "websocket", sendText() {}, sendAudio() {}, close() {} };
  }
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    opened = true;
    events.opened();
  };
  ws.onerror = (e) => {
    if (opened) return;
    // Bun reports a refused upgrade as "... Expected 101 status code: 401".
    const status = HANDSHAKE_STATUS.exec((e as ErrorEvent).message ?? "")?.[1];
    events.failed(status === undefined ? "connect error" : `http ${status}`);
  };
  ws.onclose = (e) => events.closed(e.code);
  ws.onmessage = (e) => {
    const atMs = performance.now();
    const data = e.data as string | ArrayBuffer;
    if (typeof data === "string") {
      events.text(data, atMs);
      return;
    }
    switch (decodeFrame(o.protocolVersion, new Uint8Array(data), frame)) {
      case FrameKind.Audio:
        events.audio(frame.payload, atMs);
        return;
      case FrameKind.Json:
        events.text(utf8.decode(frame.payload), atMs);
        return;
      default:
        events.bad("bad frame from server");
    }
  };
  return {
    transport: "websocket",
    sendText: (text) => ws.send(text),
    sendAudio: (packet, timestampMs) => ws.send(encoder.encode(packet, timestampMs)),
    close(code) {
      try {
        if (code === undefined) ws.close();
        else ws.close(code);
      } catch {
        // Closing a socket that is already closing or failed has nothing left to do.
      }
    },
  };
}
