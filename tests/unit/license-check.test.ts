import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

const SCRIPT = path.join(import.meta.dir, "../../.ci/check-licenses.ts");
const dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-licenses-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A project whose shipped dependency `a` depends on `b`; `dev` is a devDependency. */
function project(name: string, licenses: { a: string; b: string; dev: string }): string {
  const root = path.join(dir, name);
  const pkg = (p: string, m: object) => {
    mkdirSync(p, { recursive: true });
    writeFileSync(path.join(p, "package.json"), JSON.stringify(m));
  };
  pkg(root, { dependencies: { a: "1" }, devDependencies: { dev: "1" } });
  pkg(path.join(root, "node_modules/a"), { name: "a", version: "1.0.0", license: licenses.a, dependencies: { b: "1" } });
  pkg(path.join(root, "node_modules/b"), { name: "b", version: "2.0.0", license: licenses.b });
  pkg(path.join(root, "node_modules/dev"), { name: "dev", version: "3.0.0", license: licenses.dev });
  return root;
}

async function check(root: string) {
  const proc = Bun.spawn(["bun", SCRIPT, root], { stdout: "pipe", stderr: "pipe" });
  return { code: await proc.exited, out: await new Response(proc.stdout).text(), err: await new Response(proc.stderr).text() };
}

test("a GPL package the binary ships, even a transitive one, fails the check; a test-only one does not", async () => {
  const ok = await check(project("ok", { a: "MIT", b: "ISC", dev: "GPL-3.0" }));
  expect(ok.code).toBe(0);
  expect(ok.out).toContain("2 shipped packages");
  const bad = await check(project("bad", { a: "MIT", b: "AGPL-3.0-only", dev: "MIT" }));
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("b@2.0.0: AGPL-3.0-only");
  const dual = await check(project("dual", { a: "(GPL-2.0 OR MIT)", b: "MIT", dev: "MIT" }));
  expect(dual.code).toBe(0);
  const none = await check(project("none", { a: "MIT", b: "", dev: "MIT" }));
  expect(none.code).toBe(1);
  expect(none.err).toContain("b@2.0.0: states no license");
});
