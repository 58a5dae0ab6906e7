import { createHash, createPublicKey, type KeyObject, type webcrypto } from "node:crypto";

type JsonWebKey = webcrypto.JsonWebKey;
import { ASYMMETRIC_ALGORITHMS, type AsymmetricAlgorithm, configError, EC_ALGORITHMS, ED25519_ALGORITHMS, RSA_ALGORITHMS } from "./jws-algorithms";

/** RFC 8725 §3.5 / NIST: RSA keys under 2048 bits are refused (jose refuses them too, but late). */
const MIN_RSA_BITS = 2048;

/** A public key ready for import: only its public members, and what it may verify. */
export interface ParsedPublicKey {
  /** The public members only (kty, n, e / crv, x, y). */
  readonly jwk: JsonWebKey;
  /** Every algorithm this key type can verify. */
  readonly family: readonly AsymmetricAlgorithm[];
  /** The JWK's own `alg`, when it names one: the key is then pinned to it. */
  readonly jwkAlg: AsymmetricAlgorithm | undefined;
  /** `kid` of a JWK, if any (JWK Set members are matched on it). */
  readonly kid: string | undefined;
  /** "RSA 2048-bit", "EC P-256", "OKP Ed25519". */
  readonly type: string;
  /** RFC 7638 SHA-256 thumbprint, base64url: safe to log, identifies the key. */
  readonly thumbprint: string;
}

/** What `publicKey` text holds: one key, or a JWK Set (keys matched on `kid`). */
export type PublicKeyMaterial =
  | { readonly t: "key"; readonly key: ParsedPublicKey }
  | { readonly t: "set"; readonly keys: readonly ParsedPublicKey[]; readonly set: { keys: JsonWebKey[] } };

/**
 * Parses the contents of a public key file: PEM (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`
 * or an X.509 `CERTIFICATE`), a JWK, or a JWK Set, as JSON. Private keys and symmetric JWKs
 * are refused: the gateway only ever needs the public half. Throws ERR_CONFIG_INVALID with an
 * exact reason; never echoes the text.
 */
export function parsePublicKey(text: string): PublicKeyMaterial {
  const trimmed = text.trim();
  if (trimmed === "") throw configError("publicKey is empty");
  if (trimmed.startsWith("-----BEGIN")) {
    if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(trimmed)) {
      throw configError("publicKey holds a private key: give the gateway the public key only");
    }
    let key: KeyObject;
    try {
      key = createPublicKey(trimmed);
    } catch {
      throw configError("publicKey: the PEM is neither an SPKI public key nor an X.509 certificate");
    }
    return { t: "key", key: describeKey(key, undefined, undefined, "publicKey") };
  }
  if (trimmed.startsWith("{")) {
    let json: unknown;
    try {
      json = JSON.parse(trimmed);
    } catch {
      throw configError("publicKey: not valid JSON (expected a JWK or a JWK Set)");
    }
    if (!isRecord(json)) throw configError("publicKey: a JWK must be a JSON object");
    if (Array.isArray(json.keys)) {
      if (json.keys.length === 0) throw configError("publicKey: the JWK Set has no keys");
      const keys = json.keys.map((k, i) => parseJwk(k, `publicKey.keys[${i}]`));
      return { t: "set", keys, set: { keys: keys.map((k) => ({ ...k.jwk, ...(k.kid ? { kid: k.kid } : {}), ...(k.jwkAlg ? { alg: k.jwkAlg } : {}) })) } };
    }
    return { t: "key", key: parseJwk(json, "publicKey") };
  }
  throw configError("publicKey must be the contents of a PEM file or a JWK/JWK Set in JSON (pass the file's contents, not its path)");
}

function parseJwk(value: unknown, where: string): ParsedPublicKey {
  if (!isRecord(value)) throw configError(`${where}: a JWK must be a JSON object`);
  const { kty, alg, use, key_ops: keyOps, kid } = value;
  if (kty === "oct") throw configError(`${where}: a symmetric (oct) JWK is a shared secret: configure it as the secret`);
  if ("d" in value) throw configError(`${where} holds a private key: give the gateway the public key only`);
  if (use !== undefined && use !== "sig") throw configError(`${where}: "use" must be "sig"`);
  if (keyOps !== undefined && !(Array.isArray(keyOps) && keyOps.includes("verify"))) {
    throw configError(`${where}: "key_ops" must include "verify"`);
  }
  if (kid !== undefined && typeof kid !== "string") throw configError(`${where}: "kid" must be a string`);
  let jwkAlg: AsymmetricAlgorithm | undefined;
  if (alg !== undefined) {
    jwkAlg = ASYMMETRIC_ALGORITHMS.find((a) => a === alg);
    if (jwkAlg === undefined) throw configError(`${where}: "alg" must be one of ${ASYMMETRIC_ALGORITHMS.join(", ")}`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: value as JsonWebKey, format: "jwk" });
  } catch {
    throw configError(`${where}: not a valid RSA, EC or OKP public JWK`);
  }
  return describeKey(key, jwkAlg, kid, where);
}

function describeKey(key: KeyObject, jwkAlg: AsymmetricAlgorithm | undefined, kid: string | undefined, where: string): ParsedPublicKey {
  const jwk = key.export({ format: "jwk" });
  let family: readonly AsymmetricAlgorithm[];
  let type: string;
  let members: readonly ("crv" | "e" | "kty" | "n" | "x" | "y")[];
  switch (key.asymmetricKeyType) {
    case "rsa": {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) throw configError(`${where}: an RSA key needs at least ${MIN_RSA_BITS} bits, this one has ${bits}`);
      family = RSA_ALGORITHMS;
      type = `RSA ${bits}-bit`;
      members = ["e", "kty", "n"];
      break;
    }
    case "ec": {
      const crv = jwk.crv;
      if (crv !== "P-256" && crv !== "P-384" && crv !== "P-521") throw configError(`${where}: EC curve must be P-256, P-384 or P-521`);
      family = EC_ALGORITHMS[crv];
      type = `EC ${crv}`;
      members = ["crv", "kty", "x", "y"];
      break;
    }
    case "ed25519":
      family = ED25519_ALGORITHMS;
      type = "OKP Ed25519";
      members = ["crv", "kty", "x"];
      break;
    default:
      throw configError(`${where}: unsupported key type (RSA, EC P-256/384/521 or Ed25519)`);
  }
  if (jwkAlg !== undefined && !family.includes(jwkAlg)) throw configError(`${where}: "alg" ${jwkAlg} does not fit a ${type} key`);
  const canonical: Record<string, unknown> = {};
  for (const m of members) canonical[m] = jwk[m];
  const thumbprint = createHash("sha256").update(JSON.stringify(canonical)).digest("base64url");
  return { jwk: canonical as JsonWebKey, family, jwkAlg, kid, type, thumbprint };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
