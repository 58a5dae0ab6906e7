import type { Socket, TCPSocketListener } from "bun";
import * as mqttPacket from "mqtt-packet";
import type { IConnectPacket, IPublishPacket, ISubscribePacket, Packet } from "mqtt-packet";
import { type Logger, silentLogger } from "../../log";

/** Who a CONNECT proved to be. */
export interface MqttIdentity {
  readonly clientId: string;
  /** The device's MAC, lower case with colons (from the client id). */
  readonly deviceId: string;
}

/** A CONNECT that is refused: CONNACK "not authorized" (5), or "identifier rejected" (2). */
export interface MqttRefusal {
  readonly refused: "not-authorized" | "bad-client-id";
  /** For the log; never the credentials. */
  readonly reason: string;
}

/** Checks a CONNECT's credentials. Never throws: a failure is a refusal. */
export type MqttAuthenticate = (connect: {
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
}) => Promise<MqttIdentity | MqttRefusal>;

/** One authenticated device connection, as the application sees it. */
export interface MqttDeviceConnection {
  readonly identity: MqttIdentity;
  /** The gateway address the device connected to: where it can reach this host. */
  readonly localAddress: string;
  /** The device's address as this connection came from (its NAT's public address). */
  readonly remoteAddress: string;
  /** Sends `json` to the device on its reply topic (QoS 0). False once closed. */
  publish(json: string): boolean;
  /** Ends the MQTT connection (the device reconnects by itself, as the firmware does). */
  close(reason: string): void;
}

/** What the application does with a device connection's messages. */
export interface MqttDeviceHandler {
  /** A JSON message the device published to the publish topic. */
  message(json: string): void;
  /** The connection is over (DISCONNECT, socket loss, keepalive expiry, a newer one). */
  closed(reason: string): void;
}

export interface MqttListenerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Share the port with the other workers of `serve --workers N` (SO_REUSEPORT). */
  readonly reusePort?: boolean;
  /** MQTT over TLS (the firmware's default when its endpoint names no port: 8883): PEM
   * certificate chain and key. */
  readonly tls?: { readonly cert: string; readonly key: string };
  readonly authenticate: MqttAuthenticate;
  /** A connection was accepted: how its messages are handled. */
  readonly connected: (conn: MqttDeviceConnection) => MqttDeviceHandler;
  /** The topic devices publish to. Default `device-server` (the deployed convention). */
  readonly publishTopic?: string;
  /** The topic a device is answered on (and may subscribe to). Default
   * `devices/p2p/<mac with _>`. */
  readonly replyTopic?: (identity: MqttIdentity) => string;
  /** The largest packet accepted (its bytes as they arrive); larger closes the connection. */
  readonly maxPacketBytes: number;
  /** A connection that has not sent CONNECT by then is closed. Default 10000. */
  readonly connectTimeoutMs?: number;
  /** Admission at connect, before any byte is parsed: a place held until the connection
   * ends, or why not (the connection is then closed at once and the refusal counted). */
  readonly admit?: (address: string) => { release(): void } | { refused: string };
  /** Bytes waiting in a connection's socket before it counts as not reading and is closed. */
  readonly maxQueuedBytes?: number;
  readonly logger?: Logger;
}

/** Counts of what was refused or dropped, by reason (surfaced in /metrics). */
export interface MqttListenerStats {
  connections: number;
  refused: Record<string, number>;
  dropped: Record<string, number>;
}

export interface MqttListener {
  readonly port: number;
  readonly stats: MqttListenerStats;
  /** Connections open now (authenticated or not). */
  readonly size: number;
  stop(): void;
}

/** CONNACK return codes of MQTT 3.1.1. */
const CONNACK = { accepted: 0, badProtocol: 1, identifierRejected: 2, notAuthorized: 5 } as const;

interface ConnState {
  parser: mqttPacket.Parser;
  /** Set once CONNECT was accepted. */
  device: { readonly conn: MqttDeviceConnection; readonly handler: MqttDeviceHandler; readonly replyTopic: string } | undefined;
  connecting: boolean;
  /** Packets that arrived while CONNECT was being verified (clients may pipeline). */
  early: Packet[];
  keepaliveMs: number;
  lastPacketMs: number;
  timer: ReturnType<typeof setInterval> | undefined;
  /** Bytes `write` could not hand to the socket yet. */
  queued: Buffer[];
  queuedBytes: number;
  closed: boolean;
  /** The admission place, given back when the connection ends. */
  place: { release(): void } | undefined;
}

/**
 * The MQTT 3.1.1 side of the firmware's MQTT + UDP transport: a broker for exactly one
 * pattern, devices publishing JSON to one topic and being answered on their own. Packets are
 * parsed and written by `mqtt-packet` (the parser of mqtt.js); nothing here frames MQTT by
 * hand. QoS 0 only (what the firmware uses); a QoS 1 publish is still delivered (and its
 * PUBACK sent). A CONNECT must come first and carry credentials `authenticate` accepts,
 * else CONNACK "not authorized" and the connection is closed. A device may subscribe only to
 * its own reply topic. Keepalive is enforced at 1.5 times the CONNECT's value. A newer
 * connection of the same device closes the older one.
 */
