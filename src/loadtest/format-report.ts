import type { LatencySummary } from "./latency-histogram";
import { HEADLINE_METRIC, type LoadtestReport } from "./loadtest-report";

const LATENCY_ROWS = [
  ["connect", "connect"],
  ["hello", "hello"],
  ["roundTrip", "round trip"],
  ["speechRecognized", "speech recognized"],
  ["firstAnswer", "first answer"],
  ["jitter", "answer jitter"],
  ["sendLag", "send lag (client)"],
] as const;

const METRIC_LABEL = { roundTrip: "round trip", firstAnswer: "first answer", hello: "hello" } as const;

function ms(v: number | null): string {
  if (v === null) return "-";
  return v >= 1000 ? v.toFixed(0) : v >= 100 ? v.toFixed(1) : v.toFixed(3);
}

function row(label: string, s: LatencySummary, width: number): string {
  const cells = [s.count, s.minMs, s.p50Ms, s.p90Ms, s.p99Ms, s.p999Ms, s.maxMs, s.meanMs];
  return `  ${label.padEnd(width)}${cells.map((c, i) => (i === 0 ? String(c) : ms(c as number | null)).padStart(i === 0 ? 8 : 9)).join("")}`;
}

function percent(part: number, whole: number): string {
  return whole === 0 ? "0%" : `${((100 * part) / whole).toFixed(part === 0 ? 0 : 3)}%`;
}

/**
 * The human summary of a run: what was run, connection and frame counts, a latency table
 * (ms; rows with nothing measured are left out, except the scenario's headline), errors by kind, churn waves, the SLO verdict
 * and warnings.
 */
export function formatReport(r: LoadtestReport): string {
  const lines: string[] = [];
  const c = r.connections;
  const f = r.frames;
  lines.push(
    `xiaozhi-im loadtest: ${r.scenario}, ${r.devices} devices${r.workers > 1 ? ` in ${r.workers} processes` : ""}, ${r.transport === "mqtt-udp" ? "MQTT + UDP" : `protocol v${r.protocolVersion}`}, ` +
      `${r.frameMs} ms frames of ${r.frameBytes} B -> ${r.url}`,
  );
  lines.push(`ramp ${r.rampS} s, measured ${r.durationS} s, elapsed ${r.elapsedS.toFixed(1)} s, started ${r.startedAt}`);
  lines.push("");
  lines.push(
    `connections  attempts ${c.attempts}  connected ${c.connected}/${r.devices}  failed ${c.failed}  held ${c.held}` +
      (r.scenario === "churn" ? `  reconnections ${c.reconnections}` : "") +
      `  unexpected closes ${c.unexpectedCloses}`,
  );
  if (r.scenario === "stream" || r.scenario === "conversation") {
    lines.push(`frames       sent ${f.sent}  received ${f.received}  lost ${f.lost} (${percent(f.lost, f.sent)})  unexpected ${f.unexpected}`);
  }
  if (r.conversation !== null) {
    const t = r.conversation;
    lines.push(
      `turns        utterances ${t.utterances}  answers ${t.answers}  timed out ${t.answersTimedOut}  devices answered ${t.devicesAnswered}/${r.devices}`,
    );
  }
  lines.push("");
  const width = 20;
  lines.push(
    `  ${"latency (ms)".padEnd(width)}${["count", "min", "p50", "p90", "p99", "p99.9", "max", "mean"].map((h, i) => h.padStart(i === 0 ? 8 : 9)).join("")}`,
  );
  for (const [key, label] of LATENCY_ROWS) {
    const s = r.latency[key];
    if (s.count > 0 || key === HEADLINE_METRIC[r.scenario]) lines.push(row(label, s, width));
  }
  if (r.waves !== null && r.waves.length > 0) {
    lines.push("");
    lines.push(`  ${"churn wave".padEnd(12)}${["attempts", "failed", "connect p50", "p99", "hello p50", "p99"].map((h) => h.padStart(12)).join("")}`);
    for (const w of r.waves) {
      const cells = [String(w.attempts), String(w.failed), ms(w.connect.p50Ms), ms(w.connect.p99Ms), ms(w.hello.p50Ms), ms(w.hello.p99Ms)];
      lines.push(`  ${String(w.wave).padEnd(12)}${cells.map((x) => x.padStart(12)).join("")}`);
    }
  }
  lines.push("");
  const errors = Object.entries(r.errors).sort((a, b) => b[1] - a[1]);
  lines.push(`errors       ${errors.length === 0 ? "none" : errors.map(([k, n]) => `${k}: ${n}`).join(", ")}`);
  if (r.slo !== null) {
    const s = r.slo;
    const head = `SLO          p99 ${METRIC_LABEL[s.metric]} <= ${s.p99Ms} ms, no frame lost: `;
    lines.push(s.breached ? `${head}BREACHED (${s.reasons.join("; ")})` : `${head}held (p99 ${ms(s.observedP99Ms)} ms)`);
  }
  for (const w of r.warnings) lines.push(`warning      ${w}`);
  return `${lines.join("\n")}\n`;
}
