import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import { createFanout } from "../../src/fanout/create-fanout";
import type { Takeover } from "../../src/fanout/device-directory";
import { encodeEnvelope } from "../../src/fanout/fanout-envelope";
import { RedisBroker } from "../../src/fanout/redis-broker";
import { RedisDeviceDirectory } from "../../src/fanout/redis-device-directory";
import { Topic } from "../../src/fanout/topic";
import { describeBrokerContract, describeDirectoryContract } from "./contract";
import { within } from "../helpers/until";
import { Inbox, startInstance, syncAll, type TestInstance, testRedis, uniquePrefix } from "./fanout-test-kit";

let redis: { url: string; stop: () => Promise<void> };
beforeAll(async () => {
  redis = await testRedis();
});
afterAll(async () => {
  await redis.stop();
});

async function startCluster(names: readonly string[], prefix = uniquePrefix()): Promise<TestInstance[]> {
  return Promise.all(names.map((name) => startInstance(redis.url, prefix, name)));
}

describeBrokerContract("RedisBroker, 3 instances", async () => {
  const instances = await startCluster(["a", "b", "c"]);
  return {
    brokers: instances.map((i) => i.broker),
    sync: () => syncAll(instances),
    close: async () => {
      await Promise.all(instances.map((i) => i.close()));
    },
  };
});

describeDirectoryContract("RedisDeviceDirectory", async (connections) => {
  const instance = await startInstance(redis.url, uniquePrefix(), "solo", { connections });
  return { directory: instance.directory, close: () => instance.close() };
});

describe("RedisBroker across instances", () => {
  let cluster: TestInstance[] = [];
  afterEach(async () => {
    await Promise.all(cluster.map((i) => i.close()));
    cluster = [];
  });

  test("a broadcast reaches the subscribers on 3 instances exactly once, encoded once", async () => {
    cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster as [TestInstance, TestInstance, TestInstance];
    const inboxes = cluster.map(() => [new Inbox(), new Inbox()]);
    cluster.forEach((i, n) => {
      for (const inbox of inboxes[n]!) i.broker.subscribe(Topic.broadcast, inbox.handler);
    });
    await syncAll(cluster);

    const receipts = [];
    for (let k = 0; k < 20; k++) receipts.push(await a.broker.publish(Topic.broadcast, `m${k}`));
    await syncAll(cluster);

    for (const receipt of receipts) expect(receipt).toEqual({ t: "sent", local: 2, remote: 2 });
    const want = Array.from({ length: 20 }, (_, k) => `m${k}`);
    // In publish order, each once, on every instance (a: locally; b, c: through Redis).
    for (const pair of inboxes) for (const inbox of pair) expect(inbox.items).toEqual(want);
    // One envelope per publish however many recipients; one decode per receiving instance.
    expect(a.broker.stats.encoded).toBe(20);
    expect(b.broker.stats.received).toBe(20);
    expect(c.broker.stats.received).toBe(20);
    // a delivered locally and skipped its own copy coming back from Redis.
    expect(a.broker.stats.received).toBe(0);
    expect(a.broker.stats.ownSkipped).toBe(20);
    expect(b.broker.stats.duplicates + c.broker.stats.duplicates).toBe(0);
  });

  test("messages from several publishers each arrive once everywhere", async () => {
    cluster = await startCluster(["a", "b", "c"]);
    const inboxes = cluster.map((i) => {
      const inbox = new Inbox();
      i.broker.subscribe(Topic.broadcast, inbox.handler);
      return inbox;
    });
    await syncAll(cluster);
    await Promise.all(cluster.flatMap((i) => [1, 2, 3].map((k) => i.broker.publish(Topic.broadcast, `${i.name}${k}`))));
    await syncAll(cluster);
    for (const inbox of inboxes) {
      expect(inbox.items.length).toBe(9);
      expect([...inbox.counts().values()].every((n) => n === 1)).toBe(true);
    }
  });

  test("a repeated envelope is delivered once; foreign messages are dropped and counted", async () => {
    const prefix = uniquePrefix();
    cluster = await startCluster(["b"], prefix);
    const b = cluster[0]!;
    const inbox = new Inbox();
    b.broker.subscribe("t", inbox.handler);
    await b.broker.sync();
    const raw = new Redis(redis.url);
    try {
      const envelope = encodeEnvelope(Buffer.from("forger", "latin1"), 1, "once");
      const channel = `${prefix}fanout:t`;
      await raw.publish(channel, envelope);
      await raw.publish(channel, envelope);
      await raw.publish(channel, "not an envelope");
      await b.broker.sync();
    } finally {
      raw.disconnect();
    }
    expect(inbox.items).toEqual(["once"]);
    expect(b.broker.stats.duplicates).toBe(1);
    expect(b.broker.stats.malformed).toBe(1);
  });
});

