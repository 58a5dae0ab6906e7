import type { WebSocketHandler } from "bun";
import type { WsData } from "./device-session";
import { WebSocketLink } from "./websocket-link";

/** Socket limits Bun enforces before our handlers run. */
export interface WebSocketLimits {
  readonly maxPayloadBytes: number;
  readonly idleTimeoutSeconds: number;
  /** Most bytes Bun queues for one socket; past it `send()` drops and returns 0. */
  readonly backpressureLimitBytes: number;
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
    backpressureLimit: limits.backpressureLimitBytes,
    // Bun's own close at the limit would reach the device without our close code (4002),
    // uncounted and unlogged. The session closes slow devices itself, well before the limit;
    // the limit only bounds what a socket can queue between two of its checks.
    closeOnBackpressureLimit: false,
    sendPings: true,
    perMessageDeflate: false,
    open(ws) {
      ws.data.session.socketOpened(new WebSocketLink(ws));
    },
    message(ws, message) {
      ws.data.session.socketMessage(message);
    },
    // A ping costs the gateway a pong: it counts toward the flood limits like a message
    // (Bun still answers it).
    ping(ws, data) {
      ws.data.session.socketPing(data.byteLength);
    },
    drain(ws) {
      ws.data.session.socketDrained();
    },
    close(ws, code) {
      ws.data.session.socketClosed(code);
    },
  };
}
