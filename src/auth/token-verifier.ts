import { createLocalJWKSet, importJWK, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions, jwtVerify } from "jose";
import {
  ASYMMETRIC_ALGORITHMS,
  type AsymmetricAlgorithm,
  configError,
  HMAC_ALGORITHMS,
  type HmacAlgorithm,
  pinAlgorithms,
  type VerifierAlgorithm,
} from "./jws-algorithms";
import { type ParsedPublicKey, parsePublicKey } from "./public-key";
import { createRemoteKeySet, parseJwksUrl, type RemoteKeySet } from "./remote-key-set";
import { TokenError, TokenRejectReason, tokenErrorFrom } from "./token-error";

export { TokenError, TokenRejectReason } from "./token-error";

/** What a verified token says about its holder. */
export interface VerifiedToken {
  /** `sub`, or "" when absent. */
  readonly subject: string;
  /** The `device_id` claim lower-cased, if any. The caller compares it with the connection's
   * Device-Id (or passes `expect.deviceId` to verify()). */
  readonly deviceId: string | undefined;
  /** Every claim except the registered ones, string values verbatim, others as JSON. */
  readonly claims: Readonly<Record<string, string>>;
}

/**
 * How tokens are verified. Exactly one key source: `secret` (HS*), `publicKey` (PEM/JWK/JWK
 * Set text) or `jwksUrl`. An empty string counts as not set, so config values map straight in.
 * Every option is validated when the verifier is created (ERR_CONFIG_INVALID, exact message).
 */
export interface TokenVerifierOptions {
  /** Shared secret for HS256/384/512 (UTF-8 bytes of the string). */
  readonly secret?: string;
  /** The contents (not the path) of a public key file: PEM SPKI / X.509 certificate, a JWK
   * or a JWK Set in JSON. Private keys and `oct` JWKs are refused. */
  readonly publicKey?: string;
  /** A JWKS endpoint (https, or http on loopback / with `jwksAllowHttp`). */
  readonly jwksUrl?: string | URL;
  /**
   * Accepted `alg` values: an array or a comma/space separated string. Must fit the key source:
   * secret -> HS256/HS384/HS512 (default HS256); publicKey -> its key type's (default: the JWK's
   * own `alg` if it has one, else all of RSA: RS*+PS*, EC: the curve's ES*, Ed25519: EdDSA +
   * Ed25519); jwksUrl -> any asymmetric (default all of them). `none` is never accepted.
   */
  readonly algorithms?: string | readonly string[];
  /** Accepted `iss` value(s); when set, `iss` is required. */
  readonly issuer?: string | readonly string[];
  /** Accepted `aud` value(s) (a token's `aud` must contain one); when set, `aud` is required. */
  readonly audience?: string | readonly string[];
  /** Require the `typ` header to be this (e.g. "JWT"), RFC 8725 §3.11. Default: not checked. */
  readonly typ?: string;
  /** Require `exp`. Default true; false only for legacy fleets whose tokens never expire. */
  readonly requireExp?: boolean;
  /** Allowed clock skew for exp, nbf and iat, in seconds. Default 30. */
  readonly clockToleranceSeconds?: number;
  /** When set, `iat` is required and may be at most this old, in seconds. Default: unset. */
  readonly maxTokenAgeSeconds?: number;
  /** Longer tokens are refused unparsed. Default 8192 (a device token is a few hundred). */
  readonly maxTokenBytes?: number;
  /** JWKS: after a successful fetch, an unknown `kid` refetches only after this long. Default 30000. */
  readonly jwksCooldownMs?: number;
  /** JWKS: cached keys are refetched once older than this. Default 600000 (10 min). */
  readonly jwksCacheMaxAgeMs?: number;
  /** JWKS: one fetch's timeout. Default 5000. */
  readonly jwksTimeoutMs?: number;
  /** JWKS: after a failed fetch, fail fast without fetching for this long. Default 1000. */
  readonly jwksFailureBackoffMs?: number;
  /** JWKS: largest accepted response body. Default 262144 (256 KiB). */
  readonly jwksMaxResponseBytes?: number;
  /** JWKS: allow plain http to a non-loopback host (a trusted network path). Default false. */
  readonly jwksAllowHttp?: boolean;
}

