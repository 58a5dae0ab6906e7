import { expect, test } from "bun:test";
import path from "node:path";
import { configSchema } from "../../src/config/config-schema";
import { loadConfig } from "../../src/config/load-config";

const sample = path.join(import.meta.dir, "../../settings.sample.yaml");

test("settings.sample.yaml documents every key and loads to the defaults", async () => {
  const text = await Bun.file(sample).text();
  for (const spec of Object.values(configSchema)) expect(text).toContain(spec.env[0]!.toLowerCase());
  const config = loadConfig({ yamlPath: sample });
  for (const [key, spec] of Object.entries(configSchema)) expect(config[key as keyof typeof config]).toEqual(spec.default);
});
