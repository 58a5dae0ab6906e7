/**
 * Micro-benchmarks of the gateway's hot path, named `subject/op/fixture`.
 *
 *   bun bench/micro.bench.ts [--quick] [--json <path>] [--filter <regex>]
 *
 * Prints mitata's table (heap rows come from mitata: bun:jsc memoryUsage().current deltas per
 * batch, which mostly cannot see short-lived garbage), then a table of GC-heap bytes allocated
 * per op measured here (heap capacity growth after a full GC; see allocPerOp). `--json` writes
 * `{machine, date, results: [{name, avgNs, p50Ns, p99Ns, minNs, maxNs, heapBytes?, allocBytes?}]}`.
 * `--quick` lowers mitata's per-benchmark CPU-time budget from 642 ms to 80 ms.
 * mitata times fast calls in batches of 4096: for those, p50/p99/min/max are over batch means,
 * not single calls; calls over ~65 us (relay 256, jwt, fan-out) are timed one by one.
 * Fan-out clients live in this process, so a round includes their receiving too.
 *
 * Numbers from these shared 2-core machines are noisy: compare ratios within one run.
 */
import { cpus, release as osRelease, platform, arch as osArch, availableParallelism } from "node:os";
import { heapStats, memoryUsage } from "bun:jsc";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { relayBatchCodec } from "../src/relay-codec";
import { B, bench, do_not_optimize, group, measure, run, summary } from "mitata";
import { DeviceEventSchema, RelayRequestSchema, RelayResponseSchema, ServerEventSchema, TtsState, type ServerEvent } from "../gen/xiaozhi/ai/v1/ai_pb";
import { mintToken } from "../src/auth/mint-token";
import { createTokenVerifier } from "../src/auth/token-verifier";
import { decodeFrame, FrameEncoder, newDecodedFrame, type ProtocolVersion } from "../src/device/frame-codec";
import { parseDeviceMessage } from "../src/device/parse-device-message";
import { audioEvent, deliver } from "../src/upstream/translate";
import type { UpstreamSink } from "../src/upstream/upstream";

// ---------------------------------------------------------------- options

interface Options {
  quick: boolean;
  jsonPath: string | undefined;
  filter: RegExp | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { quick: false, jsonPath: undefined, filter: undefined };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") o.quick = true;
    else if (a === "--json" || a === "--filter") {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new Error(`${a} needs a value`);
      if (a === "--json") o.jsonPath = v;
      else o.filter = new RegExp(v);
    } else if (a === "--help" || a === "-h") {
      console.log("usage: bun bench/micro.bench.ts [--quick] [--json <path>] [--filter <regex>]");
      process.exit(0);
    } else throw new Error(`unknown argument ${JSON.stringify(a)}`);
  }
  return o;
}

const opts = parseArgs(Bun.argv.slice(2));

/** mitata's own default per-benchmark budget (lib.mjs k_min_cpu_time) is 642 ms. */
const QUICK_MIN_CPU_TIME_NS = 80e6;

// mitata 1.0.34's bench().run() passes no min_cpu_time to measure(), so --quick swaps in a
// run() that is the same as mitata's for static benchmarks (same heap probe, same gc modes),
// plus a smaller budget. Benchmarks with .args() keep mitata's own run().
interface MitataTrialInternals {
  f: Parameters<typeof measure>[0];
  _args: Record<string, unknown[]>;
  _name: string;
  _group: number;
  _gc: "once" | "inner" | boolean;
  flags: number;
  _highlight: string | false;
}
if (opts.quick) {
  const mitataRun = B.prototype.run;
  const BASELINE_FLAG = 1 << 1;
  const COMPACT_FLAG = 1 << 0;
  B.prototype.run = async function (this: B, thrw = false) {
    const self = this as unknown as MitataTrialInternals;
    if (Object.keys(self._args).length > 0) return mitataRun.call(this, thrw);
    const tune = {
      inner_gc: self._gc === "inner",
      gc: !self._gc ? false : undefined,
      heap: () => memoryUsage().current,
      min_cpu_time: QUICK_MIN_CPU_TIME_NS,
    };
    let stats: Awaited<ReturnType<typeof measure>> | undefined;
    let error: unknown;
    try {
      stats = await measure(self.f as () => unknown, tune as Parameters<typeof measure>[1]);
    } catch (err) {
      error = err;
      if (thrw) throw err;
    }
    return {
      kind: "static",
      args: self._args,
      alias: self._name,
      group: self._group,
      baseline: !!(self.flags & BASELINE_FLAG),
      runs: [{ stats, error, args: {}, name: self._name }],
      style: { highlight: self._highlight, compact: !!(self.flags & COMPACT_FLAG) },
    } as unknown as Awaited<ReturnType<B["run"]>>;
  } as B["run"];
}