/** What the connection is expected to be, checked by verify() after the signature. */
export interface TokenExpectations {
  /** The connection's Device-Id: a token with a `device_id` claim must name it
   * (case-insensitively). A token without the claim passes. */
  readonly deviceId?: string;
}

export interface TokenVerifier {
  /** Verifies `token`; throws a TokenError (a GatewayError: ERR_TOKEN_INVALID /
   * ERR_TOKEN_EXPIRED / ERR_TOKEN_KEYS_UNAVAILABLE, with a stable `reason`). The message
   * never contains the token. */
  verify(token: string, expect?: TokenExpectations): Promise<VerifiedToken>;
}

/** A safe summary for the start-up log: never a secret, key material or a URL path. */
export interface TokenVerifierDescription {
  readonly keySource: "secret" | "public-key" | "jwks";
  readonly algorithms: readonly VerifierAlgorithm[];
  /** "oct" | "RSA 2048-bit" | "EC P-256" | "OKP Ed25519" | "JWK Set (3 keys)" | "remote JWK Set". */
  readonly keyType: string;
  /** RFC 7638 thumbprint(s) of the public key(s); never given for a secret. */
  readonly keyThumbprints?: readonly string[];
  /** Secret shorter than the hash output of its strongest allowed algorithm (RFC 7518 §3.2). */
  readonly weakSecret?: boolean;
  /** JWKS host[:port] only: a path or query may hold credentials. */
  readonly jwksHost?: string;
  readonly issuer?: readonly string[];
  readonly audience?: readonly string[];
  readonly typ?: string;
  readonly requireExp: boolean;
  readonly clockToleranceSeconds: number;
  readonly maxTokenAgeSeconds?: number;
  readonly maxTokenBytes: number;
}

/** The verifier createTokenVerifier returns. */
export interface ConfiguredTokenVerifier extends TokenVerifier {
  /** The summary for the start-up log. */
  describe(): TokenVerifierDescription;
  /** Loads the keys now (JWKS: one fetch). Throws a TokenError with reason
   * `jwks_unavailable` when the endpoint fails; verification keeps failing closed until it
   * answers. For a secret or a static key it only finishes the key import. */
  warm(): Promise<void>;
}

