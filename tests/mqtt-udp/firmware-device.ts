import { createCipheriv, createDecipheriv } from "node:crypto";
import { createSocket, type Socket as DgramSocket } from "node:dgram";
import mqtt, { type MqttClient } from "mqtt";

/** The server hello's `udp` object. */
export interface UdpParams {
  readonly server: string;
  readonly port: number;
  readonly key: string;
  readonly nonce: string;
}

/**
 * A device speaking MQTT + UDP as the firmware does (main/protocols/mqtt_protocol.cc),
 * written from the firmware's behaviour, not from the gateway's code: mqtt.js for control
 * (MQTT 3.1.1, QoS 0), node:dgram + node:crypto AES-128-CTR for audio, the header built from
 * the server's nonce with payload length, timestamp and sequence overwritten, sequences from
 * 1, received datagrams checked (type, length, growing sequence) before decryption.
 */
export class FirmwareDevice {
  readonly messages: Record<string, unknown>[] = [];
  readonly audio: Uint8Array[] = [];
  private waiters: (() => void)[] = [];
  private udp: DgramSocket | undefined;
  private params: UdpParams | undefined;
  private sendSeq = 0;
  private recvSeq = 0;

  private constructor(
    readonly mqtt: MqttClient,
    readonly mac: string,
  ) {
    mqtt.on("message", (_topic, payload) => {
      this.messages.push(JSON.parse(payload.toString()) as Record<string, unknown>);
      this.wake();
    });
  }

  /** Connects as the firmware does with the OTA answer's `mqtt` keys (client id, password). */
  static async connect(port: number, mac: string, token: string, clientId?: string): Promise<FirmwareDevice> {
    const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, {
      clientId: clientId ?? `GID_test@@@${mac.replaceAll(":", "_")}@@@${crypto.randomUUID()}`,
      username: "{}",
      password: token,
      protocolVersion: 4,
      reconnectPeriod: 0,
      keepalive: 90,
    });
    await new Promise<void>((resolve, reject) => {
      client.once("connect", () => resolve());
      client.once("error", reject);
    });
    const device = new FirmwareDevice(client, mac);
    await client.subscribeAsync(`devices/p2p/${mac.replaceAll(":", "_")}`);
    return device;
  }

  publish(message: Record<string, unknown>): void {
    this.mqtt.publish("device-server", JSON.stringify(message));
  }

  /** Says hello over MQTT and opens the UDP channel the server's hello describes. */
  async hello(): Promise<Record<string, unknown>> {
    const from = this.messages.length;
    this.publish({
      type: "hello",
      version: 3,
      transport: "udp",
      features: { mcp: true },
      audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
    });
    const reply = await this.waitFor((m) => m.type === "hello", from);
    this.params = reply.udp as UdpParams;
    this.sendSeq = 0;
    this.recvSeq = 0;
    this.udp?.close();
    const udp = createSocket("udp4");
    udp.on("message", (datagram) => this.onDatagram(datagram));
    await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", () => resolve()));
    this.udp = udp;
    return reply;
  }

  get sessionId(): string {
    const hello = [...this.messages].reverse().find((m) => m.type === "hello");
    return String(hello?.session_id ?? "");
  }

  /** One encrypted Opus packet to the server; `sequence` overrides the next one (replays). */
  sendAudio(opus: Uint8Array, o: { sequence?: number; key?: Buffer } = {}): Buffer {
    const p = this.params;
    if (p === undefined || this.udp === undefined) throw new Error("say hello first");
    const header = Buffer.from(p.nonce, "hex");
    header.writeUInt16BE(opus.length, 2);
    header.writeUInt32BE(Date.now() >>> 0, 8);
    header.writeUInt32BE(o.sequence ?? ++this.sendSeq, 12);
    const cipher = createCipheriv("aes-128-ctr", o.key ?? Buffer.from(p.key, "hex"), header);
    const datagram = Buffer.concat([header, cipher.update(opus), cipher.final()]);
    this.udp.send(datagram, p.port, p.server);
    return datagram;
  }

  /** Raw bytes to the server's UDP port (garbage, replays). */
  sendRaw(datagram: Uint8Array): void {
    const p = this.params;
    if (p === undefined || this.udp === undefined) throw new Error("say hello first");
    this.udp.send(datagram, p.port, p.server);
  }

  async waitFor(match: (m: Record<string, unknown>) => boolean, from = 0, timeoutMs = 5000): Promise<Record<string, unknown>> {
    return this.until(() => this.messages.slice(from).find(match), timeoutMs, "a message");
  }

  async waitForAudio(count: number, timeoutMs = 5000): Promise<Uint8Array[]> {
    await this.until(() => (this.audio.length >= count ? true : undefined), timeoutMs, `${count} audio packets`);
    return this.audio.slice(0, count);
  }

  close(): void {
    this.udp?.close();
    this.mqtt.end(true);
  }

  private onDatagram(d: Buffer): void {
    const p = this.params;
    if (p === undefined || d.length < 16 || d[0] !== 0x01) return;
    if (d.readUInt16BE(2) !== d.length - 16) return;
    const seq = d.readUInt32BE(12);
    if (seq <= this.recvSeq) return;
    this.recvSeq = seq;
    const decipher = createDecipheriv("aes-128-ctr", Buffer.from(p.key, "hex"), d.subarray(0, 16));
    this.audio.push(new Uint8Array(Buffer.concat([decipher.update(d.subarray(16)), decipher.final()])));
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
}
