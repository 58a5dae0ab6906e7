import { Code, ConnectError } from "@connectrpc/connect";
import { toBinary } from "@bufbuild/protobuf";
import type { CallStatus } from "../grpc-status";
import { isFinal } from "../grpc-final-codes";
import {
  AiService,
  type DeviceEvent,
  DeviceEventSchema,
  RelayRequestSchema,
  type RelayResponse,
  RelayResponseSchema,
  type ServerEvent,
  ServerEventSchema,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../device/device-message";
import { describeError } from "../errors";
import { ask } from "./ask";
import { backoffDelayMs } from "../backoff";
import type { PooledConnection } from "./connection-pool";
import { audioFramesFor, EventBacklog, eventBytes } from "./event-backlog";
import type { TransportOptions } from "./transport-options";
import { type BidiCodec, GrpcBidiCall } from "./grpc-bidi-call";
import { FlushPacer } from "../flush-pacer";
import { relayBatchCodec } from "../relay-codec";
import { ListenMemory } from "./listen-memory";
import { ReadySignal } from "./ready-signal";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "./translate";
import type { AskQuestion, EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink } from "./upstream";

export interface RelayUpstreamOptions extends TransportOptions {
  /** Events per RelayRequest at most; a fuller turn is split. Default 256. */
  readonly maxBatchEvents?: number;
  /** On a busy stream, at most one write per this many ms (FlushPacer). Default 0: one per
   * event-loop turn. */
  readonly batchWindowMs?: number;
  /** Events one stream may queue while the AI service does not take them (its HTTP/2
   * stream stays backed up) before the oldest audio is dropped. Default 16,384 (about 16 s
   * of 1,000 devices' audio). */
  readonly maxPendingEvents?: number;
}

/** A session moves to spread load only after this long without an event either way, so
 * that no utterance or answer is cut in the middle. */
const QUIET_MS = 1000;
/** Relay's batches by the hand codec: audio events are most of every batch. */
const REQUESTS = relayBatchCodec(RelayRequestSchema, DeviceEventSchema);
const RESPONSES = relayBatchCodec(RelayResponseSchema, ServerEventSchema);
const RELAY_CODEC: BidiCodec<typeof RelayRequestSchema, typeof RelayResponseSchema> = {
  encode: (req) => REQUESTS.encodeFrame(req.events),
  decode: (body) => RESPONSES.decode(body),
};
/** How long sessions of a rotated stream may wait for a stream before the device hears of
 * an outage. */
const ROTATION_GRACE_MS = 2000;

/**
 * The `relay` transport: one long-lived Relay stream per pooled connection, each carrying
 * the events of many sessions in batches. A session is pinned to one stream (its order
 * holds) under a compact numeric key. The events of one event-loop turn leave as one
 * RelayRequest: a lone frame at the end of its turn, a busy turn's frames in one HTTP/2
 * write, at most `maxBatchEvents` per request. A failed stream's sessions move to a healthy
 * stream and resume with Hello `resumed=true`, keeping their device sockets. A stream the AI
 * ends with OK was rotated: its sessions move the same way, and the devices hear nothing.
 * When streams come back, quiet sessions spread over them again.
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
  private everAllVerified = false;
  private closed = false;
  private outageNotice: ReturnType<typeof setTimeout> | undefined;
  private rebalanceTimer: ReturnType<typeof setTimeout> | undefined;
  private rebalanceTries = 0;

  constructor(readonly opts: RelayUpstreamOptions) {
    this.streams = opts.pool.connections.map((c) => new RelayStream(this, c));
    // A connection the pool finds ready again re-opens its stream at once, not at the end
    // of a backoff that may have grown long during an outage.
    opts.pool.onConnectionReady((conn) => this.streams[conn.index]?.connectionReady());
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
    clearTimeout(this.outageNotice);
    clearTimeout(this.rebalanceTimer);
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

  bufferedBytes(): number {
    let sum = 0;
    for (const s of this.streams) sum += s.bufferedBytes;
    return sum;
  }

  heldBytes(): Map<UpstreamSession, number> {
    const held = new Map<UpstreamSession, number>();
    for (const st of this.streams) st.heldBytes(held);
    for (const s of this.waiting) held.set(s, (held.get(s) ?? 0) + s.parkedBytes);
    return held;
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

  /** A stream became usable: hand it the parked sessions, then spread the others. */
  streamVerified(stream: RelayStream): void {
    const line = { connection: stream.conn.index, target: stream.conn.target };
    // Start-up is one line once every stream is ready; a stream that comes back later is news.
    if (this.everAllVerified) this.opts.logger.info(line, "relay stream ready");
    else {
      this.opts.logger.debug(line, "relay stream ready");
      if (this.streams.every((s) => s.verified)) {
        this.everAllVerified = true;
        this.opts.logger.info({ ...this.opts.pool.readySummary(), relayStreams: this.streams.length }, "upstream ready");
      }
    }
    this.readySignal.set();
    for (const s of [...this.waiting]) this.place(s, s.everOpened);
    this.rebalanceTries = 0;
    this.rebalance();
  }

  /**
   * Sessions of a rotated stream wait silently for a while: a rotation is routine, and a
   * stream usually takes them within a round trip. Those still waiting after the grace
   * hear of an outage like any other.
   */
  noticeOutageLater(): void {
    if (this.outageNotice !== undefined) return;
    this.outageNotice = setTimeout(() => {
      this.outageNotice = undefined;
      for (const s of this.waiting) s.announceOutage();
    }, ROTATION_GRACE_MS);
    this.outageNotice.unref?.();
  }

  /**
   * After an outage every session lands on the first stream that comes back. Moves quiet
   * sessions from the fullest verified stream to the emptiest until they differ by at most
   * one; a session that is busy moves at a later quiet moment (re-tried each QUIET_MS, for
   * a minute at most, and again whenever a stream comes back).
   */
  private rebalance(): void {
    clearTimeout(this.rebalanceTimer);
    this.rebalanceTimer = undefined;
    if (this.closed) return;
    const now = performance.now();
    const verified = this.streams.filter((s) => s.verified);
    const busy = new Set<RelayStream>();
    let moved = 0;
    for (;;) {
      let from: RelayStream | undefined;
      let to: RelayStream | undefined;
      for (const s of verified) {
        if (!busy.has(s) && (from === undefined || s.sessions.size > from.sessions.size)) from = s;
        if (to === undefined || s.sessions.size < to.sessions.size) to = s;
      }
      if (from === undefined || to === undefined || from.sessions.size - to.sessions.size <= 1) break;
      const quiet = from.quietSession(now - QUIET_MS);
      if (quiet === undefined) {
        busy.add(from);
        continue;
      }
      quiet.moveTo(to);
      moved++;
    }
    if (moved > 0) this.opts.logger.info({ moved, streams: verified.length }, "relay sessions spread over the streams");
    if (busy.size > 0 && this.rebalanceTries++ < 60) {
      this.rebalanceTimer = setTimeout(() => this.rebalance(), QUIET_MS);
      this.rebalanceTimer.unref?.();
    }
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
  /** Device bytes in `pending` (also counted in the memory budget). */
  private pendingBytes = 0;
  private call: GrpcBidiCall<typeof RelayRequestSchema, typeof RelayResponseSchema> | undefined;
  /** False while the HTTP/2 stream's buffer is full: events wait (and batch) for drain. */
  private writable = true;
  /** When the oldest pending event was queued (performance.now()). */
  private pendingSinceMs = 0;
  private readonly pacer: FlushPacer;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private heartbeatSentAtMs = -1;
  private readonly maxBatch: number;
  /** Events a backed-up stream may hold before the oldest audio is shed. */
  private readonly maxPending: number;
  private shedLogged = false;

  constructor(
    private readonly relay: Relay,
    readonly conn: PooledConnection,
  ) {
    this.maxBatch = relay.opts.maxBatchEvents ?? 256;
    this.maxPending = relay.opts.maxPendingEvents ?? 16_384;
    this.pacer = new FlushPacer(relay.opts.batchWindowMs ?? 0, () => this.flush());
  }

  open(): void {
    if (this.relay.isClosed) return;
    const generation = ++this.generation;
    this.state = { t: "open", generation };
    this.verified = false;
    this.setPending([]);
    this.writable = true;
    this.relay.opts.pool.holdStream(this.conn);
    this.relay.opts.metrics.upstreamStreamsOpened++;
    this.sendHeartbeat();
    this.heartbeat = setInterval(() => this.checkHeartbeat(), this.relay.opts.heartbeatMs);
    this.heartbeat.unref?.();
    const openTimer = setTimeout(() => {
      if (generation !== this.generation || this.verified) return;
      this.fail(generation, new ConnectError(`relay stream not answered within ${this.relay.opts.openTimeoutMs} ms of opening`, Code.DeadlineExceeded));
    }, this.relay.opts.openTimeoutMs);
    openTimer.unref?.();
    GrpcBidiCall.open(
      this.conn.manager,
      AiService.method.relay,
      {
        onResponse: (res) => {
          if (generation === this.generation) this.onResponse(res);
        },
        onEnd: (status) => this.onEnd(generation, status),
        onDrain: () => {
          if (generation !== this.generation) return;
          this.writable = true;
          this.flush();
        },
      },
      RELAY_CODEC,
    ).then(
      (call) => {
        if (generation !== this.generation && this.state.t !== "closed") {
          call.cancel();
          return;
        }
        this.call = call;
        this.flush();
        if (this.state.t === "closed") this.closeCall(call);
      },
      (err: unknown) => this.onEnd(generation, { t: "error", error: ConnectError.from(err, Code.Unavailable) }),
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

  /** The pool found this stream's connection ready: a stream waiting out its backoff
   * re-opens now. */
  connectionReady(): void {
    const s = this.state;
    if (s.t !== "down") return;
    clearTimeout(s.timer);
    this.relay.opts.metrics.upstreamReconnects++;
    this.open();
  }

  /** A session here with no event either way since `sinceMs` (performance.now()). */
  quietSession(sinceMs: number): RelaySession | undefined {
    for (const s of this.sessions.values()) if (s.activeAtMs < sinceMs) return s;
    return undefined;
  }

  /** When the oldest pending event was queued: the time of this event-loop turn's first
   * event, close enough to "now" for telling quiet sessions, at no extra clock read. */
  get turnStartedAtMs(): number {
    return this.pendingSinceMs;
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
   * Queues an event. A lone frame leaves at the end of its turn (no timer delay); on a busy
   * stream the events of one batch window share one HTTP/2 write (FlushPacer), and while
   * the stream is backed up they wait for drain and batch.
   */
  enqueue(ev: DeviceEvent, bytes = 0): void {
    if (this.pending.length === 0) this.pendingSinceMs = performance.now();
    this.pending.push(ev);
    if (bytes > 0) {
      this.pendingBytes += bytes;
      const budget = this.relay.opts.budget;
      if (budget !== undefined) budget.queued += bytes;
    }
    if (this.pending.length > this.maxPending) this.shedAudio();
    if (this.pending.length >= this.maxBatch) this.flush();
    else this.pacer.request();
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
    this.setPending(kept);
    if (dropped === 0) return;
    this.relay.opts.metrics.drop("upstream-backlog", dropped);
    if (!this.shedLogged) {
      this.shedLogged = true;
      this.relay.opts.logger.warn(
        { connection: this.conn.index, dropped, bound: this.maxPending },
        "the AI service is not keeping up; dropping the oldest audio",
      );
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
      this.pacer.wrote();
    }
    if (this.pending.length === 0) this.release(this.pendingBytes);
    else this.setPending(this.pending);
  }

  /** Replaces the pending events, counting their bytes anew (not on the per-frame path:
   * only when the stream is backed up, sheds, or starts over). */
  private setPending(events: DeviceEvent[]): void {
    this.pending = events;
    let bytes = 0;
    for (const ev of events) bytes += eventBytes(ev);
    this.release(this.pendingBytes - bytes);
  }

  /** `bytes` of the pending events left the gateway's hands (written, shed or moved). */
  private release(bytes: number): void {
    if (bytes === 0) return;
    this.pendingBytes -= bytes;
    const budget = this.relay.opts.budget;
    if (budget !== undefined) budget.queued -= bytes;
  }

  /** What this stream holds for the AI service: pending events and what its HTTP/2 stream
   * has buffered, by session (for shedding). */
  heldBytes(into: Map<UpstreamSession, number>): void {
    for (const ev of this.pending) {
      const s = this.sessions.get(ev.sessionKey);
      if (s !== undefined) into.set(s, (into.get(s) ?? 0) + eventBytes(ev));
    }
  }

  /** Bytes written to the HTTP/2 stream and not yet sent (sampled by the budget). */
  get bufferedBytes(): number {
    return this.call?.bufferedBytes ?? 0;
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
    const now = performance.now();
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
      session.activeAtMs = now;
      const d = deliver(ev, session.sink);
      if (d === Delivered.Heartbeat) session.heartbeatAnswered(ev);
      else if (d === Delivered.Close) session.closedByAi();
      else if (d === Delivered.Bad) {
        metrics.drop("upstream-bad-event");
        log.warn({ sessionId: session.hello.sessionId, event: ev.event.case ?? "unknown" }, "dropped an unusable event from the AI service");
      }
    }
  }

  private onEnd(generation: number, status: CallStatus): void {
    if (generation !== this.generation) return;
    if (this.state.t === "closed") {
      this.relay.opts.pool.dropStream(this.conn);
      this.generation++;
      return;
    }
    if (status.t === "error") this.fail(generation, status.error);
    // OK from a stream that never answered a Heartbeat is no rotation: a service that ends
    // every stream at once would otherwise be re-opened in a tight loop.
    else if (!this.verified) this.fail(generation, new ConnectError("relay stream ended before it answered a heartbeat", Code.Unavailable));
    else this.rotate(generation);
  }

  /**
   * The AI service ended the stream with OK: it rotated it (a deploy, a rebalance on its
   * side). Its sessions move to another stream (or wait for this one, re-opened at once)
   * with Hello `resumed=true`, carrying the events not yet written; devices hear nothing.
   */
  private rotate(generation: number): void {
    if (generation !== this.generation || this.state.t !== "open") return;
    this.relay.opts.metrics.upstreamStreamRotations++;
    const moved = this.teardown();
    this.relay.opts.logger.info({ connection: this.conn.index, sessions: moved.length }, "the AI service rotated a relay stream; moving its sessions");
    this.open();
    for (const s of moved) {
      s.lost(false);
      this.relay.place(s, true);
    }
    if (this.relay.waiting.size > 0) this.relay.noticeOutageLater();
  }

  /** Ends the current call and takes its sessions off this stream, each with the events of
   * its that were still waiting to be written (Hello and heartbeats are re-sent anew). */
  private teardown(): RelaySession[] {
    this.generation++;
    this.relay.opts.pool.dropStream(this.conn);
    this.verified = false;
    this.call?.cancel();
    this.call = undefined;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeatSentAtMs = -1;
    const moved = [...this.sessions.values()];
    for (const ev of this.pending) {
      const c = ev.event.case;
      if (ev.sessionKey === 0 || c === "hello" || c === "heartbeat") continue;
      this.sessions.get(ev.sessionKey)?.carry(ev);
    }
    this.setPending([]);
    this.sessions.clear();
    return moved;
  }

  private heartbeatAnswered(): void {
    this.relay.opts.metrics.upstreamHeartbeatRttMs = Date.now() - this.heartbeatSentAtMs;
    this.heartbeatSentAtMs = -1;
    if (!this.verified) {
      this.verified = true;
      this.attempt = 0;
      this.relay.streamVerified(this);
    }
  }

  /** The stream is gone: move its sessions, then re-open it after a backoff. */
  private fail(generation: number, err: ConnectError): void {
    if (generation !== this.generation || this.state.t !== "open") return;
    const log = this.relay.opts.logger;
    this.relay.opts.metrics.upstreamStreamFailures++;
    const moved = this.teardown();
    this.relay.opts.pool.reportFailure(this.conn, err);
    const fatal = isFinal(err.code);
    if (fatal) {
      log.error({ connection: this.conn.index, code: Code[err.code], reason: err.rawMessage }, "the AI service refused the Relay stream");
      // Sessions waiting for a stream would meet the same refusal: they hear it now, not
      // after retries that cannot succeed.
      for (const s of [...moved, ...this.relay.waiting]) s.sink.onFatal(`the AI service refused the session (${Code[err.code]})`);
    }
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
      s.lost(true);
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
  /** Parked by a rotation: the device is not told unless the wait lasts. */
  private quietMove = false;
  private announcedOutage = false;
  private resumeProbeAtMs = -1;
  private readonly maxAudio: number;
  /** When an event last went either way (performance.now()): quiet sessions may move. */
  activeAtMs = 0;
  private readonly listen = new ListenMemory();

  constructor(
    private readonly relay: Relay,
    readonly hello: SessionHello,
    readonly sink: UpstreamSink,
  ) {
    this.maxAudio = audioFramesFor(relay.opts.bufferMs, hello.audioParams.frameDurationMs);
    this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, relay.opts.metrics, relay.opts.budget) };
  }

  audio(opus: Uint8Array, timestampMs: number): void {
    const l = this.link;
    if (l.t === "attached") {
      l.stream.enqueue(audioEvent(opus, this.seq++, timestampMs, l.key), opus.length);
      this.activeAtMs = l.stream.turnStartedAtMs;
    } else if (l.t === "parked") l.backlog.push(audioEvent(opus, this.seq++, timestampMs, 0));
    else this.relay.opts.metrics.drop("upstream-closed");
  }

  send(message: ForwardedMessage): void {
    const l = this.link;
    this.listen.note(message);
    if (l.t === "attached") {
      const ev = forwardedEvent(message, l.key);
      l.stream.enqueue(ev, eventBytes(ev));
      this.activeAtMs = l.stream.turnStartedAtMs;
    } else if (l.t === "parked") l.backlog.push(forwardedEvent(message, 0));
  }

  end(reason: EndReason): void {
    const l = this.link;
    this.link = { t: "ended" };
    if (l.t === "attached") {
      l.stream.enqueue(endEvent(reason, l.key));
      l.stream.detach(l.key);
    } else if (l.t === "parked") {
      this.relay.waiting.delete(this);
      l.backlog.drain();
    }
  }

  /** Bytes this session holds while it waits for a stream. */
  get parkedBytes(): number {
    return this.link.t === "parked" ? this.link.backlog.bytes : 0;
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
    this.quietMove = false;
    stream.enqueue(helloEvent(this.hello, resumed, key));
    if (this.announcedOutage) {
      // The AI service answers every Heartbeat: its answer proves the session is back.
      this.resumeProbeAtMs = Date.now();
      stream.enqueue(heartbeatEvent(this.resumeProbeAtMs, key));
    }
    const waiting = prev.t === "parked" ? prev.backlog.drain() : [];
    const listen = resumed ? this.listen.resumeEvent(waiting, key) : undefined;
    if (listen !== undefined) stream.enqueue(listen);
    for (const ev of waiting) {
      ev.sessionKey = key;
      stream.enqueue(ev, eventBytes(ev));
    }
  }

  /** No stream can take the session now. A session moved by a rotation waits silently
   * (the Relay announces the outage if the wait lasts). */
  parked(): void {
    if (this.link.t !== "parked") this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, this.relay.opts.metrics, this.relay.opts.budget) };
    if (!this.quietMove) this.announceOutage();
  }

  /** Its stream failed (`announce`) or was rotated: it is about to be placed again. */
  lost(announce: boolean): void {
    this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, this.relay.opts.metrics, this.relay.opts.budget) };
    this.quietMove = !announce;
    if (announce) this.announceOutage();
  }

  /** An event of this session that its old stream had not written yet: sent on the next. */
  carry(ev: DeviceEvent): void {
    if (this.link.t === "parked") this.link.backlog.push(ev);
  }

  /** Rebalancing: ends the session on its stream (End `moved`) and resumes it on `to`. */
  moveTo(to: RelayStream): void {
    const l = this.link;
    if (l.t !== "attached") return;
    l.stream.enqueue(endEvent("moved", l.key));
    l.stream.detach(l.key);
    this.link = { t: "parked", backlog: new EventBacklog(this.maxAudio, this.relay.opts.metrics, this.relay.opts.budget) };
    to.attach(this, true);
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

  announceOutage(): void {
    this.quietMove = false;
    if (this.announcedOutage) return;
    this.announcedOutage = true;
    this.sink.onStatus("unavailable");
  }
}
