import { Topic } from "../fanout/topic";
import { CloseCode } from "../device/close-codes";
import type { AudioParams, DeviceMessage, ForwardedMessage, ListenMessage } from "../device/device-message";
import { type DecodedFrame, decodeFrame, FrameKind, newDecodedFrame, type ProtocolVersion } from "../device/frame-codec";
import { parseDeviceMessage } from "../device/parse-device-message";
import type { ServerMessage } from "../device/server-message";
import { describeError, ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import type { LogLimiter } from "../log-limiter";
import type { MemoryBudget } from "../memory-budget";
import type { DropReason, Metrics } from "../metrics";
import type { AskQuestion, EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink, UpstreamStatus } from "../upstream/upstream";
import type { DeviceLink } from "./device-link";
import type { LinkTopics } from "./link-topics";
import { type InboundLimit, InboundLimiter, type InboundLimits } from "./inbound-limiter";
import type { TokenBucket } from "../token-bucket";
import { OutboundPressure, type SlowConsumerCause, type SlowConsumerLimits, type SlowConsumerListener } from "./outbound-pressure";
import { PushedMcpCalls } from "./pushed-mcp-calls";
import type { SessionRegistry } from "./session-registry";
import { TextAnswers, textDialectQuestion } from "./text-answers";

/** Session limits and the audio the server announces. */
export interface SessionSettings {
  readonly helloTimeoutMs: number;
  readonly maxFrameBytes: number;
  readonly maxJsonBytes: number;
  /** Largest image a text-dialect client may send. */
  readonly maxImageBytes: number;
  readonly serverAudio: AudioParams;
  /** What a device may send (flood limits, 4003). */
  readonly inbound: InboundLimits;
  /** When a device that does not read is closed (4002). */
  readonly slowConsumer: SlowConsumerLimits;
}

/** What every session shares. */
export interface SessionContext {
  readonly upstream: Upstream;
  readonly registry: SessionRegistry<DeviceSession>;
  readonly settings: SessionSettings;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** Bounds the lines that devices can cause (closes, drops), shared by every session. */
  readonly logLimiter: LogLimiter;
  /** The process-wide memory budget: past it, device audio is dropped (and the gateway sheds
   * its largest holders). */
  readonly budget?: MemoryBudget;
  /** Broadcast topics of the links that are not Bun websockets (MQTT + UDP). */
  readonly linkTopics?: LinkTopics;
}

/** Who connected, as verified at the upgrade. */
export interface SessionIdentity {
  readonly deviceId: string | undefined;
  readonly clientId: string | undefined;
  readonly userId: string;
  readonly claims: Readonly<Record<string, string>>;
  /** The version the handshake named; the hello's `version` is used when it named none. */
  readonly protocolVersion: ProtocolVersion | undefined;
  /** `text` when the handshake asked for the text dialect (`?dialect=text`); else the first
   * message tells. */
  readonly dialect?: "text";
  /** An MQTT device between audio sessions: it has said no hello, yet it is connected and
   * reachable (pushed JSON and MCP calls go to it); no hello timeout applies. */
  readonly idle?: true;
}

export interface WsData {
  readonly session: DeviceSession;
}

/** The lifecycle of a device connection. */
type SessionState =
  | { readonly t: "connecting" }
  /** `timer` closes it without a hello; a listener (a connection that named no device) has
   * none: it waits for broadcasts until it speaks or the idle timeout ends it. */
  | { readonly t: "awaiting-hello"; readonly link: DeviceLink; readonly timer: ReturnType<typeof setTimeout> | undefined }
  | {
      readonly t: "active";
      readonly link: DeviceLink;
      readonly upstream: UpstreamSession;
      readonly startedAtMs: number;
    }
  /** The simple text dialect: the first message was `text` or `image`, not `hello`. */
  | { readonly t: "text"; readonly link: DeviceLink; readonly answers: TextAnswers }
  | { readonly t: "closed" };

/** Whether the AI is speaking to the device (between its tts start and tts stop). */
type Speech = "silent" | "speaking";

/** How the session ends when the gateway shuts down: not yet asked, or once the answer being
 * spoken is over. */
type Departure = "none" | "after-answer";

const LISTEN_STOP: ListenMessage = { type: "listen", state: "stop", mode: undefined, text: undefined };
const utf8 = new TextDecoder("utf-8", { fatal: false });

/**
 * One device connection: the protocol state machine between its WebSocket and its upstream
 * session. Handlers run synchronously, so a device's messages reach the upstream in the
 * order they arrived. Bad input is answered or dropped and counted; only abuse closes.
 */
export class DeviceSession implements UpstreamSink, SlowConsumerListener {
  readonly sessionId: string = crypto.randomUUID();
  private state: SessionState = { t: "connecting" };
  private version: ProtocolVersion;
  private endReason: EndReason = "device-gone";
  private readonly frame: DecodedFrame = newDecodedFrame();
  /** Reasons already logged once (made on the first drop: most sessions never drop). */
  private loggedDrops: Set<DropReason> | undefined;
  /** MCP requests pushed by the HTTP API (made on the first: most sessions never get one). */
  private pushedMcp: PushedMcpCalls | undefined;
  private logger: Logger | undefined;
  private readonly inbound: InboundLimiter;
  /** Closed for sending past its limits: the rest of what it sent is dropped unread. */
  private flooded = false;
  /** Made on the first backpressure: most sessions never see any. */
  private pressure: OutboundPressure | undefined;
  private speech: Speech = "silent";
  private departure: Departure = "none";

  constructor(
    readonly identity: SessionIdentity,
    private readonly ctx: SessionContext,
    /** The inbound byte bucket of the client's address, shared with its other connections. */
    addressBytes?: TokenBucket,
  ) {
    this.version = identity.protocolVersion ?? 1;
    this.inbound = new InboundLimiter(ctx.settings.inbound, performance.now(), addressBytes);
  }

  /** The largest audio payload this device can be sent: its frame limit, and v3's u16 size. */
  private maxAudioOutBytes(): number {
    const limit = this.ctx.settings.maxFrameBytes;
    return this.version === 3 ? Math.min(limit, 0xffff) : limit;
  }

  /** Debug lines cost nothing (not even the child logger) unless debug is on. */
  private debug(fields: Record<string, unknown>, msg: string): void {
    if (this.ctx.logger.isLevelEnabled("debug")) this.log.debug(fields, msg);
  }

  /** The session's logger, made on first use: most sessions never log, and a child logger
   * per connection was a measurable share of connect cost. */
  private get log(): Logger {
    this.logger ??= this.ctx.logger.child({ sessionId: this.sessionId, deviceId: this.identity.deviceId });
    return this.logger;
  }

  get protocolVersion(): ProtocolVersion {
    return this.version;
  }

  get isActive(): boolean {
    return this.state.t === "active";
  }

  // ---- Device side (the link: a WebSocket, or MQTT + UDP) ----

  socketOpened(link: DeviceLink): void {
    this.ctx.metrics.connectionsOpened++;
    if (this.identity.dialect === "text") {
      this.ctx.registry.add(this);
      if (this.identity.deviceId !== undefined) this.ctx.registry.claim(this.identity.deviceId, this);
      this.enterTextDialect(link, undefined);
      return;
    }
    // A connection that names no device is a listener until it speaks: it receives the text
    // dialect's broadcasts (/api/message answers) and is not held to the hello timeout. Idle
    // timeout, limits and budgets still apply to it.
    const listener = this.identity.deviceId === undefined;
    if (listener) link.subscribe(Topic.clients.text);
    // An idle MQTT device is shown broadcast notices like a device in a session.
    if (this.identity.idle === true) link.subscribe(Topic.clients.device);
    const timer =
      listener || this.identity.idle === true
        ? undefined
        : setTimeout(() => {
            if (this.state.t !== "awaiting-hello") return;
            this.ctx.logLimiter.log(this.log, "info", "session:hello-timeout", {}, "no hello in time; closing");
            link.close(CloseCode.HelloTimeout, "hello timeout");
          }, this.ctx.settings.helloTimeoutMs);
    this.state = { t: "awaiting-hello", link, timer };
    this.ctx.registry.add(this);
    if (this.identity.deviceId !== undefined) this.ctx.registry.claim(this.identity.deviceId, this);
    this.debug({ protocolVersion: this.identity.protocolVersion }, "device connected");
  }

  socketMessage(message: string | Buffer): void {
    // A string's length undercounts non-ASCII bytes; exact enough for a flood limit, and O(1).
    if (!this.admitted(message.length)) return;
    try {
      if (typeof message === "string") this.onText(message);
      else this.onBinary(message);
    } catch (err) {
      // A bug here must cost this message, never the process or another session.
      this.ctx.logLimiter.log(this.log, "error", "session:handler-failed", { err: describeError(err) }, "message handler failed");
      this.sendError(ErrorCode.Internal, "internal error");
    }
  }

  /**
   * An Opus packet from a link that carries audio apart from messages (MQTT + UDP: the
   * datagram is already decrypted). Counted, limited and budgeted like a WebSocket frame.
   */
  linkAudio(opus: Uint8Array): void {
    if (!this.admitted(opus.length)) return;
    const s = this.state;
    if (s.t !== "active") {
      this.dropped("before-hello");
      return;
    }
    this.ctx.metrics.framesIn++;
    this.ctx.metrics.bytesIn += opus.length;
    if (this.ctx.budget?.over === true) {
      this.dropped("memory-budget");
      return;
    }
    if (opus.length === 0) s.upstream.send(LISTEN_STOP);
    else s.upstream.audio(opus, (performance.now() - s.startedAtMs) >>> 0);
  }

  /**
   * Every message counts, before any work is spent on it: false when it is not to be looked
   * at, because the session is closed or was closed for flooding (what was already on its
   * way: one close, one count), or because this one goes over the limits (closed now).
   */
  private admitted(bytes: number): boolean {
    if (this.state.t === "closed" || this.flooded) {
      this.ctx.metrics.drop("device-closed");
      return false;
    }
    const over = this.inbound.admit(bytes, performance.now());
    if (over === undefined) return true;
    this.flood(over);
    return false;
  }

  /** Bytes waiting in this device's socket (only a socket under backpressure has any). */
  get outboundBytes(): number {
    const s = this.state;
    if (this.pressure?.pressed !== true || (s.t !== "active" && s.t !== "text" && s.t !== "awaiting-hello")) return 0;
    return s.link.getBufferedAmount();
  }

  /** What the upstream holds for this session is looked up by its upstream session. */
  get upstreamSession(): UpstreamSession | undefined {
    return this.state.t === "active" ? this.state.upstream : undefined;
  }

  /** Closed to bring the gateway back under its memory budget: retryable (1013). */
  shed(heldBytes: number): void {
    this.ctx.logLimiter.log(
      this.log,
      "warn",
      "session:budget-shed",
      { heldBytes },
      "the gateway is over its memory budget: closing one of its largest holders (1013)",
    );
    this.close(CloseCode.TryAgainLater, "over the memory budget; retry later");
  }

  /** A WebSocket ping from the client: counted like a message (4003 past the limits). */
  socketPing(bytes: number): void {
    if (this.state.t === "closed" || this.flooded) return;
    const over = this.inbound.admit(bytes, performance.now());
    if (over !== undefined) this.flood(over);
  }

  socketClosed(code: number): void {
    const s = this.state;
    if (s.t === "closed") return;
    this.state = { t: "closed" };
    this.ctx.metrics.connectionsClosed++;
    if (s.t === "awaiting-hello") clearTimeout(s.timer);
    if (s.t === "text") s.answers.abortAll();
    this.pushedMcp?.cancelAll();
    this.pressure?.stop();
    if (s.t === "active") s.upstream.end(this.endReason);
    this.ctx.registry.remove(this);
    if (this.identity.deviceId !== undefined) this.ctx.registry.release(this.identity.deviceId, this);
    // Routine comings and goings are debug: at fleet scale they would drown the log.
    // A replaced session is worth a line: it means two connections fought over one device.
    if (this.endReason === "replaced")
      this.ctx.logLimiter.log(this.log, "info", "session:replaced", { code }, "device disconnected: replaced by a newer connection");
    else this.debug({ code, reason: this.endReason }, "device disconnected");
  }

  /** A newer connection of the same device took over. */
  replace(): void {
    this.endReason = "replaced";
    this.close(CloseCode.Replaced, "replaced by a newer connection");
  }

  /** Bun's drain: the socket wrote some of what was queued for the device. */
  socketDrained(): void {
    this.pressure?.drained(performance.now());
  }

  /**
   * The gateway is shutting down: the device is told to reconnect elsewhere (1001). With
   * `afterAnswer`, an answer being spoken (tts start .. stop) is let finish first and the
   * socket closes right after its tts stop; an idle session closes at once either way.
   */
  goAway(afterAnswer: boolean): void {
    if (this.state.t === "closed") return;
    this.endReason = "shutdown";
    if (afterAnswer && this.speech === "speaking" && this.state.t === "active") {
      this.departure = "after-answer";
      return;
    }
    this.close(CloseCode.GoingAway, "server shutting down");
  }

  /** Closes the socket (the close handler then ends the upstream). */
  close(code: number, reason: string): void {
    const s = this.state;
    if (s.t === "awaiting-hello" || s.t === "active" || s.t === "text") s.link.close(code, reason);
  }

  /** The protocol this connection speaks, once its first message told. */
  get dialect(): "device" | "text" | "unknown" {
    const t = this.state.t;
    return t === "active" || this.reachableIdle ? "device" : t === "text" ? "text" : "unknown";
  }

  /** An idle MQTT device: JSON pushes and MCP calls reach it without an audio session. */
  private get reachableIdle(): boolean {
    return this.identity.idle === true && this.state.t === "awaiting-hello";
  }

  /** Pushes a message into a device session's conversation (HTTP API): the AI answers the
   * device as if it had sent it. False when the session is not a live device session. */
  deliver(message: ForwardedMessage): boolean {
    const s = this.state;
    if (s.t !== "active") return false;
    s.upstream.send(message);
    return true;
  }

  /** Pushes a device-protocol JSON message (alert, system, custom...) to a device session.
   * False when this is not a live device session. */
  sendDeviceJson(message: Readonly<Record<string, unknown>>): boolean {
    if (this.state.t !== "active" && !this.reachableIdle) return false;
    this.sendRaw(JSON.stringify({ session_id: this.sessionId, ...message }));
    return true;
  }

  /**
   * Pushes an MCP JSON-RPC request to the device and hands its reply to `reply` (or
   * undefined after `timeoutMs`): see {@link PushedMcpCalls}. False when this is not a live
   * device session.
   */
  pushMcp(payload: Readonly<Record<string, unknown>>, reply: (payload: unknown) => void, timeoutMs: number): boolean {
    if (this.state.t !== "active" && !this.reachableIdle) return false;
    this.pushedMcp ??= new PushedMcpCalls(this.sessionId.slice(0, 8));
    this.pushedMcp.push(payload, reply, timeoutMs, (p) => this.sendRaw(JSON.stringify({ session_id: this.sessionId, type: "mcp", payload: p })));
    return true;
  }

  /** Text dialect: asks the AI service and streams the answer to this client (see
   * {@link TextAnswers}). Returns the answer's id, or undefined when this is not a
   * text-dialect session. */
  askAndStream(question: AskQuestion): string | undefined {
    const s = this.state;
    return s.t === "text" ? s.answers.ask(question) : undefined;
  }

  private onText(text: string): void {
    if (text.length > this.ctx.settings.maxJsonBytes) {
      this.close(CloseCode.MessageTooBig, "message too big");
      return;
    }
    this.ctx.metrics.jsonIn++;
    let msg: DeviceMessage;
    try {
      msg = parseDeviceMessage(text);
    } catch (err) {
      if (isGatewayError(err)) {
        this.debug({ code: err.code, reason: err.message }, "bad message");
        this.sendError(err.code, err.message);
        return;
      }
      throw err;
    }
    this.onDeviceMessage(msg);
  }

  private onBinary(data: Buffer): void {
    const s = this.state;
    if (data.length > this.ctx.settings.maxFrameBytes) {
      this.close(CloseCode.MessageTooBig, "frame too big");
      return;
    }
    if (s.t === "text") {
      this.close(CloseCode.PolicyViolation, "binary frames are not part of the text dialect");
      return;
    }
    if (s.t !== "active") {
      this.dropped("before-hello");
      return;
    }
    const f = this.frame;
    switch (decodeFrame(this.version, data, f)) {
      case FrameKind.Audio:
        this.ctx.metrics.framesIn++;
        this.ctx.metrics.bytesIn += f.payload.length;
        // Over the process's budget no more audio is taken on: the sampler sheds the largest
        // holders, and this frame is dropped, counted.
        if (this.ctx.budget?.over === true) {
          this.dropped("memory-budget");
          return;
        }
        s.upstream.audio(f.payload, f.timestampMs >= 0 ? f.timestampMs : (performance.now() - s.startedAtMs) >>> 0);
        return;
      case FrameKind.Empty:
        s.upstream.send(LISTEN_STOP);
        return;
      case FrameKind.Json:
        this.onText(utf8.decode(f.payload));
        return;
      case FrameKind.Short:
        this.dropped("frame-short");
        return;
      case FrameKind.SizeMismatch:
        this.dropped("frame-size-mismatch");
        return;
    }
  }

  private onDeviceMessage(msg: DeviceMessage): void {
    if (msg.type === "ping") {
      this.sendRaw(JSON.stringify({ type: "pong", timestamp: Date.now() }));
      return;
    }
    if (msg.type === "hello") {
      this.onHello(msg.version, msg.transport, msg.features, msg.audioParams);
      return;
    }
    const s = this.state;
    // The dialect is told by the first message: text or image instead of hello.
    if (s.t === "awaiting-hello" && (msg.type === "chat" || msg.type === "image")) this.enterTextDialect(s.link, s.timer);
    if (this.state.t === "text") {
      this.onTextDialect(msg);
      return;
    }
    // The answer to an MCP call the HTTP API pushed (an idle MQTT device answers one too).
    if (msg.type === "mcp" && this.pushedMcp?.take(msg.payloadJson) === true) return;
    if (s.t !== "active") {
      this.sendError(ErrorCode.StateViolation, "send hello first");
      return;
    }
    if (msg.type === "audio") {
      this.ctx.metrics.framesIn++;
      s.upstream.audio(msg.data, (performance.now() - s.startedAtMs) >>> 0);
      return;
    }
    s.upstream.send(msg);
  }

  private onHello(version: number | undefined, transport: string, features: Readonly<Record<string, boolean>>, audioParams: AudioParams): void {
    const s = this.state;
    if (s.t === "active") {
      // A repeated hello on a live session: answer again, keep the conversation.
      this.sendServerHello();
      return;
    }
    if (s.t !== "awaiting-hello") return;
    clearTimeout(s.timer);
    // A listener that says hello is a device session: text broadcasts are not for it.
    if (s.timer === undefined) s.link.unsubscribe(Topic.clients.text);
    if (this.identity.protocolVersion === undefined && (version === 1 || version === 2 || version === 3)) this.version = version;
    const hello: SessionHello = {
      sessionId: this.sessionId,
      deviceId: this.identity.deviceId ?? "",
      clientId: this.identity.clientId ?? "",
      userId: this.identity.userId,
      claims: this.identity.claims,
      protocolVersion: this.version,
      audioParams,
      features,
      transport,
    };
    // The hello goes out before the upstream opens: the device waits for nothing remote.
    this.state = { t: "active", link: s.link, upstream: NOOP_UPSTREAM, startedAtMs: performance.now() };
    this.sendServerHello();
    s.link.subscribe(Topic.clients.device);
    const upstream = this.ctx.upstream.open(hello, this);
    if (this.state.t === "active") this.state = { ...this.state, upstream };
    else upstream.end(this.endReason);
    this.debug({ protocolVersion: this.version, audio: audioParams.format, features }, "session started");
  }

  private linkHelloFields(): Readonly<Record<string, unknown>> {
    const s = this.state;
    return s.t === "active" || s.t === "awaiting-hello" || s.t === "text" ? s.link.helloFields() : {};
  }

  private sendServerHello(): void {
    const a = this.ctx.settings.serverAudio;
    this.sendRaw(
      JSON.stringify({
        type: "hello",
        ...this.linkHelloFields(),
        session_id: this.sessionId,
        audio_params: { format: a.format, sample_rate: a.sampleRate, channels: a.channels, frame_duration: a.frameDurationMs },
      }),
    );
  }

  // ---- Upstream side (UpstreamSink) ----

  onAudio(opus: Uint8Array, timestampMs: number): void {
    const s = this.state;
    if (s.t !== "active") {
      this.ctx.metrics.drop("device-closed");
      return;
    }
    if (this.pressure?.pressed === true) {
      this.dropped("device-backpressure");
      return;
    }
    // An AI's packet the device cannot take (over its frame limit, or v3's 16-bit size)
    // is the AI's bug: dropped and counted, never sent as a giant frame, never a throw.
    if (opus.length > this.maxAudioOutBytes()) {
      this.dropped("upstream-bad-event");
      return;
    }
    const sent = s.link.sendAudio(opus, timestampMs, this.version);
    if (sent <= 0) this.pressed(s.link);
    if (sent === 0) {
      this.dropped("device-send-failed");
      return;
    }
    this.ctx.metrics.framesOut++;
    this.ctx.metrics.bytesOut += opus.length;
  }

  onMessage(message: ServerMessage): void {
    this.sendJson(message);
    if (message.type !== "tts") return;
    if (message.state === "start") this.speech = "speaking";
    else if (message.state === "stop") {
      this.speech = "silent";
      // The close frame is queued behind the tts stop: the device hears the end of its answer.
      if (this.departure === "after-answer") this.close(CloseCode.GoingAway, "server shutting down");
    }
  }

  onSlowConsumer(cause: SlowConsumerCause, bufferedBytes: number, stalledMs: number): void {
    this.ctx.metrics.slowConsumerCloses++;
    const limits = this.ctx.settings.slowConsumer;
    this.ctx.logLimiter.log(
      this.log,
      "warn",
      "session:slow-consumer",
      {
        cause,
        bufferedBytes,
        stalledMs,
        slowConsumerBytes: limits.slowConsumerBytes,
        slowConsumerMs: limits.slowConsumerMs,
        droppedAudio: this.loggedDrops?.has("device-backpressure") === true,
      },
      "device does not read what it is sent; closing (4002)",
    );
    this.close(CloseCode.SlowConsumer, "slow consumer");
  }

  onClose(reason: string): void {
    this.ctx.logLimiter.log(this.log, "info", "session:ended-by-ai", { reason }, "the AI service ended the session");
    this.close(CloseCode.Normal, truncateReason(reason || "session ended"));
  }

  onStatus(status: UpstreamStatus): void {
    if (status === "unavailable") {
      this.sendJson({ type: "alert", status: "error", message: "AI service unavailable, reconnecting", emotion: "sad" });
    } else {
      this.sendJson({ type: "alert", status: "info", message: "AI service connected again", emotion: "happy" });
    }
  }

  onFatal(reason: string): void {
    this.sendJson({ type: "alert", status: "error", message: reason, emotion: "sad" });
    this.close(CloseCode.InternalError, truncateReason(reason));
  }

  // ---- helpers ----

  private sendJson(message: ServerMessage): void {
    this.sendRaw(JSON.stringify({ session_id: this.sessionId, ...message }));
  }

  private sendError(code: ErrorCode, message: string): void {
    this.sendRaw(JSON.stringify({ type: "error", code, message }));
  }

  private enterTextDialect(link: DeviceLink, helloTimer: ReturnType<typeof setTimeout> | undefined): void {
    if (helloTimer !== undefined) clearTimeout(helloTimer);
    this.state = { t: "text", link, answers: new TextAnswers(this.sessionId.slice(0, 8), this.ctx.upstream, (text) => this.sendRaw(text)) };
    link.subscribe(Topic.clients.text);
    this.debug({}, "text dialect");
  }

  private onTextDialect(msg: DeviceMessage): void {
    const s = this.state;
    const question = textDialectQuestion(msg, this.identity);
    if (s.t !== "text" || question === undefined) {
      this.sendError(ErrorCode.StateViolation, `${msg.type} is not part of the text dialect (send text or image)`);
      return;
    }
    if (msg.type === "image" && msg.data.length > this.ctx.settings.maxImageBytes) {
      this.sendError(ErrorCode.MessageTooLarge, `image over ${this.ctx.settings.maxImageBytes} bytes`);
      return;
    }
    s.answers.ask(question);
  }

  private sendRaw(text: string): void {
    const s = this.state;
    if (s.t !== "active" && s.t !== "awaiting-hello" && s.t !== "text") return;
    // Control messages go out even under backpressure: they are few and small, and the
    // device needs its tts stop. The slow-consumer watch bounds what they can queue.
    const sent = s.link.sendText(text);
    if (sent <= 0) this.pressed(s.link);
    if (sent === 0) this.dropped("device-send-failed");
    else this.ctx.metrics.jsonOut++;
  }

  /** A send was queued behind others or dropped: stop audio until the socket drains. */
  private pressed(link: DeviceLink): void {
    this.pressure ??= new OutboundPressure(link, this.ctx.settings.slowConsumer, this);
    this.pressure.press(performance.now());
  }

  private flood(limit: InboundLimit): void {
    this.flooded = true;
    this.ctx.metrics.floodCloses++;
    const l = this.ctx.settings.inbound;
    this.ctx.logLimiter.log(
      this.log,
      "warn",
      "session:flood",
      { limit, maxFramesPerSecond: l.maxFramesPerSecond, maxBytesPerSecond: l.maxBytesPerSecond, burstSeconds: l.burstSeconds },
      limit === "address-bytes"
        ? "the device's address sends faster than IM_MAX_BYTES_PER_IP_PER_SECOND over all its connections; closing this one (4003)"
        : "device sends faster than the inbound limits; closing (4003)",
    );
    this.close(CloseCode.Flood, "flood");
  }

  private dropped(reason: DropReason): void {
    this.ctx.metrics.drop(reason);
    // One line per reason per session: a broken board must not flood the log.
    this.loggedDrops ??= new Set();
    if (!this.loggedDrops.has(reason)) {
      this.loggedDrops.add(reason);
      this.ctx.logLimiter.log(
        this.log,
        "warn",
        `session:drop:${reason}`,
        { reason },
        "dropped a frame (further drops of this reason in this session are only counted)",
      );
    }
  }
}

/** Stands in for the upstream session during the few statements of hello handling. */
const NOOP_UPSTREAM: UpstreamSession = { audio() {}, send() {}, end() {} };

/** WebSocket close reasons are limited to 123 bytes. */
function truncateReason(reason: string): string {
  const bytes = new TextEncoder().encode(reason);
  if (bytes.length <= 123) return reason;
  return new TextDecoder().decode(bytes.subarray(0, 120)).replace(/\uFFFD$/, "");
}
