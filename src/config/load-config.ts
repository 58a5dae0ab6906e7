import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml, YAMLParseError } from "yaml";
import { ErrorCode, GatewayError, isGatewayError } from "../errors";
import { shownDefault } from "./config-docs";
import { type Config, type ConfigKey, configSchema, type KeySpec } from "./config-schema";

/** Where configuration comes from; each later source overrides the earlier ones. */
export interface ConfigSources {
  /** Environment variables (default: none; main passes process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** CLI flag values keyed by flag name without dashes (e.g. `port`). */
  readonly flags?: Readonly<Record<string, string | boolean | undefined>>;
  /** settings.yaml path. Absent: `./settings.yaml` when it exists. A named file must exist. */
  readonly yamlPath?: string;
}

const keys = Object.keys(configSchema) as ConfigKey[];

function yamlName(spec: KeySpec<unknown>): string {
  return spec.env[0]!.toLowerCase();
}

function invalid(source: string, spec: KeySpec<unknown>, raw: unknown, allowed: string): GatewayError {
  const shown = spec.secret ? "(hidden)" : JSON.stringify(raw);
  return new GatewayError(ErrorCode.ConfigInvalid, `config: ${source}=${shown} is invalid: allowed ${allowed}`);
}

function parseValue(source: string, spec: KeySpec<unknown>, raw: unknown): unknown {
  try {
    return spec.parse(raw);
  } catch (err) {
    throw invalid(source, spec, raw, isGatewayError(err) ? err.message : spec.allowed);
  }
}

function readYaml(path: string): Record<string, unknown> {
  let doc: unknown;
  const text = readFileSync(path, "utf8");
  try {
    doc = parseYaml(text);
  } catch (cause) {
    const first = (cause as Error).message.split("\n")[0]!.replace(/:$/, "");
    throw new GatewayError(ErrorCode.ConfigInvalid, `config: cannot read ${path}: ${first}${yamlExcerpt(text, cause)}`, { cause });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new GatewayError(ErrorCode.ConfigInvalid, `config: ${path} must be a mapping of key: value`);
  }
  return doc as Record<string, unknown>;
}

/** Keys whose line a syntax error must not show: the value is a secret. */
const SECRET_YAML_KEYS = keys.filter((k) => configSchema[k].secret === true).map((k) => yamlName(configSchema[k]));

/**
 * The line a YAML syntax error points at, with a caret under the column, so that the one-line
 * error says where; nothing when that line holds a secret's value.
 */
function yamlExcerpt(text: string, cause: unknown): string {
  const pos = cause instanceof YAMLParseError ? cause.linePos?.[0] : undefined;
  if (pos === undefined) return "";
  const line = text.split("\n")[pos.line - 1] ?? "";
  if (SECRET_YAML_KEYS.some((k) => line.trimStart().startsWith(k))) return "";
  return `\n  ${line}\n  ${" ".repeat(Math.max(0, pos.col - 1))}^`;
}

/** The settings file `loadConfig` reads: the one named, else ./settings.yaml if present. */
export function settingsFile(sources: Pick<ConfigSources, "yamlPath"> = {}): string | undefined {
  return sources.yamlPath ?? (existsSync("settings.yaml") ? "settings.yaml" : undefined);
}

/** The known key nearest to a misspelt one (edit distance, case and `-` ignored), if near. */
function closest(name: string, known: readonly string[]): string | undefined {
  const wanted = name.toLowerCase().replaceAll("-", "_");
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(wanted, k);
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(wanted.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * Loads the configuration: defaults < settings.yaml < env < flags. Throws a GatewayError
 * (ERR_CONFIG_INVALID) with one line naming the key, the value and what is allowed, for a
 * bad value or an unknown YAML key.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = configSchema[k].default;

  const yamlPath = settingsFile(sources);
  if (yamlPath !== undefined) {
    if (!existsSync(yamlPath)) throw new GatewayError(ErrorCode.ConfigInvalid, `config: settings file ${yamlPath} does not exist`);
    const doc = readYaml(yamlPath);
    const byName = new Map(keys.map((k) => [yamlName(configSchema[k]), k] as const));
    for (const [name, raw] of Object.entries(doc)) {
      const k = byName.get(name);
      if (k === undefined) {
        const near = closest(name, [...byName.keys()]);
        const hint = near === undefined ? "`xiaozhi-im --help` lists every key" : `did you mean ${near}?`;
        throw new GatewayError(ErrorCode.ConfigInvalid, `config: unknown key ${JSON.stringify(name)} in ${yamlPath}: ${hint}`);
      }
      if (raw === null) continue;
      out[k] = parseValue(`${yamlPath}: ${name}`, configSchema[k], raw);
    }
  }

  const env = sources.env ?? {};
  for (const k of keys) {
    const spec = configSchema[k];
    // The first name wins when several are set (IM_SERVER_PORT over PORT).
    const name = spec.env.find((n) => env[n] !== undefined && env[n] !== "");
    if (name !== undefined) out[k] = parseValue(name, spec, env[name]);
  }

  const flags = sources.flags ?? {};
  for (const k of keys) {
    const spec = configSchema[k];
    if (spec.flag === undefined) continue;
    const raw = flags[spec.flag];
    if (raw !== undefined) out[k] = parseValue(`--${spec.flag}`, spec, raw);
  }
  return out as Config;
}

/** The flag names of the schema, for the CLI parser (all take a value). */
export function configFlags(): string[] {
  return keys.flatMap((k) => (configSchema[k].flag === undefined ? [] : [configSchema[k].flag!]));
}

/** `--help` text: every key with its sources, default and meaning. */
export function configHelp(): string {
  const lines = ["Configuration (defaults < settings.yaml < env < flags):", ""];
  for (const k of keys) {
    const spec: KeySpec<unknown> = configSchema[k];
    const def = spec.secret ? shownDefault(spec) : formatDefault(spec.default);
    const flag = spec.flag ? `  --${spec.flag}` : "";
    lines.push(`  ${spec.env.join(" | ")}${flag}  [yaml: ${yamlName(spec)}]  default ${def}`);
    lines.push(`      ${spec.doc} Allowed: ${spec.allowed}.`);
  }
  return lines.join("\n");
}

function formatDefault(v: unknown): string {
  if (typeof v === "object" && v !== null && "t" in v && (v as { t: string }).t === "embedded") return "embedded";
  return JSON.stringify(v);
}