describe("RedisDeviceDirectory across instances", () => {
  let cluster: TestInstance[] = [];
  afterEach(async () => {
    await Promise.all(cluster.map((i) => i.close()));
    cluster = [];
  });

  test("newest wins: a claim on B takes the device over from A, whose stale release keeps B's entry", async () => {
    cluster = await startCluster(["a", "b", "c"]);
    const [a, b, c] = cluster as [TestInstance, TestInstance, TestInstance];
    const takeoverOnA = Promise.withResolvers<Takeover>();
    const elsewhere: Takeover[] = [];
    a.directory.onTakeover((t) => takeoverOnA.resolve(t));
    b.directory.onTakeover((t) => elsewhere.push(t));
    c.directory.onTakeover((t) => elsewhere.push(t));

    expect(await a.directory.claim("aa:01", "session-a")).toEqual({ t: "claimed", previous: undefined });
    const onB = await b.directory.claim("aa:01", "session-b");
    expect(onB.t === "claimed" && onB.previous).toMatchObject({ instanceId: a.directory.instanceId, sessionId: "session-a" });

    const takeover = await within(takeoverOnA.promise, 5_000, "takeover notice on A");
    expect(takeover).toEqual({
      deviceId: "aa:01",
      staleSessionId: "session-a",
      newSessionId: "session-b",
      newInstanceId: b.directory.instanceId,
    });
    expect(a.directory.size).toBe(0);
    const found = await c.directory.lookup("aa:01");
    expect(found).toMatchObject({ t: "connected", location: { instanceId: b.directory.instanceId, sessionId: "session-b" } });

    // A's session closes and releases: B's entry must survive.
    expect(await a.directory.release("aa:01", "session-a")).toBe(false);
    expect(await c.directory.lookup("aa:01")).toMatchObject({ t: "connected", location: { sessionId: "session-b" } });
    expect(await b.directory.release("aa:01", "session-b")).toBe(true);
    expect(await c.directory.lookup("aa:01")).toEqual({ t: "absent" });
    expect(elsewhere).toEqual([]);
    expect(b.broker.stats.takeoversSent).toBe(1);
    expect(a.broker.stats.takeoversReceived).toBe(1);
  });

  test("a stale release racing the takeover notice cannot delete the newer entry", async () => {
    cluster = await startCluster(["a", "b"]);
    const [a, b] = cluster as [TestInstance, TestInstance];
    await a.directory.claim("aa:02", "old");
    await b.directory.claim("aa:02", "new");
    // Usually before A has heard of the takeover: compare-and-delete must refuse.
    await a.directory.release("aa:02", "old");
    expect(await b.directory.lookup("aa:02")).toMatchObject({ t: "connected", location: { sessionId: "new" } });
  });

  test("a missed takeover notice is caught by the stale instance's next refresh", async () => {
    const prefix = uniquePrefix();
    cluster = await startCluster(["a", "b"], prefix);
    const [a, b] = cluster as [TestInstance, TestInstance];
    const takeovers: Takeover[] = [];
    a.directory.onTakeover((t) => takeovers.push(t));
    await a.directory.claim("aa:03", "old");
    // B writes its entry behind the directory's back, as if its notice had been lost.
    await b.broker.commands.set(`${prefix}device:aa:03`, `${Date.now()} ${b.directory.instanceId} new`, "PX", 30_000);
    await a.directory.refresh();
    expect(takeovers).toEqual([{ deviceId: "aa:03", staleSessionId: "old", newSessionId: "new", newInstanceId: b.directory.instanceId }]);
    expect(a.directory.size).toBe(0);
    expect(a.broker.stats.takeoversReceived).toBe(1);
    await b.broker.commands.del(`${prefix}device:aa:03`);
  });

  test("instances lists every live instance with its connection count", async () => {
    const prefix = uniquePrefix();
    const a = await startInstance(redis.url, prefix, "a", { connections: () => 5 });
    const b = await startInstance(redis.url, prefix, "b");
    cluster = [a, b];
    await b.directory.claim("aa:10", "s1");
    await b.directory.claim("aa:11", "s2");
    await Promise.all(cluster.map((i) => i.directory.refresh()));
    const view = await a.directory.instances();
    expect(view.t).toBe("cluster");
    const counts = Object.fromEntries(view.instances.map((i) => [i.instanceId, i.connections]));
    expect(counts).toEqual({ [a.directory.instanceId]: 5, [b.directory.instanceId]: 2 });

    // A graceful stop leaves the cluster at once and frees its devices.
    await b.close();
    cluster = [a];
    const after = await a.directory.instances();
    expect(after.instances.map((i) => i.instanceId)).toEqual([a.directory.instanceId]);
    expect(await a.directory.lookup("aa:10")).toEqual({ t: "absent" });
  });
});

describe("createFanout with REDIS_URL", () => {
  test("builds the Redis pair sharing one instance id, connection and stats", async () => {
    const keyPrefix = uniquePrefix();
    const fanout = createFanout({ redisUrl: redis.url, keyPrefix, instanceId: "gw-1", connections: () => 2 });
    try {
      expect(fanout.broker).toBeInstanceOf(RedisBroker);
      expect(fanout.directory).toBeInstanceOf(RedisDeviceDirectory);
      expect(fanout.directory.instanceId).toBe("gw-1");
      await within((fanout.broker as RedisBroker).whenState("ready"), 5_000, "ready");
      expect(fanout.stats.state).toBe("ready");
      await fanout.directory.claim("aa:01", "s1");
      expect(fanout.stats.claims).toBe(1);
      expect(await fanout.directory.instances()).toMatchObject({ t: "cluster", instances: [{ instanceId: "gw-1", connections: 2 }] });
    } finally {
      await fanout.close();
    }
    expect(fanout.stats.state).toBe("closed");
    // A graceful close leaves nothing behind.
    const probe = new Redis(redis.url);
    try {
      expect(await probe.keys(`${keyPrefix}*`)).toEqual([]);
    } finally {
      probe.disconnect();
    }
  });
});
