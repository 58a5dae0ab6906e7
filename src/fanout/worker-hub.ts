import type { DeviceLocation } from "./device-directory";
import type { Gathered, GatherKind, HubToWorker, WorkerToHub } from "./hub-protocol";

/** How one worker is reached: its IPC send. */
export type WorkerSend = (message: HubToWorker) => void;

/** Options of {@link WorkerHub}. */
export interface WorkerHubOptions {
  /** How long a gather waits for every worker; a worker that has not answered by then is left
   * out of the answer (the scrape still comes back). Default 2000. */
  readonly gatherTimeoutMs?: number;
}

interface Gathering {
  readonly requester: number;
  readonly requestId: number;
  readonly waiting: Set<number>;
  readonly values: Gathered[];
  readonly timer: ReturnType<typeof setTimeout>;
}

/**
 * The supervisor's half of the fan-out between the workers of one box: what Redis does between
 * gateways, done in the supervisor's memory because every worker is its child.
 * - Topics: which workers subscribe to what; a publish is forwarded to the other workers
 *   subscribed to its topic, in the order the hub got it.
 * - The device directory of the box: newest wins by Device-Id, since claims are handled one at
 *   a time in arrival order; the worker that held the device before is told to close it.
 * - Gathers: one worker asks, every worker answers (status, metrics), one reply.
 * A worker that exits is detached: its subscriptions and devices are forgotten at once, and
 * gathers stop waiting for it.
 */
export class WorkerHub {
  private readonly workers = new Map<number, WorkerSend>();
  private readonly topics = new Map<string, Set<number>>();
  private readonly devices = new Map<string, { worker: number; location: DeviceLocation }>();
  private readonly gatherings = new Map<number, Gathering>();
  private gatherSeq = 0;
  private readonly gatherTimeoutMs: number;

  constructor(options: WorkerHubOptions = {}) {
    this.gatherTimeoutMs = options.gatherTimeoutMs ?? 2000;
  }

  /** Starts routing to `worker` (a new process under that number replaces the old one). */
  attach(worker: number, send: WorkerSend): void {
    this.detach(worker);
    this.workers.set(worker, send);
  }

  /** Forgets everything of `worker`: its process exited. */
  detach(worker: number): void {
    if (!this.workers.delete(worker)) return;
    for (const [topic, subscribers] of this.topics) {
      subscribers.delete(worker);
      if (subscribers.size === 0) this.topics.delete(topic);
    }
    for (const [deviceId, entry] of this.devices) if (entry.worker === worker) this.devices.delete(deviceId);
    for (const [id, g] of this.gatherings) if (g.waiting.delete(worker)) this.settleIfDone(id, g);
  }

  receive(worker: number, m: WorkerToHub): void {
    const send = this.workers.get(worker);
    if (send === undefined) return;
    switch (m.t) {
      case "ready":
        // The supervisor's business (it logs it); nothing to route.
        return;
      case "sub": {
        const set = this.topics.get(m.topic);
        if (set === undefined) this.topics.set(m.topic, new Set([worker]));
        else set.add(worker);
        return;
      }
      case "unsub": {
        const set = this.topics.get(m.topic);
        set?.delete(worker);
        if (set?.size === 0) this.topics.delete(m.topic);
        return;
      }
      case "pub": {
        let remote = 0;
        for (const w of this.topics.get(m.topic) ?? []) {
          if (w === worker) continue;
          this.workers.get(w)?.({ t: "msg", topic: m.topic, payload: m.payload });
          remote++;
        }
        send({ t: "reply", id: m.id, value: { remote } });
        return;
      }
      case "subs":
        send({ t: "reply", id: m.id, value: this.topics.get(m.topic)?.size ?? 0 });
        return;
      case "claim": {
        const before = this.devices.get(m.deviceId);
        this.devices.set(m.deviceId, { worker, location: m.location });
        if (before !== undefined && before.location.sessionId !== m.location.sessionId && before.worker !== worker) {
          this.workers.get(before.worker)?.({
            t: "takeover",
            takeover: {
              deviceId: m.deviceId,
              staleSessionId: before.location.sessionId,
              newSessionId: m.location.sessionId,
              newInstanceId: m.location.instanceId,
            },
          });
        }
        send({ t: "reply", id: m.id, value: { previous: before?.location } });
        return;
      }
      case "release": {
        const held = this.devices.get(m.deviceId);
        const mine = held !== undefined && held.worker === worker && held.location.sessionId === m.sessionId;
        if (mine) this.devices.delete(m.deviceId);
        send({ t: "reply", id: m.id, value: mine });
        return;
      }
      case "lookup":
        send({ t: "reply", id: m.id, value: this.devices.get(m.deviceId)?.location });
        return;
      case "gather":
        this.gather(worker, m.id, m.kind);
        return;
      case "collected": {
        const g = this.gatherings.get(m.id);
        if (g === undefined || !g.waiting.delete(worker)) return;
        g.values.push({ worker, value: m.value });
        this.settleIfDone(m.id, g);
        return;
      }
    }
  }

  private gather(requester: number, requestId: number, kind: GatherKind): void {
    const id = ++this.gatherSeq;
    const g: Gathering = {
      requester,
      requestId,
      waiting: new Set(this.workers.keys()),
      values: [],
      timer: setTimeout(() => this.settle(id, g), this.gatherTimeoutMs),
    };
    this.gatherings.set(id, g);
    for (const w of this.workers.values()) w({ t: "collect", id, kind });
  }

  private settleIfDone(id: number, g: Gathering): void {
    if (g.waiting.size === 0) this.settle(id, g);
  }

  private settle(id: number, g: Gathering): void {
    if (!this.gatherings.delete(id)) return;
    clearTimeout(g.timer);
    g.values.sort((a, b) => a.worker - b.worker);
    this.workers.get(g.requester)?.({ t: "reply", id: g.requestId, value: g.values });
  }
}
