import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import type { Broker, FanoutPayload } from "../../src/fanout/broker";
import type { DeviceDirectory, Takeover } from "../../src/fanout/device-directory";
import { Topic } from "../../src/fanout/topic";
import { Inbox } from "./fanout-test-kit";

/** Brokers standing in for gateway instances (one for the local broker). */
export interface BrokerCluster {
  readonly brokers: readonly Broker[];
  /** Resolves once every message published so far has been handled everywhere. */
  sync(): Promise<void>;
  close(): Promise<void>;
}

/**
 * The {@link Broker} contract, the same for every implementation: what any instance publishes
 * reaches each subscription of its topic on every instance exactly once (while the link is up).
 */
export function describeBrokerContract(name: string, open: () => Promise<BrokerCluster>): void {
  describe(`${name}: broker contract`, () => {
    let cluster: BrokerCluster;
    beforeEach(async () => {
      cluster = await open();
    });
    afterEach(async () => {
      await cluster.close();
    });

    const publisher = (): Broker => cluster.brokers[0]!;
    const last = (): Broker => cluster.brokers[cluster.brokers.length - 1]!;

    test("a publish reaches each subscriber of its topic on every instance once, and no other topic", async () => {
      const onTopic = cluster.brokers.map(() => new Inbox());
      const onOther = cluster.brokers.map(() => new Inbox());
      cluster.brokers.forEach((b, i) => {
        b.subscribe("t", onTopic[i]!.handler);
        b.subscribe("u", onOther[i]!.handler);
      });
      await cluster.sync();
      const receipt = await publisher().publish("t", "hello");
      await cluster.sync();
      expect(receipt).toEqual({ t: "sent", local: 1, remote: cluster.brokers.length - 1 });
      for (const inbox of onTopic) expect(inbox.items).toEqual(["hello"]);
      for (const inbox of onOther) expect(inbox.items).toEqual([]);
    });

    test("unsubscribe stops delivery to that subscription only, and is idempotent", async () => {
      const kept = new Inbox();
      const dropped = new Inbox();
      last().subscribe("t", kept.handler);
      const sub = last().subscribe("t", dropped.handler);
      await cluster.sync();
      sub.unsubscribe();
      sub.unsubscribe();
      await cluster.sync();
      await publisher().publish("t", "one");
      await cluster.sync();
      expect(kept.items).toEqual(["one"]);
      expect(dropped.items).toEqual([]);
    });

    test("the last unsubscribe of a topic ends its delivery", async () => {
      const inbox = new Inbox();
      const sub = last().subscribe("t", inbox.handler);
      await cluster.sync();
      sub.unsubscribe();
      await cluster.sync();
      const receipt = await publisher().publish("t", "gone");
      await cluster.sync();
      expect(inbox.items).toEqual([]);
      expect(receipt).toEqual({ t: "sent", local: 0, remote: 0 });
    });

    test("bytes arrive byte-exact and text unchanged", async () => {
      const inboxes = cluster.brokers.map((b) => {
        const inbox = new Inbox();
        b.subscribe("bin", inbox.handler);
        return inbox;
      });
      await cluster.sync();
      const every = Uint8Array.from({ length: 256 * 4 }, (_, i) => i % 256);
      const big = crypto.getRandomValues(new Uint8Array(64 * 1024));
      const text = "你好, xiaozhi 👋 \u0000 end";
      const sent: FanoutPayload[] = [every, new Uint8Array(0), big, text, ""];
      for (const payload of sent) await publisher().publish("bin", payload);
      await cluster.sync();
      for (const inbox of inboxes) {
        expect(inbox.items.length).toBe(sent.length);
        inbox.items.forEach((got, i) => {
          const want = sent[i]!;
          if (typeof want === "string") expect(got).toBe(want);
          else {
            expect(got).toBeInstanceOf(Uint8Array);
            expect(Buffer.from(got as Uint8Array).equals(want)).toBe(true);
          }
        });
      }
    });

    test("all handlers of an instance share one decoded payload", async () => {
      const perBroker = cluster.brokers.map((b) =>
        [1, 2, 3].map(() => {
          const inbox = new Inbox();
          b.subscribe(Topic.broadcast, inbox.handler);
          return inbox;
        }),
      );
      await cluster.sync();
      await publisher().publish(Topic.broadcast, new Uint8Array([1, 2, 3]));
      await publisher().publish(Topic.broadcast, "text");
      await cluster.sync();
      for (const inboxes of perBroker) {
        for (const k of [0, 1]) {
          const first = inboxes[0]!.items[k];
          expect(first).toBeDefined();
          for (const inbox of inboxes) expect(inbox.items[k]).toBe(first!);
        }
      }
    });

    test("a throwing handler neither stops the others nor the publisher", async () => {
      const inbox = new Inbox();
      for (const b of cluster.brokers) {
        b.subscribe("t", () => {
          throw new Error("consumer bug");
        });
        b.subscribe("t", inbox.handler);
      }
      await cluster.sync();
      const receipt = await publisher().publish("t", "still");
      await cluster.sync();
      expect(receipt.t).toBe("sent");
      expect(inbox.items).toEqual(cluster.brokers.map(() => "still"));
    });

    test("a device topic reaches only the instance where that device subscribed", async () => {
      const here = new Inbox();
      const elsewhere = new Inbox();
      for (const b of cluster.brokers) {
        if (b === last()) b.subscribe(Topic.device("aa:01"), here.handler);
        else b.subscribe(Topic.device("aa:02"), elsewhere.handler);
      }
      await cluster.sync();
      const receipt = await publisher().publish(Topic.device("aa:01"), '{"type":"alert"}');
      const nobody = await publisher().publish(Topic.device("aa:99"), "x");
      await cluster.sync();
      expect(here.items).toEqual(['{"type":"alert"}']);
      expect(elsewhere.items).toEqual([]);
      const local = cluster.brokers.length === 1 ? 1 : 0;
      expect(receipt).toEqual({ t: "sent", local, remote: 1 - local });
      // Nowhere subscribed: what /api/devices/{id}/messages turns into 404.
      expect(nobody).toEqual({ t: "sent", local: 0, remote: 0 });
    });
  });
}