export function startMqttListener(o: MqttListenerOptions): MqttListener {
  const logger = (o.logger ?? silentLogger).child({ component: "mqtt" });
  const publishTopic = o.publishTopic ?? "device-server";
  const replyTopic = o.replyTopic ?? ((id: MqttIdentity) => `devices/p2p/${id.deviceId.replaceAll(":", "_")}`);
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  const maxQueuedBytes = o.maxQueuedBytes ?? 1024 * 1024;
  const stats: MqttListenerStats = { connections: 0, refused: {}, dropped: {} };
  const count = (table: Record<string, number>, reason: string) => {
    table[reason] = (table[reason] ?? 0) + 1;
  };
  const byDevice = new Map<string, Socket<ConnState>>();
  const open = new Set<Socket<ConnState>>();

  function write(socket: Socket<ConnState>, packet: Packet): boolean {
    const s = socket.data;
    if (s.closed) return false;
    const bytes = mqttPacket.generate(packet);
    if (s.queuedBytes > 0) {
      s.queued.push(bytes);
      s.queuedBytes += bytes.length;
    } else {
      const n = socket.write(bytes);
      if (n < bytes.length) {
        s.queued.push(bytes.subarray(Math.max(0, n)));
        s.queuedBytes += bytes.length - Math.max(0, n);
      }
    }
    if (s.queuedBytes > maxQueuedBytes) {
      count(stats.dropped, "slow-consumer");
      end(socket, "the device does not read what it is sent");
      return false;
    }
    return true;
  }

  function end(socket: Socket<ConnState>, reason: string): void {
    const s = socket.data;
    if (s.closed) return;
    s.closed = true;
    s.place?.release();
    if (s.timer !== undefined) clearInterval(s.timer);
    open.delete(socket);
    const device = s.device;
    if (device !== undefined && byDevice.get(device.conn.identity.deviceId) === socket) byDevice.delete(device.conn.identity.deviceId);
    socket.end();
    if (device !== undefined) {
      logger.debug({ deviceId: device.conn.identity.deviceId, reason }, "mqtt device disconnected");
      device.handler.closed(reason);
    }
  }

  function refuse(socket: Socket<ConnState>, returnCode: number, reason: string): void {
    count(stats.refused, reason);
    write(socket, { cmd: "connack", returnCode, sessionPresent: false });
    end(socket, reason);
  }

  async function onConnect(socket: Socket<ConnState>, p: IConnectPacket): Promise<void> {
    const s = socket.data;
    if (s.connecting || s.device !== undefined) {
      count(stats.dropped, "second-connect");
      end(socket, "a second CONNECT");
      return;
    }
    if (p.protocolVersion !== 4) {
      refuse(socket, CONNACK.badProtocol, "not MQTT 3.1.1");
      return;
    }
    s.connecting = true;
    const verdict = await o.authenticate({ clientId: p.clientId, username: p.username ?? "", password: p.password?.toString("utf8") ?? "" });
    if (s.closed) return;
    s.connecting = false;
    if ("refused" in verdict) {
      logger.debug({ clientId: p.clientId.slice(0, 128), reason: verdict.reason }, "mqtt connect refused");
      refuse(socket, verdict.refused === "bad-client-id" ? CONNACK.identifierRejected : CONNACK.notAuthorized, verdict.refused);
      return;
    }
    // Newest wins: the older connection of this device goes.
    const older = byDevice.get(verdict.deviceId);
    if (older !== undefined) end(older, "replaced by a newer connection");
    byDevice.set(verdict.deviceId, socket);
    s.keepaliveMs = (p.keepalive ?? 0) * 1000;
    const topic = replyTopic(verdict);
    const conn: MqttDeviceConnection = {
      identity: verdict,
      localAddress: socket.localAddress.replace(/^::ffff:/, ""),
      remoteAddress: socket.remoteAddress.replace(/^::ffff:/, ""),
      publish: (json) => write(socket, { cmd: "publish", topic, payload: json, qos: 0, dup: false, retain: false }),
      close: (reason) => end(socket, reason),
    };
    write(socket, { cmd: "connack", returnCode: CONNACK.accepted, sessionPresent: false });
    s.device = { conn, handler: o.connected(conn), replyTopic: topic };
    stats.connections++;
    for (const early of s.early.splice(0)) if (!s.closed) onPacket(socket, early);
  }

  function onSubscribe(socket: Socket<ConnState>, p: ISubscribePacket): void {
    const own = socket.data.device?.replyTopic;
    const granted = p.subscriptions.map((sub) => {
      if (sub.topic === own) return 0;
      count(stats.dropped, "foreign-subscribe");
      return 0x80;
    });
    write(socket, { cmd: "suback", messageId: p.messageId ?? 0, granted });
  }

  function onPublish(socket: Socket<ConnState>, p: IPublishPacket): void {
    const device = socket.data.device;
    if (p.qos > 0) write(socket, { cmd: "puback", messageId: p.messageId ?? 0 });
    if (device === undefined) return;
    if (p.topic !== publishTopic) {
      count(stats.dropped, "foreign-topic");
      logger.debug({ deviceId: device.conn.identity.deviceId, topic: p.topic.slice(0, 128) }, "mqtt publish to a foreign topic dropped");
      return;
    }
    device.handler.message(typeof p.payload === "string" ? p.payload : p.payload.toString("utf8"));
  }

  function onPacket(socket: Socket<ConnState>, p: Packet): void {
    const s = socket.data;
    if (s.closed) return;
    s.lastPacketMs = performance.now();
    // A whole packet that arrived in one read is checked here (a partial one in `data`).
    if ((p.length ?? 0) > o.maxPacketBytes) {
      count(stats.dropped, "oversized");
      end(socket, `a packet over ${o.maxPacketBytes} bytes`);
      return;
    }
    if (p.cmd !== "connect" && s.device === undefined && s.connecting && s.early.length < 16) {
      s.early.push(p);
      return;
    }
    if (p.cmd !== "connect" && s.device === undefined) {
      count(stats.dropped, "before-connect");
      end(socket, "a packet before CONNECT");
      return;
    }
    switch (p.cmd) {
      case "connect":
        void onConnect(socket, p);
        return;
      case "publish":
        onPublish(socket, p);
        return;
      case "subscribe":
        onSubscribe(socket, p);
        return;
      case "unsubscribe":
        write(socket, { cmd: "unsuback", messageId: p.messageId ?? 0, granted: [] });
        return;
      case "pingreq":
        write(socket, { cmd: "pingresp" });
        return;
      case "disconnect":
        end(socket, "DISCONNECT");
        return;
      default:
        // PUBACK and friends: QoS 0 only, nothing to track.
        count(stats.dropped, `unexpected-${p.cmd}`);
    }
  }

  const listener: TCPSocketListener<ConnState> = Bun.listen<ConnState>({
    hostname: o.host,
    port: o.port,
    // Every worker of `serve --workers N` listens on the port; the kernel spreads devices.
    // (Bun.listen honours reusePort; bun-types 1.4 only declare it for connect.)
    ...(o.reusePort === true ? { reusePort: true } : {}),
    ...(o.tls === undefined ? {} : { tls: { cert: o.tls.cert, key: o.tls.key } }),
    socket: {
      open(socket) {
        const parser = mqttPacket.parser({ protocolVersion: 4 });
        socket.data = {
          parser,
          device: undefined,
          connecting: false,
          early: [],
          keepaliveMs: 0,
          lastPacketMs: performance.now(),
          timer: undefined,
          queued: [],
          queuedBytes: 0,
          closed: false,
          place: undefined,
        };
        const place = o.admit?.(socket.remoteAddress);
        if (place !== undefined && "refused" in place) {
          count(stats.refused, place.refused);
          socket.data.closed = true;
          socket.end();
          return;
        }
        socket.data.place = place;
        open.add(socket);
        parser.on("packet", (p: Packet) => onPacket(socket, p));
        parser.on("error", (err: Error) => {
          count(stats.dropped, "malformed");
          logger.debug({ err: err.message }, "mqtt: malformed packet; closing");
          end(socket, "malformed packet");
        });
        const opened = performance.now();
        socket.data.timer = setInterval(() => {
          const s = socket.data;
          const now = performance.now();
          if (s.device === undefined) {
            if (now - opened > connectTimeoutMs) {
              count(stats.dropped, "connect-timeout");
              end(socket, "no CONNECT in time");
            }
          } else if (s.keepaliveMs > 0 && now - s.lastPacketMs > 1.5 * s.keepaliveMs) {
            count(stats.dropped, "keepalive-expired");
            end(socket, "keepalive expired");
          }
        }, 1000);
        socket.data.timer.unref?.();
      },
      data(socket, chunk) {
        const s = socket.data;
        if (s.closed) return;
        // parse() returns the bytes still waiting for the rest of their packet: a packet
        // announcing more than the limit is refused before it is buffered whole.
        const waiting = s.parser.parse(Buffer.from(chunk));
        if (!s.closed && waiting > o.maxPacketBytes) {
          count(stats.dropped, "oversized");
          end(socket, `a packet over ${o.maxPacketBytes} bytes`);
        }
      },
      drain(socket) {
        const s = socket.data;
        while (s.queued.length > 0) {
          const head = s.queued[0]!;
          const n = socket.write(head);
          if (n < head.length) {
            s.queued[0] = head.subarray(Math.max(0, n));
            s.queuedBytes -= Math.max(0, n);
            return;
          }
          s.queued.shift();
          s.queuedBytes -= head.length;
        }
      },
      close(socket) {
        end(socket, "socket closed");
      },
      error(socket, err) {
        end(socket, `socket error: ${err.message}`);
      },
    },
  });

  return {
    port: listener.port,
    stats,
    get size() {
      return open.size;
    },
    stop() {
      for (const socket of [...open]) end(socket, "gateway stopping");
      listener.stop(true);
    },
  };
}
