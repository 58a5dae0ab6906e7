import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configSchema, DEFAULT_JWT_SECRET } from "../../src/config/config-schema";
import { configFlags, configHelp, loadConfig } from "../../src/config/load-config";
import { ErrorCode, GatewayError } from "../../src/errors";

let dir = "";
let emptyYaml = "";
let n = 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "xiaozhi-im-config-"));
  emptyYaml = yamlFile("");
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Writes a settings file and returns its path. */
function yamlFile(text: string): string {
  const path = join(dir, `settings-${n++}.yaml`);
  writeFileSync(path, text);
  return path;
}

function configError(fn: () => unknown): GatewayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw new Error(`expected a GatewayError, got ${String(err)}`);
  }
  throw new Error("expected loadConfig to throw");
}

/** Asserts the error is ERR_CONFIG_INVALID on one line and names every part given. */
function expectOneLineError(err: GatewayError, ...parts: string[]): void {
  expect(err.code).toBe(ErrorCode.ConfigInvalid);
  expect(err.message).not.toContain("\n");
  for (const p of parts) expect(err.message).toContain(p);
}

describe("defaults", () => {
  test("an empty settings file, no env, no flags gives the documented defaults", () => {
    const c = loadConfig({ yamlPath: emptyYaml });
    expect(c.port).toBe(8081);
    expect(c.host).toBe("0.0.0.0");
    expect(c.debug).toBe(false);
    expect(c.logLevel).toBe("auto");
    expect(c.aiServiceGrpcAddr).toEqual({ t: "embedded" });
    expect(c.aiServiceTransport).toBe("relay");
    expect(c.grpcMaxConnections).toBe(0);
    expect(c.grpcHeartbeatSeconds).toBe(30);
    expect(c.grpcReconnectSeconds).toBe(5);
    expect(c.grpcReconnectMaxSeconds).toBe(60);
    expect(c.jwtSecret).toBe(DEFAULT_JWT_SECRET);
    expect(c.authRequired).toBe(true);
    expect(c.helloTimeoutSeconds).toBe(10);
    expect(c.idleTimeoutSeconds).toBe(120);
    expect(c.audioFormat).toBe("opus");
    expect(c.audioSampleRate).toBe(24000);
    expect(c.audioChannels).toBe(1);
    expect(c.audioFrameDurationMs).toBe(60);
    expect(c.aiServerPort).toBe(50051);
  });

  test("every key of the schema gets its default", () => {
    const c = loadConfig({ yamlPath: emptyYaml }) as Record<string, unknown>;
    for (const [k, spec] of Object.entries(configSchema)) expect(c[k]).toEqual(spec.default);
  });

  test("a yaml key set to null keeps the default", () => {
    expect(loadConfig({ yamlPath: yamlFile("im_server_port:\n") }).port).toBe(8081);
  });
});

describe("precedence: defaults < settings.yaml < env < flags", () => {
  test("yaml overrides the default", () => {
    const c = loadConfig({ yamlPath: yamlFile("im_server_port: 9000\nim_server_host: 127.0.0.1\n") });
    expect(c.port).toBe(9000);
    expect(c.host).toBe("127.0.0.1");
  });

  test("env overrides yaml", () => {
    const path = yamlFile("im_server_port: 9000\nim_server_host: 127.0.0.1\n");
    const c = loadConfig({ yamlPath: path, env: { IM_SERVER_PORT: "9001" } });
    expect(c.port).toBe(9001);
    expect(c.host).toBe("127.0.0.1");
  });

  test("flags override env and yaml", () => {
    const path = yamlFile("im_server_port: 9000\nim_server_debug: false\n");
    const c = loadConfig({ yamlPath: path, env: { IM_SERVER_PORT: "9001", IM_SERVER_DEBUG: "false" }, flags: { port: "9002", debug: true } });
    expect(c.port).toBe(9002);
    expect(c.debug).toBe(true);
  });

  test("an empty env value does not override yaml", () => {
    const c = loadConfig({ yamlPath: yamlFile("im_server_port: 9000\n"), env: { IM_SERVER_PORT: "" } });
    expect(c.port).toBe(9000);
  });

  test("IM_SERVER_PORT wins over PORT; PORT alone is used", () => {
    expect(loadConfig({ yamlPath: emptyYaml, env: { IM_SERVER_PORT: "7001", PORT: "7002" } }).port).toBe(7001);
    expect(loadConfig({ yamlPath: emptyYaml, env: { PORT: "7002" } }).port).toBe(7002);
  });

  test("a named settings file that does not exist is an error", () => {
    const err = configError(() => loadConfig({ yamlPath: join(dir, "nope.yaml") }));
    expectOneLineError(err, "nope.yaml");
  });

  test("env values are trimmed integers", () => {
    expect(loadConfig({ yamlPath: emptyYaml, env: { IM_SERVER_PORT: " 8082 " } }).port).toBe(8082);
  });

  test("fractional seconds are allowed", () => {
    expect(loadConfig({ yamlPath: emptyYaml, env: { IM_HELLO_TIMEOUT_SECONDS: "0.25" } }).helloTimeoutSeconds).toBe(0.25);
  });
});

