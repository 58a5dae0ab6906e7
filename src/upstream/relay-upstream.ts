import { Code, ConnectError } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import { AiService, type DeviceEvent, DeviceEventSchema, type RelayRequestSchema, type RelayResponse, type RelayResponseSchema, type ServerEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../device/device-message";
import { describeError } from "../errors";
import { ask } from "./ask";
import { backoffDelayMs } from "./backoff";
import type { PooledConnection } from "./connection-pool";
import { audioFramesFor, EventBacklog } from "./event-backlog";
import type { TransportOptions } from "./transport-options";
import { GrpcBidiCall } from "./grpc-bidi-call";
import { ReadySignal } from "./ready-signal";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "./translate";
import type { AskQuestion, EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink } from "./upstream";

export interface RelayUpstreamOptions extends TransportOptions {
  /** Events per RelayRequest at most; a fuller turn is split. Default 256. */
  readonly maxBatchEvents?: number;
  /** Events one stream may queue while the AI service does not take them (its HTTP/2
   * stream stays backed up) before the oldest audio is dropped. Default 16,384 (about 16 s
   * of 1,000 devices' audio). */
  readonly maxPendingEvents?: number;
}

/** Codes after which re-opening the stream cannot help: the AI service lacks Relay. */
const FATAL = new Set<Code>([Code.Unimplemented, Code.PermissionDenied, Code.Unauthenticated]);

/**
 * The `relay` transport: one long-lived Relay stream per pooled connection, each carrying
 * the events of many sessions in batches. A session is pinned to one stream (its order
 * holds) under a compact numeric key. The events of one event-loop turn leave as one
 * RelayRequest: a lone frame at the end of its turn, a busy turn's frames in one HTTP/2
 * write, at most `maxBatchEvents` per request. A failed stream's sessions move to a healthy
 * stream and resume with Hello `resumed=true`, keeping their device sockets.
 */
export function createRelayUpstream(opts: RelayUpstreamOptions): Upstream {
  const relay = new Relay(opts);
  relay.start();
  return relay;
}

class Relay implements Upstream {
  readonly streams: RelayStream[];
  /** Sessions without a stream, in arrival order. */
  readonly waiting = new Set<RelaySession>();
  private readonly readySignal = new ReadySignal(() => this.ready());
  private closed = false;

  constructor(readonly opts: RelayUpstreamOptions) {
    this.streams = opts.pool.connections.map((c) => new RelayStream(this, c));
  }

  start(): void {
    for (const s of this.streams) s.open();
  }

  open(hello: SessionHello, sink: UpstreamSink): UpstreamSession {
    const session = new RelaySession(this, hello, sink);
    this.place(session, false);
    return session;
  }

  ask(question: AskQuestion, signal: AbortSignal): AsyncIterable<string> {
    return ask(this.opts.pool, question, signal);
  }

  ready(): boolean {
    return this.streams.some((s) => s.verified);
  }

  waitReady(timeoutMs: number): Promise<boolean> {
    return this.readySignal.wait(timeoutMs);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const s of this.waiting) s.end("shutdown");
    for (const st of this.streams) {
      for (const s of [...st.sessions.values()]) s.end("shutdown");
      st.close();
    }
    this.opts.pool.close();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Pins `session` to the verified stream with the fewest sessions, or parks it. */
  place(session: RelaySession, resumed: boolean): void {
    let best: RelayStream | undefined;
    for (const s of this.streams) if (s.verified && (best === undefined || s.sessions.size < best.sessions.size)) best = s;
    if (best === undefined) {
      this.waiting.add(session);
      session.parked();
      return;
    }
    this.waiting.delete(session);
    best.attach(session, resumed);
  }

  /** A stream became usable: hand it the parked sessions. */
  streamVerified(): void {
    this.readySignal.set();
    for (const s of [...this.waiting]) this.place(s, s.everOpened);
  }
}

type StreamState =
  | { readonly t: "open"; readonly generation: number }
  | { readonly t: "down"; readonly timer: ReturnType<typeof setTimeout> }
  | { readonly t: "closed" };

class RelayStream {
  readonly sessions = new Map<number, RelaySession>();
  verified = false;
  private state: StreamState | { readonly t: "new" } = { t: "new" };
  private generation = 0;
  private attempt = 0;
  private nextKey = 1;
  /** Events not yet written; one RelayRequest per event-loop turn carries them. */
  private pending: DeviceEvent[] = [];
  private call: GrpcBidiCall<typeof RelayRequestSchema, typeof RelayResponseSchema> | undefined;
  /** False while the HTTP/2 stream's buffer is full: events wait (and batch) for drain. */
  private writable = true;
  /** When the oldest pending event was queued (performance.now()). */
  private pendingSinceMs = 0;
  private flushScheduled = false;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private heartbeatSentAtMs = -1;
  private readonly maxBatch: number;
  /** Events a backed-up stream may hold before the oldest audio is shed. */
  private readonly maxPending: number;
  private shedLogged = false;
  private readonly flushBound = () => {
    this.flushScheduled = false;
    this.flush();
  };

  constructor(
    private readonly relay: Relay,
    private readonly conn: PooledConnection,
  ) {
    this.maxBatch = relay.opts.maxBatchEvents ?? 256;
    this.maxPending = relay.opts.maxPendingEvents ?? 16_384;
  }

  open(): void {
    if (this.relay.isClosed) return;
    const generation = ++this.generation;
    this.state = { t: "open", generation };
    this.verified = false;
    this.pending = [];
    this.writable = true;
    this.conn.streams++;
    this.relay.opts.metrics.upstreamStreamsOpened++;
    this.sendHeartbeat();
    this.heartbeat = setInterval(() => this.checkHeartbeat(), this.relay.opts.heartbeatMs);
    this.heartbeat.unref?.();
    GrpcBidiCall.open(this.conn.manager, AiService.method.relay, {
      onResponse: (res) => {
        if (generation === this.generation) this.onResponse(res);
      },
      onEnd: (err) => this.onEnd(generation, err),
      onDrain: () => {
        if (generation !== this.generation) return;
        this.writable = true;
        this.flush();
      },
    }).then(
      (call) => {
        if (generation !== this.generation && this.state.t !== "closed") {
          call.cancel();
          return;
        }
        this.call = call;
        this.flush();
        if (this.state.t === "closed") this.closeCall(call);
      },
      (err: unknown) => this.onEnd(generation, ConnectError.from(err, Code.Unavailable)),
    );
  }

  close(): void {
    const s = this.state;
    this.state = { t: "closed" };
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (s.t === "down") clearTimeout(s.timer);
    if (s.t === "open" && this.call !== undefined) {
      this.flush();
      this.closeCall(this.call);
    }
  }

  /** Lets the End events already written go out, half-closes, then cancels what lingers. */
  private closeCall(call: GrpcBidiCall<typeof RelayRequestSchema, typeof RelayResponseSchema>): void {
    call.end();
    const t = setTimeout(() => call.cancel(), 1000);
    t.unref?.();
  }

  /** Pins `session` here under a fresh key and sends its Hello (and its backlog). */
  attach(session: RelaySession, resumed: boolean): void {
    let key = this.nextKey;
    while (key === 0 || this.sessions.has(key)) key = (key + 1) >>> 0;
    this.nextKey = (key + 1) >>> 0;
    this.sessions.set(key, session);
    session.attached(this, key, resumed);
  }

  detach(key: number): void {
    this.sessions.delete(key);
  }

  /**
   * Queues an event. All events of one event-loop turn leave as one RelayRequest: a lone
   * frame leaves at the end of its turn (no timer delay), the frames of a busy turn share
   * one HTTP/2 write, and while the stream is backed up they wait for drain and batch.
   */
  enqueue(ev: DeviceEvent): void {
    if (this.pending.length === 0) this.pendingSinceMs = performance.now();
    this.pending.push(ev);
    if (this.pending.length > this.maxPending) this.shedAudio();
    if (this.pending.length >= this.maxBatch) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  /**
   * The AI service is not taking events as fast as devices send them (the stream stays
   * backed up): drop the oldest audio, counted, down to three quarters of the bound, so
   * memory stays bounded and what reaches the AI is the most recent speech. Control events
   * are never dropped. One pass per quarter of the bound, not per event.
   */
  private shedAudio(): void {
    let excess = this.pending.length - Math.floor((this.maxPending * 3) / 4);
    const kept: DeviceEvent[] = [];
    let dropped = 0;
    for (const ev of this.pending) {
      if (excess > 0 && ev.event.case === "audio") {
        excess--;
        dropped++;
        continue;
      }
      kept.push(ev);
    }
    this.pending = kept;
    if (dropped === 0) return;
    this.relay.opts.metrics.drop("upstream-backlog", dropped);
    if (!this.shedLogged) {
      this.shedLogged = true;
      this.relay.opts.logger.warn({ connection: this.conn.index, dropped, bound: this.maxPending }, "the AI service is not keeping up; dropping the oldest audio");
    }
  }

  private flush(): void {
    const call = this.call;
    if (call === undefined || this.state.t === "down") return;
    const metrics = this.relay.opts.metrics;
    while (this.writable && this.pending.length > 0) {
      let events = this.pending;
      if (events.length > this.maxBatch) {
        this.pending = events.slice(this.maxBatch);
        events = events.slice(0, this.maxBatch);
      } else {
        this.pending = [];
      }
      metrics.relayBatches++;
      metrics.relayEvents += events.length;
      metrics.relayBatchDelaySeconds.observe((performance.now() - this.pendingSinceMs) / 1000);
      this.writable = this.writeBatch(call, events);
    }
  }

  /**
   * Writes one batch. An event that cannot be encoded (a bug upstream of here, or input no
   * validation foresaw) must cost only itself: the batch is re-encoded without it, and it is
   * counted and logged, never thrown out of the turn's flush with every session's events.
   */
  private writeBatch(call: GrpcBidiCall<typeof RelayRequestSchema, typeof RelayResponseSchema>, events: DeviceEvent[]): boolean {
    try {
      return call.write({ $typeName: "xiaozhi.ai.v1.RelayRequest", events });
    } catch (err) {
      const good = events.filter((ev) => {
        try {
          toBinary(DeviceEventSchema, ev);
          return true;
        } catch {
          return false;
        }
      });
      const bad = events.length - good.length;
      this.relay.opts.metrics.drop("upstream-bad-event", bad);
      this.relay.opts.logger.error({ connection: this.conn.index, dropped: bad, err: describeError(err) }, "dropped device events that cannot be encoded");
      return good.length === 0 || call.write({ $typeName: "xiaozhi.ai.v1.RelayRequest", events: good });
    }
  }

  private sendHeartbeat(): void {
    this.heartbeatSentAtMs = Date.now();
    this.enqueue(heartbeatEvent(this.heartbeatSentAtMs, 0));
  }

  /** A heartbeat unanswered for a whole interval marks the stream dead. */
  private checkHeartbeat(): void {
    const s = this.state;
    if (s.t !== "open") return;
    if (this.heartbeatSentAtMs >= 0) {
      this.fail(s.generation, new ConnectError("heartbeat not answered", Code.DeadlineExceeded));
      return;
    }
    this.sendHeartbeat();
  }

  private onResponse(res: RelayResponse): void {
    const log = this.relay.opts.logger;
    const metrics = this.relay.opts.metrics;
    for (const ev of res.events) {
      const key = ev.sessionKey;
      if (key === 0) {
        if (ev.event.case === "heartbeat" && ev.event.value.sentAtMs === BigInt(this.heartbeatSentAtMs)) this.heartbeatAnswered();
        continue;
      }
      const session = this.sessions.get(key);
      if (session === undefined) {
        // Events of a session that just ended cross its End on the wire: expected, counted.
        metrics.drop("upstream-closed");
        continue;
      }
      const d = deliver(ev, session.sink);
      if (d === Delivered.Heartbeat) session.heartbeatAnswered(ev);
      else if (d === Delivered.Close) session.closedByAi();
      else if (d === Delivered.Bad) {
        metrics.drop("upstream-bad-event");
        log.warn({ sessionId: session.hello.sessionId, event: ev.event.case ?? "unknown" }, "dropped an unusable event from the AI service");
      }
    }
  }

  private onEnd(generation: number, err: ConnectError | undefined): void {
    if (generation !== this.generation) return;
    if (this.state.t === "closed") {
      this.conn.streams--;
      this.generation++;
      return;
    }
    // A Relay stream that ends, even cleanly, while sessions ride on it has failed them.
    this.fail(generation, err ?? new ConnectError("relay stream ended", Code.Unavailable));
  }

  private heartbeatAnswered(): void {
    this.relay.opts.metrics.upstreamHeartbeatRttMs = Date.now() - this.heartbeatSentAtMs;
    this.heartbeatSentAtMs = -1;
    if (!this.verified) {
      this.verified = true;
      this.attempt = 0;
      this.relay.opts.logger.info({ connection: this.conn.index, target: this.conn.target }, "relay stream ready");
      this.relay.streamVerified();
    }
  }

  /** The stream is gone: move its sessions, then re-open it after a backoff. */
  private fail(generation: number, err: ConnectError): void {
    if (generation !== this.generation || this.state.t !== "open") return;
    const log = this.relay.opts.logger;
    this.relay.opts.metrics.upstreamStreamFailures++;
    this.generation++;
    this.conn.streams--;
    this.verified = false;
    this.call?.cancel();
    this.call = undefined;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeatSentAtMs = -1;
    this.relay.opts.pool.reportFailure(this.conn, err);
    const fatal = FATAL.has(err.code);
    if (fatal) {
      log.error({ connection: this.conn.index, code: Code[err.code], reason: err.rawMessage }, "the AI service refused the Relay stream");
      for (const s of [...this.sessions.values()]) s.sink.onFatal(`the AI service refused the session (${Code[err.code]})`);
    }
    const moved = [...this.sessions.values()];
    this.sessions.clear();
    const delay = backoffDelayMs(this.attempt++, this.relay.opts.reconnectBaseMs, this.relay.opts.reconnectMaxMs);
    log.warn(
      { connection: this.conn.index, code: Code[err.code], reason: describeError(err.rawMessage), sessions: moved.length, retryInMs: delay },
      "relay stream failed; moving its sessions",
    );
    const timer = setTimeout(() => {
      if (this.state.t !== "down") return;
      this.relay.opts.metrics.upstreamReconnects++;
      this.open();
    }, delay);
    this.state = { t: "down", timer };
    if (fatal) return;
    for (const s of moved) {
      s.lost();
      this.relay.place(s, true);
    }
  }
}

type SessionLink =
  | { readonly t: "attached"; readonly stream: RelayStream; readonly key: number }
  | { readonly t: "parked"; readonly backlog: EventBacklog }
  | { readonly t: "ended" };

class RelaySession implements UpstreamSession {
  private link: SessionLink;
  private seq = 0;
  everOpened = false;
  private announcedOutage = false;
  private resumeProbeAtMs = -1;
  private readonly maxAudio: number;

  constructor(
    private readonly relay: Relay,
    readonly hello: SessionHello,
    readonly sink: UpstreamSink,
  ) {
    this.maxAudio = audioFramesFor(relay.opts.bufferMs, hello.audioParams.frameDurationMs);
    this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, relay.opts.metrics) };
  }

  audio(opus: Uint8Array, timestampMs: number): void {
    const l = this.link;
    if (l.t === "attached") l.stream.enqueue(audioEvent(opus, this.seq++, timestampMs, l.key));
    else if (l.t === "parked") l.backlog.push(audioEvent(opus, this.seq++, timestampMs, 0));
    else this.relay.opts.metrics.drop("upstream-closed");
  }

  send(message: ForwardedMessage): void {
    const l = this.link;
    if (l.t === "attached") l.stream.enqueue(forwardedEvent(message, l.key));
    else if (l.t === "parked") l.backlog.push(forwardedEvent(message, 0));
  }

  end(reason: EndReason): void {
    const l = this.link;
    this.link = { t: "ended" };
    if (l.t === "attached") {
      l.stream.enqueue(endEvent(reason, l.key));
      l.stream.detach(l.key);
    } else if (l.t === "parked") {
      this.relay.waiting.delete(this);
    }
  }

  /** Pinned to `stream` under `key`: Hello first, then whatever waited. */
  attached(stream: RelayStream, key: number, resumed: boolean): void {
    const prev = this.link;
    if (prev.t === "ended") {
      stream.detach(key);
      return;
    }
    this.link = { t: "attached", stream, key };
    this.everOpened = true;
    stream.enqueue(helloEvent(this.hello, resumed, key));
    if (this.announcedOutage) {
      // The AI service answers every Heartbeat: its answer proves the session is back.
      this.resumeProbeAtMs = Date.now();
      stream.enqueue(heartbeatEvent(this.resumeProbeAtMs, key));
    }
    if (prev.t === "parked") {
      for (const ev of prev.backlog.drain()) {
        ev.sessionKey = key;
        stream.enqueue(ev);
      }
    }
  }

  /** No stream can take the session now. */
  parked(): void {
    if (this.link.t !== "parked") this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, this.relay.opts.metrics) };
    this.announceOutage();
  }

  /** Its stream failed (it is about to be placed again). */
  lost(): void {
    this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, this.relay.opts.metrics) };
    this.announceOutage();
  }

  heartbeatAnswered(ev: ServerEvent): void {
    if (this.resumeProbeAtMs < 0 || ev.event.case !== "heartbeat") return;
    if (ev.event.value.sentAtMs !== BigInt(this.resumeProbeAtMs)) return;
    this.resumeProbeAtMs = -1;
    if (this.announcedOutage) {
      this.announcedOutage = false;
      this.sink.onStatus("restored");
    }
  }

  closedByAi(): void {
    const l = this.link;
    if (l.t === "attached") l.stream.detach(l.key);
    this.link = { t: "ended" };
  }

  private announceOutage(): void {
    if (this.announcedOutage) return;
    this.announcedOutage = true;
    this.sink.onStatus("unavailable");
  }
}
