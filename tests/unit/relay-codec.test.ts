import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  AudioSchema,
  type DeviceEvent,
  DeviceEventSchema,
  EndReason,
  EndSchema,
  HeartbeatSchema,
  HelloSchema,
  ListenSchema,
  ListenState,
  RelayRequestSchema,
  RelayResponseSchema,
  type ServerEvent,
  ServerEventSchema,
  SttSchema,
  TtsSchema,
  TtsState,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { grpcFrame } from "../../src/grpc-frames";
import { relayBatchCodec } from "../../src/relay-codec";

const requestCodec = relayBatchCodec(RelayRequestSchema, DeviceEventSchema);
const responseCodec = relayBatchCodec(RelayResponseSchema, ServerEventSchema);
const encodeRelayRequestFrame = (events: readonly DeviceEvent[]) => requestCodec.encodeFrame(events);
const encodeRelayResponseFrame = (events: readonly ServerEvent[]) => responseCodec.encodeFrame(events);
const decodeRelayRequest = (body: Uint8Array) => requestCodec.decode(body);
const decodeRelayResponse = (body: Uint8Array) => responseCodec.decode(body);

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

const deviceAudio = (sessionKey: number, opus: Uint8Array, seq: number, timestampMs: number): DeviceEvent =>
  create(DeviceEventSchema, { sessionKey, event: { case: "audio", value: create(AudioSchema, { opus, seq, timestampMs }) } });
const serverAudio = (sessionKey: number, opus: Uint8Array, timestampMs: number): ServerEvent =>
  create(ServerEventSchema, { sessionKey, event: { case: "audio", value: create(AudioSchema, { opus, timestampMs }) } });

/** Batches covering every size class of every field, and events the codec leaves to protobuf-es. */
const requests: DeviceEvent[][] = [
  [],
  [deviceAudio(1, bytes(120), 0, 0)],
  [deviceAudio(0, new Uint8Array(0), 0, 0)],
  [
    deviceAudio(2 ** 32 - 1, bytes(300), 2 ** 32 - 1, 2 ** 31),
    deviceAudio(127, bytes(127), 128, 16_383),
    deviceAudio(16_384, bytes(20_000), 2_097_152, 268_435_456),
  ],
  [
    create(DeviceEventSchema, { sessionKey: 3, event: { case: "hello", value: create(HelloSchema, { sessionId: "s-1", deviceId: "aa:bb" }) } }),
    deviceAudio(3, bytes(60), 1, 60),
    create(DeviceEventSchema, { sessionKey: 3, event: { case: "listen", value: create(ListenSchema, { state: ListenState.STOP }) } }),
    create(DeviceEventSchema, { sessionKey: 0, event: { case: "heartbeat", value: create(HeartbeatSchema, { sentAtMs: 1_700_000_000_000n }) } }),
    create(DeviceEventSchema, { sessionKey: 3, event: { case: "end", value: create(EndSchema, { reason: EndReason.DEVICE_GONE, detail: "bye" }) } }),
    create(DeviceEventSchema, { sessionKey: 4 }),
  ],
];
const responses: ServerEvent[][] = [
  [serverAudio(1, bytes(120), 0)],
  [serverAudio(9, bytes(200), 123_456), serverAudio(0, new Uint8Array(0), 0)],
  [
    create(ServerEventSchema, { sessionKey: 5, event: { case: "stt", value: create(SttSchema, { text: "你好" }) } }),
    serverAudio(5, bytes(90), 60),
    create(ServerEventSchema, { sessionKey: 5, event: { case: "tts", value: create(TtsSchema, { state: TtsState.SENTENCE_START, text: "Hi." }) } }),
  ],
];

describe("Relay codec: the bytes are protobuf-es's", () => {
  test("it is made only for a batch and event of Relay's shape", () => {
    expect(() => relayBatchCodec(RelayRequestSchema, ServerEventSchema)).toThrow(/not a Relay batch and event/);
    expect(() => relayBatchCodec(SttSchema, ServerEventSchema)).toThrow(/not a Relay batch and event/);
  });

  test("requests: one gRPC frame, byte for byte what protobuf-es and the reflective framing write", () => {
    for (const events of requests) {
      expect(encodeRelayRequestFrame(events)).toEqual(grpcFrame(toBinary(RelayRequestSchema, create(RelayRequestSchema, { events }))));
    }
  });

  test("responses: likewise", () => {
    for (const events of responses) {
      expect(encodeRelayResponseFrame(events)).toEqual(grpcFrame(toBinary(RelayResponseSchema, create(RelayResponseSchema, { events }))));
    }
  });

  test("decoding gives what protobuf-es decodes, audio payloads included", () => {
    for (const events of requests) {
      const body = toBinary(RelayRequestSchema, create(RelayRequestSchema, { events }));
      const ours = decodeRelayRequest(body);
      expect(toBinary(RelayRequestSchema, ours)).toEqual(body);
      expect(ours.events.map((e) => e.event.case)).toEqual(events.map((e) => e.event.case));
    }
    for (const events of responses) {
      const body = toBinary(RelayResponseSchema, create(RelayResponseSchema, { events }));
      const ours = decodeRelayResponse(body);
      expect(toBinary(RelayResponseSchema, ours)).toEqual(body);
      const audio = ours.events.find((e) => e.event.case === "audio");
      const original = events.find((e) => e.event.case === "audio");
      if (audio?.event.case === "audio" && original?.event.case === "audio") {
        expect(audio.event.value.opus).toEqual(original.event.value.opus);
        expect(audio.event.value.timestampMs).toBe(original.event.value.timestampMs);
        expect(audio.sessionKey).toBe(original.sessionKey);
      }
    }
  });
});

