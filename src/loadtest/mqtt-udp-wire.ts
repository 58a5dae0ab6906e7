import { createSocket } from "node:dgram";
import mqtt from "mqtt";
import { UdpAudioCipher } from "../device/udp-audio-cipher";
import type { Wire, WireEvents, WireOptions } from "./device-wire";

/**
 * The firmware's MQTT + UDP transport (main/protocols/mqtt_protocol.cc), for the load
 * generator: MQTT 3.1.1 for JSON (client id `<group>@@@<mac with _>@@@<uuid>`, the token as
 * password, publishes to `device-server`), and AES-128-CTR datagrams for audio once the
 * server's hello gave the UDP endpoint, key and nonce. `url` is the MQTT listener
 * (mqtt://host:port). The server's goodbye ends the session like a close.
 */
export function openMqttUdpWire(o: WireOptions, events: WireEvents): Wire {
  const mac = o.deviceId.replaceAll(":", "_");
  const udp = createSocket("udp4");
  udp.bind(0);
  let opened = false;
  let ended = false;
  let byUs = false;
  let channel: { readonly cipher: UdpAudioCipher; readonly host: string; readonly port: number } | undefined;
  const client = mqtt.connect(o.url, {
    clientId: `GID_loadtest@@@${mac}@@@${o.clientId}`,
    username: o.deviceId,
    password: o.token ?? "",
    protocolVersion: 4,
    reconnectPeriod: 0,
    keepalive: 240,
    connectTimeout: 30_000,
  });
  const end = (code: number) => {
    if (ended) return;
    ended = true;
    udp.close();
    client.end(true);
    events.closed(code);
  };
  client.on("connect", () => {
    opened = true;
    client.subscribe(`devices/p2p/${mac}`);
    events.opened();
  });
  client.on("error", (err: Error & { code?: number | string }) => {
    if (opened) return;
    ended = true;
    udp.close();
    client.end(true);
    events.failed(err.code === 5 || err.code === 4 ? "mqtt not authorized" : "connect error");
  });
  client.on("close", () => {
    if (!opened) {
      if (!ended) {
        ended = true;
        udp.close();
        events.failed("connect error");
      }
      return;
    }
    end(byUs ? 1000 : 1006);
  });
  client.on("message", (_topic, payload) => {
    const atMs = performance.now();
    const text = payload.toString("utf8");
    const kind = peekType(text);
    if (kind?.type === "hello" && kind.udp !== undefined) {
      channel = {
        cipher: new UdpAudioCipher(Buffer.from(kind.udp.key, "hex"), Buffer.from(kind.udp.nonce, "hex")),
        host: kind.udp.server,
        port: kind.udp.port,
      };
    }
    if (kind?.type === "goodbye") {
      end(1000);
      return;
    }
    events.text(text, atMs);
  });
  // A socket the load generator's process cannot have (EMFILE: each device holds a TCP and a
  // UDP socket, so 10,000 devices need a file limit past 20,000) fails this device, said.
  udp.on("error", (err: Error & { code?: string }) => {
    if (ended) return;
    ended = true;
    client.end(true);
    if (opened) events.closed(1006);
    else events.failed(`udp socket ${err.code ?? err.message}`);
  });
  udp.on("message", (datagram) => {
    const got = channel?.cipher.open(datagram);
    if (got === undefined) return;
    if (typeof got === "string") {
      events.bad(`udp ${got}`);
      return;
    }
    events.audio(got.opus, performance.now());
  });
  return {
    transport: "udp",
    sendText: (text) => {
      client.publish("device-server", text);
    },
    sendAudio(packet, timestampMs) {
      if (channel !== undefined) udp.send(channel.cipher.seal(packet, timestampMs), channel.port, channel.host);
    },
    close() {
      byUs = true;
      if (opened && !ended) client.publish("device-server", JSON.stringify({ type: "goodbye" }), () => end(1000));
      else end(1000);
    },
  };
}

/** The type of a server message, and its `udp` section when it is the hello. */
function peekType(text: string): { type: string; udp?: { server: string; port: number; key: string; nonce: string } } | undefined {
  try {
    const v = JSON.parse(text) as { type?: unknown; udp?: { server: string; port: number; key: string; nonce: string } };
    return typeof v.type === "string" ? { type: v.type, ...(v.udp === undefined ? {} : { udp: v.udp }) } : undefined;
  } catch {
    return undefined;
  }
}
