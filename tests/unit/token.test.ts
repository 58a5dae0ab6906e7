import { describe, expect, test } from "bun:test";
import { decodeJwt, decodeProtectedHeader, SignJWT, UnsecuredJWT } from "jose";
import { mintToken } from "../../src/auth/mint-token";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { ErrorCode, GatewayError } from "../../src/errors";

const SECRET = "unit-test-secret-0123456789abcdef";
const key = new TextEncoder().encode(SECRET);
const verifier = createTokenVerifier({ secret: SECRET });

async function rejection(token: string, v = verifier): Promise<GatewayError> {
  try {
    await v.verify(token);
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw new Error(`expected a GatewayError, got ${String(err)}`);
  }
  throw new Error("expected verify() to reject");
}

async function expectRejected(token: string, code: ErrorCode, v = verifier): Promise<GatewayError> {
  const err = await rejection(token, v);
  expect(err.code).toBe(code);
  // The token never leaks into the message (it ends up in logs and JSON errors).
  if (token !== "") expect(err.message).not.toContain(token);
  for (const part of token.split(".")) if (part.length > 8) expect(err.message).not.toContain(part);
  return err;
}

describe("mintToken + verify", () => {
  test("a minted token verifies with subject, lower-cased device_id and claims", async () => {
    const token = await mintToken({
      secret: SECRET,
      deviceId: "AA:BB:CC:DD:EE:FF",
      subject: "user-42",
      ttl: 600,
      claims: { plan: "pro", level: 3, tags: ["a", "b"], nested: { x: true } },
    });
    const v = await verifier.verify(token);
    expect(v.subject).toBe("user-42");
    expect(v.deviceId).toBe("aa:bb:cc:dd:ee:ff");
    expect(v.claims.plan).toBe("pro");
    expect(v.claims.level).toBe("3");
    expect(JSON.parse(v.claims.tags ?? "null")).toEqual(["a", "b"]);
    expect(JSON.parse(v.claims.nested ?? "null")).toEqual({ x: true });
    expect(v.claims.device_id).toBe("aa:bb:cc:dd:ee:ff");
    // Registered claims are not custom claims.
    for (const k of ["sub", "exp", "iat"]) expect(v.claims[k]).toBeUndefined();
  });

  test("the token is HS256 with the ttl in seconds", async () => {
    const token = await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:01", ttl: 60 });
    expect(decodeProtectedHeader(token).alg).toBe("HS256");
    const payload = decodeJwt(token);
    expect(typeof payload.iat).toBe("number");
    expect((payload.exp ?? 0) - (payload.iat ?? 0)).toBe(60);
  });

  test("a jose time span ttl works and defaults to 30 days", async () => {
    const spanned = decodeJwt(await mintToken({ secret: SECRET, ttl: "12h" }));
    expect((spanned.exp ?? 0) - (spanned.iat ?? 0)).toBe(12 * 3600);
    const dflt = decodeJwt(await mintToken({ secret: SECRET }));
    expect((dflt.exp ?? 0) - (dflt.iat ?? 0)).toBe(30 * 86400);
  });

  test("subject defaults to the device id, else xiaozhi-im", async () => {
    expect((await verifier.verify(await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:02" }))).subject).toBe("aa:bb:cc:dd:ee:02");
    const anon = await verifier.verify(await mintToken({ secret: SECRET }));
    expect(anon.subject).toBe("xiaozhi-im");
    expect(anon.deviceId).toBeUndefined();
  });

  test("the device_id claim cannot be overridden by custom claims", async () => {
    const token = await mintToken({ secret: SECRET, deviceId: "AA:AA:AA:AA:AA:AA", claims: { device_id: "bb:bb:bb:bb:bb:bb" } });
    expect((await verifier.verify(token)).deviceId).toBe("aa:aa:aa:aa:aa:aa");
  });

  test("a token with no sub verifies with an empty subject; device_id is lower-cased on verify", async () => {
    const token = await new SignJWT({ device_id: "AB:CD:EF:01:23:45" }).setProtectedHeader({ alg: "HS256" }).setExpirationTime("1h").sign(key);
    const v = await verifier.verify(token);
    expect(v.subject).toBe("");
    expect(v.deviceId).toBe("ab:cd:ef:01:23:45");
  });
});

describe("rejections", () => {
  test("wrong secret -> ERR_TOKEN_INVALID", async () => {
    const token = await mintToken({ secret: "another-secret", deviceId: "aa:bb:cc:dd:ee:ff", ttl: 60 });
    await expectRejected(token, ErrorCode.TokenInvalid);
  });

  test("tampered payload -> ERR_TOKEN_INVALID", async () => {
    const token = await mintToken({ secret: SECRET, deviceId: "aa:bb:cc:dd:ee:ff", ttl: 60 });
    const [h, , s] = token.split(".");
    const forged = Buffer.from(JSON.stringify({ sub: "admin", device_id: "aa:bb:cc:dd:ee:ff", exp: 9999999999 })).toString("base64url");
    await expectRejected(`${h}.${forged}.${s}`, ErrorCode.TokenInvalid);
  });

  test("expired beyond the 30 s tolerance -> ERR_TOKEN_EXPIRED", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({ device_id: "aa:bb:cc:dd:ee:ff" })
      .setProtectedHeader({ alg: "HS256", typ: "JWT" })
      .setSubject("u1")
      .setIssuedAt(now - 3600)
      .setExpirationTime(now - 120)
      .sign(key);
    const err = await expectRejected(token, ErrorCode.TokenExpired);
    expect(err.message).toContain("expired");
  });

  test("expired within the tolerance still verifies", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("u1")
      .setExpirationTime(now - 5)
      .sign(key);
    expect((await verifier.verify(token)).subject).toBe("u1");
  });

  test("a custom tolerance of 0 rejects a token 5 s past exp", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setExpirationTime(now - 5)
      .sign(key);
    await expectRejected(token, ErrorCode.TokenExpired, createTokenVerifier({ secret: SECRET, clockToleranceSeconds: 0 }));
  });

  test("not yet valid (nbf far in the future) -> ERR_TOKEN_INVALID", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: "HS256" })
      .setNotBefore(now + 3600)
      .setExpirationTime(now + 7200)
      .sign(key);
    await expectRejected(token, ErrorCode.TokenInvalid);
  });

  test("alg none (unsecured JWT) -> ERR_TOKEN_INVALID", async () => {
    const token = new UnsecuredJWT({ device_id: "aa:bb:cc:dd:ee:ff" }).setSubject("admin").setExpirationTime("1h").encode();
    expect(decodeProtectedHeader(token).alg).toBe("none");
    await expectRejected(token, ErrorCode.TokenInvalid);
  });

  test("HS512 with the right secret -> ERR_TOKEN_INVALID (algorithm pinned)", async () => {
    const token = await new SignJWT({ device_id: "aa:bb:cc:dd:ee:ff" }).setProtectedHeader({ alg: "HS512" }).setSubject("u1").setExpirationTime("1h").sign(key);
    const err = await expectRejected(token, ErrorCode.TokenInvalid);
    expect(err.message).toContain("algorithm");
  });

  test("garbage -> ERR_TOKEN_INVALID", async () => {
    for (const t of ["garbage", "a.b.c", "", "...", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", "Bearer abc.def.ghi"]) {
      await expectRejected(t, ErrorCode.TokenInvalid);
    }
  });

  test("over 8192 chars -> ERR_TOKEN_INVALID, even if validly signed", async () => {
    const big = await mintToken({ secret: SECRET, ttl: 60, claims: { pad: "x".repeat(9000) } });
    expect(big.length).toBeGreaterThan(8192);
    await expectRejected(big, ErrorCode.TokenInvalid);
    await expectRejected("a".repeat(8193), ErrorCode.TokenInvalid);
  });

  test("error messages never contain the token", async () => {
    const token = await mintToken({ secret: "wrong", deviceId: "aa:bb:cc:dd:ee:ff", ttl: 60 });
    const err = await rejection(token);
    expect(err.message).not.toContain(token);
    expect(err.message).not.toContain(token.split(".")[2] ?? "");
    expect(String(err)).not.toContain(token);
  });
});
