// Writes settings.sample.yaml and the README's configuration table from the config schema,
// so the documentation cannot drift from the code (a test checks the sample).
import path from "node:path";
import { configSchema, type KeySpec } from "../src/config/config-schema";

const root = path.join(import.meta.dir, "..");
const specs = Object.values(configSchema) as KeySpec<unknown>[];
const shown = (s: KeySpec<unknown>) => (typeof s.default === "object" ? "embedded" : String(s.default));

const rows = ["| env (yaml key) | flag | default | meaning |", "|---|---|---|---|"];
const yaml = [
  "# xiaozhi-im settings: every key, with its default. Copy to settings.yaml (read from the",
  "# working directory, or --config / XIAOZHI_CONFIG) and change what you need.",
  "# Precedence: defaults < this file < environment < command-line flags.",
  "# Generated from src/config/config-schema.ts by `bun run docs:config`.",
  "",
];
for (const s of specs) {
  const yamlKey = s.env[0]!.toLowerCase();
  const def = s.secret ? "(built-in dev secret)" : shown(s);
  rows.push(`| \`${s.env.join("`, `")}\` (\`${yamlKey}\`) | ${s.flag ? `\`--${s.flag}\`` : ""} | \`${def}\` | ${s.doc} |`);
  yaml.push(`# ${s.doc}`, `# Allowed: ${s.allowed}.`);
  if (s.secret) yaml.push(`# ${yamlKey}: "set-a-long-random-secret"`, "");
  else yaml.push(`${yamlKey}: ${typeof s.default === "string" ? JSON.stringify(s.default) : shown(s)}`, "");
}
await Bun.write(path.join(root, "settings.sample.yaml"), yaml.join("\n"));

const readmePath = path.join(root, "README.md");
const readme = await Bun.file(readmePath).text();
const start = readme.indexOf("<!-- config-table:start");
const end = readme.indexOf("<!-- config-table:end -->");
if (start < 0 || end < 0) throw new Error("README.md lacks the config-table markers");
const head = readme.slice(0, readme.indexOf("\n", start) + 1);
await Bun.write(readmePath, `${head}${rows.join("\n")}\n${readme.slice(end)}`);
console.log(`wrote settings.sample.yaml and the README table (${specs.length} keys)`);
