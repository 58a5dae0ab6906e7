import { describe, expect, test } from "bun:test";
import { createFanout } from "../../src/fanout/create-fanout";
import { LocalBroker } from "../../src/fanout/local-broker";
import { LocalDeviceDirectory } from "../../src/fanout/local-device-directory";
import { Topic } from "../../src/fanout/topic";
import { describeBrokerContract, describeDirectoryContract } from "./contract";

describeBrokerContract("LocalBroker", async () => {
  const broker = new LocalBroker();
  return { brokers: [broker], sync: async () => {}, close: () => broker.close() };
});

describeDirectoryContract("LocalDeviceDirectory", async (connections) => {
  const directory = new LocalDeviceDirectory({ connections });
  return { directory, close: () => directory.close() };
});

describe("LocalBroker", () => {
  test("handlers run synchronously inside publish, with the payload object as given", () => {
    const broker = new LocalBroker();
    const bytes = new Uint8Array([9, 8, 7]);
    let got: unknown;
    broker.subscribe(Topic.broadcast, (payload) => {
      got = payload;
    });
    void broker.publish(Topic.broadcast, bytes);
    expect(got).toBe(bytes);
    expect(broker.stats.published).toBe(1);
  });

  test("a handler may unsubscribe itself while being called", async () => {
    const broker = new LocalBroker();
    const seen: string[] = [];
    const sub = broker.subscribe("t", () => {
      seen.push("first");
      sub.unsubscribe();
    });
    broker.subscribe("t", () => seen.push("second"));
    await broker.publish("t", "a");
    await broker.publish("t", "b");
    expect(seen).toEqual(["first", "second", "second"]);
  });

  test("a throwing handler is counted", async () => {
    const broker = new LocalBroker();
    broker.subscribe("t", () => {
      throw new Error("bug");
    });
    await broker.publish("t", "a");
    expect(broker.stats.handlerErrors).toBe(1);
  });

  test("a bad instance id is refused with a clear error", () => {
    expect(() => new LocalBroker({ instanceId: "has space" })).toThrow(/instance id must match/);
  });
});

describe("createFanout without REDIS_URL", () => {
  test("is the in-process pair with one instance id and one stats object", async () => {
    const fanout = createFanout({ redisUrl: "", instanceId: "solo", connections: () => 3 });
    expect(fanout.broker).toBeInstanceOf(LocalBroker);
    expect(fanout.directory).toBeInstanceOf(LocalDeviceDirectory);
    expect(fanout.broker.instanceId).toBe("solo");
    expect(fanout.directory.instanceId).toBe("solo");
    expect(fanout.broker.state).toBe("local");
    await fanout.directory.claim("aa:01", "s1");
    expect(fanout.stats.claims).toBe(1);
    const view = await fanout.directory.instances();
    expect(view).toMatchObject({ t: "cluster", instances: [{ instanceId: "solo", connections: 3 }] });
    await fanout.close();
    expect(fanout.broker.state).toBe("closed");
  });
});
