import { connect as netConnect, type Socket } from "node:net";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { AiService, type DeviceEventSchema, type ServerEventSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { HostPort } from "../config/config-schema";
import { describeError } from "../errors";
import type { Logger } from "../log";
import { MAX_MESSAGE_BYTES } from "../grpc-frames";
import { GrpcBidiCall } from "./grpc-bidi-call";
import { ReadySignal } from "./ready-signal";
import { heartbeatEvent } from "./translate";

/** A pooled connection's lifecycle. */
export type ConnectionState =
  | { readonly t: "warming" }
  | { readonly t: "ready"; readonly rttMs: number }
  | { readonly t: "failed"; readonly error: string; readonly attempt: number }
  | { readonly t: "closed" };

/** One HTTP/2 connection to an AI service, with the client that uses it. */
export interface PooledConnection {
  readonly index: number;
  readonly target: string;
  readonly client: Client<typeof AiService>;
  /** The connection itself, for calls that drive an HTTP/2 stream directly (Relay). */
  readonly manager: Http2SessionManager;
  state: ConnectionState;
  /** Streams currently open on it (the spread key). Owned by the pool: changed only by its
   * grant/release and holdStream/dropStream. */
  streams: number;
  /** Streams opened but not yet proven answered (Bun bursts new streams; see start()). */
  opening: number;
  /** The server's SETTINGS_MAX_CONCURRENT_STREAMS, learned by the probe (else unlimited). */
  maxStreams: number;
}

/** A request for a stream slot, granted once a connection has room. */
export interface SlotRequest {
  grant(conn: PooledConnection): void;
}

export interface ConnectionPoolOptions {
  readonly targets: readonly HostPort[];
  readonly size: number;
  readonly heartbeatMs: number;
  readonly reconnectBaseMs: number;
  readonly reconnectMaxMs: number;
  readonly logger: Logger;
  /** Deadline of one probe. Default: min(heartbeatMs, 5000). */
  readonly probeTimeoutMs?: number;
  /** Log "upstream ready" once every connection has been ready once. Default true; the
   * Relay transport says it itself, once its streams are ready too. */
  readonly announceReady?: boolean;
}

/** What start-up logs once: every connection ready, and their round trips. */
export interface PoolReadySummary {
  readonly connections: number;
  readonly targets: readonly string[];
  readonly rttMs: { readonly min: number; readonly max: number };
}

/**
 * GRPC_MAX_CONNECTIONS HTTP/2 connections spread over the AI address list. Each is warmed
 * with one completed call before use: Bun's HTTP/2 client bursts streams on a brand-new
 * connection before it has read the server's SETTINGS (bun-notes.md). The warm-up call is a
 * Converse probe (a Heartbeat answered by the AI service), repeated every heartbeat to
 * measure upstream RTT and find dead connections.
 */
export class ConnectionPool {
  readonly connections: readonly PooledConnection[];
  private readonly managers: Http2SessionManager[] = [];
  private readonly opts: ConnectionPoolOptions;
  private readonly timers = new Set<ReturnType<typeof setTimeout>>();
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private readonly readySignal = new ReadySignal(() => this.ready());
  private readonly slotWaiters = new Set<SlotRequest>();
  /** Connections with a probe in flight (one at a time each). */
  private readonly probing = new Set<PooledConnection>();
  private readonly readyListeners = new Set<(conn: PooledConnection) => void>();
  /** Until every connection has been ready once, each one's readiness is start-up routine
   * (one summary line); after, a connection that comes back is news. */
  private everAllReady = false;
  private closed = false;

  constructor(opts: ConnectionPoolOptions) {
    this.opts = opts;
    const conns: PooledConnection[] = [];
    for (let i = 0; i < opts.size; i++) {
      const t = opts.targets[i % opts.targets.length]!;
      const baseUrl = `http://${t.host}:${t.port}`;
      const manager = new Http2SessionManager(
        baseUrl,
        {
          pingIntervalMs: opts.heartbeatMs,
          pingTimeoutMs: Math.max(1000, Math.min(opts.heartbeatMs, 15000)),
          idleConnectionTimeoutMs: 24 * 3600 * 1000,
        },
        // Bun's HTTP/2 sockets keep Nagle on: after an idle moment every small frame then
        // waits for an ACK (measured: 95 us vs 23 us per raw round trip on loopback).
        { createConnection: () => connectNoDelay(t) },
      );
      this.managers.push(manager);
      // Connect reads up to 4 GiB per message by default: a broken or hostile AI service
      // could make the gateway buffer (and a v1 device receive) anything. Same bound as Relay.
      const transport = createGrpcTransport({ baseUrl, sessionManager: manager, readMaxBytes: MAX_MESSAGE_BYTES });
      conns.push({
        index: i,
        target: `${t.host}:${t.port}`,
        client: createClient(AiService, transport),
        manager,
        state: { t: "warming" },
        streams: 0,
        opening: 0,
        maxStreams: Number.POSITIVE_INFINITY,
      });
    }
    this.connections = conns;
  }

  /** Warms every connection and starts the heartbeat. Resolves when all probes settled. */
  async start(): Promise<void> {
    this.heartbeat = setInterval(() => {
      for (const c of this.connections) if (c.state.t === "ready") void this.probe(c);
    }, this.opts.heartbeatMs);
    this.heartbeat.unref?.();
    await Promise.all(this.connections.map((c) => this.probe(c)));
  }

  ready(): boolean {
    return this.connections.some((c) => c.state.t === "ready");
  }

  waitReady(timeoutMs: number): Promise<boolean> {
    return this.readySignal.wait(timeoutMs);
  }

  /**
   * Gives `req` a stream slot: on the ready connection with the fewest streams that is under
   * the server's stream limit and not already opening MAX_OPENING streams. When every ready
   * connection is full the request waits (FIFO) for a slot, so sessions queue instead of
   * hanging in an HTTP/2 stream the server will not serve. When no connection is ready it
   * gets any (the attempt then tells whether the AI service is back). A granted slot counts
   * as an opening stream until opened() and as a stream until release().
   */
  acquire(req: SlotRequest): void {
    const conn = this.freeSlot() ?? (this.ready() ? undefined : this.anyOpen());
    if (conn === undefined) {
      this.slotWaiters.add(req);
      return;
    }
    this.grant(conn, req);
  }

  /** The ready connection with the fewest streams, for a one-off call; undefined if none. */
  readyConnection(): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    for (const c of this.connections) if (c.state.t === "ready" && (best === undefined || c.streams < best.streams)) best = c;
    return best;
  }

  /** Withdraws a request still waiting for a slot. */
  cancel(req: SlotRequest): void {
    this.slotWaiters.delete(req);
  }

  /** The stream on `conn` is proven open (its server answered). */
  opened(conn: PooledConnection): void {
    conn.opening--;
    this.serveWaiters();
  }

  /** The stream on `conn` is over; `stillOpening` when it never got to opened(). */
  release(conn: PooledConnection, stillOpening: boolean): void {
    conn.streams--;
    if (stillOpening) conn.opening--;
    this.serveWaiters();
  }

  /** A long-lived stream (a Relay stream) opens on `conn` without asking for a slot: it is
   * counted, so that one-off calls and Converse slots go to less busy connections. */
  holdStream(conn: PooledConnection): void {
    conn.streams++;
  }

  /** That stream is over. */
  dropStream(conn: PooledConnection): void {
    conn.streams--;
    this.serveWaiters();
  }

  /** Streams waiting for a slot. */
  get waiting(): number {
    return this.slotWaiters.size;
  }

  private grant(conn: PooledConnection, req: SlotRequest): void {
    conn.streams++;
    conn.opening++;
    req.grant(conn);
  }

  private serveWaiters(): void {
    for (const req of this.slotWaiters) {
      const conn = this.freeSlot();
      if (conn === undefined) return;
      this.slotWaiters.delete(req);
      this.grant(conn, req);
    }
  }

  private freeSlot(): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    for (const c of this.connections) {
      if (c.state.t !== "ready" || c.streams >= c.maxStreams || c.opening >= MAX_OPENING) continue;
      if (best === undefined || c.streams < best.streams) best = c;
    }
    return best;
  }

  private anyOpen(): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    for (const c of this.connections) if (c.state.t !== "closed" && (best === undefined || c.streams < best.streams)) best = c;
    return best;
  }

  /** Calls `listener` whenever a connection becomes ready (warmed, or back after failing),
   * so that streams waiting out a backoff can re-open at once. */
  /** The connections, their targets and round trips, for the start-up summary line. */
  readySummary(): PoolReadySummary {
    const rtts = this.connections.flatMap((c) => (c.state.t === "ready" ? [c.state.rttMs] : []));
    return {
      connections: this.connections.length,
      targets: [...new Set(this.connections.map((c) => c.target))],
      rttMs: { min: round2(Math.min(...rtts)), max: round2(Math.max(...rtts)) },
    };
  }

  onConnectionReady(listener: (conn: PooledConnection) => void): void {
    this.readyListeners.add(listener);
  }

  /**
   * A stream on `c` failed in a way that suggests the AI service is gone. Every ready
   * connection is re-checked now, not only `c`: the others usually share its fate, and
   * /ready must not say 200 until their next heartbeat.
   */
  reportFailure(c: PooledConnection, error: unknown): void {
    this.recheck(c, describeError(error));
  }

  private recheck(failed: PooledConnection, reason: string): void {
    for (const conn of this.connections) {
      if (conn.state.t === "ready") void this.probe(conn, conn === failed ? reason : `connection ${failed.index} failed: ${reason}`);
    }
  }

  private async probe(c: PooledConnection, reason?: string): Promise<void> {
    if (this.closed || this.probing.has(c)) return;
    this.probing.add(c);
    try {
      await this.probeOnce(c, reason);
    } finally {
      this.probing.delete(c);
    }
  }

  private async probeOnce(c: PooledConnection, reason?: string): Promise<void> {
    const started = performance.now();
    const timeoutMs = this.opts.probeTimeoutMs ?? Math.min(this.opts.heartbeatMs, 5000);
    try {
      const maxStreams = await probeConnection(c, timeoutMs);
      const wasReady = c.state.t === "ready";
      c.state = { t: "ready", rttMs: performance.now() - started };
      if (maxStreams !== undefined) c.maxStreams = maxStreams;
      if (!wasReady) {
        const line = { connection: c.index, target: c.target, rttMs: round2(c.state.rttMs), maxStreams: c.maxStreams };
        if (this.everAllReady) this.opts.logger.info(line, "upstream connection ready");
        else {
          this.opts.logger.debug(line, "upstream connection ready");
          if (this.connections.every((conn) => conn.state.t === "ready")) {
            this.everAllReady = true;
            if (this.opts.announceReady !== false) this.opts.logger.info(this.readySummary(), "upstream ready");
          }
        }
        this.readySignal.set();
        this.serveWaiters();
        for (const listener of this.readyListeners) listener(c);
      }
    } catch (err) {
      if (this.closed) return;
      const wasReady = c.state.t === "ready";
      const attempt = c.state.t === "failed" ? c.state.attempt + 1 : 0;
      if (c.state.t !== "failed") {
        this.opts.logger.warn({ connection: c.index, target: c.target, reason: reason ?? describeError(err) }, "upstream connection failed");
      }
      c.state = { t: "failed", error: describeError(err), attempt };
      if (wasReady) this.recheck(c, describeError(err));
      // A failed connection is re-probed every reconnect interval, without growing backoff:
      // a probe is one cheap call, and the AI service's return must be seen within one
      // interval (streams and sessions then re-open at once, see onConnectionReady).
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.probe(c);
      }, steadyDelayMs(this.opts.reconnectBaseMs));
      this.timers.add(timer);
    }
  }

  /** Closes every connection (their streams end with them). */
  close(): void {
    this.closed = true;
    this.slotWaiters.clear();
    if (this.heartbeat) clearInterval(this.heartbeat);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const c of this.connections) c.state = { t: "closed" };
    for (const m of this.managers) m.abort();
  }
}

