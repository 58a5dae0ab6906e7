import type { DeviceLink } from "../session/device-link";
import type { MqttDeviceConnection } from "./mqtt-listener";

/**
 * The link of an MQTT device between audio sessions (no hello said, or goodbye said): the
 * device is connected and reachable over MQTT, so the HTTP API's pushed JSON and MCP calls
 * go to it, but it has no UDP channel. Closing it only ends this presence: the MQTT
 * connection stays.
 */
export class MqttIdleLink implements DeviceLink {
  private ended = false;

  constructor(
    private readonly mqtt: MqttDeviceConnection,
    private readonly onEnded: (code: number) => void,
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
    this.onEnded(code);
  }

  getBufferedAmount(): number {
    return 0;
  }

  subscribe(): void {}

  unsubscribe(): void {}
}