const REGISTERED = new Set(["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]);
/** Three base64url parts. Checked before jose: refuses JWE (five parts), padding, whitespace and
 * any non-ASCII input cheaply, and makes chars equal bytes. An empty signature passes on to jose
 * so that `alg: none` is reported as the algorithm it is. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

interface KeySource {
  readonly algorithms: readonly VerifierAlgorithm[];
  readonly resolve: JWTVerifyGetKey;
  readonly warm: () => Promise<void>;
  readonly description: Pick<TokenVerifierDescription, "keySource" | "keyType" | "keyThumbprints" | "weakSecret" | "jwksHost">;
}

/**
 * A verifier per RFC 8725: algorithms pinned to the key type (so `alg: none` and algorithm
 * confusion are refused before any signature check), `exp` required unless told otherwise,
 * `nbf`/`iat` honoured within the clock tolerance, issuer/audience checked when configured,
 * oversized and non-compact input refused unparsed. Header parameters that point at keys
 * (`jku`, `x5u`, `jwk`, `x5c`) are never followed: keys come from the configuration only.
 * Keeps `createTokenVerifier({ secret })` working as before (HS256).
 */
export function createTokenVerifier(options: TokenVerifierOptions): ConfiguredTokenVerifier {
  const source = keySource(options);
  const requireExp = options.requireExp ?? true;
  const clockToleranceSeconds = nonNegative(options.clockToleranceSeconds, 30, "clockToleranceSeconds");
  const maxTokenBytes = positiveInt(options.maxTokenBytes, 8192, "maxTokenBytes");
  const maxTokenAgeSeconds = options.maxTokenAgeSeconds === undefined ? undefined : nonNegative(options.maxTokenAgeSeconds, 0, "maxTokenAgeSeconds");
  const issuer = stringList(options.issuer, "issuer");
  const audience = stringList(options.audience, "audience");
  const typ = options.typ === undefined || options.typ === "" ? undefined : options.typ;

  const joseOptions: JWTVerifyOptions = {
    algorithms: [...source.algorithms],
    clockTolerance: clockToleranceSeconds,
    ...(requireExp ? { requiredClaims: ["exp"] } : {}),
    ...(issuer ? { issuer: [...issuer] } : {}),
    ...(audience ? { audience: [...audience] } : {}),
    ...(typ ? { typ } : {}),
    ...(maxTokenAgeSeconds !== undefined ? { maxTokenAge: maxTokenAgeSeconds } : {}),
  };

  const description: TokenVerifierDescription = {
    ...source.description,
    algorithms: source.algorithms,
    ...(issuer ? { issuer } : {}),
    ...(audience ? { audience } : {}),
    ...(typ ? { typ } : {}),
    requireExp,
    clockToleranceSeconds,
    ...(maxTokenAgeSeconds !== undefined ? { maxTokenAgeSeconds } : {}),
    maxTokenBytes,
  };

  return {
    async verify(token, expect) {
      if (typeof token !== "string") throw new TokenError(TokenRejectReason.Malformed);
      if (token.length > maxTokenBytes) throw new TokenError(TokenRejectReason.TooLarge);
      if (!COMPACT_JWS.test(token)) throw new TokenError(TokenRejectReason.Malformed);
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, source.resolve, joseOptions));
      } catch (cause) {
        throw tokenErrorFrom(cause);
      }
      // jose checks iat against the future only with maxTokenAge; a token minted "later" is a
      // clock fault or a forgery with a leaked key, refused either way.
      if (typeof payload.iat === "number" && payload.iat > Date.now() / 1000 + clockToleranceSeconds) {
        throw new TokenError(TokenRejectReason.IssuedInFuture);
      }
      const { sub, device_id: deviceId } = payload;
      if (sub !== undefined && typeof sub !== "string") throw new TokenError(TokenRejectReason.ClaimInvalid);
      // A non-string device_id would silently unbind the token from its device.
      if (deviceId !== undefined && (typeof deviceId !== "string" || deviceId.trim() === "")) {
        throw new TokenError(TokenRejectReason.ClaimInvalid);
      }
      const boundDevice = deviceId?.toLowerCase();
      if (boundDevice !== undefined && expect?.deviceId !== undefined && boundDevice !== expect.deviceId.toLowerCase()) {
        throw new TokenError(TokenRejectReason.DeviceMismatch);
      }
      const claims: Record<string, string> = {};
      for (const [k, v] of Object.entries(payload)) {
        if (REGISTERED.has(k)) continue;
        claims[k] = typeof v === "string" ? v : JSON.stringify(v);
      }
      return { subject: sub ?? "", deviceId: boundDevice, claims };
    },
    describe: () => description,
    warm: async () => {
      try {
        await source.warm();
      } catch (cause) {
        throw tokenErrorFrom(cause);
      }
    },
  };
}

function isSet<T>(v: T | undefined | ""): v is T {
  return v !== undefined && v !== "";
}

function keySource(o: TokenVerifierOptions): KeySource {
  const given = [isSet(o.secret) && "secret", isSet(o.publicKey) && "publicKey", isSet(o.jwksUrl) && "jwksUrl"].filter((n): n is string => n !== false);
  if (given.length !== 1) {
    throw configError(
      given.length === 0
        ? "token verification needs a key: set one of secret, publicKey, jwksUrl"
        : `token verification takes exactly one key source, got ${given.join(" and ")}`,
    );
  }
  if (isSet(o.secret)) return secretSource(o.secret, o.algorithms);
  if (isSet(o.publicKey)) return publicKeySource(o.publicKey, o.algorithms);
  return jwksSource(o);
}

const HASH_BYTES: Readonly<Record<HmacAlgorithm, number>> = { HS256: 32, HS384: 48, HS512: 64 };

function secretSource(secret: string, configured: string | readonly string[] | undefined): KeySource {
  const algorithms = pinAlgorithms(configured, HMAC_ALGORITHMS, ["HS256"], "a shared secret");
  const bytes = new TextEncoder().encode(secret);
  // Imported once per algorithm: handing jose raw bytes re-imports the key on every
  // verification (measured: importKey was a visible share of connect cost in a 2,000-device ramp).
  const keys = importAll(algorithms, (alg) => crypto.subtle.importKey("raw", bytes, { name: "HMAC", hash: `SHA-${alg.slice(2)}` }, false, ["verify"]));
  return {
    algorithms,
    resolve: resolverOf(keys),
    warm: async () => void (await keys),
    description: {
      keySource: "secret",
      keyType: "oct",
      weakSecret: bytes.length < Math.max(...algorithms.map((a) => HASH_BYTES[a])),
    },
  };
}