// ---------------------------------------------------------------- fixtures

/** One 60 ms Opus packet as the firmware sends it (~120 bytes at 16 kHz, 24 kbit/s). */
const OPUS_BYTES = 120;

function opusPacket(seed: number): Uint8Array {
  const p = new Uint8Array(OPUS_BYTES);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < p.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    p[i] = x & 0xff;
  }
  p[0] = 0x58; // a plausible TOC byte: SILK-only wideband, 60 ms
  return p;
}

const payload = opusPacket(1);

/** Each wire frame as its own buffer, the way a websocket message arrives. */
function wireFrame(version: ProtocolVersion): Uint8Array {
  return new FrameEncoder(version).encode(payload, 123_456).slice();
}
const wire = { 1: wireFrame(1), 2: wireFrame(2), 3: wireFrame(3) } as const;

// The session's own reusable objects (device-session.ts keeps one of each per connection).
const decoded = newDecodedFrame();
const encoders = { 1: new FrameEncoder(1), 2: new FrameEncoder(2), 3: new FrameEncoder(3) } as const;
let timestampMs = 0;
/** The next frame's timestamp: 60 ms on, as a device's stream advances. */
function nextTimestampMs(): number {
  timestampMs += 60;
  return timestampMs;
}

const deviceJson = {
  // docs/device-protocol.md, verbatim firmware shapes.
  hello:
    '{"type":"hello","version":1,"features":{"mcp":true,"aec":true},"transport":"websocket",' +
    '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}',
  "listen-start": '{"session_id":"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f","type":"listen","state":"start","mode":"auto"}',
  mcp:
    '{"session_id":"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f","type":"mcp","payload":{"jsonrpc":"2.0","id":2,' +
    '"result":{"content":[{"type":"text","text":"{\\"volume\\":60,\\"brightness\\":80}"}],"isError":false}}}',
  "envelope-listen":
    '{"type":"listen","data":{"session_id":"6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f","state":"detect","text":"你好小智"},' + '"timestamp":1767225600000}',
} as const;
// A fixture that no longer parses would benchmark the error path: fail loudly instead.
for (const text of Object.values(deviceJson)) parseDeviceMessage(text);

const noopSink: UpstreamSink = {
  onAudio(opus, ts) {
    do_not_optimize(opus);
    do_not_optimize(ts);
  },
  onMessage(m) {
    do_not_optimize(m);
  },
  onClose() {},
  onStatus() {},
  onFatal() {},
};

const serverAudio: ServerEvent = create(ServerEventSchema, {
  sessionKey: 7,
  event: { case: "audio", value: { opus: payload, seq: 1, timestampMs: 60 } },
});
const serverTtsSentence: ServerEvent = create(ServerEventSchema, {
  sessionKey: 7,
  event: { case: "tts", value: { state: TtsState.SENTENCE_START, text: "今天天气很好，适合出去走走。" } },
});

const deviceAudio = audioEvent(payload, 42, 2_520, 7);
const deviceAudioBytes = toBinary(DeviceEventSchema, deviceAudio);

/** A Relay batch: `n` sessions' audio frames of one event-loop turn, each its own packet. */
function relayRequest(n: number) {
  return create(RelayRequestSchema, {
    events: Array.from({ length: n }, (_, i) => audioEvent(opusPacket(i + 10), 100 + i, 6_000 + 60 * i, i + 1)),
  });
}
const relayRequests = { 1: relayRequest(1), 32: relayRequest(32), 256: relayRequest(256) } as const;
const relayRequest256Bytes = toBinary(RelayRequestSchema, relayRequests[256]);

const relayResponse256Bytes = toBinary(
  RelayResponseSchema,
  create(RelayResponseSchema, {
    events: Array.from({ length: 256 }, (_, i) =>
      create(ServerEventSchema, {
        sessionKey: i + 1,
        event: { case: "audio", value: { opus: opusPacket(i + 1000), seq: i, timestampMs: 60 * i } },
      }),
    ),
  }),
);

