/**
 * `bun run bench [--quick]`: every benchmark in one run, side by side on this machine.
 *
 * 1. micro: bench/micro.bench.ts (codec, parsing, protobuf, batches, fan-out, JWT).
 * 2. frame latency: the floor (a plain Bun websocket echo) and the gateway with the `relay`
 *    and `converse` transports, AI service in-process and separate; one device and fleets
 *    of streaming devices, each driven by `xiaozhi-im loadtest` in its own process. Every
 *    figure is also given as a ratio to the floor's in the same run.
 * 3. memory: gateway RSS per connected idle device, and per streaming device.
 * 4. voice: time to first audio through the embedded voice pipeline.
 * 5. capacity: the knee of `serve --workers 1` against `--workers 2`, the load generator in
 *    processes of its own (`loadtest --workers 2`).
 *
 * Results go to bench/results/<date>-<full|quick>.json and a markdown summary on stdout.
 * Everything runs on loopback, bounded in time.
 */
import { mkdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { startFakeOpenAi } from "../tests/helpers/fake-openai";
import { mintToken } from "../src/auth/mint-token";

const root = path.join(import.meta.dir, "..");
/** --smoke: a tiny run for the test suite, checking the bench works, not measuring. */
const smoke = process.argv.includes("--smoke");
const quick = smoke || process.argv.includes("--quick");
const only = process.argv.find((a) => a.startsWith("--only="))?.slice(7);
/** A focused latency run: `--systems=floor,relay/separate --fleets=1000` (no knee search). */
const systemsArg = process.argv.find((a) => a.startsWith("--systems="))?.slice(10);
const fleetsArg = process.argv.find((a) => a.startsWith("--fleets="))?.slice(9);
const focused = systemsArg !== undefined || fleetsArg !== undefined || process.argv.some((a) => a.startsWith("--memory-systems="));
const SECRET = "bench-secret";
const main = path.join(root, "src/main.ts");

interface Proc {
  readonly proc: ReturnType<typeof Bun.spawn>;
  readonly port: number;
}

/** Spawns a server and resolves once a stdout line says where it listens. */
async function spawnServer(cmd: string[], env: Record<string, string>, portOf: (line: string) => number | undefined): Promise<Proc> {
  const proc = Bun.spawn(cmd, { cwd: root, env: { ...process.env, ...env }, stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  const dec = new TextDecoder();
  let buf = "";
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`${cmd.join(" ")}: no port announced`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`${cmd.join(" ")} exited: ${buf}`);
    buf += dec.decode(value);
    for (const line of buf.split("\n")) {
      const port = portOf(line);
      if (port !== undefined) {
        // Keep draining stdout so a chatty server never blocks on a full pipe.
        void (async () => {
          try {
            for (;;) if ((await reader.read()).done) return;
          } catch {}
        })();
        return { proc, port };
      }
    }
  }
}

function jsonLogPort(msg: string): (line: string) => number | undefined {
  return (line) => {
    if (!line.startsWith("{")) return undefined;
    const rec = JSON.parse(line) as { msg?: string; port?: number };
    return rec.msg === msg ? rec.port : undefined;
  };
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p) return;
  p.proc.kill("SIGTERM");
  const t = setTimeout(() => p.proc.kill("SIGKILL"), 5000);
  await p.proc.exited;
  clearTimeout(t);
}

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const CLK_TCK = Number(Bun.spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

/** User + system CPU time a process has used, ms (from /proc/<pid>/stat). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name may hold spaces: the fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** `read` summed over processes (the workers of one gateway). */
function sumOver(pids: readonly number[], read: (pid: number) => number): number {
  return pids.reduce((sum, pid) => sum + read(pid), 0);
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

type System = "floor" | "relay/in-process" | "relay/separate" | "converse/in-process" | "converse/separate" | "mqtt-udp/in-process" | "mqtt-udp/separate";

interface Running {
  /** Where devices connect: ws:// for the WebSocket, mqtt:// for MQTT + UDP. */
  readonly url: string;
  /** The gateway's HTTP side (/ready, /api/status). */
  readonly httpUrl: string;
  readonly gatewayPid: number;
  /** Every process of the gateway: itself, or the supervisor and its workers. */
  readonly gatewayPids: readonly number[];
  /** The AI service's process, when it runs apart. */
  readonly aiPid?: number;
  stop(): Promise<void>;
}

async function startSystem(system: System, extraEnv: Record<string, string> = {}): Promise<Running> {
  if (system === "floor") {
    const floor = await spawnServer(["bun", path.join(root, "bench/floor-server.ts")], {}, (l) => {
      const m = /^PORT (\d+)/.exec(l);
      return m ? Number(m[1]) : undefined;
    });
    return { url: `ws://127.0.0.1:${floor.port}/ws`, httpUrl: "", gatewayPid: floor.proc.pid, gatewayPids: [floor.proc.pid], stop: () => stop(floor) };
  }
  const [kind, where] = system.split("/") as ["relay" | "converse" | "mqtt-udp", "in-process" | "separate"];
  const mqtt = kind === "mqtt-udp";
  let ai: Proc | undefined;
  // The whole fleet comes from 127.0.0.1: lift the per-address limits.
  const env: Record<string, string> = {
    JWT_SECRET: SECRET,
    AI_SERVICE_TRANSPORT: mqtt ? "relay" : kind,
    LOG_LEVEL: "info",
    IM_SERVER_HOST: "127.0.0.1",
    IM_MAX_CONNECTIONS_PER_IP: "100000",
    IM_MAX_CONNECTS_PER_IP_PER_SECOND: "1000000",
    IM_MAX_BYTES_PER_IP_PER_SECOND: "0",
    ...(mqtt ? { IM_MQTT_ENABLED: "true", IM_MQTT_HOST: "127.0.0.1", IM_MQTT_PORT: "0", IM_UDP_PORT: "0" } : {}),
    ...extraEnv,
  };
  if (where === "separate") {
    ai = await spawnServer(
      ["bun", main, "ai"],
      { AI_SERVER_PORT: "0", AI_METRICS_PORT: "0", LOG_LEVEL: "info" },
      jsonLogPort("reference AI service listening"),
    );
    env.AI_SERVICE_GRPC_ADDR = `127.0.0.1:${ai.port}`;
  }
  let mqttPort = 0;
  let workerPids: number[] = [];
  const workers = Number(env.IM_WORKERS ?? 1) > 1;
  const gw = await spawnServer(["bun", main, "serve", "--port", "0"], env, (line) => {
    const port = jsonLogPort(workers ? "workers listening" : "gateway listening")(line);
    if (port !== undefined && mqtt) mqttPort = (JSON.parse(line) as { mqttPort: number }).mqttPort;
    if (port !== undefined && workers) workerPids = (JSON.parse(line) as { pids: number[] }).pids;
    return port;
  });
  // Wait until the upstream is ready: a fleet must not meet a warming gateway.
  for (let i = 0; i < 100; i++) {
    if ((await fetch(`http://127.0.0.1:${gw.port}/ready`)).status === 200) break;
    await Bun.sleep(50);
  }
  return {
    url: mqtt ? `mqtt://127.0.0.1:${mqttPort}` : `ws://127.0.0.1:${gw.port}/ws`,
    httpUrl: `http://127.0.0.1:${gw.port}`,
    gatewayPid: gw.proc.pid,
    gatewayPids: [gw.proc.pid, ...workerPids],
    ...(ai === undefined ? {} : { aiPid: ai.proc.pid }),
    async stop() {
      await stop(gw);
      await stop(ai);
    },
  };
}

/** The load generator's summary of one histogram (milliseconds). */
interface Latency {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

const KNEE_P99_MS = 50;
const KNEE_STEPS = [3000, 4000, 5000, 6000];
/** The load generator's frame period for streaming fleets (its default). */
const FRAME_MS = 60;

interface LoadResult {
  /** Part of the step-up search for the knee. */
  kneeStep?: boolean;
  system: System;
  devices: number;
  sent: number;
  received: number;
  lost: number;
  failedConnections: number;
  roundTrip: Latency | null;
  /** Conversation: listen stop -> first answer frame (the time to first audio). */
  firstAnswer: Latency | null;
  /** Conversation: listen stop -> stt. */
  speechRecognized: Latency | null;
  answers: number;
  answersTimedOut: number;
  gatewayPeakRssMiB: number;
  /** CPU time per frame (one frame in and its echo out), us, in the steady state of a
   * streaming fleet: the server (the floor, or the gateway with the AI when embedded), and
   * the AI service when it runs apart. Null for other runs. */
  cpuPerFrameUs: { server: number; ai: number | null } | null;
}

/** Runs the load generator in its own process against `url`, sampling the server's RSS. */
async function load(system: System, run: Running, devices: number, args: string[]): Promise<LoadResult> {
  const transport = system.startsWith("mqtt-udp") ? ["--transport", "mqtt-udp"] : [];
  const proc = Bun.spawn(["bun", main, "loadtest", "--url", run.url, ...transport, "--devices", String(devices), "--jwt-secret", SECRET, "--json", ...args], {
    cwd: root,
    stdout: "pipe",
    stderr: "inherit",
  });
  let peak = 0;
  const sampler = setInterval(() => {
    try {
      peak = Math.max(peak, sumOver(run.gatewayPids, rssMiB));
    } catch {}
  }, 250);
  // CPU per frame in the steady state: from 1 s after the ramp until 1 s before the end of
  // the measured phase, apart from connection set-up and the drain.
  const arg = (name: string) => Number(args[args.indexOf(name) + 1]);
  const streaming = args.includes("stream") && devices > 1;
  const rampS = arg("--ramp");
  const durationS = arg("--duration");
  const windowS = durationS - 2;
  let cpuPerFrameUs: LoadResult["cpuPerFrameUs"] = null;
  const at = (pids: readonly number[] | undefined) => (pids === undefined ? undefined : sumOver(pids, cpuMs));
  if (streaming && windowS >= 2) {
    void (async () => {
      await Bun.sleep((rampS + 1) * 1000);
      const aiPids = run.aiPid === undefined ? undefined : [run.aiPid];
      const start = { server: at(run.gatewayPids)!, ai: at(aiPids) };
      await Bun.sleep(windowS * 1000);
      const end = { server: at(run.gatewayPids)!, ai: at(aiPids) };
      const frames = (devices * windowS * 1000) / FRAME_MS;
      const per = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? null : Math.round(((b - a) * 10_000) / frames) / 10);
      cpuPerFrameUs = { server: per(start.server, end.server)!, ai: per(start.ai, end.ai) };
    })().catch(() => {});
  }
  const out = await new Response(proc.stdout).text();
  await proc.exited;
  clearInterval(sampler);
  const r = JSON.parse(out) as {
    frames: { sent: number; received: number; lost: number };
    connections: { failed: number };
    latency: { roundTrip: Latency | null; firstAnswer: Latency | null; speechRecognized: Latency | null };
    conversation: { answers: number; answersTimedOut: number } | null;
  };
  return {
    system,
    devices,
    sent: r.frames.sent,
    received: r.frames.received,
    lost: r.frames.lost,
    failedConnections: r.connections.failed,
    roundTrip: r.latency.roundTrip,
    firstAnswer: r.latency.firstAnswer,
    speechRecognized: r.latency.speechRecognized,
    answers: r.conversation?.answers ?? 0,
    answersTimedOut: r.conversation?.answersTimedOut ?? 0,
    cpuPerFrameUs,
    gatewayPeakRssMiB: Math.round(peak * 10) / 10,
  };
}

function withinKnee(r: LoadResult): boolean {
  return r.lost === 0 && r.failedConnections === 0 && (r.roundTrip?.p99Ms ?? Number.POSITIVE_INFINITY) <= KNEE_P99_MS;
}

/** The largest fleet of `system` that kept p99 under the knee's bound with nothing lost. */
function knee(system: System): number {
  let best = 0;
  for (const r of latency) if (r.system === system && r.devices > 1 && withinKnee(r)) best = Math.max(best, r.devices);
  return best;
}

/** Polls /api/status until `n` sessions are up or `timeoutMs` passes: the most sessions
 * seen at once, and the gateway's RSS at that moment (not later: a fleet short of `n` goes
 * away when its load generator's duration ends). */
async function waitSessions(run: Running, n: number, timeoutMs: number): Promise<{ held: number; rss: number }> {
  const deadline = Date.now() + timeoutMs;
  let best = { held: 0, rss: rssMiB(run.gatewayPid) };
  while (Date.now() < deadline) {
    const headers = { authorization: `Bearer ${await mintToken({ secret: SECRET, claims: { scope: "api" } })}` };
    const s = (await (await fetch(`${run.httpUrl}/api/status`, { headers })).json()) as { sessionCount: number; connectionCount: number };
    if (s.sessionCount > best.held) best = { held: s.sessionCount, rss: rssMiB(run.gatewayPid) };
    if (best.held >= n) break;
    await Bun.sleep(200);
  }
  return best;
}

function fmt(ms: number | undefined): string {
  if (ms === undefined) return "-";
  return ms < 1 ? `${Math.round(ms * 1000)} us` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
}

const started = Date.now();
const results: Record<string, unknown> = {
  machine: {
    cpu: os.cpus()[0]?.model ?? "?",
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    bun: Bun.version,
    os: `${os.type()} ${os.release()}`,
  },
  date: new Date().toISOString(),
  quick,
};

// 1. micro
if (!only || only === "micro") {
  const microJson = path.join(os.tmpdir(), `xiaozhi-micro-${process.pid}.json`);
  const micro = Bun.spawn(
    ["bun", path.join(root, "bench/micro.bench.ts"), ...(quick ? ["--quick"] : []), ...(smoke ? ["--filter", "frame-v3"] : []), "--json", microJson],
    { cwd: root, stdout: "inherit", stderr: "inherit" },
  );
  await micro.exited;
  results.micro = JSON.parse(readFileSync(microJson, "utf8")).results;
}

// 2. frame latency
const systems: System[] = systemsArg
  ? (systemsArg.split(",") as System[])
  : smoke
    ? ["floor", "relay/separate"]
    : quick
      ? ["floor", "relay/in-process", "converse/in-process"]
      : ["floor", "relay/in-process", "relay/separate", "converse/in-process", "converse/separate", "mqtt-udp/in-process"];
const fleets = fleetsArg ? fleetsArg.split(",").map(Number) : smoke ? [20] : quick ? [200] : [500, 1000, 2000];
const seconds = (s: number) => String(smoke ? 1 : s);
const latency: LoadResult[] = [];
if (!only || only === "latency") {
  for (const system of systems) {
    const run = await startSystem(system);
    try {
      // One device, frames back to back every 10 ms: the round trip of a lone frame.
      latency.push(await load(system, run, 1, ["--scenario", "stream", "--frame-ms", "10", "--ramp", "0.2", "--duration", seconds(quick ? 3 : 8)]));
      for (const n of fleets) {
        const ramp = String(Math.max(1, n / 500));
        latency.push(await load(system, run, n, ["--scenario", "stream", "--ramp", ramp, "--duration", seconds(quick ? 4 : 10)]));
      }
      // The knee: step the fleet up until p99 passes 50 ms or a frame is lost.
      if (!quick && !focused && (system === "floor" || system === "relay/in-process")) {
        for (const n of KNEE_STEPS) {
          const r = await load(system, run, n, ["--scenario", "stream", "--ramp", String(n / 500), "--duration", "8"]);
          r.kneeStep = true;
          latency.push(r);
          if (!withinKnee(r)) break;
        }
      }
    } finally {
      await run.stop();
    }
    process.stderr.write(`latency: ${system} done (${Math.round((Date.now() - started) / 1000)} s)\n`);
  }
  results.latency = latency;
}

// 3. memory: the gateway alone (AI separate), idle devices after hello.
const memory: { system: System; devices: number; held: number; baselineMiB: number; rssMiB: number; perDeviceKiB: number }[] = [];
/** `--memory-systems=relay/separate,mqtt-udp/separate`: whose idle devices are weighed. */
const memorySystems =
  (process.argv
    .find((a) => a.startsWith("--memory-systems="))
    ?.slice(17)
    .split(",") as System[] | undefined) ?? (smoke ? ["relay/separate"] : ["relay/separate", "mqtt-udp/separate"]);
if (!only || only === "memory") {
  for (const system of memorySystems)
    for (const n of smoke ? [50] : quick ? [1000] : [1000, 5000, 10000]) {
      const run = await startSystem(system);
      try {
        await Bun.sleep(500);
        const baseline = rssMiB(run.gatewayPid);
        // An MQTT + UDP device takes longer to connect (MQTT CONNECT, SUBSCRIBE, then hello):
        // 10,000 of them did not all say hello within the WebSocket's window.
        const duration = smoke ? 2 : Math.max(6, n / (system.startsWith("mqtt-udp") ? 500 : 1000) + 4);
        const loader = load(system, run, n, [
          "--scenario",
          "idle",
          "--ramp",
          String(Math.max(1, n / 1500)),
          "--duration",
          String(duration),
          "--concurrency",
          "500",
        ]);
        const { held, rss } = await waitSessions(run, n, (duration + n / 1000) * 1000);
        await loader;
        memory.push({
          system,
          devices: n,
          held,
          baselineMiB: Math.round(baseline * 10) / 10,
          rssMiB: Math.round(rss * 10) / 10,
          // Per device held: a device that never said hello weighs (almost) nothing.
          perDeviceKiB: held > 0 ? Math.round(((rss - baseline) * 1024 * 10) / held) / 10 : Number.NaN,
        });
      } finally {
        await run.stop();
      }
    }
  results.memory = memory;
}

// 4. voice: time to first audio of spoken turns through the embedded voice pipeline, against a
// local OpenAI-compatible server with fixed delays. What is left after the delays is the
// pipeline's own overhead (decoding, WAV, sentence cutting, resampling, Opus encoding, pacing,
// both hops through the gateway).
const VOICE_DELAYS = { transcribeMs: 150, firstTokenMs: 200, speechFirstByteMs: 100 };
const VOICE_DELAY_SUM_MS = VOICE_DELAYS.transcribeMs + VOICE_DELAYS.firstTokenMs + VOICE_DELAYS.speechFirstByteMs;
const voice: LoadResult[] = [];
if (!only || only === "voice") {
  const fake = await startFakeOpenAi({ delays: VOICE_DELAYS });
  try {
    for (const n of smoke ? [1] : [1, 100]) {
      const run = await startSystem("relay/in-process", { AI_BASE_URL: fake.url });
      try {
        const seconds = smoke ? "3" : n === 1 ? "40" : "20";
        const turns = (duration: string) =>
          load("relay/in-process", run, n, [
            "--scenario",
            "conversation",
            "--utterance-frames",
            "20",
            "--ramp",
            String(Math.max(1, n / 50)),
            "--duration",
            duration,
          ]);
        // A warm-up fleet first, not recorded: the first turns open the connections to the
        // providers and warm the JIT (measured: p99 +250 ms at 100 conversations), which a
        // gateway that has been up a while has long done.
        if (!smoke) await turns("6");
        voice.push(await turns(seconds));
      } finally {
        await run.stop();
      }
    }
  } finally {
    await fake.stop();
  }
  results.voice = { delaysMs: VOICE_DELAYS, runs: voice };
  process.stderr.write(`voice: done (${Math.round((Date.now() - started) / 1000)} s)\n`);
}

// 5. capacity: the knee of `serve --workers 1` against `--workers 2` (relay, AI embedded in
// each worker), the load generator in two processes of its own. Every process shares this
// machine's cores: on 2 cores the gain is bounded by what the load generator leaves.
const CAPACITY_STEPS = [500, 1000, 1500, 2000, 2500, 3000, 4000];
const capacity: (LoadResult & { gatewayWorkers: number })[] = [];
const capacityKnee: Record<string, number> = {};
// The smoke run checks it end to end: 20 devices on a 2-worker gateway.
if ((!only && (!quick || smoke) && !focused) || only === "capacity") {
  for (const gatewayWorkers of smoke ? [2] : [1, 2]) {
    const run = await startSystem("relay/in-process", { IM_WORKERS: String(gatewayWorkers) });
    let best = 0;
    try {
      for (const n of smoke ? [20] : CAPACITY_STEPS) {
        const r = await load("relay/in-process", run, n, [
          "--scenario",
          "stream",
          "--ramp",
          String(Math.max(1, n / 500)),
          "--duration",
          seconds(10),
          "--workers",
          "2",
        ]);
        capacity.push({ ...r, gatewayWorkers });
        if (!withinKnee(r)) break;
        best = n;
      }
    } finally {
      await run.stop();
    }
    capacityKnee[`workers${gatewayWorkers}`] = best;
    process.stderr.write(`capacity: --workers ${gatewayWorkers} done (${Math.round((Date.now() - started) / 1000)} s)\n`);
  }
  results.capacity = { p99BoundMs: KNEE_P99_MS, loadtestWorkers: 2, knee: capacityKnee, runs: capacity };
}

const kneeOf = !quick && !focused && latency.length ? { p99BoundMs: KNEE_P99_MS, floor: knee("floor"), relayInProcess: knee("relay/in-process") } : undefined;
if (kneeOf) results.knee = kneeOf;

// Output
const dir = process.env.BENCH_RESULTS_DIR ?? path.join(root, "bench/results");
mkdirSync(dir, { recursive: true });
const file = path.join(
  dir,
  `${new Date().toISOString().slice(0, 16).replace(":", "")}-${smoke ? "smoke" : quick ? "quick" : focused ? "focused" : "full"}.json`,
);
await Bun.write(file, `${JSON.stringify(results, null, 2)}\n`);

const floorOf = (n: number) => latency.find((r) => r.system === "floor" && r.devices === n)?.roundTrip;
const floorCpuOf = (n: number) => latency.find((r) => r.system === "floor" && r.devices === n)?.cpuPerFrameUs?.server;
/** CPU per frame of a run, gateway and AI together, and its ratio to the floor's. */
function cpuCells(r: LoadResult): string {
  const c = r.cpuPerFrameUs;
  if (c === null) return "- | -";
  const total = c.server + (c.ai ?? 0);
  const floorCpu = floorCpuOf(r.devices);
  return `${c.server} us${c.ai === null ? "" : ` (+${c.ai} us)`} | ${floorCpu ? `${(total / floorCpu).toFixed(1)}x` : "-"}`;
}
const lines = [
  "",
  `## Frame round trip (${(results.machine as { cpu: string }).cpu}, ${os.cpus().length} cores, Bun ${Bun.version}${quick ? ", quick" : ""})`,
  "",
  "| system | devices | p50 | p99 | p99.9 | max | p50 / floor | p99 / floor | sent | lost | gateway peak RSS | CPU / frame (AI apart) | CPU / floor's |",
  "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
];
for (const r of latency) {
  const f = floorOf(r.devices);
  const rt = r.roundTrip;
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? `${(a / b).toFixed(1)}x` : "-");
  lines.push(
    `| ${r.system} | ${r.devices} | ${fmt(rt?.p50Ms)} | ${fmt(rt?.p99Ms)} | ${fmt(rt?.p999Ms)} | ${fmt(rt?.maxMs)} | ${ratio(rt?.p50Ms, f?.p50Ms)} | ${ratio(rt?.p99Ms, f?.p99Ms)} | ${r.sent} | ${r.lost}${r.failedConnections ? ` (+${r.failedConnections} failed connects)` : ""} | ${r.gatewayPeakRssMiB} MiB | ${cpuCells(r)} |`,
  );
}
if (kneeOf) {
  const pct = kneeOf.floor ? Math.round((kneeOf.relayInProcess / kneeOf.floor) * 100) : 0;
  lines.push(
    "",
    `Knee (largest fleet with p99 <= ${KNEE_P99_MS} ms and nothing lost, in steps of 1,000 from 3,000): floor ${kneeOf.floor}, relay in-process ${kneeOf.relayInProcess} (${pct}% of the floor's)`,
  );
}
if (memory.length) {
  lines.push(
    "",
    "## Gateway memory, idle devices (hello done, AI separate)",
    "",
    "| transport | devices | held | baseline RSS | RSS | per device held |",
    "|---|---|---|---|---|---|",
  );
  for (const m of memory)
    lines.push(
      `| ${m.system.startsWith("mqtt-udp") ? "MQTT + UDP" : "WebSocket"} | ${m.devices} | ${m.held} | ${m.baselineMiB} MiB | ${m.rssMiB} MiB | ${m.perDeviceKiB} KiB |`,
    );
}
if (voice.length) {
  lines.push(
    "",
    `## Voice pipeline: time to first audio (provider delays ${VOICE_DELAY_SUM_MS} ms: ASR ${VOICE_DELAYS.transcribeMs}, first token ${VOICE_DELAYS.firstTokenMs}, TTS first byte ${VOICE_DELAYS.speechFirstByteMs})`,
    "",
    "| conversations | turns | timed out | speech recognized p50 | first audio p50 | p99 | overhead p50 | overhead p99 |",
    "|---|---|---|---|---|---|---|---|",
  );
  for (const v of voice) {
    const fa = v.firstAnswer;
    const over = (ms: number | undefined) => (ms === undefined ? "-" : fmt(ms - VOICE_DELAY_SUM_MS));
    lines.push(
      `| ${v.devices} | ${v.answers} | ${v.answersTimedOut} | ${fmt(v.speechRecognized?.p50Ms)} | ${fmt(fa?.p50Ms)} | ${fmt(fa?.p99Ms)} | ${over(fa?.p50Ms)} | ${over(fa?.p99Ms)} |`,
    );
  }
}
if (capacity.length) {
  lines.push(
    "",
    `## Capacity: serve --workers 1 against --workers 2 (relay, AI embedded; load generator: loadtest --workers 2; knee: p99 <= ${KNEE_P99_MS} ms, nothing lost)`,
    "",
    "| gateway workers | devices | p50 | p99 | lost | CPU / frame, all gateway processes | within the knee |",
    "|---|---|---|---|---|---|---|",
  );
  for (const c of capacity)
    lines.push(
      `| ${c.gatewayWorkers} | ${c.devices} | ${fmt(c.roundTrip?.p50Ms)} | ${fmt(c.roundTrip?.p99Ms)} | ${c.lost}${c.failedConnections ? ` (+${c.failedConnections} failed connects)` : ""} | ${c.cpuPerFrameUs?.server ?? "-"} us | ${withinKnee(c) ? "yes" : "no"} |`,
    );
  lines.push("", `Knee: --workers 1 ${capacityKnee.workers1 ?? "-"}, --workers 2 ${capacityKnee.workers2 ?? "-"} devices`);
}
lines.push("", `results: ${path.relative(root, file)} (${Math.round((Date.now() - started) / 1000)} s)`);
console.log(lines.join("\n"));
