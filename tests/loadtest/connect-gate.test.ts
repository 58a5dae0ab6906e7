import { describe, expect, test } from "bun:test";
import { ConnectGate } from "../../src/loadtest/connect-gate";

describe("ConnectGate", () => {
  test("admits at most `limit`, hands slots on in FIFO order, refuses everyone once closed", async () => {
    const gate = new ConnectGate(2);
    expect(await gate.acquire()).toBe(true);
    expect(await gate.acquire()).toBe(true);
    const order: string[] = [];
    const third = gate.acquire().then((ok) => order.push(`third ${ok}`));
    const fourth = gate.acquire().then((ok) => order.push(`fourth ${ok}`));
    gate.release();
    await third;
    expect(order).toEqual(["third true"]);
    gate.close();
    await fourth;
    expect(order).toEqual(["third true", "fourth false"]);
    expect(await gate.acquire()).toBe(false);
  });
});
