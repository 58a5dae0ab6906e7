import type { DropReason } from "../../metrics";
import type { DeviceLink } from "../device-link";
import type { LinkTopics } from "../link-topics";
import type { MqttDeviceConnection } from "./mqtt-listener";
import type { DatagramHeader, UdpAudioCipher } from "../../device/udp-audio-cipher";
import type { UdpAudioSocket, UdpChannel, UdpPeer } from "./udp-audio-socket";

export interface UdpLinkOptions {
  readonly mqtt: MqttDeviceConnection;
  readonly udp: UdpAudioSocket;
  readonly cipher: UdpAudioCipher;
  /** The host devices send their datagrams to (the server hello's `udp.server`). */
  readonly publicHost: string;
  /** The port they send to (the socket's, unless a NAT in front maps another). */
  readonly publicPort: number;
  /** The session this link carries, for its goodbye. */
  readonly sessionId: string;
  /** An Opus packet the device sent (decrypted). */
  readonly audio: (opus: Uint8Array) => void;
  /** The session is over: the link calls the session's socketClosed with `code`. */
  readonly ended: (code: number) => void;
  readonly drop: (reason: DropReason) => void;
  /** Where its broadcast subscriptions go (Bun's pub/sub reaches only websockets). */
  readonly topics?: LinkTopics;
}

/**
 * A device session's link over MQTT + UDP: JSON rides MQTT (the device's reply topic), audio
 * rides AES-128-CTR datagrams on the gateway's UDP socket. The device's UDP address is learnt
 * from its first valid datagram and changes only with a valid, newer one (a NAT rebinding),
 * never from a datagram that fails; and it must be the address of the device's MQTT
 * connection (only the port may differ). Closing says `goodbye` over MQTT: the audio session ends,
 * the MQTT connection stays (the device can be reached while idle).
 */
export class UdpLink implements DeviceLink, UdpChannel {
  private peer: UdpPeer | undefined;
  private ended = false;
  private readonly subscribed = new Set<string>();

  constructor(private readonly o: UdpLinkOptions) {
    o.udp.open(o.cipher.ssrc, this);
  }

  helloFields(): Readonly<Record<string, unknown>> {
    return {
      transport: "udp",
      udp: { server: this.o.publicHost, port: this.o.publicPort, key: this.o.cipher.key.toString("hex"), nonce: this.o.cipher.nonce.toString("hex") },
    };
  }

  sendText(text: string): number {
    return this.o.mqtt.publish(text) ? text.length : 0;
  }

  sendAudio(opus: Uint8Array): number {
    if (this.peer === undefined) {
      // Nowhere to send yet: the device has not sent a datagram. Not backpressure (nothing
      // would drain it): dropped and counted.
      this.o.drop("udp-no-peer");
      return opus.length;
    }
    // The kernel takes a datagram or drops it; UDP has no queue to press on.
    this.o.udp.send(this.o.cipher.seal(opus, Date.now() >>> 0), this.peer);
    return opus.length;
  }

  receive(datagram: Uint8Array, header: DatagramHeader, address: string, port: number): void {
    if (this.ended) return;
    // AES-CTR has no integrity check: a datagram from another address than the device's
    // MQTT connection (a sprayer guessing ssrcs) could pass every other check and take the
    // session's audio. A NAT keeps one public address per device (RFC 4787 "paired"
    // pooling), so only the port may differ.
    if (address !== this.o.mqtt.remoteAddress && stripMapped(address) !== this.o.mqtt.remoteAddress) {
      this.o.drop("udp-foreign-address");
      return;
    }
    const got = this.o.cipher.open(datagram, header);
    if (typeof got === "string") {
      this.o.drop("udp-stale");
      return;
    }
    // Only a datagram that decrypted with a newer sequence moves the port (NAT rebinding).
    if (this.peer === undefined || this.peer.address !== address || this.peer.port !== port) this.peer = { address, port };
    this.o.audio(got.opus);
  }

  close(code: number): void {
    if (this.ended) return;
    this.o.mqtt.publish(JSON.stringify({ type: "goodbye", session_id: this.o.sessionId }));
    this.endQuietly(code);
  }

  /** The device said goodbye, or its MQTT connection is gone: no goodbye back. */
  endQuietly(code: number): void {
    if (this.ended) return;
    this.ended = true;
    this.o.udp.close(this.o.cipher.ssrc, this);
    for (const topic of this.subscribed) this.o.topics?.unsubscribe(topic, this);
    this.o.ended(code);
  }

  getBufferedAmount(): number {
    return 0;
  }

  subscribe(topic: string): void {
    this.subscribed.add(topic);
    this.o.topics?.subscribe(topic, this);
  }

  unsubscribe(topic: string): void {
    this.subscribed.delete(topic);
    this.o.topics?.unsubscribe(topic, this);
  }
}

/** An IPv4 address as a dual-stack socket reports it (`::ffff:1.2.3.4`), plain. */
function stripMapped(address: string): string {
  return address.startsWith("::ffff:") ? address.slice(7) : address;
}
