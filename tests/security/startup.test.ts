import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** The real process: what start-up refuses, and that the quick start still starts. */

const ROOT = path.join(import.meta.dir, "../..");
const MAIN = path.join(ROOT, "src/main.ts");
const dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-startup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The environment without any of the settings under test, so that only `env` counts. */
function cleanEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !/^(JWT_|IM_|AI_|REDIS_URL|LOG_|XIAOZHI_CONFIG|PORT$)/.test(k)) out[k] = v;
  }
  return { ...out, IM_SERVER_HOST: "127.0.0.1", ...env };
}

/** Runs `serve` until it exits, or until `readyLine` appears on stdout (then stops it). */
async function serve(args: string[], env: Record<string, string>, readyLine?: string) {
  // A directory of its own: no settings.yaml of the repository is picked up.
  const proc = Bun.spawn(["bun", MAIN, "serve", "--port", "0", ...args], { cwd: dir, env: cleanEnv(env), stdout: "pipe", stderr: "pipe" });
  let stdout = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stdout) {
      stdout += decoder.decode(chunk, { stream: true });
      if (readyLine !== undefined && stdout.includes(readyLine)) proc.kill("SIGTERM");
    }
  })();
  const exitCode = await proc.exited;
  await reader;
  const stderr = await new Response(proc.stderr).text();
  return { exitCode, stdout, stderr: stderr.trim() };
}

describe("start-up", () => {
  test("production (no IM_SERVER_DEBUG) with the built-in secret: exit 2, one line saying what to do", async () => {
    const r = await serve([], {});
    expect(r.exitCode).toBe(2);
    expect(r.stderr.split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("JWT_SECRET is not set");
    expect(r.stderr).toContain("IM_SERVER_DEBUG");
  }, 20_000);

  test("conflicting key sources and an unreadable key file: exit 2, one line", async () => {
    const both = await serve([], { JWT_SECRET: "s3cret-s3cret-s3cret-s3cret-s3cret-s3", JWT_JWKS_URL: "https://idp.example.com/jwks" });
    expect(both.exitCode).toBe(2);
    expect(both.stderr.split("\n")).toHaveLength(1);
    expect(both.stderr).toContain("JWT_SECRET and JWT_JWKS_URL are both set");
    expect(both.stderr).not.toContain("s3cret");
    const missing = await serve([], { JWT_PUBLIC_KEY: path.join(dir, "nope.pem") });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toMatch(/^xiaozhi-im: JWT_PUBLIC_KEY: cannot read ".*nope\.pem"/);
    const origins = await serve([], { JWT_SECRET: "s3cret-s3cret-s3cret-s3cret-s3cret-s3", IM_ALLOWED_ORIGINS: "https://*.example.com" });
    expect(origins.exitCode).toBe(2);
    expect(origins.stderr).toContain("IM_ALLOWED_ORIGINS");
    const proxies = await serve([], { JWT_SECRET: "s3cret-s3cret-s3cret-s3cret-s3cret-s3", IM_TRUSTED_PROXIES: "10.0.0.0/33" });
    expect(proxies.exitCode).toBe(2);
    expect(proxies.stderr).toMatch(/^xiaozhi-im: IM_TRUSTED_PROXIES: "10\.0\.0\.0\/33" is not/);
  }, 30_000);

  test("a port in use: one line naming it and the way out, exit 2, before anything starts", async () => {
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const r = await serve(["--debug", "--port", String(taken.port)], {});
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toBe(`xiaozhi-im: port ${taken.port} is in use (another xiaozhi-im?): use --port or IM_SERVER_PORT`);
      // Nothing started first: not even the embedded AI service.
      expect(r.stdout).not.toContain("ai service listening");
    } finally {
      taken.stop(true);
    }
  }, 30_000);

  test("the start-up line gives the test page and how to get a token; the settings file is named", async () => {
    const r = await serve(["--debug"], {}, '"msg":"gateway listening"');
    const lines = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const listening = lines.find((l) => l.msg === "gateway listening");
    expect(String(listening?.testPage)).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/test-websocket\.html$/);
    expect(String(listening?.tokens)).toContain("development token");
    expect(lines.find((l) => l.msg === "settings loaded")?.settings).toContain("none");
  }, 30_000);

  test("the quick start (`bun start` = serve --debug) starts with the built-in secret, for local use", async () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { scripts: { start: string } };
    expect(pkg.scripts.start).toBe("bun src/main.ts serve --debug");
    const r = await serve(["--debug"], {}, '"msg":"gateway listening"');
    expect(r.stdout).toContain('"msg":"device tokens are verified"');
    expect(r.stdout).toContain("built-in development secret");
  }, 30_000);

  test("with its own JWT_SECRET it starts and logs the verification summary, never the secret", async () => {
    const secret = "production-secret-0123456789-abcdefghijklmnop";
    const r = await serve([], { JWT_SECRET: secret, JWT_ISSUER: "https://issuer.example.com" }, '"msg":"gateway listening"');
    const summary = r.stdout.split("\n").find((l) => l.includes('"msg":"device tokens are verified"'));
    expect(JSON.parse(summary!)).toMatchObject({ keySource: "secret", algorithms: ["HS256"], issuer: ["https://issuer.example.com"], weakSecret: false });
    expect(r.stdout).not.toContain(secret);
    expect(r.stdout).not.toContain("built-in development secret");
  }, 30_000);
});
