import { afterAll, beforeAll, describe, expect, setSystemTime, test } from "bun:test";
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { type ConfiguredTokenVerifier, createTokenVerifier, TokenError, TokenRejectReason, type TokenVerifierOptions } from "../../src/auth/token-verifier";
import { ErrorCode, GatewayError } from "../../src/errors";

const SECRET = "security-test-secret-0123456789abcdef-0123456789abcdef-0123456789";
const secretBytes = new TextEncoder().encode(SECRET);
const now = () => Math.floor(Date.now() / 1000);

interface Pair {
  readonly privateKey: CryptoKey;
  readonly publicKey: CryptoKey;
  readonly pem: string;
  readonly jwk: JWK;
}

async function pair(alg: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  return { privateKey, publicKey, pem: await exportSPKI(publicKey), jwk: await exportJWK(publicKey) };
}

let rsa: Pair;
let rsaOther: Pair;
let ec: Pair;
let ed: Pair;

beforeAll(async () => {
  [rsa, rsaOther, ec, ed] = await Promise.all([pair("RS256"), pair("RS256"), pair("ES256"), pair("EdDSA")]);
});

interface SignOpts {
  readonly alg: string;
  readonly key: CryptoKey | Uint8Array;
  readonly claims?: JWTPayload;
  /** exp as seconds from now; null: no exp. Default +600. */
  readonly expIn?: number | null;
  readonly header?: Record<string, unknown>;
}

function sign(o: SignOpts): Promise<string> {
  const jwt = new SignJWT({ sub: "user-1", device_id: "aa:bb:cc:dd:ee:ff", ...o.claims }).setProtectedHeader({
    alg: o.alg,
    typ: "JWT",
    ...o.header,
  });
  if (o.expIn !== null) jwt.setExpirationTime(now() + (o.expIn ?? 600));
  return jwt.sign(o.key);
}

const hs256 = (claims?: JWTPayload, expIn?: number | null) => sign({ alg: "HS256", key: secretBytes, claims, expIn });

/** Asserts the refusal: a TokenError (a GatewayError) with this code and reason, no cause, and no
 * piece of the token anywhere in what could be logged or sent back. */
async function expectRefused(v: ConfiguredTokenVerifier, token: string, code: ErrorCode, reason: TokenRejectReason, expectDeviceId?: string) {
  let caught: unknown;
  try {
    await v.verify(token, expectDeviceId === undefined ? undefined : { deviceId: expectDeviceId });
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GatewayError);
  expect(caught).toBeInstanceOf(TokenError);
  const err = caught as TokenError;
  expect({ code: err.code, reason: err.reason }).toEqual({ code, reason });
  expect(err.cause).toBeUndefined();
  const exposed = [err.message, String(err), JSON.stringify(err), err.stack ?? ""];
  const pieces = [token, ...token.split(".")].filter((p) => p.length >= 8);
  for (const text of exposed) for (const piece of pieces) expect(text.includes(piece)).toBe(false);
  return err;
}

function refuseConfig(opts: TokenVerifierOptions, fragment: string) {
  let caught: unknown;
  try {
    createTokenVerifier(opts);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GatewayError);
  expect((caught as GatewayError).code).toBe(ErrorCode.ConfigInvalid);
  expect((caught as GatewayError).message).toContain(fragment);
  return caught as GatewayError;
}

