import { type DecodedFrame, decodeFrame, FrameEncoder, FrameKind, newDecodedFrame, type ProtocolVersion } from "../device/frame-codec";

/** One thing a simulated device received, with when (performance.now(), ms). */
export type Received =
  | { readonly kind: "json"; readonly msg: Readonly<Record<string, unknown>>; readonly atMs: number }
  | { readonly kind: "audio"; readonly payload: Uint8Array; readonly timestampMs: number; readonly atMs: number };

export interface SimulatedDeviceOptions {
  /** ws:// URL of the gateway endpoint. */
  readonly url: string;
  readonly token?: string;
  readonly deviceId?: string;
  readonly clientId?: string;
  /** Default 1. */
  readonly protocolVersion?: ProtocolVersion;
  /** Pass identity as query parameters (as browsers must) instead of headers. */
  readonly identityInQuery?: boolean;
  /** Deadline for the socket to open. Default 10 s (the firmware's handshake timeout). */
  readonly connectTimeoutMs?: number;
}

export interface ClosedInfo {
  readonly code: number;
  readonly reason: string;
}

/**
 * A device speaking the real protocol: the firmware's handshake headers, hello, JSON
 * messages and v1/v2/v3 binary frames. Everything received is recorded; tests and the load
 * generator wait on what they expect with `waitFor` (event-driven, with a deadline).
 */
export class SimulatedDevice {
  readonly received: Received[] = [];
  readonly closed: Promise<ClosedInfo>;
  readonly version: ProtocolVersion;
  sessionId: string | undefined;
  private readonly ws: WebSocket;
  private readonly encoder: FrameEncoder;
  private readonly frame: DecodedFrame = newDecodedFrame();
  private readonly taken = new Set<Received>();
  private waiters: (() => void)[] = [];
  private isClosed = false;

  private constructor(ws: WebSocket, version: ProtocolVersion) {
    this.ws = ws;
    this.version = version;
    this.encoder = new FrameEncoder(version);
    const { promise, resolve } = Promise.withResolvers<ClosedInfo>();
    this.closed = promise;
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => this.onMessage(e.data as string | ArrayBuffer);
    ws.onclose = (e) => {
      this.isClosed = true;
      resolve({ code: e.code, reason: e.reason });
      this.notify();
    };
  }

  /** Opens the socket; rejects with the HTTP refusal (status and body) or on timeout. */
  static async connect(o: SimulatedDeviceOptions): Promise<SimulatedDevice> {
    const version = o.protocolVersion ?? 1;
    const url = new URL(o.url);
    const headers: Record<string, string> = {};
    const put = (header: string, query: string, value: string | undefined) => {
      if (value === undefined) return;
      if (o.identityInQuery) url.searchParams.set(query, value);
      else headers[header] = value;
    };
    put("Authorization", "token", o.token === undefined ? undefined : o.identityInQuery ? o.token : `Bearer ${o.token}`);
    put("Device-Id", "device-id", o.deviceId);
    put("Client-Id", "client-id", o.clientId);
    put("Protocol-Version", "protocol-version", String(version));
    const ws = new WebSocket(url.toString(), { headers });
    const device = new SimulatedDevice(ws, version);
    const { promise, resolve, reject } = Promise.withResolvers<SimulatedDevice>();
    const timer = setTimeout(() => {
      ws.close();
      reject(new Error("connect timeout"));
    }, o.connectTimeoutMs ?? 10_000);
    ws.onopen = () => {
      clearTimeout(timer);
      resolve(device);
    };
    ws.onerror = () => {
      clearTimeout(timer);
      reject(new Error("handshake refused"));
    };
    return promise;
  }

  /** Sends the firmware's hello and waits for the server's. */
  async hello(extra: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<Readonly<Record<string, unknown>>> {
    this.sendJson({
      type: "hello",
      version: this.version,
      features: { mcp: false },
      transport: "websocket",
      audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
      ...extra,
    });
    const r = await this.waitJson((m) => m.type === "hello", timeoutMs);
    this.sessionId = typeof r.session_id === "string" ? r.session_id : undefined;
    return r;
  }

  /** False once the socket has closed (either side). */
  get isOpen(): boolean {
    return !this.isClosed;
  }

  sendJson(msg: Readonly<Record<string, unknown>>): void {
    this.ws.send(JSON.stringify(this.sessionId && msg.type !== "hello" ? { session_id: this.sessionId, ...msg } : msg));
  }

  /** Sends one audio packet framed in the device's protocol version. */
  sendAudio(opus: Uint8Array, timestampMs = 0): void {
    // The encoder's buffer is reused: send a copy so a queued send never sees later bytes.
    this.ws.send(this.encoder.encode(opus, timestampMs).slice());
  }

  /** Sends bytes as they are (malformed frames in tests). */
  sendRaw(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  close(code = 1000, reason = ""): void {
    this.ws.close(code, reason);
  }

  /** The first not-yet-taken message matching `pred`, waiting up to `timeoutMs` for it. */
  async waitFor(pred: (r: Received) => boolean, timeoutMs = 10_000): Promise<Received> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      for (const r of this.received) {
        if (!this.taken.has(r) && pred(r)) {
          this.taken.add(r);
          return r;
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for a message; got ${this.describe()}`);
      if (this.isClosed) throw new Error(`socket closed while waiting for a message; got ${this.describe()}`);
      const { promise, resolve } = Promise.withResolvers<void>();
      const timer = setTimeout(resolve, left);
      this.waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
      await promise;
    }
  }

  async waitJson(pred: (m: Readonly<Record<string, unknown>>) => boolean, timeoutMs = 10_000): Promise<Readonly<Record<string, unknown>>> {
    const r = await this.waitFor((x) => x.kind === "json" && pred(x.msg), timeoutMs);
    return (r as Extract<Received, { kind: "json" }>).msg;
  }

  /** Received audio packets so far. */
  audio(): Extract<Received, { kind: "audio" }>[] {
    return this.received.filter((r): r is Extract<Received, { kind: "audio" }> => r.kind === "audio");
  }

  private describe(): string {
    return this.received
      .slice(-12)
      .map((r) => (r.kind === "json" ? JSON.stringify(r.msg).slice(0, 120) : `<audio ${r.payload.length}B>`))
      .join(", ");
  }

  private onMessage(data: string | ArrayBuffer): void {
    const atMs = performance.now();
    if (typeof data === "string") {
      let msg: unknown;
      try {
        msg = JSON.parse(data);
      } catch {
        msg = { type: "<unparsable>", raw: data.slice(0, 200) };
      }
      this.received.push({ kind: "json", msg: msg as Record<string, unknown>, atMs });
    } else {
      const bytes = new Uint8Array(data);
      const kind = decodeFrame(this.version, bytes, this.frame);
      if (kind === FrameKind.Audio) {
        this.received.push({ kind: "audio", payload: this.frame.payload.slice(), timestampMs: this.frame.timestampMs, atMs });
      } else {
        this.received.push({ kind: "json", msg: { type: "<bad-frame>", frameKind: kind, bytes: bytes.length }, atMs });
      }
    }
    this.notify();
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