/** One directory (as a single instance sees it). */
export interface DirectoryHarness {
  readonly directory: DeviceDirectory;
  close(): Promise<void>;
}

/** The {@link DeviceDirectory} contract on one instance. */
export function describeDirectoryContract(name: string, open: (connections: () => number) => Promise<DirectoryHarness>): void {
  describe(`${name}: directory contract`, () => {
    let harness: DirectoryHarness;
    let connections = 0;
    const takeovers: Takeover[] = [];
    beforeEach(async () => {
      takeovers.length = 0;
      harness = await open(() => connections);
      harness.directory.onTakeover((t) => takeovers.push(t));
    });
    afterEach(async () => {
      await harness.close();
    });

    test("claim registers the session; lookup finds it", async () => {
      const d = harness.directory;
      const result = await d.claim("aa:01", "s1");
      expect(result).toEqual({ t: "claimed", previous: undefined });
      const found = await d.lookup("aa:01");
      expect(found.t).toBe("connected");
      if (found.t !== "connected") return;
      expect(found.location.instanceId).toBe(d.instanceId);
      expect(found.location.sessionId).toBe("s1");
      expect(Math.abs(found.location.sinceMs - Date.now())).toBeLessThan(10_000);
      expect(await d.lookup("aa:02")).toEqual({ t: "absent" });
      expect(d.size).toBe(1);
    });

    test("a newer session on the same instance replaces the entry without a takeover notice", async () => {
      const d = harness.directory;
      await d.claim("aa:01", "s1");
      const result = await d.claim("aa:01", "s2");
      expect(result.t).toBe("claimed");
      if (result.t !== "claimed") return;
      expect(result.previous?.sessionId).toBe("s1");
      expect(result.previous?.instanceId).toBe(d.instanceId);
      const found = await d.lookup("aa:01");
      expect(found.t === "connected" && found.location.sessionId).toBe("s2");
      expect(takeovers).toEqual([]);
    });

    test("release removes only the session that is still registered", async () => {
      const d = harness.directory;
      await d.claim("aa:01", "s1");
      await d.claim("aa:01", "s2");
      expect(await d.release("aa:01", "s1")).toBe(false);
      expect((await d.lookup("aa:01")).t).toBe("connected");
      expect(await d.release("aa:01", "s2")).toBe(true);
      expect(await d.lookup("aa:01")).toEqual({ t: "absent" });
      expect(await d.release("aa:01", "s2")).toBe(false);
      expect(d.size).toBe(0);
    });

    test("instances lists this one with its connection count", async () => {
      connections = 7;
      const view = await harness.directory.instances();
      expect(view.t).toBe("cluster");
      const self = view.instances.find((i) => i.instanceId === harness.directory.instanceId);
      expect(self?.connections).toBe(7);
    });
  });
}
