/**
 * Outages need control of the server, so these tests always run their own redis-server (even
 * when REDIS_URL is set): they stop it and start it again on the same port.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Redis } from "ioredis";
import type { PublishReceipt } from "../../src/fanout/broker";
import type { Takeover } from "../../src/fanout/device-directory";
import { defaultReconnectBackoff } from "../../src/fanout/reconnect-backoff";
import type { RedisDeviceDirectory, RefreshReport } from "../../src/fanout/redis-device-directory";
import { Topic } from "../../src/fanout/topic";
import { within } from "../helpers/until";
import { Inbox, OwnRedis, startInstance, syncAll, type TestInstance, uniquePrefix } from "./fanout-test-kit";

let server: OwnRedis;
beforeAll(async () => {
  server = await OwnRedis.start();
});
afterAll(async () => {
  await server.stop();
});

let cluster: TestInstance[] = [];
afterEach(async () => {
  await Promise.all(cluster.map((i) => i.close()));
  cluster = [];
  // A test that failed midway may leave the server stopped.
  await server.start().catch(() => {});
});

/** The next refresh that reached Redis. */
function nextGoodRefresh(directory: RedisDeviceDirectory): Promise<RefreshReport> {
  const { promise, resolve } = Promise.withResolvers<RefreshReport>();
  const sub = directory.onRefresh((report) => {
    if (!report.ok) return;
    sub.unsubscribe();
    resolve(report);
  });
  return promise;
}