/** One reconnect interval, jittered down (never up) so that connections cut off together
 * do not all retry together. */
function steadyDelayMs(intervalMs: number): number {
  return Math.round(intervalMs * (0.8 + 0.2 * Math.random()));
}

function connectNoDelay(t: HostPort): Socket {
  const socket = netConnect({ host: t.host.replace(/^\[|\]$/g, ""), port: t.port });
  socket.setNoDelay(true);
  return socket;
}

/** At most this many streams per connection wait for their first answer at once: Bun's
 * HTTP/2 client opens a burst of streams before reading the server's SETTINGS. */
const MAX_OPENING = 32;

/**
 * One Converse probe: a Heartbeat the AI service must answer with the same sent_at_ms.
 * Resolves with the server's concurrent-stream limit (from its SETTINGS) once answered.
 */
function probeConnection(c: PooledConnection, timeoutMs: number): Promise<number | undefined> {
  const { promise, resolve, reject } = Promise.withResolvers<number | undefined>();
  const sentAt = Date.now();
  let call: GrpcBidiCall<typeof DeviceEventSchema, typeof ServerEventSchema> | undefined;
  let answered = false;
  const timer = setTimeout(() => {
    call?.cancel();
    reject(new Error(`probe not answered within ${timeoutMs} ms`));
  }, timeoutMs);
  GrpcBidiCall.open(c.manager, AiService.method.converse, {
    onResponse(ev) {
      if (answered || ev.event.case !== "heartbeat" || ev.event.value.sentAtMs !== BigInt(sentAt)) return;
      answered = true;
      clearTimeout(timer);
      resolve(call?.serverMaxConcurrentStreams);
      call?.end();
    },
    onEnd(status) {
      clearTimeout(timer);
      if (!answered) reject(status.t === "error" ? status.error : new Error("probe ended without a heartbeat"));
    },
    onDrain() {},
  }).then(
    (opened) => {
      call = opened;
      opened.write(heartbeatEvent(sentAt));
    },
    (err: unknown) => {
      clearTimeout(timer);
      reject(err);
    },
  );
  return promise;
}

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}
