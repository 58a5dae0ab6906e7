import type { WebSocketHandler } from "bun";
import type { WsData } from "./device-session";

/** Socket limits Bun enforces before our handlers run. */
export interface WebSocketLimits {
  readonly maxPayloadBytes: number;
  readonly idleTimeoutSeconds: number;
}

/**
 * The one static websocket handler: every event is delegated to the connection's own
 * DeviceSession in ws.data, so no closure is created per connection or per frame.
 */
export function createWebSocketHandler(limits: WebSocketLimits): WebSocketHandler<WsData> {
  return {
    data: {} as WsData,
    maxPayloadLength: limits.maxPayloadBytes,
    idleTimeout: limits.idleTimeoutSeconds,
    sendPings: true,
    perMessageDeflate: false,
    open(ws) {
      ws.data.session.socketOpened(ws);
    },
    message(ws, message) {
      ws.data.session.socketMessage(message);
    },
    close(ws, code) {
      ws.data.session.socketClosed(code);
    },
  };
}
