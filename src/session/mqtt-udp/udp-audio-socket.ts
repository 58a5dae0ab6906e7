import type { udp } from "bun";
import { type Logger, silentLogger } from "../../log";
import { checkDatagram, type DatagramHeader, type FramingRejection } from "../../device/udp-audio-cipher";

/** Where one session's datagrams go once a datagram told us. */
export interface UdpPeer {
  readonly address: string;
  readonly port: number;
}

/** A session's end of the shared socket. */
export interface UdpChannel {
  /** A datagram whose ssrc is this session's (its framing checked: `header`), from
   * `address`:`port`. No object is made per datagram for the sender. */
  receive(datagram: Uint8Array, header: DatagramHeader, address: string, port: number): void;
}

/** Datagrams refused before reaching a session, by reason. */
export type UdpDropReason = FramingRejection | "unknown-ssrc";

/**
 * The one UDP socket of the gateway's MQTT + UDP transport. A datagram's ssrc bytes (which
 * the gateway chose, in the nonce of the session's hello) find its session in O(1); a
 * datagram that frames badly or names no session is counted and dropped before any key is
 * used, so garbage costs one map lookup at most.
 */
export class UdpAudioSocket {
  readonly dropped: Record<UdpDropReason, number> = { short: 0, "bad-type": 0, "bad-length": 0, "too-large": 0, "unknown-ssrc": 0 };
  private readonly channels = new Map<number, UdpChannel>();
  private readonly logger: Logger;

  private constructor(
    private readonly socket: udp.Socket<"buffer">,
    logger: Logger,
  ) {
    this.logger = logger;
  }

  static async bind(host: string, port: number, logger: Logger = silentLogger): Promise<UdpAudioSocket> {
    let self: UdpAudioSocket | undefined;
    const socket = await Bun.udpSocket({
      hostname: host,
      port,
      socket: {
        data(_s, data, peerPort, address) {
          self?.onDatagram(data, address, peerPort);
        },
      },
    });
    self = new UdpAudioSocket(socket, logger.child({ component: "udp" }));
    return self;
  }

  get port(): number {
    return this.socket.port;
  }

  /** A free ssrc for a new session (random, never 0, not in use). */
  freeSsrc(): number {
    for (;;) {
      const ssrc = crypto.getRandomValues(new Uint32Array(1))[0]!;
      if (ssrc !== 0 && !this.channels.has(ssrc)) return ssrc;
    }
  }

  open(ssrc: number, channel: UdpChannel): void {
    this.channels.set(ssrc, channel);
  }

  close(ssrc: number, channel: UdpChannel): void {
    if (this.channels.get(ssrc) === channel) this.channels.delete(ssrc);
  }

  /** Sends one datagram; false when the kernel did not take it. */
  send(datagram: Uint8Array, peer: UdpPeer): boolean {
    return this.socket.send(datagram, peer.port, peer.address);
  }

  stop(): void {
    this.socket.close();
    this.channels.clear();
  }

  private onDatagram(data: Buffer, address: string, port: number): void {
    const header = checkDatagram(data);
    if (typeof header === "string") {
      this.drop(header, address);
      return;
    }
    const channel = this.channels.get(header.ssrc);
    if (channel === undefined) {
      this.drop("unknown-ssrc", address);
      return;
    }
    channel.receive(data, header, address, port);
  }

  private drop(reason: UdpDropReason, address: string): void {
    this.dropped[reason]++;
    // The first of each reason is worth a line; a flood is in the counters.
    if (this.dropped[reason] === 1) this.logger.info({ reason, peer: address }, "udp datagram dropped (counted from now on)");
  }
}
