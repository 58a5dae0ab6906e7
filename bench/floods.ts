/**
 * `bun run bench:floods`: the attacks of issue 11, each against a fresh `serve` in production
 * mode with its default limits and budget, beside a probe device streaming realtime audio
 * (`xiaozhi-im loadtest`, one device, its own process). Per attack: the gateway's RSS before
 * and at its peak, the probe's round trip p50/p99/max over the attack, and what the attacker
 * got. Results go to bench/results/<date>-floods.json and a markdown table on stdout, the one
 * SECURITY.md quotes. Everything runs on loopback; the attacker runs in this process.
 *
 * `--only=audio,MCP` runs the attacks whose name contains one of these; FLOOD_ATTACK_MS sets
 * their length; FLOOD_NICE=1 runs the attacker at the lowest CPU priority (nearer an attacker
 * on another machine: on 2 cores it otherwise takes CPU from the gateway and the probe);
 * FLOOD_PROF=<dir> writes the gateway's CPU profile there.
 */
import { mkdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mintToken } from "../src/auth/mint-token";
import { type Spawned, spawnUntil } from "../tests/helpers/spawn-until";
import { handshake } from "../tests/helpers/start-stack";
import { frame, Opcode, RawWs } from "../tests/security/raw-ws";

const root = path.join(import.meta.dir, "..");
const main = path.join(root, "src/main.ts");
const SECRET = "floods-bench-secret-0123456789abcdef0123";
/** How long each attack lasts; the probe streams from before it to after it. */
const ATTACK_MS = Number(process.env.FLOOD_ATTACK_MS ?? 8_000);
const smoke = process.argv.includes("--smoke");
/** `--only=audio,mcp`: the attacks whose name contains one of these. */
const only = process.argv
  .find((a) => a.startsWith("--only="))
  ?.slice(7)
  .split(",");

interface Row {
  readonly attack: string;
  /** What issue 11 measured before the defences, quoted. */
  readonly before: string;
  readonly rssBeforeMiB: number;
  readonly rssPeakMiB: number;
  /** CPU seconds the gateway spent during the attack (of ATTACK_MS on 2 cores at most). */
  readonly gatewayCpuS: number;
  /** CPU seconds the attacker (this process) spent: it shares the machine's cores. */
  readonly attackerCpuS: number;
  readonly probe: { readonly p50Ms: number | null; readonly p99Ms: number | null; readonly maxMs: number | null; readonly lost: number };
  /** What the attacker (or the victim) got. */
  readonly outcome: string;
}

interface Gateway {
  readonly spawned: Spawned;
  readonly port: number;
  readonly url: string;
  readonly budgetMiB: number;
}

async function startGateway(): Promise<Gateway> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI_CONFIG|PORT$)/.test(k)) env[k] = v;
  const spawned = await spawnUntil(
    ["bun", ...(process.env.FLOOD_PROF ? ["--cpu-prof", `--cpu-prof-dir=${process.env.FLOOD_PROF}`] : []), main, "serve", "--port", "0"],
    // Info: the line that says where it listens is an info line (stdout is drained after it).
    { cwd: root, env: { ...env, JWT_SECRET: SECRET, IM_SERVER_HOST: "127.0.0.1", LOG_LEVEL: "info" } },
    "gateway listening",
  );
  const port = Number(spawned.line.port);
  return { spawned, port, url: `ws://127.0.0.1:${port}/ws`, budgetMiB: Number(spawned.line.memoryBudgetMiB) };
}

/** User + system CPU seconds the process has used. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Samples the gateway's RSS every 50 ms until stopped; returns the peak. */
function sampleRss(pid: number): () => number {
  let peak = rssMiB(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssMiB(pid));
    } catch {}
  }, 50);
  return () => {
    clearInterval(timer);
    return peak;
  };
}