const JWT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef";
const verifier = createTokenVerifier({ secret: JWT_SECRET });
const deviceToken = await mintToken({
  secret: JWT_SECRET,
  deviceId: "AA:BB:CC:DD:EE:FF",
  subject: "user-1234",
  claims: { client_id: "0d7a5c2e-1f3b-4a6c-9d8e-7f6a5b4c3d2e", plan: "pro" },
});
await verifier.verify(deviceToken); // a token the verifier refuses would time the error path

// ---------------------------------------------------------------- synchronous cases

/** A benchmark that is also measured for allocation per op. */
interface Case {
  readonly name: string;
  readonly fn: () => unknown;
}

const cases: Case[] = [];
/**
 * Registers `fn` with mitata and for the allocation probe. `fn` is warmed first: mitata times a
 * single first call to decide whether to batch, and a one-off lazy initialisation there (protobuf-es
 * builds its per-schema tables on the first fromBinary) makes it time every call alone, each right
 * after a forced GC: device-event/from-binary then read ~35 us instead of ~0.4 us.
 * `gc`: "inner" runs a full GC before every batch of calls (cleaner heap figures); keep "once" for
 * calls too slow to batch (> ~65 us), where "inner" would time each call just after a full GC.
 */
function hot(name: string, fn: () => unknown, gc: "inner" | "once" = "inner"): void {
  for (let i = 0; i < 200; i++) fn();
  cases.push({ name, fn });
  bench(name, fn).gc(gc);
}

group("frame codec (120-byte Opus, 60 ms)", () => {
  summary(() => {
    for (const v of [1, 2, 3] as const) {
      const data = wire[v];
      hot(`frame-v${v}/decode/60ms`, () => do_not_optimize(decodeFrame(v, data, decoded)));
    }
  });
  summary(() => {
    for (const v of [1, 2, 3] as const) {
      const enc = encoders[v];
      hot(`frame-v${v}/encode/60ms`, () => do_not_optimize(enc.encode(payload, nextTimestampMs())));
    }
  });
});

group("device JSON", () => {
  for (const [fixture, text] of Object.entries(deviceJson)) {
    hot(`device-message/parse/${fixture}`, () => do_not_optimize(parseDeviceMessage(text)));
  }
});

group("translate (device <-> proto)", () => {
  let seq = 0;
  hot("device-event/build/audio-60ms", () => do_not_optimize(audioEvent(payload, seq++, nextTimestampMs(), 7)));
  hot("server-event/deliver/audio-60ms", () => do_not_optimize(deliver(serverAudio, noopSink)));
  hot("server-event/deliver/tts-sentence", () => do_not_optimize(deliver(serverTtsSentence, noopSink)));
});

group("protobuf-es v2 binary", () => {
  hot("device-event/to-binary/audio-60ms", () => do_not_optimize(toBinary(DeviceEventSchema, deviceAudio)));
  hot("device-event/from-binary/audio-60ms", () => do_not_optimize(fromBinary(DeviceEventSchema, deviceAudioBytes)));
  summary(() => {
    for (const n of [1, 32, 256] as const) {
      const req = relayRequests[n];
      hot(`relay-request/to-binary/${n}-audio`, () => do_not_optimize(toBinary(RelayRequestSchema, req)), n < 256 ? "inner" : "once");
    }
  });
  hot("relay-request/from-binary/256-audio", () => do_not_optimize(fromBinary(RelayRequestSchema, relayRequest256Bytes)), "once");
  hot("relay-response/from-binary/256-audio", () => do_not_optimize(fromBinary(RelayResponseSchema, relayResponse256Bytes)), "once");
});

// What Relay runs instead (src/relay-codec.ts): the same batches, framed for gRPC included.
const requestCodec = relayBatchCodec(RelayRequestSchema, DeviceEventSchema);
const responseCodec = relayBatchCodec(RelayResponseSchema, ServerEventSchema);
group("relay codec (audio by hand)", () => {
  summary(() => {
    for (const n of [1, 32, 256] as const) {
      const events = relayRequests[n].events;
      hot(`relay-request/encode-frame/${n}-audio`, () => do_not_optimize(requestCodec.encodeFrame(events)), n < 256 ? "inner" : "once");
    }
  });
  hot("relay-request/decode/256-audio", () => do_not_optimize(requestCodec.decode(relayRequest256Bytes)), "once");
  hot("relay-response/decode/256-audio", () => do_not_optimize(responseCodec.decode(relayResponse256Bytes)), "once");
});

group("auth", () => {
  bench("jwt/verify/hs256", async () => do_not_optimize(await verifier.verify(deviceToken)));
});

// ---------------------------------------------------------------- fan-out

