import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeJwt } from "jose";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { DEFAULT_JWT_SECRET } from "../../src/config/config-schema";
import { startStack } from "../helpers/start-stack";

const MAIN = join(import.meta.dir, "../../src/main.ts");

let cwd = "";

beforeAll(() => {
  // A fresh directory: no settings.yaml and no .env are picked up.
  cwd = mkdtempSync(join(tmpdir(), "xiaozhi-im-cli-"));
});

afterAll(() => {
  rmSync(cwd, { recursive: true, force: true });
});

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with only the environment given (plus PATH/HOME so bun can run). */
async function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  const base: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "TMPDIR"]) {
    const v = process.env[k];
    if (v !== undefined) base[k] = v;
  }
  const proc = Bun.spawn([process.execPath, MAIN, ...args], {
    cwd,
    env: { ...base, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

function lines(s: string): string[] {
  return s.split("\n").filter((l) => l.trim() !== "");
}

describe("xiaozhi-im CLI", () => {
  test("--help exits 0 and lists the configuration", async () => {
    const r = await cli(["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("Usage: xiaozhi-im");
    for (const name of ["IM_SERVER_PORT", "JWT_SECRET", "AI_SERVICE_GRPC_ADDR"]) expect(r.stdout).toContain(name);
    expect(r.stdout).not.toContain(DEFAULT_JWT_SECRET);
  });

  test("serve --port 99999 exits 2 with one stderr line naming --port and 99999", async () => {
    const r = await cli(["serve", "--port", "99999"]);
    expect(r.code).toBe(2);
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toContain("--port");
    expect(err[0]).toContain("99999");
    expect(r.stdout).toBe("");
  });

  test("a bad env value exits 2 naming the variable", async () => {
    const r = await cli(["serve"], { IM_SERVER_PORT: "-1" });
    expect(r.code).toBe(2);
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toContain("IM_SERVER_PORT");
  });

  test("a bad value in the --config file exits 2 naming the key", async () => {
    const path = join(cwd, "bad.yaml");
    writeFileSync(path, "im_server_port: 99999\n");
    const r = await cli(["serve", "--config", path]);
    expect(r.code).toBe(2);
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toContain("im_server_port");
    expect(err[0]).toContain("99999");
  });

  test("an invalid JWT_SECRET is reported without its value", async () => {
    const r = await cli(["token"], { JWT_SECRET: "   " });
    expect(r.code).toBe(2);
    expect(lines(r.stderr).length).toBe(1);
    expect(r.stderr).toContain("JWT_SECRET");
    expect(r.stdout).toBe("");
  });

  test("token prints one token that verifies, bound to the lower-cased device id", async () => {
    const r = await cli(["token", "--device-id", "AA:BB:CC:DD:EE:FF", "--sub", "u1", "--ttl", "60"], { JWT_SECRET: "s" });
    expect(r.code).toBe(0);
    const out = lines(r.stdout);
    expect(out.length).toBe(1);
    const token = out[0] ?? "";
    const v = await createTokenVerifier({ secret: "s" }).verify(token);
    expect(v.subject).toBe("u1");
    expect(v.deviceId).toBe("aa:bb:cc:dd:ee:ff");
    const p = decodeJwt(token);
    expect(p.device_id).toBe("aa:bb:cc:dd:ee:ff");
    expect((p.exp ?? 0) - (p.iat ?? 0)).toBe(60);
  });

  test("token is signed with JWT_SECRET, not the built-in secret", async () => {
    const r = await cli(["token", "--device-id", "aa:bb:cc:dd:ee:01"], { JWT_SECRET: "another" });
    expect(r.code).toBe(0);
    const token = lines(r.stdout)[0] ?? "";
    await expect(createTokenVerifier({ secret: DEFAULT_JWT_SECRET }).verify(token)).rejects.toThrow();
    expect((await createTokenVerifier({ secret: "another" }).verify(token)).deviceId).toBe("aa:bb:cc:dd:ee:01");
  });

  test("token signed with the built-in development secret says so on stderr", async () => {
    const dev = await cli(["token", "--device-id", "aa:bb:cc:dd:ee:02"]);
    expect(dev.code).toBe(0);
    expect(dev.stderr).toContain("built-in development secret");
    const own = await cli(["token", "--device-id", "aa:bb:cc:dd:ee:02"], { JWT_SECRET: "another" });
    expect(own.stderr).toBe("");
  });

  test("loadtest whose every device is refused exits 1 and says how to fix it", async () => {
    await using stack = await startStack();
    const r = await cli(["loadtest", "--url", stack.wsUrl, "--devices", "2", "--ramp", "0.1", "--duration", "0.2", "--drain", "0.1"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("signing tokens with the built-in development secret");
    expect(r.stderr).toContain("no device connected: the gateway refused the tokens: pass its secret with --jwt-secret");
  }, 20_000);

  test("token with a bad ttl exits 2", async () => {
    const r = await cli(["token", "--ttl", "5x"], { JWT_SECRET: "s" });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("ttl");
    expect(r.stdout).toBe("");
  });

  test("an unknown flag exits 2", async () => {
    const r = await cli(["serve", "--no-such-flag"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--no-such-flag");
    expect(r.stdout).toBe("");
  });

  test("an unknown command exits 2", async () => {
    const r = await cli(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("frobnicate");
  });

  test("a boolean flag given alone is accepted (--debug)", async () => {
    // The run still stops at the bad port, which proves --debug itself parsed.
    const r = await cli(["serve", "--debug", "--port", "99999"]);
    expect(r.code).toBe(2);
    const err = lines(r.stderr);
    expect(err.length).toBe(1);
    expect(err[0]).toContain("--port");
  });
});