/** The probe: one device streaming 60 ms frames in realtime mode, its own process. */
function startProbe(url: string, seconds: number): { report: Promise<Row["probe"]>; connected: Promise<void> } {
  const proc = Bun.spawn(
    [
      "bun",
      main,
      "loadtest",
      "--url",
      url,
      "--devices",
      "1",
      "--ramp",
      "0.2",
      "--duration",
      String(seconds),
      "--drain",
      "1",
      "--json",
      "--jwt-secret",
      SECRET,
      "--device-prefix",
      "9f",
    ],
    { cwd: root, stdout: "pipe", stderr: "pipe" },
  );
  const report = (async () => {
    const text = await new Response(proc.stdout).text();
    await proc.exited;
    const r = JSON.parse(text) as { latency: { roundTrip: { p50Ms: number | null; p99Ms: number | null; maxMs: number | null } }; frames: { lost: number } };
    return { ...r.latency.roundTrip, lost: r.frames.lost };
  })();
  // The probe connects within its 0.2 s ramp; a second leaves room for a slow start.
  return { report, connected: Bun.sleep(1_000) };
}

function devHeaders(token: string, deviceId: string): Record<string, string> {
  return { Authorization: `Bearer ${token}`, "Device-Id": deviceId, "Protocol-Version": "1" };
}

const deviceId = (group: number, i: number) =>
  `${group.toString(16).padStart(2, "0")}:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;

/** Opens a device socket, retrying refusals (429/503) once a second until `deadline`. */
async function openDevice(url: string, id: string, deadline: number): Promise<WebSocket | undefined> {
  const token = await mintToken({ secret: SECRET, deviceId: id });
  while (performance.now() < deadline) {
    const ws = new WebSocket(url, { headers: devHeaders(token, id) });
    ws.binaryType = "arraybuffer";
    const opened = await new Promise<boolean>((resolve) => {
      ws.onopen = () => resolve(true);
      ws.onclose = () => resolve(false);
    });
    if (opened) {
      ws.send(
        JSON.stringify({
          type: "hello",
          version: 1,
          transport: "websocket",
          audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
        }),
      );
      return ws;
    }
    await Bun.sleep(1_000);
  }
  return undefined;
}

/** Close codes seen, as "code xN" text. */
function tally(values: readonly (number | string)[]): string {
  const counts = new Map<number | string, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  return [...counts].map(([k, n]) => `${k} x${n}`).join(", ");
}

type Attack = (gw: Gateway, until: number) => Promise<string>;

/** Forged tokens from one address; a valid device from another: how often is it refused? */
function handshakeVictim(gw: Gateway, until: number, victimId: string, victimToken: string): Promise<{ tried: number; refused: number }> {
  return (async () => {
    let tried = 0;
    let refused = 0;
    while (performance.now() < until) {
      const r = await handshake(gw.url, devHeaders(victimToken, victimId), { localAddress: "127.0.0.2" });
      tried++;
      if (r.status !== 101) refused++;
      await Bun.sleep(20);
    }
    return { tried, refused };
  })();
}

const forgedFlood: Attack = async (gw, until) => {
  const victimId = "7e:00:00:00:00:01";
  const victim = handshakeVictim(gw, until, victimId, await mintToken({ secret: SECRET, deviceId: victimId }));
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: 4 }, async (_, t) => {
      for (let i = 0; performance.now() < until; i++) {
        statuses.push((await handshake(gw.url, devHeaders("eyJhbGciOiJIUzI1NiJ9.e30.forged", deviceId(0x70 + t, i % 4096)))).status);
      }
    }),
  );
  const v = await victim;
  return `victim (other address) refused ${v.refused} of ${v.tried}; attacker's ${statuses.length} attempts: ${tally(statuses)}`;
};

const deviceIdLockout: Attack = async (gw, until) => {
  const victimId = "7e:00:00:00:00:02";
  const victim = handshakeVictim(gw, until, victimId, await mintToken({ secret: SECRET, deviceId: victimId }));
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < until) statuses.push((await handshake(gw.url, devHeaders("eyJhbGciOiJIUzI1NiJ9.e30.forged", victimId))).status);
    }),
  );
  const v = await victim;
  return `victim refused ${v.refused} of ${v.tried}; attacker's ${statuses.length} attempts: ${tally(statuses)}`;
};

/** The per-connection limits `serve` applies by default: 64 KiB/s, and a 2 MiB burst. */
const CONNECTION_RATE = 64 * 1024;
const CONNECTION_BURST = 2 * 1024 * 1024;

/**
 * `count` devices from one address, each sending `message` as fast as its own limits let it:
 * its whole burst at once, then its sustained rate. Connections refused are retried for 3 s.
 */