function publicKeySource(text: string, configured: string | readonly string[] | undefined): KeySource {
  const material = parsePublicKey(text);
  if (material.t === "set") {
    const family = ASYMMETRIC_ALGORITHMS.filter((a) => material.keys.some((k) => k.family.includes(a)));
    const algorithms = pinAlgorithms(configured, family, family, `the JWK Set's key types`);
    const local = createLocalJWKSet(material.set);
    return {
      algorithms,
      resolve: local,
      warm: async () => {},
      description: {
        keySource: "public-key",
        keyType: `JWK Set (${material.keys.length} keys)`,
        keyThumbprints: material.keys.map((k) => k.thumbprint),
      },
    };
  }
  const key: ParsedPublicKey = material.key;
  const algorithms = pinAlgorithms(configured, key.jwkAlg ? [key.jwkAlg] : key.family, key.jwkAlg ? [key.jwkAlg] : key.family, `an ${key.type} key`);
  const keys = importAll(algorithms, async (alg) => {
    const imported = await importJWK({ ...key.jwk }, alg);
    if (imported instanceof Uint8Array) throw new TypeError("a public key imported as a secret");
    return imported;
  });
  return {
    algorithms,
    resolve: resolverOf(keys),
    warm: async () => void (await keys),
    description: { keySource: "public-key", keyType: key.type, keyThumbprints: [key.thumbprint] },
  };
}

function jwksSource(o: TokenVerifierOptions): KeySource {
  const url = parseJwksUrl(o.jwksUrl ?? "", o.jwksAllowHttp ?? false);
  const algorithms = pinAlgorithms(o.algorithms, ASYMMETRIC_ALGORITHMS, ASYMMETRIC_ALGORITHMS, "a JWKS (asymmetric keys only)");
  const remote: RemoteKeySet = createRemoteKeySet(url, {
    cooldownMs: nonNegative(o.jwksCooldownMs, 30_000, "jwksCooldownMs"),
    cacheMaxAgeMs: nonNegative(o.jwksCacheMaxAgeMs, 600_000, "jwksCacheMaxAgeMs"),
    timeoutMs: positiveInt(o.jwksTimeoutMs, 5_000, "jwksTimeoutMs"),
    failureBackoffMs: nonNegative(o.jwksFailureBackoffMs, 1_000, "jwksFailureBackoffMs"),
    maxResponseBytes: positiveInt(o.jwksMaxResponseBytes, 262_144, "jwksMaxResponseBytes"),
  });
  return {
    algorithms,
    resolve: remote.resolve,
    warm: () => remote.reload(),
    description: { keySource: "jwks", keyType: "remote JWK Set", jwksHost: url.host },
  };
}

type KeyMap<A extends string> = Promise<ReadonlyMap<A, CryptoKey>>;

function importAll<A extends string>(algorithms: readonly A[], importOne: (alg: A) => Promise<CryptoKey>): KeyMap<A> {
  const keys = Promise.all(algorithms.map(async (alg) => [alg, await importOne(alg)] as const)).then((entries) => new Map(entries));
  // Surfaced by verify()/warm(); not an unhandled rejection at start-up.
  keys.catch(() => {});
  return keys;
}

/** jose checks `alg` against the pinned list before asking for a key, so the lookup only
 * misses if that invariant breaks: fail closed. */
function resolverOf<A extends string>(keys: KeyMap<A>): JWTVerifyGetKey {
  return async (header) => {
    const key = (await keys).get(header.alg as A);
    if (key === undefined) throw new TokenError(TokenRejectReason.AlgorithmNotAllowed);
    return key;
  };
}

function nonNegative(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v < 0) throw configError(`${name} must be a non-negative number, got ${v}`);
  return v;
}

function positiveInt(v: number | undefined, fallback: number, name: string): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v <= 0) throw configError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function stringList(v: string | readonly string[] | undefined, name: string): readonly string[] | undefined {
  if (v === undefined) return undefined;
  const list = (typeof v === "string" ? v.split(",") : v).map((s) => s.trim()).filter((s) => s !== "");
  if (list.length === 0) return undefined;
  if (list.some((s) => s.length > 1024)) throw configError(`${name} values must be at most 1024 characters`);
  return list;
}

export type { AsymmetricAlgorithm, HmacAlgorithm, VerifierAlgorithm };
