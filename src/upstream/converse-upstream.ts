import { Code, ConnectError } from "@connectrpc/connect";
import type { DeviceEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../device/device-message";
import { describeError } from "../errors";
import { ask } from "./ask";
import { backoffDelayMs } from "./backoff";
import type { PooledConnection, SlotRequest } from "./connection-pool";
import { audioFramesFor, EventBacklog } from "./event-backlog";
import type { TransportOptions } from "./transport-options";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "./translate";
import type { EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink } from "./upstream";

export interface ConverseUpstreamOptions extends TransportOptions {
  /** How long an ended session's stream may take to finish before it is cancelled. */
  readonly endGraceMs?: number;
}

/** Codes after which re-opening the same stream cannot help. */
const FATAL = new Set<Code>([Code.InvalidArgument, Code.Unimplemented, Code.PermissionDenied, Code.Unauthenticated, Code.FailedPrecondition]);

type LinkState =
  | { readonly t: "starting" }
  /** Waiting for a stream slot: every connection is at the server's stream limit. */
  | { readonly t: "queued"; readonly request: SlotRequest }
  | { readonly t: "open"; readonly stream: OpenStream }
  | { readonly t: "waiting"; readonly timer: ReturnType<typeof setTimeout> }
  | { readonly t: "ended" };

/** One Converse stream; `opening` until its first Heartbeat answer proves it open. */
interface OpenStream {
  readonly conn: PooledConnection;
  readonly abort: AbortController;
  opening: boolean;
}

/**
 * The `converse` transport: one Converse bidi stream per device session. Events wait in a
 * session-owned queue that the stream's request generator drains, so sending never awaits;
 * the queue keeps every control event and at most `bufferMs` of audio (oldest dropped,
 * counted). Streams take slots of the pool, so no connection is asked for more streams than
 * its server allows (sessions queue instead). Every stream opens with Hello and a Heartbeat
 * and heartbeats every interval: the answers prove it is alive and measure upstream RTT.
 * A failed or silent stream is re-opened with jittered backoff and Hello `resumed=true`.
 */
export function createConverseUpstream(opts: ConverseUpstreamOptions): Upstream {
  const sessions = new Set<ConverseSession>();
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
  };
}

class ConverseSession implements UpstreamSession {
  private readonly queue: EventBacklog;
  private seq = 0;
  private attempt = 0;
  /** Bumped per stream so a superseded request generator and response loop stop. */
  private generation = 0;
  private wake: (() => void) | undefined;
  private link: LinkState = { t: "starting" };
  /** The last Heartbeat sent on the current stream and not yet answered, else -1. */
  private heartbeatSentAtMs = -1;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private announcedOutage = false;

  constructor(
    private readonly hello: SessionHello,
    private readonly sink: UpstreamSink,
    private readonly opts: ConverseUpstreamOptions,
    private readonly onGone: () => void,
  ) {
    this.queue = new EventBacklog(audioFramesFor(opts.bufferMs, hello.audioParams.frameDurationMs), opts.metrics);
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
    if (link.t !== "open") return;
    this.push(endEvent(reason));
    // A well-behaved AI service ends the stream when the gateway does; one that does not
    // must not keep it open forever.
    const t = setTimeout(() => link.stream.abort.abort(), this.opts.endGraceMs ?? 5000);
    t.unref?.();
  }

  private push(ev: DeviceEvent): void {
    this.queue.push(ev);
    const w = this.wake;
    if (w !== undefined) {
      this.wake = undefined;
      w();
    }
  }

  private async *requests(first: DeviceEvent[], generation: number): AsyncGenerator<DeviceEvent> {
    for (const ev of first) yield ev;
    for (;;) {
      while (this.queue.length > 0) {
        if (generation !== this.generation) return;
        const ev = this.queue.shift()!;
        yield ev;
        if (ev.event.case === "end") return;
      }
      if (generation !== this.generation || this.link.t === "ended") return;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
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
    const stream: OpenStream = { conn, abort: new AbortController(), opening: true };
    this.link = { t: "open", stream };
    // The AI service answers every Heartbeat: the first answer proves the stream is open.
    this.heartbeatSentAtMs = Date.now();
    const first = [helloEvent(this.hello, resumed), heartbeatEvent(this.heartbeatSentAtMs)];
    this.opts.metrics.upstreamStreamsOpened++;
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => this.checkHeartbeat(generation), this.opts.heartbeatMs);
    this.heartbeatTimer.unref?.();
    void this.consume(stream, this.requests(first, generation), generation);
  }

  private async consume(stream: OpenStream, requests: AsyncGenerator<DeviceEvent>, generation: number): Promise<void> {
    const { conn, abort } = stream;
    let closedByAi = false;
    try {
      for await (const ev of conn.client.converse(requests, { signal: abort.signal })) {
        if (generation !== this.generation) break;
        const d = deliver(ev, this.sink);
        if (d === Delivered.Heartbeat) {
          if (ev.event.case === "heartbeat" && ev.event.value.sentAtMs === BigInt(this.heartbeatSentAtMs)) this.heartbeatAnswered();
        } else if (d === Delivered.Close) {
          closedByAi = true;
        } else if (d === Delivered.Bad) {
          this.opts.metrics.drop("upstream-bad-event");
          this.opts.logger.warn({ sessionId: this.hello.sessionId, event: ev.event.case ?? "unknown" }, "dropped an unusable event from the AI service");
        }
      }
      if (this.link.t !== "ended" && generation === this.generation) {
        // A stream that ends without Close is the AI service ending the session.
        if (!closedByAi) this.sink.onClose("the AI service ended the session");
        this.finish();
      }
    } catch (err) {
      if (this.link.t === "ended" || generation !== this.generation) return;
      this.failed(ConnectError.from(err), conn);
    } finally {
      this.opts.pool.release(conn, stream.opening);
      stream.opening = false;
    }
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
      link.stream.abort.abort();
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
    if (FATAL.has(err.code)) {
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
    this.link = { t: "ended" };
    this.generation++;
    this.stopHeartbeat();
    this.onGone();
  }

  private retry(err: ConnectError, conn: PooledConnection | undefined): void {
    if (this.link.t === "ended") return;
    this.generation++;
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
    }
    const timer = setTimeout(() => {
      if (this.link.t !== "waiting") return;
      this.opts.metrics.upstreamReconnects++;
      this.openStream(true);
    }, delay);
    this.link = { t: "waiting", timer };
  }
}
