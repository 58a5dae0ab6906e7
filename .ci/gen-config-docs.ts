// Writes settings.sample.yaml and docs/configuration.md from the config schema, so the
// documentation cannot drift from the code (tests/integration/config-docs.test.ts checks both).
import path from "node:path";
import { renderConfigDoc, renderSampleYaml } from "../src/config/config-docs";

const root = path.join(import.meta.dir, "..");
await Bun.write(path.join(root, "settings.sample.yaml"), renderSampleYaml());
await Bun.write(path.join(root, "docs/configuration.md"), renderConfigDoc());
console.log("wrote settings.sample.yaml and docs/configuration.md");