describe("Redis restart", () => {
  test("fan-out resumes exactly once, outage publishes fail visibly, the directory is rebuilt", async () => {
    const prefix = uniquePrefix();
    cluster = await Promise.all(["a", "b", "c"].map((name) => startInstance(server.url, prefix, name)));
    const [a, b, c] = cluster as [TestInstance, TestInstance, TestInstance];
    const broadcast = cluster.map((i) => {
      const inbox = new Inbox();
      i.broker.subscribe(Topic.broadcast, inbox.handler);
      return inbox;
    });
    const [onA, onB, onC] = broadcast as [Inbox, Inbox, Inbox];
    const deviceOnB = new Inbox();
    b.broker.subscribe(Topic.device("aa:01"), deviceOnB.handler);
    await b.directory.claim("aa:01", "sb");
    await c.directory.claim("aa:02", "sc");
    await syncAll(cluster);

    // Before: once everywhere.
    expect(await a.broker.publish(Topic.broadcast, "before")).toEqual({ t: "sent", local: 1, remote: 2 });
    await syncAll(cluster);
    for (const inbox of broadcast) expect(inbox.items).toEqual(["before"]);

    // Outage.
    await server.stop();
    await within(Promise.all(cluster.map((i) => i.broker.whenState("down"))), 10_000, "every instance to notice");
    const during: PublishReceipt[] = [
      await a.broker.publish(Topic.broadcast, "during-a"),
      await b.broker.publish(Topic.device("aa:01"), "during-dev"),
      await c.broker.publish(Topic.broadcast, "during-c"),
    ];
    // Reported failed and counted, not silently dropped; local subscribers still served.
    for (const receipt of during) expect(receipt).toMatchObject({ t: "failed", local: 1 });
    for (const i of cluster) expect(i.broker.stats.publishFailures).toBe(1);
    expect(await c.directory.claim("aa:03", "sc3")).toMatchObject({ t: "deferred" });
    expect(await a.directory.lookup("aa:02")).toMatchObject({ t: "unknown" });
    expect(await b.directory.lookup("aa:01")).toMatchObject({ t: "connected", location: { sessionId: "sb" } });
    expect(await a.directory.instances()).toMatchObject({ t: "partial", instances: [{ instanceId: a.directory.instanceId }] });

    // Back, empty (no persistence): every instance reconnects and resubscribes by itself.
    const rebuilt = cluster.map((i) => nextGoodRefresh(i.directory));
    await server.start();
    await within(Promise.all(cluster.map((i) => i.broker.whenState("ready"))), 10_000, "every instance to reconnect");
    const reports = await within(Promise.all(rebuilt), 10_000, "directories to refresh");
    expect(reports[1]?.reestablished).toBe(1);
    expect((reports[2]?.reestablished ?? 0) + (reports[2]?.claimed ?? 0)).toBe(2);

    // Each channel is subscribed exactly once per instance again.
    const probe = new Redis(server.url);
    try {
      const numsub = await probe.pubsub("NUMSUB", `${prefix}fanout:${Topic.broadcast}`, `${prefix}fanout:${Topic.device("aa:01")}`);
      expect(numsub).toEqual([`${prefix}fanout:${Topic.broadcast}`, 3, `${prefix}fanout:${Topic.device("aa:01")}`, 1]);
    } finally {
      probe.disconnect();
    }

    // After: exactly once everywhere, from any instance.
    expect(await a.broker.publish(Topic.broadcast, "after-a")).toEqual({ t: "sent", local: 1, remote: 2 });
    expect(await b.broker.publish(Topic.broadcast, "after-b")).toEqual({ t: "sent", local: 1, remote: 2 });
    expect(await c.broker.publish(Topic.device("aa:01"), "after-dev")).toEqual({ t: "sent", local: 0, remote: 1 });
    await syncAll(cluster);
    // Sorted: order between different publishers is not promised (local delivery is at once).
    expect(onA.items.toSorted()).toEqual(["after-a", "after-b", "before", "during-a"]);
    expect(onB.items.toSorted()).toEqual(["after-a", "after-b", "before"]);
    expect(onC.items.toSorted()).toEqual(["after-a", "after-b", "before", "during-c"]);
    expect(deviceOnB.items).toEqual(["during-dev", "after-dev"]);
    for (const i of cluster) {
      expect(i.broker.stats.duplicates).toBe(0);
      expect(i.broker.stats.reconnects).toBe(1);
    }

    // The directory is whole again, including the claim made during the outage.
    expect(await a.directory.lookup("aa:01")).toMatchObject({ t: "connected", location: { instanceId: b.directory.instanceId } });
    expect(await a.directory.lookup("aa:02")).toMatchObject({ t: "connected", location: { instanceId: c.directory.instanceId } });
    expect(await a.directory.lookup("aa:03")).toMatchObject({ t: "connected", location: { sessionId: "sc3" } });
    const view = await a.directory.instances();
    expect(view.t).toBe("cluster");
    expect(view.instances.map((i) => i.instanceId).sort()).toEqual(cluster.map((i) => i.directory.instanceId).sort());
  }, 30_000);

  test("an instance started while Redis is down serves locally, then connects by itself", async () => {
    await server.stop();
    const prefix = uniquePrefix();
    const early = await startInstance(server.url, prefix, "early", { noWait: true });
    cluster = [early];
    await within(early.broker.whenState("down"), 10_000, "the first attempt to fail");
    const inbox = new Inbox();
    early.broker.subscribe(Topic.broadcast, inbox.handler);
    expect(await early.broker.publish(Topic.broadcast, "alone")).toMatchObject({ t: "failed", local: 1 });
    expect(early.broker.stats.publishFailures).toBe(1);
    expect(await early.directory.claim("aa:30", "s30")).toMatchObject({ t: "deferred" });

    const registered = nextGoodRefresh(early.directory);
    await server.start();
    await within(early.broker.whenState("ready"), 10_000, "early to connect");
    expect((await within(registered, 10_000, "early to register")).claimed).toBe(1);
    const late = await startInstance(server.url, prefix, "late");
    cluster.push(late);
    expect(await late.broker.publish(Topic.broadcast, "hi")).toEqual({ t: "sent", local: 0, remote: 1 });
    await syncAll(cluster);
    expect(inbox.items).toEqual(["alone", "hi"]);
    expect(await late.directory.lookup("aa:30")).toMatchObject({ t: "connected", location: { sessionId: "s30" } });
  }, 30_000);

  test("a device live on two instances across an outage: the newest wins as soon as Redis is back", async () => {
    const prefix = uniquePrefix();
    // The production reconnect backoff: the instance that reconnects last decides how long the
    // device stays live twice, which is what this measures.
    const [a, b] = await Promise.all(["a", "b"].map((name) => startInstance(server.url, prefix, name, { reconnect: defaultReconnectBackoff })));
    cluster = [a as TestInstance, b as TestInstance];
    const [onA, onB] = cluster as [TestInstance, TestInstance];
    await onA.directory.claim("aa:40", "old-on-a");
    const takeover = Promise.withResolvers<Takeover>();
    onA.directory.onTakeover((t) => takeover.resolve(t));

    await server.stop();
    await within(Promise.all(cluster.map((i) => i.broker.whenState("down"))), 10_000, "both to notice");
    // The device reconnects to b while Redis is away; a still holds its old session. An outage
    // of some seconds lets the backoff grow as it would in a real one.
    expect(await onB.directory.claim("aa:40", "new-on-b")).toMatchObject({ t: "deferred" });
    await Bun.sleep(5_000);

    await server.start();
    const backAt = performance.now();
    const notice = await within(takeover.promise, 10_000, "a to let go of the device");
    const tookMs = performance.now() - backAt;
    expect(notice).toMatchObject({ deviceId: "aa:40", staleSessionId: "old-on-a", newSessionId: "new-on-b" });
    expect(await onA.directory.lookup("aa:40")).toMatchObject({ t: "connected", location: { sessionId: "new-on-b" } });
    // A reconnect attempt at most every second, then one refresh: well under the 3.6 s
    // measured with a 5 s backoff cap.
    expect(tookMs).toBeLessThan(2_000);
  }, 30_000);
});

