import { existsSync, readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { ErrorCode, GatewayError } from "../errors";
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
  } catch (allowed) {
    throw invalid(source, spec, raw, typeof allowed === "string" ? allowed : spec.allowed);
  }
}

function readYaml(path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, "utf8"));
  } catch (cause) {
    throw new GatewayError(ErrorCode.ConfigInvalid, `config: cannot read ${path}: ${(cause as Error).message.split("\n")[0]}`, { cause });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new GatewayError(ErrorCode.ConfigInvalid, `config: ${path} must be a mapping of key: value`);
  }
  return doc as Record<string, unknown>;
}

/**
 * Loads the configuration: defaults < settings.yaml < env < flags. Throws a GatewayError
 * (ERR_CONFIG_INVALID) with one line naming the key, the value and what is allowed, for a
 * bad value or an unknown YAML key.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const out: Record<string, unknown> = {};
  for (const k of keys) out[k] = configSchema[k].default;

  const yamlPath = sources.yamlPath ?? (existsSync("settings.yaml") ? "settings.yaml" : undefined);
  if (yamlPath !== undefined) {
    if (!existsSync(yamlPath)) throw new GatewayError(ErrorCode.ConfigInvalid, `config: settings file ${yamlPath} does not exist`);
    const doc = readYaml(yamlPath);
    const byName = new Map(keys.map((k) => [yamlName(configSchema[k]), k] as const));
    for (const [name, raw] of Object.entries(doc)) {
      const k = byName.get(name);
      if (k === undefined) {
        throw new GatewayError(ErrorCode.ConfigInvalid, `config: unknown key ${JSON.stringify(name)} in ${yamlPath}: allowed ${[...byName.keys()].join(", ")}`);
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
