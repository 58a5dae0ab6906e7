import { createSocket, type Socket } from "node:dgram";
import { isIPv6 } from "node:net";
import { kernelUdpDrops } from "./kernel-udp-drops";
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

/** Every datagram lost on this socket, by reason: those we refused, those we could not
 * send, and those the kernel dropped before we could read them. */
export type UdpLossReason = UdpDropReason | "send-failed" | "receive-buffer-full";

/**
 * The one UDP socket of the gateway's MQTT + UDP transport. A datagram's ssrc bytes (which
 * the gateway chose, in the nonce of the session's hello) find its session in O(1); a
 * datagram that frames badly or names no session is counted and dropped before any key is
 * used, so garbage costs one map lookup at most.
 */
export class UdpAudioSocket {
  readonly dropped: Record<UdpDropReason, number> = { short: 0, "bad-type": 0, "bad-length": 0, "too-large": 0, "unknown-ssrc": 0 };
  private sendFailures = 0;
  private readonly channels = new Map<number, UdpChannel>();

  private constructor(
    private readonly socket: Socket,
    private readonly logger: Logger,
    /** The receive buffer the kernel granted, in bytes. */
    readonly receiveBufferBytes: number,
  ) {
    socket.on("message", (data, from) => this.onDatagram(data, from.address, from.port));
    socket.on("error", (err) => {
      this.sendFailures++;
      if (this.sendFailures === 1) this.logger.warn({ err: err.message }, "udp send failed (counted from now on)");
    });
  }

  /**
   * Binds the socket with a receive buffer of `receiveBufferBytes`. Every device's audio
   * arrives on this one socket: at 1,000 streaming devices (16,700 datagrams a second) the
   * kernel's default buffer (212,992 bytes, a few hundred datagrams) overflowed whenever the
   * event loop paused some 20 ms, and the kernel dropped the datagrams before we could count
   * them (measured: 298 of 166,667 frames, all in RcvbufErrors). node:dgram, not
   * Bun.udpSocket, because only it can size the buffer.
   */
  static async bind(host: string, port: number, receiveBufferBytes: number, logger: Logger = silentLogger): Promise<UdpAudioSocket> {
    const log = logger.child({ component: "udp" });
    const socket = createSocket({ type: isIPv6(host) ? "udp6" : "udp4", recvBufferSize: receiveBufferBytes });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind(port, host, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    // Linux grants at most net.core.rmem_max, and getsockopt reports twice what it granted
    // (the other half is its bookkeeping).
    const reported = socket.getRecvBufferSize();
    const granted = process.platform === "linux" ? reported / 2 : reported;
    if (granted < receiveBufferBytes) {
      log.warn(
        { askedBytes: receiveBufferBytes, grantedBytes: granted },
        "the kernel granted the UDP socket a smaller receive buffer than IM_UDP_RECEIVE_BUFFER_BYTES: raise net.core.rmem_max, or audio datagrams are dropped under load",
      );
    }
    return new UdpAudioSocket(socket, log, granted);
  }

  get port(): number {
    return this.socket.address().port;
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

  /** Every datagram lost on this socket so far, by reason (the metrics' counter). */
  losses(): Partial<Record<UdpLossReason, number>> {
    const kernel = kernelUdpDrops(this.port);
    return {
      ...this.dropped,
      ...(this.sendFailures > 0 ? { "send-failed": this.sendFailures } : {}),
      ...(kernel ? { "receive-buffer-full": kernel } : {}),
    };
  }

  /** Sends one datagram (a failure is counted in `losses`). */
  send(datagram: Uint8Array, peer: UdpPeer): void {
    this.socket.send(datagram, peer.port, peer.address);
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