function streamingFlood(count: number, message: string | Uint8Array, prelude: string | undefined, group: number): Attack {
  const size = message.length;
  return async (gw, until) => {
    const closes: (number | string)[] = [];
    let sent = 0;
    const connectBy = Math.min(until, performance.now() + 3_000);
    const sockets = await Promise.all(Array.from({ length: count }, (_, i) => openDevice(gw.url, deviceId(group, i), connectBy)));
    const open = sockets.filter((ws): ws is WebSocket => ws !== undefined);
    const start = performance.now();
    const spent = new Map<WebSocket, number>();
    for (const ws of open) {
      ws.onclose = (e) => closes.push(e.code);
      if (prelude !== undefined) ws.send(prelude);
      spent.set(ws, 0);
    }
    while (performance.now() < until) {
      const allowance = CONNECTION_BURST + (CONNECTION_RATE * (performance.now() - start)) / 1000;
      for (const ws of open) {
        while (ws.readyState === WebSocket.OPEN && (spent.get(ws) ?? 0) + size <= allowance) {
          ws.send(message);
          spent.set(ws, (spent.get(ws) ?? 0) + size);
          sent++;
        }
      }
      await Bun.sleep(50);
    }
    const stillOpen = open.filter((ws) => ws.readyState === WebSocket.OPEN).length;
    for (const ws of open) ws.close();
    return `${open.length} of ${count} connected (the rest refused by the per-address limits); ${sent} messages sent; closed by the gateway: ${closes.length === 0 ? "none" : tally(closes)}; ${stillOpen} still open at the end`;
  };
}

const audioFrame = new Uint8Array(64 * 1024).fill(0x55);
const audioFlood = streamingFlood(100, audioFrame, JSON.stringify({ type: "listen", state: "start", mode: "realtime" }), 0x71);
const mcpMessage = JSON.stringify({ type: "mcp", payload: { jsonrpc: "2.0", id: 1, result: { blob: "x".repeat(1_000_000) } } });
const mcpFlood = streamingFlood(150, mcpMessage, undefined, 0x72);

const broadcastFlood: Attack = async (gw, until) => {
  const token = await mintToken({ secret: SECRET, claims: { scope: "api" }, subject: "floods" });
  const listener = await openDevice(gw.url, "7e:00:00:00:00:03", until);
  let received = 0;
  if (listener !== undefined) listener.onmessage = (e) => void (typeof e.data === "string" && received++);
  const statuses: number[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 200 }, async () => {
      while (next < 5_000 && performance.now() < until) {
        const n = next++;
        const r = await fetch(`http://127.0.0.1:${gw.port}/api/message`, {
          method: "POST",
          headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
          body: JSON.stringify({ content: `alert ${n}` }),
        });
        await r.arrayBuffer();
        statuses.push(r.status);
      }
    }),
  );
  listener?.close();
  return `${statuses.length} calls: ${tally(statuses)}; text messages at one device: ${received}`;
};

const pingFlood: Attack = async (gw, until) => {
  const ping = frame(Opcode.Ping, new Uint8Array(8));
  const burst = new Uint8Array(ping.length * 1000);
  for (let i = 0; i < 1000; i++) burst.set(ping, i * ping.length);
  const ends = await Promise.all(
    Array.from({ length: 4 }, async (_, i) => {
      const raw = await RawWs.connect(gw.port);
      const id = deviceId(0x73, i);
      raw.sendHandshake("/ws", devHeaders(await mintToken({ secret: SECRET, deviceId: id }), id));
      await raw.responseHead();
      let ended = false;
      const end = raw.ended.then((e) => {
        ended = true;
        return e;
      });
      let pings = 0;
      while (!ended && performance.now() < until) {
        raw.write(burst);
        pings += 1000;
        await Bun.sleep(1);
      }
      if (!ended) raw.end();
      const e = await end;
      return { code: e.closeCode ?? "no close frame", afterMs: Math.round(e.afterMs), pings };
    }),
  );
  return `4 connections: closed ${tally(ends.map((e) => e.code))} after ${ends.map((e) => e.afterMs).join(", ")} ms (${ends.map((e) => e.pings).join(", ")} pings written)`;
};

