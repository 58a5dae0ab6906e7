import { describeError, ErrorCode, GatewayError } from "../errors";
import { type Logger, silentLogger } from "../log";
import type { FanoutPayload } from "./broker";
import type { Takeover } from "./device-directory";
import type { Gathered, GatherKind, HubToWorker, WorkerToHub } from "./hub-protocol";

/** The channel to the hub: in a worker, the IPC channel to its supervisor. */
export interface HubPort {
  send(message: WorkerToHub): void;
  onMessage(handler: (message: HubToWorker) => void): void;
  onDisconnect(handler: () => void): void;
}

/** This process's IPC channel to the supervisor that spawned it (Bun.spawn with `ipc`). */
export function processHubPort(): HubPort {
  const send = process.send?.bind(process);
  if (send === undefined) throw new GatewayError(ErrorCode.ConfigInvalid, "a worker must be started by `xiaozhi-im serve --workers N`");
  return {
    send: (m) => void send(m),
    onMessage: (h) => void process.on("message", (m) => h(m as HubToWorker)),
    onDisconnect: (h) => void process.on("disconnect", h),
  };
}

/** Options of {@link HubLink}. */
export interface HubLinkOptions {
  /** This worker's number, 1..N: the `worker` label of its metrics. */
  readonly worker: number;
  /** How long a request waits for the hub. Default 3000 (above the hub's gather timeout). */
  readonly requestTimeoutMs?: number;
  readonly logger?: Logger;
}

/**
 * A worker's link to the hub in its supervisor: requests with replies (publish receipts,
 * directory operations, gathers), the messages the hub pushes (other workers' publishes,
 * takeovers) and this worker's answers when the hub gathers (its status, its metrics).
 */
export class HubLink {
  readonly worker: number;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: ReturnType<typeof setTimeout> }>();
  private readonly answers = new Map<GatherKind, () => unknown>();
  private readonly requestTimeoutMs: number;
  private readonly logger: Logger;
  private seq = 0;
  private up = true;
  /** Set by the broker: messages other workers published to a topic this worker subscribes to. */
  onPublished: (topic: string, payload: FanoutPayload) => void = () => {};
  /** Set by the directory: a device of this worker reconnected on another worker. */
  onTakeover: (takeover: Takeover) => void = () => {};
  private readonly disconnectListeners: (() => void)[] = [];

  constructor(
    private readonly port: HubPort,
    options: HubLinkOptions,
  ) {
    this.worker = options.worker;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3000;
    this.logger = options.logger ?? silentLogger;
    port.onMessage((m) => this.receive(m));
    port.onDisconnect(() => {
      this.up = false;
      for (const [id, p] of this.pending) {
        clearTimeout(p.timer);
        this.pending.delete(id);
        p.reject(new GatewayError(ErrorCode.ClusterUnreachable, "the supervisor is gone"));
      }
      for (const l of this.disconnectListeners) l();
    });
  }

  /** False once the supervisor is gone. */
  get connected(): boolean {
    return this.up;
  }

  /** Calls `listener` once when the supervisor goes away (the worker should drain and exit). */
  onDisconnect(listener: () => void): void {
    this.disconnectListeners.push(listener);
  }

  /** Sends a message that has no reply. Dropped (false) once the supervisor is gone. */
  send(message: WorkerToHub): boolean {
    if (!this.up) return false;
    try {
      this.port.send(message);
      return true;
    } catch (err) {
      this.logger.warn({ err: describeError(err), t: message.t }, "message to the supervisor not sent");
      return false;
    }
  }

  /** Sends the request `make(id)` and resolves the hub's reply; rejects when none comes in time. */
  request<T>(make: (id: number) => WorkerToHub): Promise<T> {
    const id = ++this.seq;
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    if (!this.send(make(id))) return Promise.reject(new GatewayError(ErrorCode.ClusterUnreachable, "the supervisor is gone"));
    const timer = setTimeout(() => {
      this.pending.delete(id);
      reject(new GatewayError(ErrorCode.ClusterUnreachable, `the supervisor did not answer within ${this.requestTimeoutMs} ms`));
    }, this.requestTimeoutMs);
    this.pending.set(id, { resolve, reject, timer });
    return promise as Promise<T>;
  }

  /** Every worker's answer to `kind` (this one's included), by worker number. */
  gather(kind: GatherKind): Promise<Gathered[]> {
    return this.request<Gathered[]>((id) => ({ t: "gather", id, kind }));
  }

  /** What this worker answers when the hub gathers `kind`. */
  answer(kind: GatherKind, fn: () => unknown): void {
    this.answers.set(kind, fn);
  }

  private receive(m: HubToWorker): void {
    switch (m.t) {
      case "reply": {
        const p = this.pending.get(m.id);
        if (p === undefined) return;
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        p.resolve(m.value);
        return;
      }
      case "msg":
        this.onPublished(m.topic, m.payload);
        return;
      case "takeover":
        this.onTakeover(m.takeover);
        return;
      case "collect":
        void this.collect(m.id, m.kind);
        return;
    }
  }

  private async collect(id: number, kind: GatherKind): Promise<void> {
    const fn = this.answers.get(kind);
    let value: unknown = null;
    try {
      value = fn === undefined ? null : await fn();
    } catch (err) {
      this.logger.warn({ err: describeError(err), kind }, "could not report to the supervisor");
    }
    this.send({ t: "collected", id, value });
  }
}