describe("shared secret (HS*)", () => {
  const v = createTokenVerifier({ secret: SECRET });

  test("HS384 and HS512 verify when configured (array or comma list); HS256 is then refused", async () => {
    for (const algorithms of [["HS384", "HS512"], "HS384, HS512"]) {
      const multi = createTokenVerifier({ secret: SECRET, algorithms });
      for (const alg of ["HS384", "HS512"]) {
        const out = await multi.verify(await sign({ alg, key: secretBytes }));
        expect(out).toEqual({ subject: "user-1", deviceId: "aa:bb:cc:dd:ee:ff", claims: { device_id: "aa:bb:cc:dd:ee:ff" } });
      }
      await expectRefused(multi, await hs256(), ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    }
  });

  test("the default is HS256 only", async () => {
    expect((await v.verify(await hs256())).subject).toBe("user-1");
    await expectRefused(v, await sign({ alg: "HS512", key: secretBytes }), ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    expect(v.describe().algorithms).toEqual(["HS256"]);
  });

  test("alg none is refused, with or without a signature part", async () => {
    const none = new UnsecuredJWT({ sub: "admin", device_id: "aa:bb:cc:dd:ee:ff" }).setExpirationTime("1h").encode();
    await expectRefused(v, none, ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    const withSig = `${none}${(await hs256()).split(".")[2]}`;
    await expectRefused(v, withSig, ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    // "None" and "NONE" are not special-cased by anyone: still not allowed.
    const [, payload] = none.split(".");
    for (const alg of ["None", "NONE", "nOnE"]) {
      const header = Buffer.from(JSON.stringify({ alg })).toString("base64url");
      await expectRefused(v, `${header}.${payload}.`, ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    }
  });

  test("wrong signature: another secret, a flipped signature byte, a forged payload", async () => {
    await expectRefused(
      v,
      await sign({ alg: "HS256", key: new TextEncoder().encode("another-secret") }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.SignatureMismatch,
    );
    const [h, p, s] = (await hs256()).split(".") as [string, string, string];
    const sig = Buffer.from(s, "base64url");
    sig[0] = (sig[0] ?? 0) ^ 1;
    await expectRefused(v, `${h}.${p}.${sig.toString("base64url")}`, ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
    const forged = Buffer.from(JSON.stringify({ sub: "admin", exp: now() + 600 })).toString("base64url");
    await expectRefused(v, `${h}.${forged}.${s}`, ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
  });

  test("expired -> ERR_TOKEN_EXPIRED", async () => {
    const err = await expectRefused(v, await hs256({}, -120), ErrorCode.TokenExpired, TokenRejectReason.Expired);
    expect(err.message).toBe("token expired");
  });

  test("nbf in the future -> not_yet_valid; within the tolerance it passes", async () => {
    await expectRefused(v, await hs256({ nbf: now() + 3600 }), ErrorCode.TokenInvalid, TokenRejectReason.NotYetValid);
    expect((await v.verify(await hs256({ nbf: now() + 10 }))).subject).toBe("user-1");
  });

  test("iat in the future beyond the tolerance -> iat_in_future; within it passes", async () => {
    const err = await expectRefused(v, await hs256({ iat: now() + 3600 }), ErrorCode.TokenInvalid, TokenRejectReason.IssuedInFuture);
    expect(err.message).toContain("iat");
    expect((await v.verify(await hs256({ iat: now() + 10 }))).subject).toBe("user-1");
    const strict = createTokenVerifier({ secret: SECRET, clockToleranceSeconds: 0 });
    await expectRefused(strict, await hs256({ iat: now() + 10 }), ErrorCode.TokenInvalid, TokenRejectReason.IssuedInFuture);
  });

  test("maxTokenAgeSeconds: iat required and bounded -> ERR_TOKEN_EXPIRED too_old / iat_missing", async () => {
    const aged = createTokenVerifier({ secret: SECRET, maxTokenAgeSeconds: 3600 });
    expect((await aged.verify(await hs256({ iat: now() - 60 }))).subject).toBe("user-1");
    await expectRefused(aged, await hs256({ iat: now() - 7200 }), ErrorCode.TokenExpired, TokenRejectReason.TooOld);
    await expectRefused(aged, await hs256(), ErrorCode.TokenInvalid, TokenRejectReason.IatMissing);
  });

  test("missing exp is refused by default; requireExp: false (legacy fleets) accepts it", async () => {
    const noExp = await hs256({}, null);
    const err = await expectRefused(v, noExp, ErrorCode.TokenInvalid, TokenRejectReason.ExpMissing);
    expect(err.message).toContain("exp");
    const legacy = createTokenVerifier({ secret: SECRET, requireExp: false });
    expect((await legacy.verify(noExp)).deviceId).toBe("aa:bb:cc:dd:ee:ff");
    // An exp that is present is still enforced.
    await expectRefused(legacy, await hs256({}, -120), ErrorCode.TokenExpired, TokenRejectReason.Expired);
  });

  test("claims of the wrong type: exp as a string, sub as a number, device_id as a number or blank", async () => {
    await expectRefused(v, await hs256({ exp: "9999999999" as unknown as number }, null), ErrorCode.TokenInvalid, TokenRejectReason.ClaimInvalid);
    await expectRefused(v, await hs256({ sub: 42 as unknown as string }), ErrorCode.TokenInvalid, TokenRejectReason.ClaimInvalid);
    await expectRefused(v, await hs256({ device_id: 42 }), ErrorCode.TokenInvalid, TokenRejectReason.ClaimInvalid);
    await expectRefused(v, await hs256({ device_id: " " }), ErrorCode.TokenInvalid, TokenRejectReason.ClaimInvalid);
  });

  test("device binding: expect.deviceId must match the claim, case-insensitively; no claim passes", async () => {
    const token = await hs256({ device_id: "AA:BB:CC:DD:EE:FF" });
    expect((await v.verify(token, { deviceId: "aa:bb:cc:dd:ee:ff" })).deviceId).toBe("aa:bb:cc:dd:ee:ff");
    expect((await v.verify(token, { deviceId: "AA:bb:CC:dd:EE:ff" })).deviceId).toBe("aa:bb:cc:dd:ee:ff");
    await expectRefused(v, token, ErrorCode.TokenInvalid, TokenRejectReason.DeviceMismatch, "11:22:33:44:55:66");
    const unbound = await sign({ alg: "HS256", key: secretBytes, claims: { device_id: undefined } });
    expect((await v.verify(unbound, { deviceId: "11:22:33:44:55:66" })).deviceId).toBeUndefined();
  });

  test("issuer: wrong or missing -> issuer_mismatch; any of a list passes", async () => {
    const iss = createTokenVerifier({ secret: SECRET, issuer: "https://auth.example.com, https://auth2.example.com" });
    expect((await iss.verify(await hs256({ iss: "https://auth2.example.com" }))).subject).toBe("user-1");
    await expectRefused(iss, await hs256({ iss: "https://evil.example.com" }), ErrorCode.TokenInvalid, TokenRejectReason.IssuerMismatch);
    await expectRefused(iss, await hs256(), ErrorCode.TokenInvalid, TokenRejectReason.IssuerMismatch);
  });

  test("audience: wrong or missing -> audience_mismatch; an aud array containing one passes", async () => {
    const aud = createTokenVerifier({ secret: SECRET, audience: ["xiaozhi-im"] });
    expect((await aud.verify(await hs256({ aud: ["other", "xiaozhi-im"] }))).subject).toBe("user-1");
    await expectRefused(aud, await hs256({ aud: "another-service" }), ErrorCode.TokenInvalid, TokenRejectReason.AudienceMismatch);
    await expectRefused(aud, await hs256(), ErrorCode.TokenInvalid, TokenRejectReason.AudienceMismatch);
  });

  test("typ: a configured typ must be the header's", async () => {
    const typed = createTokenVerifier({ secret: SECRET, typ: "JWT" });
    expect((await typed.verify(await hs256())).subject).toBe("user-1");
    await expectRefused(
      typed,
      await sign({ alg: "HS256", key: secretBytes, header: { typ: "at+jwt" } }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.TypeMismatch,
    );
  });

  test("malformed: garbage, three dots, bad base64, non-JSON parts, JWE shape, padding, whitespace, non-ASCII", async () => {
    const good = await hs256();
    const [h, p, s] = good.split(".") as [string, string, string];
    const b64 = (x: string) => Buffer.from(x).toString("base64url");
    const cases = [
      "",
      "garbage",
      "...",
      "..",
      "a.b",
      "a.b.c",
      "a.b.c.d.e",
      `${h}.${p}`,
      `${h}.${p}.${s}.${s}.${s}`,
      `${h}..${s}`,
      `.${p}.${s}`,
      `${h}!.${p}.${s}`,
      `${h}.${p}=.${s}`,
      `${h}.${p}.${s}==`,
      `${h}.${p}.${s} `,
      ` ${good}`,
      `${h}.${p}.${s}\n`,
      `${h}.${p}é.${s}`,
      `${h}.${p}.${s}\u0000`,
      `${b64("not json")}.${p}.${s}`,
      `${b64("[1,2]")}.${p}.${s}`,
      `${b64('{"alg":"HS256"')}.${p}.${s}`,
      `${h}.${p}.${s.slice(2)}`,
      `${b64('{"alg":"HS256","crit":["exp"]}')}.${p}.${s}`,
      "Bearer abc.def.ghi",
    ];
    for (const token of cases) {
      const err = await expectRefused(v, token, ErrorCode.TokenInvalid, TokenRejectReason.Malformed).catch((e: unknown) => {
        throw new Error(`case ${JSON.stringify(token.slice(0, 60))}: ${String(e)}`);
      });
      expect(err.message).toBe("token invalid: malformed token");
    }
  });

  test("an unauthenticated payload is never parsed: a non-JSON payload under a wrong signature is a signature mismatch", async () => {
    const [h, , s] = (await hs256()).split(".") as [string, string, string];
    const junk = Buffer.from("not json").toString("base64url");
    await expectRefused(v, `${h}.${junk}.${s}`, ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
    await expectRefused(v, "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
  });

  test("a payload that signs fine but decodes to a non-object (signed garbage) is malformed", async () => {
    const header = Buffer.from(JSON.stringify({ alg: "HS256" })).toString("base64url");
    for (const body of ["[]", "42", '"str"', "null", "\u00ff\u00fe"]) {
      const payload = Buffer.from(body, "latin1").toString("base64url");
      const input = `${header}.${payload}`;
      const key = await crypto.subtle.importKey("raw", secretBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
      const sig = Buffer.from(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(input))).toString("base64url");
      await expectRefused(v, `${input}.${sig}`, ErrorCode.TokenInvalid, TokenRejectReason.Malformed);
    }
  });

  test("oversized: refused unparsed at 8192 by default, or at maxTokenBytes", async () => {
    const big = await hs256({ pad: "x".repeat(9000) });
    await expectRefused(v, big, ErrorCode.TokenInvalid, TokenRejectReason.TooLarge);
    await expectRefused(v, "a".repeat(8193), ErrorCode.TokenInvalid, TokenRejectReason.TooLarge);
    await expectRefused(v, `${"a".repeat(5_000_000)}.b.c`, ErrorCode.TokenInvalid, TokenRejectReason.TooLarge);
    const small = createTokenVerifier({ secret: SECRET, maxTokenBytes: 256 });
    const token = await hs256({ pad: "x".repeat(200) });
    expect(token.length).toBeGreaterThan(256);
    await expectRefused(small, token, ErrorCode.TokenInvalid, TokenRejectReason.TooLarge);
    expect((await v.verify(token)).claims.pad).toBe("x".repeat(200));
  });

  test("describe(): no secret, flags a weak one", () => {
    const d = v.describe();
    expect(JSON.stringify(d)).not.toContain(SECRET);
    expect(d).toMatchObject({ keySource: "secret", keyType: "oct", weakSecret: false, requireExp: true, clockToleranceSeconds: 30, maxTokenBytes: 8192 });
    expect(createTokenVerifier({ secret: "short" }).describe().weakSecret).toBe(true);
    // 64 bytes is enough for HS256 but not for HS512 (RFC 7518 §3.2: key >= hash output).
    expect(createTokenVerifier({ secret: "k".repeat(40), algorithms: "HS512" }).describe().weakSecret).toBe(true);
  });
});

describe("public keys (PEM / JWK), algorithms pinned to the key type", () => {
  test("RS256 from a PEM verifies; PS256 too (same RSA family)", async () => {
    const v = createTokenVerifier({ publicKey: rsa.pem });
    expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey }))).deviceId).toBe("aa:bb:cc:dd:ee:ff");
    const { privateKey: ps } = await crypto.subtle
      .exportKey("pkcs8", rsa.privateKey)
      .then((der) => crypto.subtle.importKey("pkcs8", der, { name: "RSA-PSS", hash: "SHA-256" }, false, ["sign"]))
      .then((privateKey) => ({ privateKey }));
    expect((await v.verify(await sign({ alg: "PS256", key: ps }))).subject).toBe("user-1");
    expect(v.describe()).toMatchObject({
      keySource: "public-key",
      keyType: "RSA 2048-bit",
      algorithms: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
    });
    expect(v.describe().keyThumbprints?.[0]).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  test("algorithm confusion: HS256 signed with the RSA public key's bytes (PEM or JWK text) is refused", async () => {
    const v = createTokenVerifier({ publicKey: rsa.pem, algorithms: ["RS256"] });
    for (const secret of [rsa.pem, rsa.pem.trim(), JSON.stringify(rsa.jwk)]) {
      const token = await sign({ alg: "HS256", key: new TextEncoder().encode(secret) });
      await expectRefused(v, token, ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    }
    // And the same against the JWK form of the key.
    const vj = createTokenVerifier({ publicKey: JSON.stringify(rsa.jwk) });
    await expectRefused(
      vj,
      await sign({ alg: "HS256", key: new TextEncoder().encode(rsa.pem) }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.AlgorithmNotAllowed,
    );
  });

  test("algorithm confusion cannot be configured: HS*/ES* with an RSA key, RS* with an EC key", () => {
    refuseConfig({ publicKey: rsa.pem, algorithms: ["HS256"] }, '"HS256" cannot be used with an RSA 2048-bit key');
    refuseConfig({ publicKey: rsa.pem, algorithms: "RS256,ES256" }, '"ES256" cannot be used');
    refuseConfig({ publicKey: ec.pem, algorithms: ["RS256"] }, "EC P-256");
    refuseConfig({ publicKey: ed.pem, algorithms: ["none"] }, '"none" cannot be used');
    refuseConfig({ secret: SECRET, algorithms: ["RS256"] }, '"RS256" cannot be used with a shared secret');
    refuseConfig({ jwksUrl: "https://auth.example.com/jwks", algorithms: ["HS256"] }, '"HS256" cannot be used with a JWKS');
  });

  test("wrong signature: a token signed by another RSA key", async () => {
    const v = createTokenVerifier({ publicKey: rsa.pem });
    await expectRefused(v, await sign({ alg: "RS256", key: rsaOther.privateKey }), ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
  });

  test("a jwk/jku/x5u in the header is never trusted or fetched", async () => {
    let fetched = 0;
    using attacker = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch() {
        fetched++;
        return Response.json({ keys: [{ ...rsaOther.jwk, kid: "evil" }] });
      },
    });
    const v = createTokenVerifier({ publicKey: rsa.pem });
    const token = await sign({
      alg: "RS256",
      key: rsaOther.privateKey,
      header: { jwk: rsaOther.jwk, jku: `http://127.0.0.1:${attacker.port}/jwks`, x5u: `http://127.0.0.1:${attacker.port}/x5u`, kid: "evil" },
    });
    await expectRefused(v, token, ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
    expect(fetched).toBe(0);
  });

  test("ES256 from a JWK; ES256 from a PEM; an ES384 token is refused by a P-256 key", async () => {
    for (const publicKey of [JSON.stringify(ec.jwk), ec.pem]) {
      const v = createTokenVerifier({ publicKey });
      expect(v.describe()).toMatchObject({ keyType: "EC P-256", algorithms: ["ES256"] });
      expect((await v.verify(await sign({ alg: "ES256", key: ec.privateKey }))).subject).toBe("user-1");
      const es384 = await pair("ES384");
      await expectRefused(v, await sign({ alg: "ES384", key: es384.privateKey }), ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    }
  });

  test("EdDSA from a PEM and from a JWK (alg EdDSA or Ed25519)", async () => {
    for (const publicKey of [ed.pem, JSON.stringify(ed.jwk)]) {
      const v = createTokenVerifier({ publicKey });
      expect(v.describe()).toMatchObject({ keyType: "OKP Ed25519", algorithms: ["EdDSA", "Ed25519"] });
      expect((await v.verify(await sign({ alg: "EdDSA", key: ed.privateKey }))).subject).toBe("user-1");
      expect((await v.verify(await sign({ alg: "Ed25519", key: ed.privateKey }))).subject).toBe("user-1");
      await expectRefused(v, await sign({ alg: "EdDSA", key: (await pair("EdDSA")).privateKey }), ErrorCode.TokenInvalid, TokenRejectReason.SignatureMismatch);
    }
  });

  test("a JWK that names its alg pins the verifier to it", async () => {
    const v = createTokenVerifier({ publicKey: JSON.stringify({ ...rsa.jwk, alg: "RS256", kid: "k1", use: "sig" }) });
    expect(v.describe().algorithms).toEqual(["RS256"]);
    expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey }))).subject).toBe("user-1");
    await expectRefused(v, await sign({ alg: "RS512", key: (await pair("RS512")).privateKey }), ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    refuseConfig({ publicKey: JSON.stringify({ ...rsa.jwk, alg: "RS256" }), algorithms: ["RS512"] }, '"RS512" cannot be used');
  });

  test("a JWK Set as publicKey: kid selects the key, an unknown kid is refused", async () => {
    const set = JSON.stringify({
      keys: [
        { ...rsa.jwk, kid: "r1", alg: "RS256" },
        { ...ec.jwk, kid: "e1", alg: "ES256" },
      ],
    });
    const v = createTokenVerifier({ publicKey: set });
    expect(v.describe()).toMatchObject({ keyType: "JWK Set (2 keys)", algorithms: ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256"] });
    expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "r1" } }))).subject).toBe("user-1");
    expect((await v.verify(await sign({ alg: "ES256", key: ec.privateKey, header: { kid: "e1" } }))).subject).toBe("user-1");
    await expectRefused(v, await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "nope" } }), ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
    await expectRefused(
      v,
      await sign({ alg: "HS256", key: secretBytes, header: { kid: "r1" } }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.AlgorithmNotAllowed,
    );
  });

  test("key material the gateway must not take: private keys, oct JWKs, small RSA, garbage, a path", async () => {
    const { privateKey } = await generateKeyPair("ES256", { extractable: true });
    const pkcs8 = Buffer.from(await crypto.subtle.exportKey("pkcs8", privateKey)).toString("base64");
    const err = refuseConfig({ publicKey: `-----BEGIN PRIVATE KEY-----\n${pkcs8}\n-----END PRIVATE KEY-----\n` }, "private key");
    expect(err.message).not.toContain(pkcs8.slice(10, 40));
    refuseConfig({ publicKey: JSON.stringify(await exportJWK(privateKey)) }, "private key");
    refuseConfig({ publicKey: JSON.stringify({ kty: "oct", k: "c2VjcmV0" }) }, "oct");
    const small = await crypto.subtle.generateKey(
      { name: "RSASSA-PKCS1-v1_5", modulusLength: 1024, publicExponent: new Uint8Array([1, 0, 1]), hash: "SHA-256" },
      true,
      ["sign", "verify"],
    );
    refuseConfig({ publicKey: await exportSPKI(small.publicKey) }, "at least 2048 bits, this one has 1024");
    refuseConfig({ publicKey: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----" }, "neither an SPKI public key");
    refuseConfig({ publicKey: "/etc/xiaozhi/jwt.pem" }, "not its path");
    refuseConfig({ publicKey: "{not json" }, "not valid JSON");
    refuseConfig({ publicKey: JSON.stringify({ ...ec.jwk, use: "enc" }) }, '"use" must be "sig"');
    refuseConfig({ publicKey: JSON.stringify({ ...ec.jwk, alg: "RS256" }) }, "does not fit");
    refuseConfig({ publicKey: JSON.stringify({ keys: [] }) }, "no keys");
  });

  test("exactly one key source; option values validated", () => {
    refuseConfig({}, "needs a key");
    refuseConfig({ secret: "", publicKey: "", jwksUrl: "" }, "needs a key");
    refuseConfig({ secret: SECRET, publicKey: rsa.pem }, "exactly one key source, got secret and publicKey");
    refuseConfig({ secret: SECRET, clockToleranceSeconds: -1 }, "clockToleranceSeconds");
    refuseConfig({ secret: SECRET, clockToleranceSeconds: Number.NaN }, "clockToleranceSeconds");
    refuseConfig({ secret: SECRET, maxTokenBytes: 0 }, "maxTokenBytes");
    refuseConfig({ jwksUrl: "not a url" }, "not a valid URL");
    refuseConfig({ jwksUrl: "ftp://auth.example.com/jwks" }, "https://");
    refuseConfig({ jwksUrl: "http://auth.example.com/jwks" }, "jwksAllowHttp");
    expect(createTokenVerifier({ jwksUrl: "http://auth.internal/jwks", jwksAllowHttp: true }).describe().jwksHost).toBe("auth.internal");
  });
});

describe("JWKS endpoint", () => {
  interface JwksServer {
    readonly url: string;
    requests: number;
    keys: JWK[];
    status: number;
    body: string | undefined;
    hang: boolean;
    stop(): void;
  }
  const servers: JwksServer[] = [];

  function serveJwks(keys: JWK[]): JwksServer {
    const state: Omit<JwksServer, "url" | "stop"> = { requests: 0, keys, status: 200, body: undefined, hang: false };
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch() {
        state.requests++;
        if (state.hang) return new Promise<Response>(() => {});
        if (state.status !== 200) return new Response("upstream exploded: secret-internal-detail", { status: state.status });
        if (state.body !== undefined) return new Response(state.body, { headers: { "content-type": "application/json" } });
        return Response.json({ keys: state.keys });
      },
    });
    const s = Object.assign(state, {
      // A path and query that must not show up in describe() (they can hold credentials).
      url: `http://127.0.0.1:${server.port}/tenant-42/jwks.json?api_key=hunter2`,
      stop: () => void server.stop(true),
    });
    servers.push(s);
    return s;
  }

  afterAll(() => {
    for (const s of servers) s.stop();
  });

  const rsaKid = () => ({ ...rsa.jwk, kid: "rsa-1", alg: "RS256", use: "sig" });
  const ecKid = () => ({ ...ec.jwk, kid: "ec-1", alg: "ES256", use: "sig" });

  test("RS256 and ES256 tokens verify against keys served by the JWKS; one fetch serves many", async () => {
    const srv = serveJwks([rsaKid(), ecKid()]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    for (let i = 0; i < 3; i++) {
      expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } }))).subject).toBe("user-1");
      expect((await v.verify(await sign({ alg: "ES256", key: ec.privateKey, header: { kid: "ec-1" } }))).subject).toBe("user-1");
    }
    expect(srv.requests).toBe(1);
    const d = v.describe();
    expect(d).toMatchObject({ keySource: "jwks", keyType: "remote JWK Set", jwksHost: new URL(srv.url).host });
    expect(JSON.stringify(d)).not.toContain("hunter2");
    expect(JSON.stringify(d)).not.toContain("tenant-42");
  });

  test("unknown kid is refused (after at most one refetch); a token with no kid matching one key passes", async () => {
    const srv = serveJwks([rsaKid()]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    await expectRefused(v, await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-999" } }), ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
    const after = srv.requests;
    expect(after).toBeLessThanOrEqual(2);
    // Within the cooldown, more unknown kids cost no request: an attacker cannot make us hammer the IdP.
    for (let i = 0; i < 5; i++) {
      await expectRefused(v, await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: `x${i}` } }), ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
    }
    expect(srv.requests).toBe(after);
    expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey }))).subject).toBe("user-1");
  });

  test("HS256 against a JWKS (even signed with a served key's bytes) is refused", async () => {
    const srv = serveJwks([rsaKid()]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    const token = await sign({ alg: "HS256", key: new TextEncoder().encode(JSON.stringify(rsaKid())), header: { kid: "rsa-1" } });
    await expectRefused(v, token, ErrorCode.TokenInvalid, TokenRejectReason.AlgorithmNotAllowed);
    expect(srv.requests).toBe(0);
  });

  test("a wrong signature under a known kid is refused", async () => {
    const srv = serveJwks([rsaKid()]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    await expectRefused(
      v,
      await sign({ alg: "RS256", key: rsaOther.privateKey, header: { kid: "rsa-1" } }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.SignatureMismatch,
    );
  });

  test("rotation: a new kid is refused during the cooldown and accepted once it has passed", async () => {
    // The cooldown is jose's, timed with Date.now(): the test holds the clock, so the steps
    // take no wall time and no step can outlast the cooldown under load.
    const t0 = Date.now();
    setSystemTime(new Date(t0));
    try {
      const srv = serveJwks([rsaKid()]);
      const v = createTokenVerifier({ jwksUrl: srv.url, jwksCooldownMs: 300 });
      expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } }))).subject).toBe("user-1");
      // The IdP rotates: the new key is published, the old one withdrawn.
      srv.keys = [{ ...rsaOther.jwk, kid: "rsa-2", alg: "RS256" }];
      const rotated = await sign({ alg: "RS256", key: rsaOther.privateKey, header: { kid: "rsa-2" } });
      await expectRefused(v, rotated, ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
      // Still within the cooldown a millisecond before its end; past it a millisecond after.
      setSystemTime(new Date(t0 + 299));
      await expectRefused(v, rotated, ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
      expect(srv.requests).toBe(1);
      setSystemTime(new Date(t0 + 301));
      expect((await v.verify(rotated)).subject).toBe("user-1");
      expect(srv.requests).toBe(2);
      // The withdrawn key no longer verifies once the set was refetched.
      await expectRefused(v, await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } }), ErrorCode.TokenInvalid, TokenRejectReason.UnknownKid);
    } finally {
      setSystemTime();
    }
  });

  test("endpoint down (connection refused): fails closed with a stable reason, and backs off", async () => {
    const srv = serveJwks([rsaKid()]);
    const url = srv.url;
    srv.stop();
    const v = createTokenVerifier({ jwksUrl: url, jwksFailureBackoffMs: 60_000 });
    const token = await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } });
    const err = await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
    expect(err.message).toBe("token not verifiable: key set unavailable (endpoint unreachable)");
    expect(err.message).not.toContain("127.0.0.1");
    const again = await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
    expect(again.message).toBe("token not verifiable: key set unavailable (recently failed, retrying later)");
    const warm = await v.warm().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(warm).toBeInstanceOf(TokenError);
    expect((warm as TokenError).reason).toBe(TokenRejectReason.KeySetUnavailable);
  });

  test("endpoint answering 500: fails closed, the body is never echoed; it recovers once the endpoint does", async () => {
    const srv = serveJwks([rsaKid()]);
    srv.status = 500;
    const v = createTokenVerifier({ jwksUrl: srv.url, jwksFailureBackoffMs: 0 });
    const token = await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } });
    const err = await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
    expect(err.message).toBe("token not verifiable: key set unavailable (HTTP 500)");
    expect(err.message).not.toContain("secret-internal-detail");
    srv.status = 200;
    expect((await v.verify(token)).subject).toBe("user-1");
  });

  test("failure backoff: a burst of handshakes against a failing endpoint costs one request", async () => {
    const srv = serveJwks([rsaKid()]);
    srv.status = 503;
    const v = createTokenVerifier({ jwksUrl: srv.url });
    const token = await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } });
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => v.verify(token)));
    expect(results.every((r) => r.status === "rejected" && (r.reason as TokenError).reason === TokenRejectReason.KeySetUnavailable)).toBe(true);
    for (let i = 0; i < 5; i++) await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
    expect(srv.requests).toBe(1);
  });

  test("endpoint hanging: times out and fails closed", async () => {
    const srv = serveJwks([rsaKid()]);
    srv.hang = true;
    const v = createTokenVerifier({ jwksUrl: srv.url, jwksTimeoutMs: 150 });
    const token = await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } });
    const err = await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
    expect(err.message).toBe("token not verifiable: key set unavailable (timed out)");
  });

  test("endpoint answering garbage, a non-set, an oversized body, a redirect: fails closed", async () => {
    const token = await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } });
    const cases: [string | undefined, number, string, Partial<TokenVerifierOptions>][] = [
      ["<html>not json</html>", 200, "not a JSON Web Key Set", {}],
      ['{"keys": "nope"}', 200, "not a JSON Web Key Set", {}],
      [JSON.stringify({ keys: [rsaKid()], pad: "x".repeat(5000) }), 200, "response too large", { jwksMaxResponseBytes: 4096 }],
      [undefined, 302, "redirect refused", {}],
    ];
    for (const [body, status, detail, extra] of cases) {
      const srv = serveJwks([rsaKid()]);
      srv.body = body;
      srv.status = status;
      const v = createTokenVerifier({ jwksUrl: srv.url, ...extra });
      const err = await expectRefused(v, token, ErrorCode.TokenKeysUnavailable, TokenRejectReason.KeySetUnavailable);
      expect(err.message).toBe(`token not verifiable: key set unavailable (${detail})`);
    }
  });

  test("a JWKS that serves a symmetric key cannot be used to accept HS256", async () => {
    const srv = serveJwks([{ kty: "oct", k: Buffer.from(SECRET).toString("base64url"), kid: "sym" }]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    await expectRefused(
      v,
      await sign({ alg: "HS256", key: secretBytes, header: { kid: "sym" } }),
      ErrorCode.TokenInvalid,
      TokenRejectReason.AlgorithmNotAllowed,
    );
  });

  test("warm() fetches once at start-up so the first handshake does not wait", async () => {
    const srv = serveJwks([rsaKid()]);
    const v = createTokenVerifier({ jwksUrl: srv.url });
    await v.warm();
    expect(srv.requests).toBe(1);
    expect((await v.verify(await sign({ alg: "RS256", key: rsa.privateKey, header: { kid: "rsa-1" } }))).subject).toBe("user-1");
    expect(srv.requests).toBe(1);
  });
});
