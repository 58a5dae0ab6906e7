import { expect, test } from "bun:test";
import path from "node:path";
import { validate } from "dockerfile-utils";

// No Docker engine here: the Dockerfile is linted and checked for what the deployment needs;
// the binary it builds is tested directly (binary-smoke.test.ts).
const text = await Bun.file(path.join(import.meta.dir, "../../Dockerfile")).text();

test("the Dockerfile lints clean", () => {
  const problems = validate(text).map((d) => `${d.range.start.line + 1}: ${d.message}`);
  expect(problems).toEqual([]);
});

test("it builds the binary with the pinned Bun and runs it as non-root, on 8081, with a HEALTHCHECK", async () => {
  const pinned = ((await Bun.file(path.join(import.meta.dir, "../../package.json")).json()) as { packageManager: string }).packageManager.replace("bun@", "");
  expect(text).toContain(`FROM oven/bun:${pinned} AS build`);
  expect(text).toContain("RUN bun install --frozen-lockfile");
  expect(text).toContain("RUN bun run build");
  expect(text).toMatch(/^USER 10001$/m);
  expect(text).toMatch(/^EXPOSE 8081$/m);
  expect(text).toMatch(/^HEALTHCHECK .*"healthcheck"\]$/m);
});

test("the HEALTHCHECK command works: 0 while the gateway serves /alive, 1 when nothing listens", async () => {
  const main = path.join(import.meta.dir, "../../src/main.ts");
  const down = Bun.spawnSync(["bun", main, "healthcheck"], { env: { ...process.env, IM_SERVER_PORT: "1" } });
  expect(down.exitCode).toBe(1);
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req) => (new URL(req.url).pathname === "/alive" ? Response.json({ status: "alive" }) : new Response("", { status: 404 })),
  });
  try {
    const up = Bun.spawn(["bun", main, "healthcheck"], { env: { ...process.env, IM_SERVER_PORT: String(server.port) } });
    expect(await up.exited).toBe(0);
  } finally {
    server.stop(true);
  }
});