describe("invalid values: one line naming the key, the value and what is allowed", () => {
  test("port 99999 from env", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { IM_SERVER_PORT: "99999" } }));
    expectOneLineError(err, "IM_SERVER_PORT", "99999", "0 to 65535");
  });

  test("port 99999 from a flag", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, flags: { port: "99999" } }));
    expectOneLineError(err, "--port", "99999", "0 to 65535");
  });

  test("port 99999 from yaml", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile("im_server_port: 99999\n") }));
    expectOneLineError(err, "im_server_port", "99999", "0 to 65535");
  });

  test("a port that is not an integer", () => {
    for (const v of ["80.5", "abc", "0x50", "1e3"]) {
      const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { PORT: v } }));
      expectOneLineError(err, "PORT", v, "integer");
    }
  });

  test("negative or zero seconds", () => {
    const neg = configError(() => loadConfig({ yamlPath: emptyYaml, env: { GRPC_RECONNECT_SECONDS: "-5" } }));
    expectOneLineError(neg, "GRPC_RECONNECT_SECONDS", "-5", "greater than 0");
    const zero = configError(() => loadConfig({ yamlPath: yamlFile("im_hello_timeout_seconds: 0\n") }));
    expectOneLineError(zero, "im_hello_timeout_seconds", "0", "greater than 0");
  });

  test("unknown yaml key: names the key and suggests the nearest one, not the whole list", () => {
    const path = yamlFile("im_server_prot: 8080\n");
    const err = configError(() => loadConfig({ yamlPath: path }));
    expectOneLineError(err, "im_server_prot", path, "did you mean im_server_port?");
    expect(err.message).not.toContain("jwt_secret");
    // Written as the environment variable, or with dashes: still found.
    expect(configError(() => loadConfig({ yamlPath: yamlFile("IM_SERVER_PORT: 8080\n") })).message).toContain("did you mean im_server_port?");
    expect(configError(() => loadConfig({ yamlPath: yamlFile("log-level: info\n") })).message).toContain("did you mean log_level?");
    // Nothing near: where the list is.
    expect(configError(() => loadConfig({ yamlPath: yamlFile("colour: blue\n") })).message).toContain("xiaozhi-im --help");
  });

  test("unparsable AI_SERVICE_GRPC_ADDR", () => {
    for (const v of ["localhost", "host:", "host:70000", "a:1,", "::1:50051", "host:port"]) {
      const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { AI_SERVICE_GRPC_ADDR: v } }));
      expectOneLineError(err, "AI_SERVICE_GRPC_ADDR", JSON.stringify(v), "host:port");
    }
  });

  test("a value with a newline is still reported on one line", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile('im_server_port: "1\\n2"\n') }));
    expectOneLineError(err, "im_server_port");
  });

  test("bad boolean", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { IM_AUTH_REQUIRED: "maybe" } }));
    expectOneLineError(err, "IM_AUTH_REQUIRED", "maybe", "true or false");
  });

  test("bad enum", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, flags: { "log-level": "loud" } }));
    expectOneLineError(err, "--log-level", "loud", "info");
  });

  test("a settings file that is not a mapping", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile("- a\n- b\n") }));
    expectOneLineError(err, "mapping");
  });
});