const FANOUT_SUBSCRIBERS = 1000;
const FANOUT_TOPIC = "broadcast";
const fanoutText = JSON.stringify({ type: "tts", state: "sentence_start", text: "今天天气很好，适合出去走走。" });

interface FanoutFixture {
  /** Publishes once and resolves when every subscriber has received it; returns the ns spent in publish(). */
  round(message: Uint8Array | string): Promise<number>;
  close(): Promise<void>;
}

/**
 * A real Bun.serve websocket server on 127.0.0.1:0 with `n` real client WebSockets (in this
 * process) subscribed to one topic. Rounds are detected by counting client message events.
 */
async function openFanout(n: number): Promise<FanoutFixture> {
  let subscribed = 0;
  const allSubscribed = Promise.withResolvers<void>();
  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      return srv.upgrade(req, { data: undefined }) ? undefined : new Response("upgrade required", { status: 426 });
    },
    websocket: {
      perMessageDeflate: false,
      sendPings: false,
      idleTimeout: 0,
      maxPayloadLength: 64 * 1024,
      open(ws) {
        ws.subscribe(FANOUT_TOPIC);
        if (++subscribed === n) allSubscribed.resolve();
      },
      message() {},
    },
  });

  let received = 0;
  let total = 0;
  let waiting: ReturnType<typeof Promise.withResolvers<void>> | undefined;
  const onMessage = (): void => {
    total++;
    if (++received === n) waiting?.resolve();
  };

  const url = `ws://127.0.0.1:${server.port}/`;
  const clients: WebSocket[] = [];
  const BATCH = 100; // a connect burst of 1,000 at once can overflow the listen backlog
  for (let i = 0; i < n; i += BATCH) {
    const opened: Promise<void>[] = [];
    for (let j = i; j < Math.min(n, i + BATCH); j++) {
      const ws = new WebSocket(url);
      ws.binaryType = "arraybuffer";
      ws.onmessage = onMessage;
      const p = Promise.withResolvers<void>();
      ws.onopen = () => p.resolve();
      ws.onerror = () => p.reject(new Error("fan-out client failed to connect"));
      opened.push(p.promise);
      clients.push(ws);
    }
    await Promise.all(opened);
  }
  await allSubscribed.promise;
  if (server.subscriberCount(FANOUT_TOPIC) !== n) throw new Error("fan-out: not every client is subscribed");

  let rounds = 0;
  return {
    async round(message) {
      received = 0;
      waiting = Promise.withResolvers<void>();
      const t0 = Bun.nanoseconds();
      const sent = server.publish(FANOUT_TOPIC, message);
      const publishNs = Bun.nanoseconds() - t0;
      if (sent <= 0) throw new Error(`fan-out: publish returned ${sent}`);
      await waiting.promise;
      rounds++;
      return publishNs;
    },
    async close() {
      if (total !== rounds * n) throw new Error(`fan-out: ${total} deliveries for ${rounds} rounds x ${n} subscribers`);
      let closed = 0;
      const allClosed = Promise.withResolvers<void>();
      for (const ws of clients) {
        ws.onclose = () => {
          if (++closed === clients.length) allClosed.resolve();
        };
        ws.close();
      }
      const guard = setTimeout(() => allClosed.resolve(), 5_000);
      await allClosed.promise;
      clearTimeout(guard);
      await server.stop(true);
    },
  };
}

let fanout: Promise<FanoutFixture> | undefined;
/** Opened by the first fan-out benchmark that runs (so --filter skips it), closed after run(). */
const fanoutFixture = (): Promise<FanoutFixture> => (fanout ??= openFanout(FANOUT_SUBSCRIBERS));

const fanoutBinary = new FrameEncoder(3).encode(payload, 0).slice(); // 124 bytes: a v3 frame

group(`fan-out (${FANOUT_SUBSCRIBERS} subscribers, in-process clients)`, () => {
  for (const [kind, message] of [
    ["binary", fanoutBinary],
    ["text", fanoutText],
  ] as const) {
    // The publish() call alone, each followed (untimed) by the round completing, so socket
    // buffers never pile up between calls.
    bench(`fanout/${FANOUT_SUBSCRIBERS}-subs/${kind}`, async function* () {
      const f = await fanoutFixture();
      yield { manual: async () => await f.round(message) };
    });
    // publish() until the last of the subscribers has its message event.
    bench(`fanout/${FANOUT_SUBSCRIBERS}-subs/${kind}/round`, async function* () {
      const f = await fanoutFixture();
      yield async () => do_not_optimize(await f.round(message));
    });
  }
});

