import { describe, expect, test } from "bun:test";
import { parseEntry, formatEntry } from "../../src/fanout/directory-entry";
import { DuplicateFilter } from "../../src/fanout/duplicate-filter";
import { encodeEnvelope, envelopePayload, readEnvelopeHeader } from "../../src/fanout/fanout-envelope";
import { checkInstanceId, newInstanceId } from "../../src/fanout/instance-id";

const origin = Buffer.from("gw-1", "latin1");

describe("fanout envelope", () => {
  test("text and bytes round-trip with origin and sequence", () => {
    const text = encodeEnvelope(origin, 7, "héllo 👋");
    const head = readEnvelopeHeader(text);
    expect(head).toEqual({ origin: "gw-1", seq: 7, text: true, payloadStart: 15 });
    expect(envelopePayload(text, head!)).toBe("héllo 👋");

    const bytes = Uint8Array.from({ length: 300 }, (_, i) => i % 256);
    const bin = encodeEnvelope(origin, 2 ** 40 + 3, bytes);
    const binHead = readEnvelopeHeader(bin)!;
    expect(binHead.seq).toBe(2 ** 40 + 3);
    expect(binHead.text).toBe(false);
    expect(Buffer.from(envelopePayload(bin, binHead) as Uint8Array).equals(bytes)).toBe(true);
    // Header plus payload as is: no base64 or JSON inflation.
    expect(bin.length).toBe(15 + 300);
  });

  test("anything else is not an envelope", () => {
    expect(readEnvelopeHeader(Buffer.from("plain text from someone else"))).toBeUndefined();
    expect(readEnvelopeHeader(Buffer.alloc(0))).toBeUndefined();
    const cut = encodeEnvelope(origin, 1, "x").subarray(0, 8);
    expect(readEnvelopeHeader(cut)).toBeUndefined();
  });
});

describe("DuplicateFilter", () => {
  test("accepts each origin/sequence once, tolerating gaps and reordering within the window", () => {
    const f = new DuplicateFilter();
    expect(f.accept("a", 1)).toBe(true);
    expect(f.accept("a", 1)).toBe(false);
    expect(f.accept("b", 1)).toBe(true);
    expect(f.accept("a", 5)).toBe(true);
    expect(f.accept("a", 3)).toBe(true);
    expect(f.accept("a", 3)).toBe(false);
    expect(f.accept("a", 5)).toBe(false);
    expect(f.accept("a", 40)).toBe(true);
    expect(f.accept("a", 9)).toBe(true);
    expect(f.accept("a", 9)).toBe(false);
    // Further behind than the window: dropped rather than risk a repeat.
    expect(f.accept("a", 8)).toBe(false);
  });

  test("the window's top bit works", () => {
    const f = new DuplicateFilter();
    f.accept("a", 100);
    expect(f.accept("a", 69)).toBe(true);
    expect(f.accept("a", 69)).toBe(false);
    expect(f.accept("a", 101)).toBe(true);
    expect(f.accept("a", 69)).toBe(false);
  });
});

describe("directory entry", () => {
  test("round-trips, session id may hold spaces", () => {
    const location = { sinceMs: 1_700_000_000_000, instanceId: "gw-1", sessionId: "s 1" };
    expect(parseEntry(formatEntry(location))).toEqual(location);
    expect(parseEntry("garbage")).toBeUndefined();
    expect(parseEntry("x gw s")).toBeUndefined();
  });
});

describe("instance id", () => {
  test("fresh ids are valid and distinct", () => {
    const a = newInstanceId();
    expect(checkInstanceId(a)).toBe(a);
    expect(newInstanceId()).not.toBe(a);
  });
});
