import type { TokenVerifier } from "../../auth/token-verifier";
import { type Logger, silentLogger } from "../../log";
import { DeviceSession, type SessionContext } from "../device-session";
import { mqttAuthenticator } from "./mqtt-credentials";
import { type MqttDeviceConnection, type MqttDeviceHandler, type MqttListener, startMqttListener } from "./mqtt-listener";
import { UdpAudioCipher } from "../../device/udp-audio-cipher";
import { UdpAudioSocket } from "./udp-audio-socket";
import { UdpLink } from "./udp-link";
import { EarlyAudio } from "./early-audio";
import { MqttIdleLink } from "./mqtt-idle-link";
import { CloseCode } from "../../device/close-codes";

export interface MqttUdpTransportOptions {
  /** The gateway's session context: MQTT + UDP sessions are device sessions like any. */
  readonly sessions: SessionContext;
  readonly verifier: TokenVerifier;
  /** Also accept the legacy HMAC password of existing fleets (IM_MQTT_SIGNATURE_KEY). */
  readonly signatureKey?: string;
  readonly mqttHost: string;
  /** 0 picks a free port. */
  readonly mqttPort: number;
  /** Share the MQTT ports with the other workers of `serve --workers N` (SO_REUSEPORT). Each
   * worker has a UDP port of its own: a device is told its worker's in the hello reply. */
  readonly reusePort?: boolean;
  /** A second listener for MQTT over TLS, when a certificate is configured. */
  readonly tls?: { readonly port: number; readonly cert: string; readonly key: string };
  readonly udpHost: string;
  /** 0 picks a free port. */
  readonly udpPort: number;
  /** The UDP socket's receive buffer: every device's audio queues there while the event
   * loop is busy. */
  readonly udpReceiveBufferBytes: number;
  /** The host devices reach the UDP socket at (the server hello's `udp.server`); empty: the
   * address each device's MQTT connection came to. */
  readonly publicHost: string;
  /** The UDP port devices are told (default: the socket's; set when a NAT maps another). */
  readonly publicUdpPort?: number;
  readonly maxPacketBytes: number;
  /** Admission of each MQTT connection (the gateway's `admitConnection`). */
  readonly admit?: (address: string) => { release(): void } | { refused: string };
  readonly logger?: Logger;
}

export interface MqttUdpTransport {
  readonly mqttPort: number;
  /** The MQTT-over-TLS port, when one is served. */
  readonly mqttTlsPort: number | undefined;
  readonly udpPort: number;
  readonly mqtt: MqttListener;
  readonly mqttTls: MqttListener | undefined;
  readonly udp: UdpAudioSocket;
  stop(): void;
}

/**
 * The firmware's MQTT + UDP transport (docs in mqtt_protocol.cc): the device holds an MQTT
 * connection, says hello with `transport: "udp"`, and is answered with the session's UDP
 * endpoint, AES key and nonce. From then it is a {@link DeviceSession} like a WebSocket
 * device (same upstream, limits, metrics, newest-wins by Device-Id across transports), its
 * link a {@link UdpLink}. `goodbye` either way ends the audio session, not the MQTT
 * connection.
 */
