import { expect, test } from "bun:test";
import path from "node:path";
import { renderConfigDoc, renderSampleYaml } from "../../src/config/config-docs";
import { configSchema, DEFAULT_JWT_SECRET } from "../../src/config/config-schema";
import { loadConfig } from "../../src/config/load-config";

const root = path.join(import.meta.dir, "../..");
const sample = path.join(root, "settings.sample.yaml");
const doc = path.join(root, "docs/configuration.md");

test("settings.sample.yaml and docs/configuration.md are what the schema generates (bun run docs:config)", async () => {
  expect(await Bun.file(sample).text()).toBe(renderSampleYaml());
  expect(await Bun.file(doc).text()).toBe(renderConfigDoc());
});

test("settings.sample.yaml documents every key and loads to the defaults", async () => {
  const text = await Bun.file(sample).text();
  for (const spec of Object.values(configSchema)) expect(text).toContain(spec.env[0]!.toLowerCase());
  const config = loadConfig({ yamlPath: sample });
  for (const [key, spec] of Object.entries(configSchema)) expect(config[key as keyof typeof config]).toEqual(spec.default);
});

test("every default docs/configuration.md shows is the real one", async () => {
  const rows = new Map<string, string>();
  for (const line of (await Bun.file(doc).text()).split("\n")) {
    const m = /^\| `([A-Z0-9_]+)`.*? \| [^|]* \| `([^`]*)` \|/.exec(line);
    if (m) rows.set(m[1]!, m[2]!);
  }
  for (const spec of Object.values(configSchema)) {
    const shown = rows.get(spec.env[0]!);
    const d: unknown = spec.default;
    if (d === DEFAULT_JWT_SECRET) expect(shown).toBe("(built-in dev secret)");
    else if (d === "") expect(shown).toBe("(empty)");
    else if (typeof d === "object") expect(shown).toBe("embedded");
    else expect(shown).toBe(String(d));
  }
  expect(rows.size).toBe(Object.keys(configSchema).length);
});