/**
 * The reference decoding of a batch, from protobuf-es's own reader: each `events` entry (field
 * 1, length-delimited) decoded by protobuf-es from exactly the bytes its length gives; any
 * other top-level field skipped. (Decoding the whole batch in one `fromBinary` is laxer: it
 * lets an event's fields run past its length, and reads a known field sent with the wrong
 * wire type into the next bytes. The codec keeps each event within its length.)
 */
function reference(body: Uint8Array, request: boolean): Uint8Array {
  const events: (DeviceEvent | ServerEvent)[] = [];
  const reader = new BinaryReader(body);
  while (reader.pos < reader.len) {
    const [field, wire] = reader.tag();
    if (field !== 1 || wire !== WireType.LengthDelimited) {
      reader.skip(wire, field);
      continue;
    }
    const slice = reader.bytes();
    events.push(request ? fromBinary(DeviceEventSchema, slice) : fromBinary(ServerEventSchema, slice));
  }
  const known = { writeUnknownFields: false };
  return request
    ? toBinary(RelayRequestSchema, create(RelayRequestSchema, { events: events as DeviceEvent[] }), known)
    : toBinary(RelayResponseSchema, create(RelayResponseSchema, { events: events as ServerEvent[] }), known);
}

describe("Relay codec: what any conformant encoder may send", () => {
  // Hand-written wire bytes: (field << 3 | wire type), then the value.
  const event = (...inner: number[]) => [0x0a, inner.length, ...inner];

  test("fields in any order, unknown fields, and long varints", () => {
    // ServerEvent{ audio{ timestamp=5, opus=[1,2], unknown fixed32 }, session_key=7 as a 10-byte varint }, plus an unknown top-level field.
    const body = Uint8Array.from([
      ...event(0x12, 11, 0x18, 5, 0x0a, 2, 1, 2, 0x2d, 0, 0, 0, 0, 0x08, 0x87, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00),
      0x10,
      0x01,
    ]);
    const theirs = fromBinary(RelayResponseSchema, body);
    const ours = decodeRelayResponse(body);
    expect(ours.events).toHaveLength(1);
    expect(ours.events[0]!.sessionKey).toBe(theirs.events[0]!.sessionKey);
    expect(ours.events[0]!.sessionKey).toBe(7);
    const e = ours.events[0]!.event;
    expect(e.case === "audio" && [e.value.opus, e.value.timestampMs]).toEqual([Uint8Array.from([1, 2]), 5]);
  });

  test("an audio case set twice is merged as protobuf-es merges it", () => {
    const body = Uint8Array.from([...event(0x08, 1, 0x12, 4, 0x0a, 2, 9, 9, 0x12, 2, 0x18, 3)]);
    expect(toBinary(RelayResponseSchema, decodeRelayResponse(body))).toEqual(toBinary(RelayResponseSchema, fromBinary(RelayResponseSchema, body)));
  });

  test("truncated or malformed input throws an Error, as protobuf-es does", () => {
    const good = toBinary(RelayResponseSchema, create(RelayResponseSchema, { events: responses[1]! }));
    for (let cut = 1; cut < good.length; cut++) {
      const body = good.subarray(0, cut);
      let theirs: unknown;
      try {
        theirs = fromBinary(RelayResponseSchema, body);
      } catch {
        theirs = "threw";
      }
      if (theirs === "threw") expect(() => decodeRelayResponse(body)).toThrow(Error);
      else expect(toBinary(RelayResponseSchema, decodeRelayResponse(body))).toEqual(toBinary(RelayResponseSchema, theirs as never));
    }
  });

  test("fuzz: every mutated batch decodes as protobuf-es decodes each of its events, or both refuse it", () => {
    // A deterministic PRNG: a failure names its case and can be replayed.
    let state = 0x2545f491;
    const rand = (n: number) => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % n;
    };
    const seeds = [...requests, ...responses].map((events, i) =>
      i < requests.length
        ? { request: true, body: toBinary(RelayRequestSchema, create(RelayRequestSchema, { events: events as DeviceEvent[] })) }
        : { request: false, body: toBinary(RelayResponseSchema, create(RelayResponseSchema, { events: events as ServerEvent[] })) },
    );
    let decoded = 0;
    for (let k = 0; k < 4000; k++) {
      const seed = seeds[rand(seeds.length)]!;
      if (seed.body.length === 0) continue;
      const body = Uint8Array.from(seed.body);
      for (let m = 1 + rand(3); m > 0; m--) body[rand(body.length)] = rand(256);
      const run = (f: () => Uint8Array) => {
        try {
          return f();
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return "threw";
        }
      };
      const known = { writeUnknownFields: false };
      const theirs = run(() => reference(body, seed.request));
      const ours = run(() =>
        seed.request ? toBinary(RelayRequestSchema, decodeRelayRequest(body), known) : toBinary(RelayResponseSchema, decodeRelayResponse(body), known),
      );
      expect({ k, ours }).toEqual({ k, ours: theirs });
      if (ours !== "threw") decoded++;
    }
    // Most mutations still decode: the fast path is exercised, not only refusals.
    expect(decoded).toBeGreaterThan(2000);
  });
});