export async function startMqttUdpTransport(o: MqttUdpTransportOptions): Promise<MqttUdpTransport> {
  const logger = (o.logger ?? silentLogger).child({ component: "mqtt-udp" });
  const udp = await UdpAudioSocket.bind(o.udpHost, o.udpPort, o.udpReceiveBufferBytes, logger);
  let withoutSession = 0;
  /** Each device's MQTT connection, across the plain and the TLS listener: newest wins. */
  const byDevice = new Map<string, MqttDeviceConnection>();

  function connected(conn: MqttDeviceConnection): MqttDeviceHandler {
    const older = byDevice.get(conn.identity.deviceId);
    byDevice.set(conn.identity.deviceId, conn);
    // Each listener replaces an older connection of its own; one on the other listener goes here.
    if (older !== undefined && older !== conn) older.close("replaced by a newer connection");
    /** The device's one session: idle (reachable over MQTT, no audio) or an audio session. */
    let current: { readonly session: DeviceSession; readonly link: UdpLink | MqttIdleLink; readonly early?: EarlyAudio } | undefined;
    let mqttOpen = true;
    /** While one session gives way to the next, its end must not open an idle one. */
    let switching = false;
    const identity = { deviceId: conn.identity.deviceId, clientId: conn.identity.clientId, userId: "", claims: {}, protocolVersion: undefined };

    /** After an audio session: idle again, unless the device is gone or connected elsewhere. */
    function ended(link: UdpLink | MqttIdleLink, session: DeviceSession, code: number): void {
      if (current?.link === link) current = undefined;
      session.socketClosed(code);
      if (mqttOpen && !switching && current === undefined && code !== CloseCode.Replaced && link instanceof UdpLink) openIdle();
    }

    function openIdle(): void {
      const session = new DeviceSession({ ...identity, idle: true }, o.sessions);
      const link: MqttIdleLink = new MqttIdleLink(conn, (code) => ended(link, session, code), o.sessions.linkTopics);
      current = { session, link };
      session.socketOpened(link);
    }

    function openSession(helloJson: string): void {
      switching = true;
      current?.link.endQuietly(1000);
      switching = false;
      const session = new DeviceSession(identity, o.sessions);
      const early = new EarlyAudio(
        (opus) => session.linkAudio(opus),
        () => frameMs,
      );
      const link: UdpLink = new UdpLink({
        mqtt: conn,
        udp,
        cipher: UdpAudioCipher.create(udp.freeSsrc()),
        publicHost: o.publicHost !== "" ? o.publicHost : conn.localAddress,
        publicPort: o.publicUdpPort ?? udp.port,
        sessionId: session.sessionId,
        audio: (opus) => early.audio(opus),
        ended: (code) => {
          early.close();
          ended(link, session, code);
        },
        drop: (reason) => o.sessions.metrics.drop(reason),
        topics: o.sessions.linkTopics,
      });
      current = { session, link, early };
      session.socketOpened(link);
      session.socketMessage(helloJson);
    }

    /** Messages held behind a listen stop (see `message`), each with what `peek` read of it. */
    let held: [json: string, m: Peeked][] | undefined;
    /** The device's frame duration, from its hello (the firmware's default: 60 ms). */
    let frameMs = 60;

    function releaseHeld(): void {
      const queue = held ?? [];
      held = undefined;
      for (const [json, m] of queue) deliver(json, m);
    }

    /** `m`: the message's type, a listen's state and a hello's frame duration, read once. */
    function deliver(json: string, m: Peeked): void {
      if (m.type === "hello") {
        frameMs = m.frameMs ?? 60;
        openSession(json);
      } else if (m.type === "goodbye" && current?.link instanceof UdpLink) current.link.endQuietly(1000);
      else if (current !== undefined) {
        current.session.socketMessage(json);
        if (m.type === "listen") current?.early?.listen(m.state);
      } else {
        withoutSession++;
        logger.debug({ deviceId: conn.identity.deviceId, type: m.type?.slice(0, 32) }, "mqtt message without a session dropped");
      }
    }

    openIdle();
    return {
      message(json) {
        // Behind a held listen stop, later messages wait their turn (order is kept).
        const m = peek(json);
        if (held !== undefined) {
          held.push([json, m]);
          return;
        }
        if (m.type === "listen" && m.state === "stop" && current?.link instanceof UdpLink) {
          // The stop travels on MQTT, the device's last frames in datagrams sent before it:
          // the stop can overtake them. Held one frame's time, the frames land first.
          held = [[json, m]];
          setTimeout(releaseHeld, frameMs).unref?.();
          return;
        }
        deliver(json, m);
      },
      closed() {
        mqttOpen = false;
        if (byDevice.get(conn.identity.deviceId) === conn) byDevice.delete(conn.identity.deviceId);
        current?.link.endQuietly(1001);
      },
    };
  }

  const listen = (port: number, tls?: { readonly cert: string; readonly key: string }) =>
    startMqttListener({
      host: o.mqttHost,
      port,
      ...(tls === undefined ? {} : { tls }),
      maxPacketBytes: o.maxPacketBytes,
      reusePort: o.reusePort === true,
      ...(o.admit === undefined ? {} : { admit: o.admit }),
      authenticate: mqttAuthenticator({ verifier: o.verifier, signatureKey: o.signatureKey }),
      connected,
      logger: o.logger,
    });
  const mqtt = listen(o.mqttPort);
  const mqttTls = o.tls === undefined ? undefined : listen(o.tls.port, o.tls);
  const listeners = [mqtt, ...(mqttTls === undefined ? [] : [mqttTls])];
  const sum = (pick: (l: MqttListener) => Readonly<Record<string, number>>) => {
    const out: Record<string, number> = {};
    for (const l of listeners) for (const [k, n] of Object.entries(pick(l))) out[k] = (out[k] ?? 0) + n;
    return out;
  };
  o.sessions.metrics.mqttUdp = {
    connections: () => listeners.reduce((n, l) => n + l.size, 0),
    refused: () => sum((l) => l.stats.refused),
    // Messages that came when the device had no session at all (it was replaced elsewhere).
    dropped: () => ({ ...sum((l) => l.stats.dropped), ...(withoutSession > 0 ? { "no-session": withoutSession } : {}) }),
    udpDropped: () => udp.losses(),
  };
  logger.info({ mqttPort: mqtt.port, mqttTlsPort: mqttTls?.port, udpPort: udp.port, publicHost: o.publicHost }, "mqtt + udp transport listening");
  return {
    mqttPort: mqtt.port,
    mqttTlsPort: mqttTls?.port,
    udpPort: udp.port,
    mqtt,
    mqttTls,
    udp,
    stop() {
      mqtt.stop();
      mqttTls?.stop();
      udp.stop();
    },
  };
}

/** What the transport needs of a JSON message (its type, a listen's state, a hello's frame
 * duration), without trusting it to be JSON: the session parses it properly. */
interface Peeked {
  readonly type?: string;
  readonly state?: string;
  readonly frameMs?: number;
}

function peek(json: string): Peeked {
  try {
    const v = JSON.parse(json) as { type?: unknown; state?: unknown; audio_params?: { frame_duration?: unknown } };
    if (typeof v !== "object" || v === null) return {};
    const frame = v.audio_params?.frame_duration;
    return {
      ...(typeof v.type === "string" ? { type: v.type } : {}),
      ...(typeof v.state === "string" ? { state: v.state } : {}),
      ...(typeof frame === "number" && frame > 0 && frame <= 120 ? { frameMs: frame } : {}),
    };
  } catch {
    return {};
  }
}
