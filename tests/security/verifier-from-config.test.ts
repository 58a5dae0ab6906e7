import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, SignJWT } from "jose";
import { createVerifierFromConfig, keySourceOf, type VerifierConfig, verifierFromConfig, verifierOptionsFromConfig } from "../../src/auth/verifier-from-config";
import { ErrorCode, GatewayError } from "../../src/errors";
import { captureLogs } from "./capture-logs";
import { verifierSettings } from "./verifier-settings";

const SECRET = "a-long-random-production-secret-0123456789abcdef";
let dir: string;
let pem: string;
let privatePem: string;
let jwk: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), "xiaozhi-keys-"));
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  pem = await exportSPKI(publicKey);
  privatePem = await exportPKCS8(privateKey);
  jwk = JSON.stringify(await exportJWK(publicKey));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const settings = verifierSettings;

function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** The one-line ERR_CONFIG_INVALID message building the verifier from `o` fails with. */
function refused(o: Partial<VerifierConfig>): string {
  let caught: unknown;
  try {
    verifierFromConfig(settings(o));
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GatewayError);
  expect((caught as GatewayError).code).toBe(ErrorCode.ConfigInvalid);
  const message = (caught as GatewayError).message;
  expect(message).not.toContain("\n");
  return message;
}

describe("one key source", () => {
  test("JWT_PUBLIC_KEY or JWT_JWKS_URL when set, else JWT_SECRET", () => {
    expect(keySourceOf(settings({}))).toBe("JWT_SECRET");
    expect(keySourceOf(settings({ jwtPublicKey: "/k.pem" }))).toBe("JWT_PUBLIC_KEY");
    expect(keySourceOf(settings({ jwtJwksUrl: "https://idp.example.com/jwks" }))).toBe("JWT_JWKS_URL");
    expect(verifierFromConfig(settings({ jwtSecret: SECRET })).describe().keySource).toBe("secret");
    expect(verifierFromConfig(settings({ jwtPublicKey: file("a.pem", pem) })).describe()).toMatchObject({ keySource: "public-key", algorithms: ["ES256"] });
    expect(verifierFromConfig(settings({ jwtPublicKey: file("a.jwk", jwk) })).describe().keySource).toBe("public-key");
    expect(verifierFromConfig(settings({ jwtJwksUrl: "https://idp.example.com/jwks" })).describe()).toMatchObject({
      keySource: "jwks",
      jwksHost: "idp.example.com",
    });
  });

  test("conflicting settings are refused with one line naming them", () => {
    expect(refused({ jwtPublicKey: file("b.pem", pem), jwtJwksUrl: "https://idp.example.com/jwks" })).toContain("JWT_PUBLIC_KEY and JWT_JWKS_URL are both set");
    expect(refused({ jwtSecret: SECRET, jwtPublicKey: file("c.pem", pem) })).toContain("JWT_SECRET and JWT_PUBLIC_KEY are both set");
    expect(refused({ jwtSecret: SECRET, jwtJwksUrl: "https://idp.example.com/jwks" })).toContain("JWT_SECRET and JWT_JWKS_URL are both set");
    // Provisioning signs with JWT_SECRET: it must not hand out tokens nobody will accept.
    expect(refused({ jwtPublicKey: file("d.pem", pem), otaPolicy: "open" })).toContain("IM_OTA_POLICY=open");
    expect(refused({ jwtJwksUrl: "https://idp.example.com/jwks", otaPolicy: "debug-only", debug: true })).toContain("IM_OTA_POLICY=debug-only");
    expect(() => verifierFromConfig(settings({ jwtJwksUrl: "https://idp.example.com/jwks", otaPolicy: "debug-only", debug: false }))).not.toThrow();
  });

  test("an unreadable or wrong key file: the path and why, never the file's contents", () => {
    expect(refused({ jwtPublicKey: path.join(dir, "missing.pem") })).toMatch(/^JWT_PUBLIC_KEY: cannot read ".*missing\.pem" \(ENOENT/);
    expect(refused({ jwtPublicKey: dir })).toContain("JWT_PUBLIC_KEY: cannot read");
    const privateKey = refused({ jwtPublicKey: file("private.pem", privatePem) });
    expect(privateKey).toContain("private key");
    expect(privateKey).toContain("JWT_PUBLIC_KEY");
    expect(privateKey).not.toContain(privatePem.split("\n")[1]!);
    expect(refused({ jwtPublicKey: file("garbage.pem", "hello") })).toContain("token verification (key from JWT_PUBLIC_KEY)");
  });

  test("JWT_ALGORITHMS must fit the key (no algorithm confusion by configuration); JWT_JWKS_URL must be https", () => {
    expect(refused({ jwtPublicKey: file("e.pem", pem), jwtAlgorithms: "HS256" })).toContain("HS256");
    expect(refused({ jwtSecret: SECRET, jwtAlgorithms: "RS256" })).toContain("RS256");
    expect(refused({ jwtSecret: SECRET, jwtAlgorithms: "none" })).toContain("none");
    expect(refused({ jwtJwksUrl: "http://idp.example.com/jwks" })).toContain("https");
    expect(verifierFromConfig(settings({ jwtSecret: SECRET, jwtAlgorithms: "HS256,HS512" })).describe().algorithms).toEqual(["HS256", "HS512"]);
  });
});

describe("production safety", () => {
  test("without IM_SERVER_DEBUG the built-in secret is refused; with it (local use) it is accepted", () => {
    const message = refused({});
    expect(message).toContain("JWT_SECRET is not set");
    expect(message).toContain("IM_SERVER_DEBUG");
    expect(verifierFromConfig(settings({ debug: true })).describe().keySource).toBe("secret");
    // Another key source does not need a secret at all.
    expect(verifierFromConfig(settings({ jwtPublicKey: file("f.pem", pem) })).describe().keySource).toBe("public-key");
  });

  test("claims settings reach the verifier: issuer and audience lists, exp, tolerance", async () => {
    const options = verifierOptionsFromConfig(
      settings({ jwtSecret: SECRET, jwtIssuer: "a,b", jwtAudience: "x", jwtRequireExp: false, jwtClockToleranceSeconds: 5 }),
    );
    expect(options).toMatchObject({ secret: SECRET, issuer: "a,b", audience: "x", requireExp: false, clockToleranceSeconds: 5 });
    const v = verifierFromConfig(settings({ jwtSecret: SECRET, jwtIssuer: "a,b", jwtAudience: "x" }));
    expect(v.describe()).toMatchObject({ issuer: ["a", "b"], audience: ["x"], requireExp: true, clockToleranceSeconds: 30 });
    const token = await new SignJWT({ iss: "b", aud: "x" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
    expect((await v.verify(token)).subject).toBe("");
  });
});

describe("createVerifierFromConfig (what `serve` calls)", () => {
  test("logs a safe summary: key source and algorithms, never the secret", () => {
    const logs = captureLogs();
    createVerifierFromConfig(settings({ jwtSecret: SECRET }), logs.logger, (m) => {
      throw new Error(m);
    });
    const line = logs.lines().find((l) => l.msg === "device tokens are verified");
    expect(line).toMatchObject({ keySource: "secret", keySetting: "JWT_SECRET", algorithms: ["HS256"], requireExp: true });
    expect(logs.text()).not.toContain(SECRET);
  });

  test("a short secret is warned about", () => {
    const logs = captureLogs();
    createVerifierFromConfig(settings({ jwtSecret: "short" }), logs.logger, (m) => {
      throw new Error(m);
    });
    expect(logs.lines().some((l) => l.level === 40 && l.msg?.includes("shorter than the hash"))).toBe(true);
    expect(logs.text()).not.toContain('"short"');
  });

  test("a bad setting goes to onConfigError as one line", () => {
    const logs = captureLogs();
    let told = "";
    expect(() =>
      createVerifierFromConfig(settings({}), logs.logger, (m) => {
        told = m;
        throw new Error("exit");
      }),
    ).toThrow("exit");
    expect(told).toContain("JWT_SECRET is not set");
  });
});
