import { expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

interface Results {
  machine: { cpu: string; cores: number; bun: string };
  micro: { name: string; avgNs: number }[];
  latency: {
    system: string;
    devices: number;
    sent: number;
    received: number;
    lost: number;
    roundTrip: { count: number; p50Ms: number; p99Ms: number } | null;
  }[];
  memory: { devices: number; perDeviceKiB: number }[];
  capacity: { runs: { gatewayWorkers: number; devices: number; sent: number; received: number; lost: number }[] };
}

// Checks that `bun run bench` runs end to end and reports what it measured, never how fast:
// timings are the benchmark's business, not a test's.
test("the benchmark runs every stage (micro, floor vs gateway latency, memory, capacity with workers) and reports consistent figures", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-bench-"));
  try {
    const proc = Bun.spawn(["bun", path.join(import.meta.dir, "../../bench/run.ts"), "--smoke"], {
      env: { ...process.env, BENCH_RESULTS_DIR: dir },
      stdout: "pipe",
      stderr: "pipe",
    });
    const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    expect(code).toBe(0);
    expect(out).toContain("| system | devices | p50 | p99 |");
    const files = readdirSync(dir).filter((f) => f.endsWith("-smoke.json"));
    expect(files).toHaveLength(1);
    const r = JSON.parse(readFileSync(path.join(dir, files[0]!), "utf8")) as Results;
    expect(r.machine.cores).toBeGreaterThan(0);
    expect(r.machine.bun).toBe(Bun.version);
    expect(r.micro.find((m) => m.name === "frame-v3/decode/60ms")?.avgNs).toBeGreaterThan(0);
    expect(r.latency.map((l) => `${l.system}/${l.devices}`)).toEqual(["floor/1", "floor/20", "relay/separate/1", "relay/separate/20"]);
    for (const l of r.latency) {
      expect(l.sent).toBeGreaterThan(0);
      expect(l.received).toBe(l.sent);
      expect(l.lost).toBe(0);
      expect(l.roundTrip?.count).toBe(l.received);
      expect(l.roundTrip!.p50Ms).toBeLessThanOrEqual(l.roundTrip!.p99Ms);
    }
    expect(r.memory).toHaveLength(1);
    expect(r.memory[0]!.devices).toBe(50);
    expect(Number.isFinite(r.memory[0]!.perDeviceKiB)).toBe(true);
    // A gateway of two workers, the fleet from a load generator of two processes.
    expect(r.capacity.runs.map((c) => [c.gatewayWorkers, c.devices])).toEqual([[2, 20]]);
    expect(r.capacity.runs[0]!.sent).toBeGreaterThan(0);
    expect(r.capacity.runs[0]!.received).toBe(r.capacity.runs[0]!.sent);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);
