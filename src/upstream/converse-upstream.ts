import { Code, ConnectError } from "@connectrpc/connect";
import { AiService, type DeviceEvent, type DeviceEventSchema, type ServerEvent, type ServerEventSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../device/device-message";
import { describeError } from "../errors";
import { isFinal } from "../grpc-final-codes";
import type { CallStatus } from "../grpc-status";
import { ask } from "./ask";
import { backoffDelayMs } from "../backoff";
import type { PooledConnection, SlotRequest } from "./connection-pool";
import { audioFramesFor, EventBacklog } from "./event-backlog";
import { GrpcBidiCall } from "./grpc-bidi-call";
import { ListenMemory } from "./listen-memory";
import type { TransportOptions } from "./transport-options";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "./translate";
import type { EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink } from "./upstream";

export interface ConverseUpstreamOptions extends TransportOptions {
  /** How long an ended session's stream may take to finish before it is cancelled. */
  readonly endGraceMs?: number;
}

type LinkState =
  | { readonly t: "starting" }
  /** Waiting for a stream slot: every connection is at the server's stream limit. */
  | { readonly t: "queued"; readonly request: SlotRequest }
  | { readonly t: "open"; readonly stream: OpenStream }
  | { readonly t: "waiting"; readonly timer: ReturnType<typeof setTimeout> }
  | { readonly t: "ended" };

type ConverseCall = GrpcBidiCall<typeof DeviceEventSchema, typeof ServerEventSchema>;

/** One Converse stream; `opening` until its first Heartbeat answer proves it open. */
interface OpenStream {
  readonly conn: PooledConnection;
  readonly generation: number;
  /** Undefined until the HTTP/2 stream is open; events wait in the session's queue. */
  call: ConverseCall | undefined;
  opening: boolean;
  /** False while the HTTP/2 stream's buffer is full: events wait for drain. */
  writable: boolean;
  /** The AI service sent Close: the stream's clean end is expected. */
  closedByAi: boolean;
  /** Its pool slot was given back. */
  released: boolean;
}

/**
 * The `converse` transport: one Converse bidi stream per device session, framed by hand on
 * the pooled HTTP/2 connection like Relay (grpc-bidi-call.ts: one reading of the gRPC
 * status rules for both transports, and no async iterable per message). Events wait in a
 * session-owned queue while the stream is opening or backed up, so sending never awaits;
 * the queue keeps every control event and at most `bufferMs` of audio (oldest dropped,
 * counted). Streams take slots of the pool, so no connection is asked for more streams than
 * its server allows (sessions queue instead). Every stream opens with Hello and a Heartbeat
 * and heartbeats every interval: the answers prove it is alive and measure upstream RTT.
 * A failed or silent stream is re-opened with jittered backoff (at once when the pool sees
 * the AI service again) and Hello `resumed=true`; a clean end is the AI ending the session.
 */
export function createConverseUpstream(opts: ConverseUpstreamOptions): Upstream {
  const sessions = new Set<ConverseSession>();
  // Sessions waiting out a backoff re-open as soon as the pool sees the AI service again.
  opts.pool.onConnectionReady(() => {
    for (const s of sessions) s.connectionReady();
  });
  return {
    open(hello, sink) {
      const s = new ConverseSession(hello, sink, opts, () => sessions.delete(s));
      sessions.add(s);
      s.start();
      return s;
    },
    ask: (question, signal) => ask(opts.pool, question, signal),
    ready: () => opts.pool.ready(),
    waitReady: (timeoutMs) => opts.pool.waitReady(timeoutMs),
    async close() {
      for (const s of [...sessions]) s.end("shutdown");
      opts.pool.close();
    },
    bufferedBytes() {
      let sum = 0;
      for (const s of sessions) sum += s.writeBufferedBytes;
      return sum;
    },
    heldBytes() {
      const held = new Map<UpstreamSession, number>();
      for (const s of sessions) held.set(s, s.queuedBytes + s.writeBufferedBytes);
      return held;
    },
  };
}

class ConverseSession implements UpstreamSession {
  private readonly queue: EventBacklog;
  private seq = 0;
  private attempt = 0;
  /** Bumped per stream so that a superseded stream's events and end are ignored. */
  private generation = 0;
  private link: LinkState = { t: "starting" };
  /** The stream events are written to; stays set after end() until the End is out. */
  private current: OpenStream | undefined;
  /** The last Heartbeat sent on the current stream and not yet answered, else -1. */
  private heartbeatSentAtMs = -1;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private announcedOutage = false;
  private readonly listen = new ListenMemory();

  constructor(
    private readonly hello: SessionHello,
    private readonly sink: UpstreamSink,
    private readonly opts: ConverseUpstreamOptions,
    private readonly onGone: () => void,
  ) {
    this.queue = new EventBacklog(audioFramesFor(opts.bufferMs, hello.audioParams.frameDurationMs), opts.metrics, opts.budget);
  }

  start(): void {
    this.openStream(false);
  }

  audio(opus: Uint8Array, timestampMs: number): void {
    if (this.link.t === "ended") {
      this.opts.metrics.drop("upstream-closed");
      return;
    }
    this.push(audioEvent(opus, this.seq++, timestampMs));
  }

  send(message: ForwardedMessage): void {
    if (this.link.t === "ended") return;
    this.listen.note(message);
    this.push(forwardedEvent(message));
  }

  end(reason: EndReason): void {
    const link = this.link;
    if (link.t === "ended") return;
    this.link = { t: "ended" };
    this.onGone();
    this.stopHeartbeat();
    if (link.t === "waiting") clearTimeout(link.timer);
    if (link.t === "queued") this.opts.pool.cancel(link.request);
    if (link.t !== "open") {
      this.queue.drain();
      return;
    }
    // The End goes out after what is queued; the stream half-closes behind it.
    this.queue.push(endEvent(reason));
    this.flush(link.stream);
    // A well-behaved AI service ends the stream when the gateway does; one that does not
    // must not keep it open forever.
    const t = setTimeout(() => link.stream.call?.cancel(), this.opts.endGraceMs ?? 5000);
    t.unref?.();
  }

  /** Device bytes waiting in the session's queue. */
  get queuedBytes(): number {
    return this.queue.bytes;
  }

  /** Bytes written to its HTTP/2 stream and not yet sent. */
  get writeBufferedBytes(): number {
    return this.current?.call?.bufferedBytes ?? 0;
  }

  /** A connection became ready: a session waiting out its backoff re-opens now (the pool
   * queues the openings, so a fleet coming back does not burst). */
  connectionReady(): void {
    const link = this.link;
    if (link.t !== "waiting") return;
    clearTimeout(link.timer);
    this.opts.metrics.upstreamReconnects++;
    this.openStream(true);
  }

  private push(ev: DeviceEvent): void {
    this.queue.push(ev);
    if (this.current !== undefined) this.flush(this.current);
  }

  /** Writes queued events while the stream takes them; half-closes after the End. */
  private flush(stream: OpenStream): void {
    const call = stream.call;
    if (call === undefined || stream.generation !== this.generation) return;
    while (stream.writable && this.queue.length > 0) {
      const ev = this.queue.shift()!;
      stream.writable = call.write(ev);
      if (ev.event.case === "end") {
        call.end();
        this.current = undefined;
        return;
      }
    }
  }

  private openStream(resumed: boolean): void {
    const request: SlotRequest = { grant: (conn) => this.startOn(conn, resumed) };
    this.link = { t: "queued", request };
    this.opts.pool.acquire(request);
  }

  private startOn(conn: PooledConnection, resumed: boolean): void {
    if (this.link.t === "ended") {
      this.opts.pool.release(conn, true);
      return;
    }
    const generation = ++this.generation;
    const stream: OpenStream = { conn, generation, call: undefined, opening: true, writable: true, closedByAi: false, released: false };
    this.link = { t: "open", stream };
    this.current = stream;
    // The AI service answers every Heartbeat: the first answer proves the stream is open.
    this.heartbeatSentAtMs = Date.now();
    const first = [helloEvent(this.hello, resumed), heartbeatEvent(this.heartbeatSentAtMs)];
    const listen = resumed ? this.listen.resumeEvent(this.queue.peek()) : undefined;
    if (listen !== undefined) first.push(listen);
    this.opts.metrics.upstreamStreamsOpened++;
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.checkHeartbeat(generation), this.opts.heartbeatMs);
    this.heartbeatTimer.unref?.();
    const openTimer = setTimeout(() => {
      if (stream.generation !== this.generation || !stream.opening) return;
      this.opts.logger.warn(
        { sessionId: this.hello.sessionId, connection: conn.index, timeoutMs: this.opts.openTimeoutMs },
        "upstream stream not answered after opening",
      );
      this.failed(new ConnectError(`stream not answered within ${this.opts.openTimeoutMs} ms of opening`, Code.DeadlineExceeded), conn);
      stream.call?.cancel();
    }, this.opts.openTimeoutMs);
    openTimer.unref?.();
    GrpcBidiCall.open(conn.manager, AiService.method.converse, {
      onResponse: (ev) => {
        if (stream.generation === this.generation) this.onEvent(ev, stream);
      },
      onEnd: (status) => this.onStreamEnd(stream, status),
      onDrain: () => {
        stream.writable = true;
        this.flush(stream);
      },
    }).then(
      (call) => {
        stream.call = call;
        if (stream.generation !== this.generation) {
          call.cancel();
          return;
        }
        for (const ev of first) stream.writable = call.write(ev);
        this.flush(stream);
      },
      (err: unknown) => this.onStreamEnd(stream, { t: "error", error: ConnectError.from(err, Code.Unavailable) }),
    );
  }

  private onEvent(ev: ServerEvent, stream: OpenStream): void {
    const d = deliver(ev, this.sink);
    if (d === Delivered.Heartbeat) {
      if (ev.event.case === "heartbeat" && ev.event.value.sentAtMs === BigInt(this.heartbeatSentAtMs)) this.heartbeatAnswered();
    } else if (d === Delivered.Close) {
      stream.closedByAi = true;
    } else if (d === Delivered.Bad) {
      this.opts.metrics.drop("upstream-bad-event");
      this.opts.logger.warn({ sessionId: this.hello.sessionId, event: ev.event.case ?? "unknown" }, "dropped an unusable event from the AI service");
    }
  }

  private onStreamEnd(stream: OpenStream, status: CallStatus): void {
    if (!stream.released) {
      stream.released = true;
      this.opts.pool.release(stream.conn, stream.opening);
      stream.opening = false;
    }
    if (this.current === stream) this.current = undefined;
    if (this.link.t === "ended") {
      // What never got written is released (the budget counts it).
      this.queue.drain();
      return;
    }
    if (stream.generation !== this.generation) return;
    if (status.t === "error") {
      this.failed(status.error, stream.conn);
      return;
    }
    // A stream that ends cleanly without Close is the AI service ending the session too.
    if (!stream.closedByAi) this.sink.onClose("the AI service ended the session");
    this.finish();
  }

  private heartbeatAnswered(): void {
    const rttMs = Date.now() - this.heartbeatSentAtMs;
    this.heartbeatSentAtMs = -1;
    this.opts.metrics.upstreamHeartbeatRttMs = rttMs;
    const link = this.link;
    if (link.t === "open" && link.stream.opening) {
      link.stream.opening = false;
      this.opts.pool.opened(link.stream.conn);
      this.attempt = 0;
      if (this.announcedOutage) {
        this.announcedOutage = false;
        this.opts.logger.info({ sessionId: this.hello.sessionId }, "upstream stream resumed");
        this.sink.onStatus("restored");
      }
    }
  }

  /** A Heartbeat still unanswered a whole interval later: the stream is dead even if the
   * connection answers HTTP/2 pings (a stuck AI service). */
  private checkHeartbeat(generation: number): void {
    const link = this.link;
    if (generation !== this.generation || link.t !== "open") return;
    if (this.heartbeatSentAtMs >= 0) {
      this.opts.logger.warn({ sessionId: this.hello.sessionId, connection: link.stream.conn.index }, "upstream heartbeat not answered; the stream is dead");
      this.failed(new ConnectError("heartbeat not answered", Code.DeadlineExceeded), link.stream.conn);
      link.stream.call?.cancel();
      return;
    }
    this.heartbeatSentAtMs = Date.now();
    this.push(heartbeatEvent(this.heartbeatSentAtMs));
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private failed(err: ConnectError, conn: PooledConnection): void {
    this.opts.metrics.upstreamStreamFailures++;
    if (isFinal(err.code)) {
      this.opts.logger.error({ sessionId: this.hello.sessionId, code: Code[err.code], reason: err.rawMessage }, "the AI service refused the session");
      this.sink.onFatal(`the AI service refused the session (${Code[err.code]})`);
      this.finish();
      return;
    }
    this.opts.pool.reportFailure(conn, err);
    this.retry(err, conn);
  }

  private finish(): void {
    if (this.link.t === "ended") return;
    this.queue.drain();
    this.link = { t: "ended" };
    this.generation++;
    this.current = undefined;
    this.stopHeartbeat();
    this.onGone();
  }

  private retry(err: ConnectError, conn: PooledConnection | undefined): void {
    if (this.link.t === "ended") return;
    this.generation++;
    this.current = undefined;
    this.stopHeartbeat();
    this.heartbeatSentAtMs = -1;
    const delay = backoffDelayMs(this.attempt++, this.opts.reconnectBaseMs, this.opts.reconnectMaxMs);
    if (!this.announcedOutage) {
      this.announcedOutage = true;
      this.opts.logger.warn(
        { sessionId: this.hello.sessionId, code: Code[err.code], reason: describeError(err.rawMessage), connection: conn?.index, retryInMs: delay },
        "upstream stream failed; resuming",
      );
      this.sink.onStatus("unavailable");
    } else {
      // Once per outage at warn level: a fleet's sessions retrying must not flood the log.
      this.opts.logger.debug(
        { sessionId: this.hello.sessionId, code: Code[err.code], reason: describeError(err.rawMessage), retryInMs: delay },
        "upstream stream failed again",
      );
    }
    const timer = setTimeout(() => {
      if (this.link.t !== "waiting") return;
      this.opts.metrics.upstreamReconnects++;
      this.openStream(true);
    }, delay);
    this.link = { t: "waiting", timer };
  }
}
