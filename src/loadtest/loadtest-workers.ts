import { randomDevicePrefix } from "./device-ids";
import { FleetStats, type FleetStatsSnapshot } from "./fleet-stats";
import type { LoadtestOptions } from "./loadtest-options";
import { HEADLINE_METRIC, type LoadtestReport } from "./loadtest-report";
import { opusTestPackets } from "./opus-test-packets";
import { buildReport, type LoadtestIo, runFleet } from "./run-loadtest";

/** The environment variable a worker process reads its share of the run from (JSON). */
export const WORKER_SHARE_ENV = "XIAOZHI_LOADTEST_SHARE";
/** The argument that makes `xiaozhi-im loadtest` a worker of another one. */
export const WORKER_FLAG = "--worker-share";

/** What a worker prints on stdout when its share is done. */
interface WorkerResult {
  readonly stats: FleetStatsSnapshot;
  readonly held: number;
}

/**
 * Runs the fleet over `o.workers` processes, each `command` (this program) with its share of
 * the devices and its own Device-Id prefix, and merges their counts and histograms into one
 * report: one process on one core saturates first, and its own lateness then reads as the
 * gateway's. The share travels in the environment, not the command line (it holds the token
 * secret). A worker that fails is said on stderr and counted as its devices failing.
 */
export async function runLoadtestWorkers(o: LoadtestOptions, command: readonly string[], io: LoadtestIo): Promise<LoadtestReport> {
  const startedAt = new Date();
  const t0 = performance.now();
  const shares = Array.from({ length: o.workers }, (_, i) => Math.floor(o.devices / o.workers) + (i < o.devices % o.workers ? 1 : 0)).filter((n) => n > 0);
  if (io.isTty) io.out(`running ${o.devices} devices in ${shares.length} worker processes\n`);
  const results = await Promise.all(
    shares.map(async (devices) => {
      const share: LoadtestOptions = { ...o, devices, workers: 1, devicePrefix: randomDevicePrefix(), json: true };
      const proc = Bun.spawn([...command, "loadtest", WORKER_FLAG], {
        env: { ...process.env, [WORKER_SHARE_ENV]: JSON.stringify(share) },
        stdout: "pipe",
        stderr: "inherit",
      });
      const out = await new Response(proc.stdout).text();
      const code = await proc.exited;
      try {
        return JSON.parse(out) as WorkerResult;
      } catch {
        io.out(`xiaozhi-im loadtest: a worker of ${devices} devices exited ${code} without its figures\n`);
        return undefined;
      }
    }),
  );
  const stats = new FleetStats(HEADLINE_METRIC[o.scenario], false);
  let held = 0;
  results.forEach((r, i) => {
    if (r === undefined) {
      stats.attempts += shares[i]!;
      stats.failed += shares[i]!;
      stats.error("worker failed");
      return;
    }
    stats.absorb(r.stats);
    held += r.held;
  });
  const packets = opusTestPackets({ frameMs: o.frameMs, targetBytes: o.frameBytes });
  return buildReport(o, stats, { startedAt, elapsedMs: performance.now() - t0, held, packets });
}

/** A worker's side: runs the share in the environment and prints its figures. */
export async function runLoadtestWorkerShare(): Promise<void> {
  const raw = process.env[WORKER_SHARE_ENV];
  if (raw === undefined) throw new Error(`${WORKER_FLAG} is for the processes \`loadtest --workers\` starts`);
  const share = JSON.parse(raw) as LoadtestOptions;
  const run = await runFleet(share, { out: () => {}, isTty: false });
  const result: WorkerResult = { stats: run.stats.snapshot(), held: run.held };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
