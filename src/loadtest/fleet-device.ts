import type { ProtocolVersion } from "../device/frame-codec";
import type { ConnectGate } from "./connect-gate";
import { openWebSocketWire, type Wire, type WireEvents } from "./device-wire";
import type { FleetStats, WaveStats } from "./fleet-stats";

/** Who a fleet device is and where it connects. */
export interface FleetDeviceOptions {
  /** The gateway's device endpoint: ws:// or wss://, or mqtt:// for MQTT + UDP. */
  readonly url: string;
  /** Its audio travels apart from its messages (UDP beside MQTT), so their order across
   * the two is not kept: scenarios leave a frame's time between a message and audio. */
  readonly audioApart?: boolean;
  /** How the device connects; default the WebSocket. */
  readonly openWire?: (
    o: { url: string; deviceId: string; clientId: string; token: string | undefined; protocolVersion: ProtocolVersion },
    events: WireEvents,
  ) => Wire;
  /** Lower-case MAC-like id, sent as Device-Id. */
  readonly deviceId: string;
  /** Sent as Client-Id (the firmware's UUID). */
  readonly clientId: string;
  /** Bearer token, if the gateway wants one. */
  readonly token: string | undefined;
  readonly protocolVersion: ProtocolVersion;
  /** Duration of the device's audio frames, ms (announced in hello). */
  readonly frameMs: number;
  /** Deadline of the handshake, ms. */
  readonly connectTimeoutMs: number;
  /** Deadline of the server hello, ms. */
  readonly helloTimeoutMs: number;
  readonly stats: FleetStats;
  readonly gate: ConnectGate;
}

type Settle = (ok: boolean) => void;

/** One connection's lifecycle; a device goes round it again on reconnect (churn). */
type Lifecycle =
  | { readonly t: "idle" }
  | { readonly t: "connecting"; readonly wire: Wire; readonly startMs: number; readonly timer: Timer; readonly settle: Settle }
  | { readonly t: "greeting"; readonly wire: Wire; readonly helloSentMs: number; readonly timer: Timer; readonly settle: Settle }
  | { readonly t: "ready"; readonly wire: Wire }
  | { readonly t: "closing"; readonly wire: Wire; readonly closed: () => void };

/** How long our own close may take before the device stops waiting for the close event. */
const CLOSE_WAIT_MS = 2000;

/**
 * A lean simulated device for fleets: the firmware's handshake headers and hello, then
 * whatever its scenario (a subclass) sends. Unlike SimulatedDevice it keeps nothing it
 * receives: connect and hello latencies and failures go to the shared FleetStats, and audio
 * and JSON are handed to the subclass as they arrive. The connection itself is a
 * {@link Wire}: the WebSocket, or MQTT + UDP.
 */
export class FleetDevice {
  /** The server's session_id from its hello, echoed in our JSON messages. */
  protected sessionId: string | undefined;
  private state: Lifecycle = { t: "idle" };
  /** Connection attempts so far (the churn wave of the next one). */
  private attemptCount = 0;
  private everConnected = false;
  /** The churn wave of the current connection. */
  private wave: WaveStats | undefined;
  /** Set by retire(): the run is over, no more connections. */
  private retired = false;

  constructor(protected readonly o: FleetDeviceOptions) {}

  get deviceId(): string {
    return this.o.deviceId;
  }

  /** True while the session is open (server hello received, not closed). */
  get isReady(): boolean {
    return this.state.t === "ready";
  }

