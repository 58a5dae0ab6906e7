import type { DeviceLink } from "../device-link";
import type { LinkTopics } from "../link-topics";
import type { MqttDeviceConnection } from "./mqtt-listener";

/**
 * The link of an MQTT device between audio sessions (no hello said, or goodbye said): the
 * device is connected and reachable over MQTT, so the HTTP API's pushed JSON and MCP calls
 * go to it, but it has no UDP channel. Closing it only ends this presence: the MQTT
 * connection stays.
 */
export class MqttIdleLink implements DeviceLink {
  private ended = false;
  private readonly subscribed = new Set<string>();

  constructor(
    private readonly mqtt: MqttDeviceConnection,
    private readonly onEnded: (code: number) => void,
    /** Where its broadcast subscriptions go (Bun's pub/sub reaches only websockets). */
    private readonly topics?: LinkTopics,
  ) {}

  helloFields(): Readonly<Record<string, unknown>> {
    return { transport: "udp" };
  }

  sendText(text: string): number {
    return this.mqtt.publish(text) ? text.length : 0;
  }

  /** No audio channel: nothing is sent (an idle session gets no audio from the AI). */
  sendAudio(opus: Uint8Array): number {
    return opus.length;
  }

  close(code: number): void {
    this.endQuietly(code);
  }

  endQuietly(code: number): void {
    if (this.ended) return;
    this.ended = true;
    for (const topic of this.subscribed) this.topics?.unsubscribe(topic, this);
    this.onEnded(code);
  }

  getBufferedAmount(): number {
    return 0;
  }

  subscribe(topic: string): void {
    this.subscribed.add(topic);
    this.topics?.subscribe(topic, this);
  }

  unsubscribe(topic: string): void {
    this.subscribed.delete(topic);
    this.topics?.unsubscribe(topic, this);
  }
}