// ---------------------------------------------------------------- run

const useColors = !!process.env.FORCE_COLOR || (process.stdout.isTTY === true && !process.env.NO_COLOR);
const started = performance.now();
const { benchmarks } = await run({ colors: useColors, ...(opts.filter ? { filter: opts.filter } : {}) });
if (fanout) await (await fanout).close();

/**
 * GC-heap bytes allocated per call, measured here because mitata's heap figure on Bun
 * (bun:jsc memoryUsage().current, process-wide) does not see short-lived cells: right after a
 * full GC, new cells take new heap capacity, so capacity growth over `n` calls / `n` is the
 * allocation rate. `n` doubles until the calls allocate >= 2 MiB (less would mostly refill the
 * free cells the GC left in partly used blocks) and stays below what triggers a collection; a
 * run during which one ran (objectCount moved) is redone with half the calls. Median of 3.
 * About +-10%, noise floor ~1 B; ArrayBuffer backing stores over a few hundred bytes are
 * allocated outside the GC heap and not counted.
 */
function allocPerOp(fn: () => unknown): number {
  for (let i = 0; i < 200; i++) fn();
  const once = (n: number): { perOp: number; total: number; collected: boolean } => {
    Bun.gc(true);
    const s0 = heapStats();
    for (let i = 0; i < n; i++) fn();
    const s1 = heapStats();
    const total = s1.heapCapacity - s0.heapCapacity;
    return { perOp: total / n, total, collected: s1.objectCount !== s0.objectCount || s1.heapSize !== s0.heapSize };
  };
  const TARGET_BYTES = 2 << 20;
  const MAX_CALLS = 200_000;
  let n = 8;
  for (;;) {
    const r = once(n);
    if (r.collected) {
      n = Math.max(1, n >> 1);
      break;
    }
    if (r.total >= TARGET_BYTES || n >= MAX_CALLS) break;
    n = Math.min(MAX_CALLS, n * 2);
  }
  const runs: number[] = [];
  for (let attempt = 0; runs.length < 3 && attempt < 12; attempt++) {
    const r = once(n);
    if (r.collected) n = Math.max(1, n >> 1);
    else runs.push(r.perOp);
  }
  runs.sort((a, b) => a - b);
  return runs[runs.length >> 1] ?? Number.NaN;
}

const alloc = new Map<string, number>();
for (const c of cases) if (!opts.filter || opts.filter.test(c.name)) alloc.set(c.name, allocPerOp(c.fn));
if (alloc.size > 0) {
  console.log("\nGC-heap bytes allocated per op (heap capacity growth after a full GC; +-10%, floor ~1 B)");
  const width = Math.max(...[...alloc.keys()].map((k) => k.length));
  for (const [name, bytes] of alloc) console.log(`${name.padEnd(width)}  ${bytes.toFixed(1).padStart(9)} B`);
}
console.log(`\nwall time ${((performance.now() - started) / 1000).toFixed(1)} s${opts.quick ? " (--quick)" : ""}`);

if (opts.jsonPath !== undefined) {
  const results: Array<Record<string, number | string>> = [];
  for (const trial of benchmarks) {
    for (const r of trial.runs) {
      if (!r.stats) {
        console.error(`${r.name}: ${r.error instanceof Error ? r.error.message : String(r.error)}`);
        continue;
      }
      const s = r.stats;
      const row: Record<string, number | string> = {
        name: r.name,
        avgNs: s.avg,
        p50Ns: s.p50,
        p99Ns: s.p99,
        minNs: s.min,
        maxNs: s.max,
      };
      if (s.heap && Number.isFinite(s.heap.avg)) row.heapBytes = s.heap.avg;
      const a = alloc.get(r.name);
      if (a !== undefined) row.allocBytes = a;
      results.push(row);
    }
  }
  const cpu = cpus()[0];
  const report = {
    machine: {
      cpu: cpu?.model ?? "unknown",
      cores: availableParallelism(),
      bun: `${Bun.version} (${Bun.revision.slice(0, 8)})`,
      os: `${platform()} ${osRelease()} ${osArch()}`,
    },
    date: new Date().toISOString(),
    quick: opts.quick,
    results,
  };
  await Bun.write(opts.jsonPath, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`wrote ${opts.jsonPath}`);
}

// A benchmark that threw shows as an error row in the table: make the exit status say so too.
if (benchmarks.some((t) => t.runs.some((r) => !r.stats))) process.exitCode = 1;
