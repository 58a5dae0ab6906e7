import { ErrorCode, GatewayError } from "../errors";

/** The JWS algorithms the gateway verifies, grouped by the key type that may verify them. */
export const HMAC_ALGORITHMS = ["HS256", "HS384", "HS512"] as const;
export const RSA_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"] as const;
export const EC_ALGORITHMS = { "P-256": ["ES256"], "P-384": ["ES384"], "P-521": ["ES512"] } as const;
/** `EdDSA` is the classic name, `Ed25519` the fully specified one (RFC 9864); same key. */
export const ED25519_ALGORITHMS = ["EdDSA", "Ed25519"] as const;

export type HmacAlgorithm = (typeof HMAC_ALGORITHMS)[number];
export type AsymmetricAlgorithm =
  | (typeof RSA_ALGORITHMS)[number]
  | (typeof EC_ALGORITHMS)[keyof typeof EC_ALGORITHMS][number]
  | (typeof ED25519_ALGORITHMS)[number];
export type VerifierAlgorithm = HmacAlgorithm | AsymmetricAlgorithm;

export const ASYMMETRIC_ALGORITHMS: readonly AsymmetricAlgorithm[] = [
  ...RSA_ALGORITHMS,
  ...EC_ALGORITHMS["P-256"],
  ...EC_ALGORITHMS["P-384"],
  ...EC_ALGORITHMS["P-521"],
  ...ED25519_ALGORITHMS,
];

export function configError(message: string): GatewayError {
  return new GatewayError(ErrorCode.ConfigInvalid, message);
}

/**
 * The configured algorithm list (an array, or a comma/space separated string as an env var
 * holds it), checked against the algorithms the key can verify. Undefined or empty: `fallback`.
 * Any algorithm the key cannot verify is a configuration error, not silently dropped: that is
 * where algorithm confusion would start (HS256 against an RSA key).
 */
export function pinAlgorithms<A extends VerifierAlgorithm>(
  configured: string | readonly string[] | undefined,
  allowed: readonly A[],
  fallback: readonly A[],
  keyName: string,
): readonly A[] {
  const list = (typeof configured === "string" ? configured.split(/[\s,]+/) : (configured ?? [])).map((a) => a.trim()).filter((a) => a !== "");
  if (list.length === 0) return fallback;
  const out: A[] = [];
  for (const alg of list) {
    const match = allowed.find((a) => a === alg);
    if (match === undefined) {
      throw configError(`algorithms: ${JSON.stringify(alg.slice(0, 20))} cannot be used with ${keyName} (allowed: ${allowed.join(", ")})`);
    }
    if (!out.includes(match)) out.push(match);
  }
  return out;
}
