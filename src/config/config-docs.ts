import { configSchema, DEFAULT_JWT_SECRET, type KeySpec } from "./config-schema";

const specs = Object.values(configSchema) as KeySpec<unknown>[];

/**
 * A default as a reader should see it: a secret's value is never printed; the built-in
 * development secret is named as such; an empty string says it is empty.
 */
export function shownDefault(spec: KeySpec<unknown>): string {
  const d = spec.default;
  if (d === DEFAULT_JWT_SECRET) return "(built-in dev secret)";
  if (d === "") return "(empty)";
  if (typeof d === "object") return "embedded";
  return String(d);
}

/** docs/configuration.md: precedence, then every key with its flag, default and meaning. */
export function renderConfigDoc(): string {
  const rows = ["| env (yaml key) | flag | default | meaning |", "|---|---|---|---|"];
  for (const s of specs) {
    const yamlKey = s.env[0]!.toLowerCase();
    rows.push(`| \`${s.env.join("`, `")}\` (\`${yamlKey}\`) | ${s.flag ? `\`--${s.flag}\`` : ""} | \`${shownDefault(s)}\` | ${s.doc} |`);
  }
  return [
    "# Configuration",
    "",
    "<!-- Generated from src/config/config-schema.ts by `bun run docs:config`; do not edit. -->",
    "",
    "Defaults < `settings.yaml` (working directory, or `--config FILE` / `XIAOZHI_CONFIG`) <",
    "environment < flags. `settings.sample.yaml` lists every key with its default. A bad value or",
    "an unknown key stops start-up with one line naming the key, the value and what is allowed.",
    "Durations in `*_SECONDS` may be fractional. `xiaozhi-im --help` prints the same list.",
    "",
    ...rows,
    "",
  ].join("\n");
}

/** settings.sample.yaml: every key at its default; secrets only as commented placeholders. */
export function renderSampleYaml(): string {
  const yaml = [
    "# xiaozhi-im settings: every key, with its default. Copy to settings.yaml (read from the",
    "# working directory, or --config / XIAOZHI_CONFIG) and change what you need.",
    "# Precedence: defaults < this file < environment < command-line flags.",
    "# Generated from src/config/config-schema.ts by `bun run docs:config`.",
    "",
  ];
  for (const s of specs) {
    const yamlKey = s.env[0]!.toLowerCase();
    yaml.push(`# ${s.doc}`, `# Allowed: ${s.allowed}.`);
    if (s.default === DEFAULT_JWT_SECRET)
      yaml.push(`# Default: the built-in development secret (accepted only with --debug).`, `# ${yamlKey}: "set-a-long-random-secret"`, "");
    else if (s.secret) yaml.push(`# Default: empty.`, `# ${yamlKey}: ""`, "");
    else yaml.push(`${yamlKey}: ${typeof s.default === "string" ? JSON.stringify(s.default) : shownDefault(s)}`, "");
  }
  return yaml.join("\n");
}
