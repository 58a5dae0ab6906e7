import { describe, expect, test } from "bun:test";
import { ErrorCode, isGatewayError } from "../../src/errors";
import { deviceIdOf } from "../../src/loadtest/device-ids";
import { LOADTEST_USAGE, parseLoadtestArgs } from "../../src/loadtest/run-loadtest";

function errorOf(argv: string[]): string {
  try {
    parseLoadtestArgs(argv);
  } catch (err) {
    expect(isGatewayError(err, ErrorCode.ConfigInvalid)).toBe(true);
    return (err as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(argv)} to be refused`);
}

describe("parseLoadtestArgs", () => {
  test("--workers: a count, or auto for one per core; anything else is refused", () => {
    expect(parseLoadtestArgs([]).workers).toBe(1);
    expect(parseLoadtestArgs(["--workers", "4"]).workers).toBe(4);
    expect(parseLoadtestArgs(["--workers", "auto"]).workers).toBe(navigator.hardwareConcurrency);
    expect(errorOf(["--workers", "0"])).toContain("--workers");
    expect(errorOf(["--workers", "two"])).toContain("--workers");
  });

  test("defaults", () => {
    const o = parseLoadtestArgs([]);
    expect(o).toMatchObject({
      url: "ws://127.0.0.1:8081/ws",
      devices: 10,
      rampMs: 1000,
      durationMs: 10_000,
      protocolVersion: 3,
      scenario: "stream",
      auth: { t: "none" },
      frameMs: 60,
      frameBytes: 120,
      utteranceFrames: 25,
      json: false,
      sloP99Ms: undefined,
      concurrency: 200,
      churnHoldMinMs: 500,
      churnHoldMaxMs: 2000,
      drainMs: 2000,
      help: false,
    });
    // A MAC-like prefix, locally administered, different per run.
    expect(o.devicePrefix).toMatch(/^[0-9a-f][26ae]:[0-9a-f]{2}:[0-9a-f]{2}$/);
    expect(deviceIdOf(o.devicePrefix, 0x0102ff)).toMatch(/^([0-9a-f]{2}:){3}01:02:ff$/);
    const prefixes = new Set(Array.from({ length: 20 }, () => parseLoadtestArgs([]).devicePrefix));
    expect(prefixes.size).toBeGreaterThan(1);
  });

  test("every flag", () => {
    const o = parseLoadtestArgs([
      "--url=ws://10.0.0.5:9000/xiaozhi/v1/",
      "--devices",
      "500",
      "--ramp",
      "2.5",
      "--duration",
      "30",
      "--protocol-version",
      "1",
      "--scenario",
      "conversation",
      "--jwt-secret",
      "s3cret",
      "--frame-ms",
      "20",
      "--frame-bytes",
      "40",
      "--utterance-frames",
      "10",
      "--device-prefix",
      "AA:BB:CC",
      "--churn-hold-ms",
      "100-300",
      "--drain",
      "5",
      "--json",
      "--slo-p99-ms",
      "12.5",
      "--concurrency",
      "50",
    ]);
    expect(o).toMatchObject({
      url: "ws://10.0.0.5:9000/xiaozhi/v1/",
      devices: 500,
      rampMs: 2500,
      durationMs: 30_000,
      protocolVersion: 1,
      scenario: "conversation",
      auth: { t: "jwt-secret", secret: "s3cret" },
      frameMs: 20,
      frameBytes: 40,
      utteranceFrames: 10,
      devicePrefix: "aa:bb:cc",
      churnHoldMinMs: 100,
      churnHoldMaxMs: 300,
      drainMs: 5000,
      json: true,
      sloP99Ms: 12.5,
      concurrency: 50,
    });
    expect(parseLoadtestArgs(["--token", "abc"]).auth).toEqual({ t: "token", token: "abc" });
    expect(parseLoadtestArgs(["--help"]).help).toBe(true);
    expect(parseLoadtestArgs(["--ramp", "0"]).rampMs).toBe(0);
  });

  test("a value out of range names the flag, what is allowed and what was given", () => {
    expect(errorOf(["--devices", "-1"])).toBe('--devices must be an integer from 1 to 100000, got "-1"');
    expect(errorOf(["--devices", "0"])).toContain("--devices must be an integer from 1 to 100000");
    expect(errorOf(["--devices", "2.5"])).toContain("--devices must be an integer");
    expect(errorOf(["--devices", "many"])).toContain('got "many"');
    expect(errorOf(["--scenario", "x"])).toBe('--scenario must be one of conversation, stream, idle, churn, got "x"');
    expect(errorOf(["--protocol-version", "4"])).toBe('--protocol-version must be one of 1, 2, 3, got "4"');
    expect(errorOf(["--frame-ms", "30"])).toBe('--frame-ms must be one of 10, 20, 40, 60, 80, 100, 120, got "30"');
    expect(errorOf(["--frame-bytes", "4"])).toContain("--frame-bytes must be an integer from 8 to 1275");
    expect(errorOf(["--duration", "0"])).toContain("--duration must be a number above 0");
    expect(errorOf(["--ramp", "-2"])).toContain("--ramp must be a number from 0");
    expect(errorOf(["--slo-p99-ms", "0"])).toContain("--slo-p99-ms must be a number above 0");
    expect(errorOf(["--concurrency", "0"])).toContain("--concurrency must be an integer from 1");
    expect(errorOf(["--utterance-frames", "501"])).toContain("--utterance-frames must be an integer from 1 to 500");
    expect(errorOf(["--churn-hold-ms", "300-100"])).toContain("--churn-hold-ms must be MIN-MAX");
    expect(errorOf(["--url", "http://127.0.0.1:8081/ws"])).toContain("--url must be a ws:// or wss:// URL");
    expect(errorOf(["--url", "not a url"])).toContain("--url must be a ws:// or wss:// URL");
    expect(errorOf(["--device-prefix", "a b"])).toContain("--device-prefix must be");
  });

  test("unknown flags, missing values and positionals are refused", () => {
    expect(errorOf(["--bogus", "1"])).toContain("'--bogus'");
    expect(errorOf(["--devices"])).toContain("--devices");
    expect(errorOf(["extra"])).toContain("extra");
    expect(errorOf(["--json=yes"])).toContain("--json");
  });

  test("--jwt-secret and --token together are refused without echoing either", () => {
    const message = errorOf(["--jwt-secret", "topsecret", "--token", "tok.en.value"]);
    expect(message).toBe("give --jwt-secret or --token, not both");
    expect(message).not.toContain("topsecret");
  });

  test("the usage text documents every flag", () => {
    for (const flag of [
      "--url",
      "--devices",
      "--ramp",
      "--duration",
      "--protocol-version",
      "--scenario",
      "--jwt-secret",
      "--token",
      "--frame-ms",
      "--frame-bytes",
      "--utterance-frames",
      "--device-prefix",
      "--churn-hold-ms",
      "--drain",
      "--json",
      "--slo-p99-ms",
      "--concurrency",
      "--help",
    ]) {
      expect(LOADTEST_USAGE).toContain(flag);
    }
  });
});
