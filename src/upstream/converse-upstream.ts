import { Code, ConnectError } from "@connectrpc/connect";
import type { DeviceEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { ForwardedMessage } from "../device/device-message";
import { describeError } from "../errors";
import type { Logger } from "../log";
import type { Metrics } from "../metrics";
import { backoffDelayMs } from "./backoff";
import { audioFramesFor, EventBacklog } from "./event-backlog";
import type { ConnectionPool, PooledConnection } from "./connection-pool";
import { audioEvent, Delivered, deliver, endEvent, forwardedEvent, heartbeatEvent, helloEvent } from "./translate";
import type { EndReason, SessionHello, Upstream, UpstreamSession, UpstreamSink } from "./upstream";

export interface ConverseUpstreamOptions {
  readonly pool: ConnectionPool;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  /** Audio kept per session while its stream is down or not draining. */
  readonly bufferMs: number;
  /** How long an ended session's stream may take to finish before it is cancelled. */
  readonly endGraceMs?: number;
}

/** Codes after which re-opening the same stream cannot help. */
const FATAL = new Set<Code>([Code.InvalidArgument, Code.Unimplemented, Code.PermissionDenied, Code.Unauthenticated, Code.FailedPrecondition]);

type LinkState =
  | { readonly t: "open"; readonly conn: PooledConnection; readonly abort: AbortController }
  | { readonly t: "waiting"; readonly timer: ReturnType<typeof setTimeout> }
  | { readonly t: "ended" };

/**
 * The `converse` transport: one Converse bidi stream per device session. Events wait in a
 * session-owned queue that the stream's request generator drains, so sending never awaits;
 * the queue keeps every control event and at most `bufferMs` of audio (oldest dropped,
 * counted). A failed stream is re-opened with jittered backoff and Hello `resumed=true`.
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
  /** Bumped per stream so a superseded request generator stops. */
  private generation = 0;
  private wake: (() => void) | undefined;
  private link: LinkState | { readonly t: "starting" } = { t: "starting" };
  /** Set while a resumed stream waits for its first heartbeat answer. */
  private resumeProbeAtMs = -1;
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
    if (link.t === "waiting") clearTimeout(link.timer);
    if (link.t !== "open") return;
    this.push(endEvent(reason));
    // A well-behaved AI service ends the stream when the gateway does; one that does not
    // must not keep it open forever.
    const t = setTimeout(() => link.abort.abort(), this.opts.endGraceMs ?? 5000);
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
    const conn = this.opts.pool.pick();
    if (conn === undefined) {
      this.retry(new ConnectError("no upstream connection", Code.Unavailable), undefined);
      return;
    }
    const generation = ++this.generation;
    const abort = new AbortController();
    this.link = { t: "open", conn, abort };
    const first = [helloEvent(this.hello, resumed)];
    if (resumed) {
      // The AI service answers every Heartbeat: its answer proves the resumed stream works.
      this.resumeProbeAtMs = Date.now();
      first.push(heartbeatEvent(this.resumeProbeAtMs));
    }
    conn.streams++;
    this.opts.metrics.upstreamStreamsOpened++;
    void this.consume(conn, this.requests(first, generation), abort, generation);
  }

  private async consume(conn: PooledConnection, requests: AsyncGenerator<DeviceEvent>, abort: AbortController, generation: number): Promise<void> {
    let closedByAi = false;
    try {
      for await (const ev of conn.client.converse(requests, { signal: abort.signal })) {
        if (generation !== this.generation) break;
        const d = deliver(ev, this.sink);
        if (d === Delivered.Heartbeat) {
          if (this.resumeProbeAtMs >= 0 && ev.event.case === "heartbeat" && ev.event.value.sentAtMs === BigInt(this.resumeProbeAtMs)) {
            this.resumeProbeAtMs = -1;
            this.restored();
          }
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
      this.opts.metrics.upstreamStreamFailures++;
      const ce = ConnectError.from(err);
      if (FATAL.has(ce.code)) {
        this.opts.logger.error({ sessionId: this.hello.sessionId, code: Code[ce.code], reason: ce.rawMessage }, "the AI service refused the session");
        this.sink.onFatal(`the AI service refused the session (${Code[ce.code]})`);
        this.finish();
        return;
      }
      this.opts.pool.reportFailure(conn, err);
      this.retry(ce, conn);
    } finally {
      conn.streams--;
    }
  }

  private finish(): void {
    if (this.link.t === "ended") return;
    this.link = { t: "ended" };
    this.generation++;
    this.onGone();
  }

  private retry(err: ConnectError, conn: PooledConnection | undefined): void {
    if (this.link.t === "ended") return;
    this.generation++;
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

  private restored(): void {
    this.attempt = 0;
    if (this.announcedOutage) {
      this.announcedOutage = false;
      this.opts.logger.info({ sessionId: this.hello.sessionId }, "upstream stream resumed");
      this.sink.onStatus("restored");
    }
  }
}
