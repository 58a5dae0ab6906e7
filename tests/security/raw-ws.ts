import type { Socket } from "bun";

/** How a raw connection ended, as seen from the client side. */
export interface RawEnd {
  /** The close code of the server's close frame, if it sent one. */
  readonly closeCode: number | undefined;
  /** The reason text of that close frame. */
  readonly closeReason: string;
  /** When the TCP connection closed, ms after the connection was made. */
  readonly afterMs: number;
}

/**
 * A WebSocket client written on a raw TCP socket (Bun.connect), so that tests can send what
 * no WebSocket library would: unmasked frames, broken UTF-8, oversized control frames,
 * interleaved fragments, lying lengths, half a handshake.
 */
export class RawWs {
  /** Everything received after the handshake's response head. */
  private body = Buffer.alloc(0);
  private head: string | undefined;
  private headWaiters: (() => void)[] = [];

  private constructor(
    private readonly socket: Socket<undefined>,
    /** Resolves once the TCP connection is closed (by either side). */
    readonly ended: Promise<RawEnd>,
  ) {}

  static async connect(port: number): Promise<RawWs> {
    const t0 = performance.now();
    const { promise: ended, resolve } = Promise.withResolvers<RawEnd>();
    let self: RawWs | undefined;
    const socket = await Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        // Nothing arrives before the first write, which follows connect().
        data: (_s, chunk) => self?.received(chunk),
        close: () => resolve({ ...(self?.closeFrame() ?? { closeCode: undefined, closeReason: "" }), afterMs: performance.now() - t0 }),
        error() {},
      },
    });
    self = new RawWs(socket, ended);
    return self;
  }

  /** Writes the request head of a WebSocket handshake with these extra headers; `complete`
   * false stops half-way through a header line. */
  sendHandshake(path: string, headers: Record<string, string>, complete = true): void {
    const lines = [
      `GET ${path} HTTP/1.1`,
      "Host: 127.0.0.1",
      "Upgrade: websocket",
      "Connection: Upgrade",
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13",
      ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    ];
    this.socket.write(complete ? `${lines.join("\r\n")}\r\n\r\n` : `${lines.join("\r\n")}\r\nX-Unfinish`);
  }

  /** The response head if one has arrived complete; else undefined. */
  get headSoFar(): string | undefined {
    return this.head;
  }

  /** The response head (status line and headers), once complete. */
  async responseHead(): Promise<string> {
    while (this.head === undefined) {
      const { promise, resolve } = Promise.withResolvers<void>();
      this.headWaiters.push(resolve);
      await promise;
    }
    return this.head;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  end(): void {
    this.socket.end();
  }

  private received(chunk: Buffer): void {
    this.body = Buffer.concat([this.body, chunk]);
    if (this.head !== undefined) return;
    const at = this.body.indexOf("\r\n\r\n");
    if (at < 0) return;
    this.head = this.body.subarray(0, at).toString("latin1");
    this.body = this.body.subarray(at + 4);
    const w = this.headWaiters;
    this.headWaiters = [];
    for (const f of w) f();
  }

  /** The first close frame the server sent, if any (server frames are never masked). */
  private closeFrame(): { closeCode: number | undefined; closeReason: string } {
    let b = this.body;
    while (b.length >= 2) {
      const opcode = b[0]! & 0x0f;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      if (b.length < at + len) break;
      if (opcode === 0x8) {
        const payload = b.subarray(at, at + len);
        return { closeCode: payload.length >= 2 ? payload.readUInt16BE(0) : undefined, closeReason: payload.subarray(2).toString("utf8") };
      }
      b = b.subarray(at + len);
    }
    return { closeCode: undefined, closeReason: "" };
  }
}

/** A client frame: FIN flag, opcode, payload; masked unless told otherwise. `claimedLength`
 * overrides the length field (the payload sent stays what it is). */
export function frame(opcode: number, payload: Uint8Array, o: { fin?: boolean; masked?: boolean; claimedLength?: bigint } = {}): Uint8Array {
  const fin = o.fin ?? true;
  const masked = o.masked ?? true;
  const len = o.claimedLength ?? BigInt(payload.length);
  const head: number[] = [(fin ? 0x80 : 0) | opcode];
  const maskBit = masked ? 0x80 : 0;
  if (len < 126n) head.push(maskBit | Number(len));
  else if (len < 65536n) head.push(maskBit | 126, Number(len >> 8n), Number(len & 0xffn));
  else {
    head.push(maskBit | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((len >> BigInt(i * 8)) & 0xffn));
  }
  const mask = [0x12, 0x34, 0x56, 0x78];
  if (masked) head.push(...mask);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head);
  for (let i = 0; i < payload.length; i++) out[head.length + i] = masked ? payload[i]! ^ mask[i % 4]! : payload[i]!;
  return out;
}

export const Opcode = { Continuation: 0x0, Text: 0x1, Binary: 0x2, Close: 0x8, Ping: 0x9 } as const;