const attacks: [name: string, before: string, attack: Attack][] = [
  ["forged-token handshakes (4 loops, one address)", "a valid device elsewhere refused 62%", forgedFlood],
  ["forged tokens naming a victim's Device-Id (8 loops)", "victim refused 429 on 90%", deviceIdLockout],
  ["100 devices streaming 64 KiB audio at their burst", "RSS 101 -> 953 MB, probe p99 8.45 s", audioFlood],
  ["150 devices sending 1 MB MCP messages", "RSS +882 MiB, probe max 9.96 s", mcpFlood],
  ["5,000 POST /api/message, 200 concurrent", "all 200, RSS 112 -> 608 MB, probe max 5.3 s, 5,000 alerts per device", broadcastFlood],
  ["4 connections pinging as fast as they can", "none closed, probe p99 150 ms", pingFlood],
];

const rows: Row[] = [];
const chosen = smoke ? attacks.slice(0, 1) : attacks.filter(([name]) => only === undefined || only.some((o) => name.includes(o)));
for (const [name, before, attack] of chosen) {
  const gw = await startGateway();
  const pid = gw.spawned.proc.pid;
  try {
    const probe = startProbe(gw.url, ATTACK_MS / 1000 + 2);
    await probe.connected;
    Bun.gc(true);
    const rssBefore = rssMiB(pid);
    const stopRss = sampleRss(pid);
    const cpuBefore = cpuSeconds(pid);
    const selfBefore = cpuSeconds(process.pid);
    if (process.env.FLOOD_NICE) os.setPriority(19);
    const outcome = await attack(gw, performance.now() + ATTACK_MS);
    if (process.env.FLOOD_NICE) os.setPriority(0);
    const gatewayCpuS = Math.round((cpuSeconds(pid) - cpuBefore) * 100) / 100;
    const attackerCpuS = Math.round((cpuSeconds(process.pid) - selfBefore) * 100) / 100;
    const rssPeak = stopRss();
    const probeFigures = await probe.report;
    const row: Row = {
      attack: name,
      before,
      rssBeforeMiB: Math.round(rssBefore),
      rssPeakMiB: Math.round(rssPeak),
      gatewayCpuS,
      attackerCpuS,
      probe: probeFigures,
      outcome,
    };
    rows.push(row);
    process.stderr.write(
      `${name}: RSS ${row.rssBeforeMiB} -> ${row.rssPeakMiB} MiB, gateway CPU ${gatewayCpuS} s, attacker CPU ${attackerCpuS} s, probe p99 ${probeFigures.p99Ms} ms; ${outcome}\n`,
    );
  } finally {
    gw.spawned.proc.kill(process.env.FLOOD_PROF ? "SIGTERM" : "SIGKILL");
    await gw.spawned.proc.exited;
  }
}

const machine = `${os.cpus()[0]?.model ?? "unknown CPU"}, ${os.cpus().length} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Bun ${Bun.version}`;
const ms = (v: number | null) => (v === null ? "-" : `${v} ms`);
const table = [
  `Floods against \`serve\` (production defaults), ${ATTACK_MS / 1000} s each; ${machine}`,
  "",
  "| attack | before (issue 11) | gateway RSS | CPU s gateway / attacker | probe p50 / p99 / max (lost) | what the attacker got |",
  "|---|---|---|---|---|---|",
  ...rows.map(
    (r) =>
      `| ${r.attack} | ${r.before} | ${r.rssBeforeMiB} -> ${r.rssPeakMiB} MiB | ${r.gatewayCpuS} / ${r.attackerCpuS} | ${ms(r.probe.p50Ms)} / ${ms(r.probe.p99Ms)} / ${ms(r.probe.maxMs)} (${r.probe.lost}) | ${r.outcome} |`,
  ),
].join("\n");
console.log(table);
if (!smoke) {
  mkdirSync(path.join(root, "bench/results"), { recursive: true });
  const file = path.join(root, "bench/results", `${new Date().toISOString().slice(0, 10)}-floods.json`);
  await Bun.write(file, JSON.stringify({ machine, attackMs: ATTACK_MS, rows }, null, 2));
  console.log(`\nwritten to ${path.relative(root, file)}`);
}