describe("JWT_SECRET is never echoed", () => {
  const secret = "s3cr3t-value-7f9a";

  test("a valid secret is loaded from env and yaml", () => {
    expect(loadConfig({ yamlPath: emptyYaml, env: { JWT_SECRET: secret } }).jwtSecret).toBe(secret);
    expect(loadConfig({ yamlPath: yamlFile(`jwt_secret: ${secret}\n`) }).jwtSecret).toBe(secret);
  });

  test("whitespace-only secret from env: error without the value", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { JWT_SECRET: "   " } }));
    expectOneLineError(err, "JWT_SECRET", "(hidden)", "non-empty");
  });

  test("a secret of the wrong shape in yaml: error without the value", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile(`jwt_secret:\n  nested: ${secret}\n`) }));
    expectOneLineError(err, "jwt_secret");
    expect(err.message).not.toContain(secret);
  });

  test("a yaml syntax error shows the line and the column it is at", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile("log_level: info\nim_server_port: 8080: 1\n") }));
    expect(err.code).toBe(ErrorCode.ConfigInvalid);
    expect(err.message.split("\n")).toEqual([expect.stringContaining("at line 2, column 17"), "  im_server_port: 8080: 1", `  ${" ".repeat(16)}^`]);
  });

  test("a yaml syntax error on the secret's line does not echo it", () => {
    const err = configError(() => loadConfig({ yamlPath: yamlFile(`jwt_secret: ${secret}: oops\n`) }));
    expect(err.code).toBe(ErrorCode.ConfigInvalid);
    expect(err.message).not.toContain("\n");
    expect(err.message).not.toContain(secret);
  });

  test("another key's error does not mention the secret", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { JWT_SECRET: secret, PORT: "-1" } }));
    expect(err.message).not.toContain(secret);
  });

  test("--jwt-secret flag with an empty value: error without the value", () => {
    const err = configError(() => loadConfig({ yamlPath: emptyYaml, env: { JWT_SECRET: secret }, flags: { "jwt-secret": " " } }));
    expectOneLineError(err, "--jwt-secret");
    expect(err.message).not.toContain(secret);
  });
});

describe("AI_SERVICE_GRPC_ADDR", () => {
  test("embedded, any case", () => {
    expect(loadConfig({ yamlPath: emptyYaml, env: { AI_SERVICE_GRPC_ADDR: "Embedded" } }).aiServiceGrpcAddr).toEqual({ t: "embedded" });
  });

  test("host:port,host:port", () => {
    const c = loadConfig({ yamlPath: emptyYaml, env: { AI_SERVICE_GRPC_ADDR: "ai-1.internal:50051, 10.0.0.7:6000" } });
    expect(c.aiServiceGrpcAddr).toEqual({
      t: "remote",
      targets: [
        { host: "ai-1.internal", port: 50051 },
        { host: "10.0.0.7", port: 6000 },
      ],
    });
  });

  test("IPv6 in brackets keeps its brackets for the URL", () => {
    const c = loadConfig({ yamlPath: emptyYaml, flags: { "ai-addr": "[::1]:50051" } });
    expect(c.aiServiceGrpcAddr).toEqual({ t: "remote", targets: [{ host: "[::1]", port: 50051 }] });
  });

  test("from yaml", () => {
    const c = loadConfig({ yamlPath: yamlFile("ai_service_grpc_addr: a:1,[fe80::1]:2\n") });
    expect(c.aiServiceGrpcAddr).toEqual({
      t: "remote",
      targets: [
        { host: "a", port: 1 },
        { host: "[fe80::1]", port: 2 },
      ],
    });
  });
});

describe("booleans", () => {
  const cases: [string, boolean][] = [
    ["true", true],
    ["false", false],
    ["1", true],
    ["0", false],
    ["yes", true],
    ["no", false],
    ["YES", true],
    ["On", true],
    ["off", false],
  ];
  for (const [raw, want] of cases) {
    test(`${raw} -> ${want}`, () => {
      expect(loadConfig({ yamlPath: emptyYaml, env: { IM_SERVER_DEBUG: raw } }).debug).toBe(want);
      expect(loadConfig({ yamlPath: emptyYaml, env: { IM_AUTH_REQUIRED: raw } }).authRequired).toBe(want);
    });
  }

  test("yaml booleans", () => {
    const c = loadConfig({ yamlPath: yamlFile("im_server_debug: true\nim_auth_required: false\n") });
    expect(c.debug).toBe(true);
    expect(c.authRequired).toBe(false);
  });
});

describe("help", () => {
  test("configHelp() lists every env name and flag", () => {
    const help = configHelp();
    for (const spec of Object.values(configSchema)) {
      for (const name of spec.env) expect(help).toContain(name);
    }
    for (const flag of configFlags()) expect(help).toContain(`--${flag}`);
    expect(help).toContain("IM_SERVER_PORT");
    expect(help).toContain("JWT_SECRET");
    expect(help).toContain("AI_SERVICE_GRPC_ADDR");
  });

  test("configHelp() does not print the built-in secret", () => {
    expect(configHelp()).not.toContain(DEFAULT_JWT_SECRET);
  });

  test("configFlags() names the flags the CLI accepts", () => {
    const flags = configFlags();
    expect(flags).toContain("port");
    expect(flags).toContain("jwt-secret");
    expect(flags).toContain("ai-addr");
  });
});
