import { describe, expect, test } from "bun:test";
import type { Takeover } from "../../src/fanout/device-directory";
import { FanoutStats } from "../../src/fanout/fanout-stats";
import { HubBroker } from "../../src/fanout/hub-broker";
import { HubDeviceDirectory } from "../../src/fanout/hub-device-directory";
import { HubLink, type HubPort } from "../../src/fanout/hub-link";
import type { HubToWorker, WorkerToHub } from "../../src/fanout/hub-protocol";
import { Topic } from "../../src/fanout/topic";
import { WorkerHub } from "../../src/fanout/worker-hub";
import { describeBrokerContract, describeDirectoryContract } from "./contract";
import { Inbox } from "./fanout-test-kit";

/**
 * The workers of one box and their supervisor's hub in one process: every message is
 * structured-cloned (as Bun's IPC does) and delivered later, in one FIFO for all channels, so
 * that a round trip through the hub also flushes what the hub forwarded before it.
 */
class Box {
  readonly hub: WorkerHub;
  private readonly queue: (() => void)[] = [];
  private scheduled = false;
  private readonly disconnects = new Map<number, () => void>();
  private readonly dead = new Set<number>();

  constructor(gatherTimeoutMs?: number) {
    this.hub = new WorkerHub(gatherTimeoutMs === undefined ? {} : { gatherTimeoutMs });
  }

  private later(f: () => void): void {
    this.queue.push(f);
    if (this.scheduled) return;
    this.scheduled = true;
    setTimeout(() => {
      this.scheduled = false;
      for (let g = this.queue.shift(); g !== undefined; g = this.queue.shift()) g();
    }, 0);
  }

  /** A worker numbered `n`: its link, broker and directory as a gateway builds them. */
  worker(n: number, connections?: () => number) {
    let toWorker: (m: HubToWorker) => void = () => {};
    this.hub.attach(n, (m) => {
      const copy = structuredClone(m);
      this.later(() => toWorker(copy));
    });
    const port: HubPort = {
      send: (m: WorkerToHub) => {
        if (this.dead.has(n)) throw new Error("channel closed");
        const copy = structuredClone(m);
        this.later(() => this.hub.receive(n, copy));
      },
      onMessage: (h) => {
        toWorker = h;
      },
      onDisconnect: (h) => void this.disconnects.set(n, h),
    };
    const link = new HubLink(port, { worker: n, requestTimeoutMs: 1000 });
    const stats = new FanoutStats();
    const instanceId = `w${n}`;
    const broker = new HubBroker({ link, instanceId, stats });
    const directory = new HubDeviceDirectory({ link, instanceId, stats, ...(connections === undefined ? {} : { connections }) });
    return { link, broker, directory, stats };
  }

  /** The worker's process died: the supervisor detaches it, its channel is gone. */
  kill(n: number): void {
    this.dead.add(n);
    this.hub.detach(n);
    this.disconnects.get(n)?.();
  }
}

/** Resolves once everything sent so far by `link` (and forwarded by the hub before) arrived. */
async function flush(link: HubLink): Promise<void> {
  await link.request((id) => ({ t: "subs", id, topic: "flush" }));
}

describeBrokerContract("HubBroker, 3 workers", async () => {
  const box = new Box();
  const workers = [1, 2, 3].map((n) => box.worker(n));
  return {
    brokers: workers.map((w) => w.broker),
    sync: async () => {
      for (const w of workers) await flush(w.link);
    },
    close: async () => {
      await Promise.all(workers.map((w) => w.broker.close()));
    },
  };
});

describeDirectoryContract("HubDeviceDirectory", async (connections) => {
  const w = new Box().worker(1, connections);
  return { directory: w.directory, close: () => w.directory.close() };
});

describe("the workers of one box through the hub", () => {
  test("newest wins across workers: the worker that held the device is told, once, and stops holding it", async () => {
    const box = new Box();
    const [a, b] = [box.worker(1), box.worker(2)];
    const seen: Takeover[] = [];
    a.directory.onTakeover((t) => seen.push(t));
    await a.directory.claim("aa:01", "s1");
    const claimed = await b.directory.claim("aa:01", "s2");
    expect(claimed.t === "claimed" && claimed.previous).toMatchObject({ instanceId: "w1", sessionId: "s1" });
    await flush(a.link);
    expect(seen).toEqual([{ deviceId: "aa:01", staleSessionId: "s1", newSessionId: "s2", newInstanceId: "w2" }]);
    expect(a.directory.size).toBe(0);
    // The stale session's late release must not remove its successor.
    expect(await a.directory.release("aa:01", "s1")).toBe(false);
    expect(await b.directory.lookup("aa:01")).toMatchObject({ t: "connected", location: { instanceId: "w2", sessionId: "s2" } });
  });

  test("a push to a device topic says whether any worker holds it", async () => {
    const box = new Box();
    const [a, b] = [box.worker(1), box.worker(2)];
    const inbox = new Inbox();
    b.broker.subscribe(Topic.device("aa:02"), inbox.handler);
    await flush(b.link);
    expect(await a.broker.publish(Topic.device("aa:02"), "to b")).toEqual({ t: "sent", local: 0, remote: 1 });
    expect(await a.broker.publish(Topic.device("aa:03"), "to nobody")).toEqual({ t: "sent", local: 0, remote: 0 });
    await inbox.waitFor(1);
    expect(inbox.items).toEqual(["to b"]);
    expect(b.stats.received).toBe(1);
  });

  test("a worker that dies is forgotten: its devices, its topics, and gathers do not wait for it", async () => {
    const box = new Box(60_000);
    const [a, b] = [box.worker(1, () => 3), box.worker(2, () => 5)];
    b.broker.subscribe(Topic.broadcast, () => {});
    await b.directory.claim("aa:04", "s1");
    const both = await a.directory.instances();
    expect(both.instances.map((i) => [i.instanceId, i.connections])).toEqual([
      ["w1", 3],
      ["w2", 5],
    ]);
    box.kill(2);
    expect(await a.directory.lookup("aa:04")).toEqual({ t: "absent" });
    expect(await a.broker.publish(Topic.broadcast, "x")).toEqual({ t: "sent", local: 0, remote: 0 });
    expect((await a.directory.instances()).instances.map((i) => i.instanceId)).toEqual(["w1"]);
    // The dead worker's own calls fail soft, as with Redis down.
    expect(b.broker.state).toBe("down");
    expect(await b.broker.publish(Topic.broadcast, "y")).toMatchObject({ t: "failed", local: 1 });
    expect(await b.directory.lookup("aa:04")).toMatchObject({ t: "unknown" });
  });

  test("a gather answers with what every worker reported, and leaves out one that does not answer in time", async () => {
    const box = new Box(50);
    const [a, b, c] = [box.worker(1), box.worker(2), box.worker(3)];
    a.link.answer("status", () => ({ n: 1 }));
    b.link.answer("status", async () => ({ n: 2 }));
    c.link.answer("status", () => new Promise(() => {}));
    expect(await a.link.gather("status")).toEqual([
      { worker: 1, value: { n: 1 } },
      { worker: 2, value: { n: 2 } },
    ]);
  });
});