  /**
   * Connects (waiting for a handshake slot), sends the firmware's hello and waits for the
   * server's. Resolves true once the session is open; false when it failed (counted in
   * stats, like a first connect still queued when the run ends).
   */
  async open(): Promise<boolean> {
    if (this.state.t !== "idle") throw new Error(`open() while ${this.state.t}`);
    const { gate, stats } = this.o;
    const admitted = !this.retired && (await gate.acquire());
    if (admitted && this.retired) gate.release();
    if (!admitted || this.retired) {
      // The run ended while this device queued for its first connect: it never made it, so
      // it counts as failed (a fleet too big for the ramp shows). A reconnect just stops.
      if (this.attemptCount === 0) {
        const wave = stats.wave(this.attemptCount++);
        stats.attempts++;
        wave.attempts++;
        stats.failed++;
        wave.failed++;
        stats.error("unfinished at end of run");
      }
      return false;
    }
    const wave = stats.wave(this.attemptCount++);
    this.wave = wave;
    stats.attempts++;
    wave.attempts++;
    const { promise, resolve } = Promise.withResolvers<boolean>();
    let released = false;
    const settle: Settle = (ok) => {
      if (!released) {
        released = true;
        gate.release();
      }
      if (!ok) {
        stats.failed++;
        wave.failed++;
      }
      resolve(ok);
    };

    const startMs = performance.now();
    const open = this.o.openWire ?? openWebSocketWire;
    let wire: Wire | undefined;
    const events: WireEvents = {
      opened: () => {
        const s = this.state;
        if (s.t !== "connecting" || s.wire !== wire) return;
        clearTimeout(s.timer);
        const now = performance.now();
        const ms = now - s.startMs;
        stats.connect.recordMs(ms);
        wave.connect.recordMs(ms);
        // The handshake is done: the slot goes to the next device while this one says hello.
        if (!released) {
          released = true;
          gate.release();
        }
        const helloTimer = setTimeout(() => this.fail(s.wire, "hello timeout"), this.o.helloTimeoutMs);
        this.state = { t: "greeting", wire: s.wire, helloSentMs: now, timer: helloTimer, settle: s.settle };
        s.wire.sendText(
          JSON.stringify({
            type: "hello",
            version: this.o.protocolVersion,
            features: { mcp: false },
            transport: s.wire.transport,
            audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: this.o.frameMs },
          }),
        );
      },
      failed: (why) => {
        const s = this.state;
        if (s.t === "connecting" && s.wire === wire) this.fail(s.wire, why);
      },
      closed: (code) => {
        if (wire !== undefined) this.onClose(wire, code);
      },
      text: (text, atMs) => {
        const s = this.state;
        if (s.t !== "idle" && s.wire === wire) this.onText(text, atMs);
      },
      audio: (payload, atMs) => {
        const s = this.state;
        if (s.t === "ready" && s.wire === wire) this.onAudio(payload, atMs);
      },
      bad: (why) => stats.error(why),
    };
    wire = open(
      { url: this.o.url, deviceId: this.o.deviceId, clientId: this.o.clientId, token: this.o.token, protocolVersion: this.o.protocolVersion },
      events,
    );
    const connecting = wire;
    const timer = setTimeout(() => this.fail(connecting, "connect timeout"), this.o.connectTimeoutMs);
    this.state = { t: "connecting", wire, startMs, timer, settle };
    return promise;
  }

  /**
   * Closes the session normally (1000) and waits for the close to complete (at most 2 s).
   * A connection still opening is abandoned: its open() resolves false and it counts as
   * failed ("unfinished at end of run"). Idempotent.
   */
  async close(): Promise<void> {
    const s = this.state;
    if (s.t === "idle") return;
    if (s.t === "connecting" || s.t === "greeting") {
      this.fail(s.wire, "unfinished at end of run");
      return;
    }
    const { promise, resolve } = Promise.withResolvers<void>();
    if (s.t === "closing") {
      const prev = s.closed;
      this.state = {
        t: "closing",
        wire: s.wire,
        closed: () => {
          prev();
          resolve();
        },
      };
    } else {
      this.state = { t: "closing", wire: s.wire, closed: resolve };
      this.o.stats.liveSessions--;
      this.sessionEnded();
      s.wire.close(1000);
    }
    const timer = setTimeout(() => {
      const c = this.state;
      if (c.t === "closing") {
        this.state = { t: "idle" };
        c.closed();
      }
    }, CLOSE_WAIT_MS);
    await promise;
    clearTimeout(timer);
  }

  /** Closes for good at the end of a run: like close(), and open() refuses from now on. */
  retire(): Promise<void> {
    this.retired = true;
    return this.close();
  }

  /** Sends a JSON message, adding the session_id like the firmware does. */
  protected sendJson(msg: Record<string, unknown>): void {
    const s = this.state;
    if (s.t !== "ready") return;
    s.wire.sendText(JSON.stringify(this.sessionId === undefined ? msg : { session_id: this.sessionId, ...msg }));
  }

  /** Sends a prepared text message (built once with {@link jsonText}). */
  protected sendText(text: string): void {
    const s = this.state;
    if (s.t === "ready") s.wire.sendText(text);
  }

  /** A JSON message's text with the session_id added, for messages sent repeatedly. */
  protected jsonText(msg: Record<string, unknown>): string {
    return JSON.stringify(this.sessionId === undefined ? msg : { session_id: this.sessionId, ...msg });
  }

  /**
   * Sends one audio packet framed in the device's version; returns false when the session is
   * not open. The wire copies the packet, so it may be reused at once.
   */
  protected sendAudio(packet: Uint8Array, timestampMs: number): boolean {
    const s = this.state;
    if (s.t !== "ready") return false;
    s.wire.sendAudio(packet, timestampMs);
    return true;
  }

  /** The session opened (server hello received). */
  protected onReady(): void {}

  /** The session ended, by us or by the gateway; per-session work in flight is given up. */
  protected sessionEnded(): void {}

  /** An audio frame arrived; `payload` is valid only during the call. */
  protected onAudio(_payload: Uint8Array, _atMs: number): void {}

  /** A JSON message other than hello, error and alert arrived. */
  protected onJson(_msg: Readonly<Record<string, unknown>>, _atMs: number): void {}

  private fail(wire: Wire, why: string): void {
    const s = this.state;
    if ((s.t !== "connecting" && s.t !== "greeting") || s.wire !== wire) return;
    clearTimeout(s.timer);
    this.state = { t: "idle" };
    this.o.stats.error(why);
    s.settle(false);
    wire.close();
  }

  private onClose(wire: Wire, code: number): void {
    const s = this.state;
    if (s.t === "idle" || s.wire !== wire) return;
    switch (s.t) {
      case "connecting":
        // A close without an error event: refused or dropped before the upgrade completed.
        this.fail(wire, "connect error");
        return;
      case "greeting":
        this.fail(wire, `close ${code}`);
        return;
      case "ready":
        this.state = { t: "idle" };
        this.o.stats.liveSessions--;
        this.o.stats.unexpectedCloses++;
        if (code !== 1000) this.o.stats.error(`close ${code}`);
        this.sessionEnded();
        return;
      case "closing":
        this.state = { t: "idle" };
        s.closed();
        return;
    }
  }

  private onText(text: string, atMs: number): void {
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(text);
      if (typeof parsed !== "object" || parsed === null) throw new Error("not an object");
      msg = parsed as Record<string, unknown>;
    } catch {
      this.o.stats.error("bad json from server");
      return;
    }
    const s = this.state;
    switch (msg.type) {
      case "hello":
        if (s.t !== "greeting") return;
        clearTimeout(s.timer);
        this.o.stats.recordHelloMs(atMs - s.helloSentMs);
        this.wave?.hello.recordMs(atMs - s.helloSentMs);
        this.sessionId = typeof msg.session_id === "string" ? msg.session_id : undefined;
        this.state = { t: "ready", wire: s.wire };
        this.o.stats.liveSessions++;
        if (this.everConnected) this.o.stats.reconnections++;
        else this.o.stats.connectedDevices++;
        this.everConnected = true;
        this.onReady();
        s.settle(true);
        return;
      case "error":
        this.o.stats.error(`server error ${typeof msg.code === "string" ? msg.code : "?"}`);
        return;
      case "alert":
        this.o.stats.error(`alert ${typeof msg.status === "string" ? msg.status : "?"}`);
        return;
      default:
        if (s.t === "ready") this.onJson(msg, atMs);
    }
  }
}