describe("a publish in flight when Redis dies", () => {
  test("resolves failed and is never resent after the reconnect", async () => {
    const prefix = uniquePrefix();
    cluster = await Promise.all(["a", "b"].map((name) => startInstance(server.url, prefix, name)));
    const [a, b] = cluster as [TestInstance, TestInstance];
    const inbox = new Inbox();
    b.broker.subscribe(Topic.broadcast, inbox.handler);
    await syncAll(cluster);

    const pauser = new Redis(server.url);
    // PUBLISH is a write: held by the server until it dies.
    await pauser.client("PAUSE", 10_000, "WRITE");
    pauser.disconnect();
    const inFlight = a.broker.publish(Topic.broadcast, "in-flight");
    await server.stop();
    expect(await within(inFlight, 5_000, "the in-flight publish to settle")).toMatchObject({ t: "failed" });

    await server.start();
    await within(Promise.all(cluster.map((i) => i.broker.whenState("ready"))), 10_000, "reconnect");
    expect(await a.broker.publish(Topic.broadcast, "after")).toMatchObject({ t: "sent", remote: 1 });
    await syncAll(cluster);
    expect(inbox.items).toEqual(["after"]);
    expect(a.broker.stats.publishFailures).toBe(1);
  }, 30_000);
});

describe("instance death", () => {
  test("an instance that stops refreshing disappears with its devices after the TTL", async () => {
    const prefix = uniquePrefix();
    const short = { ttlMs: 400, refreshIntervalMs: 100 };
    const a = await startInstance(server.url, prefix, "a", short);
    const d = await startInstance(server.url, prefix, "d", short);
    cluster = [a];
    await d.directory.claim("aa:20", "sd");
    await d.directory.refresh();
    const before = await a.directory.instances();
    expect(before.instances.map((i) => i.instanceId).sort()).toEqual([a.directory.instanceId, d.directory.instanceId].sort());
    expect(await a.directory.lookup("aa:20")).toMatchObject({ t: "connected" });

    // Watch Redis expire d's keys: an event, not a guess at timing.
    const watcher = new Redis(server.url);
    try {
      await watcher.config("SET", "notify-keyspace-events", "Ex");
      const expected = new Set([`${prefix}device:aa:20`, `${prefix}instance:${d.directory.instanceId}`]);
      const allExpired = Promise.withResolvers<void>();
      watcher.on("message", (_channel: string, key: string) => {
        expected.delete(key);
        if (expected.size === 0) allExpired.resolve();
      });
      await watcher.subscribe("__keyevent@0__:expired");

      // d dies: its connections drop, nothing refreshes or removes its entries any more.
      await d.broker.close();
      await within(allExpired.promise, 5_000, "d's entries to expire");
    } finally {
      watcher.disconnect();
      await d.directory.close();
    }

    expect(await a.directory.lookup("aa:20")).toEqual({ t: "absent" });
    const after = await a.directory.instances();
    expect(after).toMatchObject({ t: "cluster", instances: [{ instanceId: a.directory.instanceId }] });
    expect(after.instances.length).toBe(1);
  }, 30_000);
});
