import { errors as joseErrors } from "jose";
import { ErrorCode, GatewayError } from "../errors";

/**
 * Why a token was refused: a closed set of stable values for logs, metrics labels and HTTP
 * mapping. Branch on these, never on the message text.
 */
export const TokenRejectReason = {
  /** Longer than `maxTokenBytes`; refused unparsed. */
  TooLarge: "too_large",
  /** Not three non-empty base64url parts, or a header/payload that is not a JSON object. */
  Malformed: "malformed",
  /** `alg` outside the pinned list (`none`, HS* against a public key, a family not configured). */
  AlgorithmNotAllowed: "alg_not_allowed",
  /** The signature does not verify with the configured key. */
  SignatureMismatch: "signature_mismatch",
  /** `exp` has passed (beyond the clock tolerance). */
  Expired: "expired",
  /** `iat` is older than `maxTokenAgeSeconds`. */
  TooOld: "too_old",
  /** `nbf` is still in the future (beyond the clock tolerance). */
  NotYetValid: "not_yet_valid",
  /** `iat` is in the future (beyond the clock tolerance). */
  IssuedInFuture: "iat_in_future",
  /** `exp` is absent and the verifier requires it. */
  ExpMissing: "exp_missing",
  /** `iat` is absent and `maxTokenAgeSeconds` requires it. */
  IatMissing: "iat_missing",
  /** `iss` absent or not one of the configured issuers. */
  IssuerMismatch: "issuer_mismatch",
  /** `aud` absent or none of the configured audiences. */
  AudienceMismatch: "audience_mismatch",
  /** The `typ` header is absent or not the configured one. */
  TypeMismatch: "type_mismatch",
  /** A claim of the wrong JSON type (`exp` not a number, `device_id` not a string...). */
  ClaimInvalid: "claim_invalid",
  /** The `device_id` claim names another device than the connection's Device-Id. */
  DeviceMismatch: "device_mismatch",
  /** No key of the key set matches the token's `kid`/`alg` (after at most one refetch). */
  UnknownKid: "unknown_kid",
  /** Several keys match a token without `kid`. */
  AmbiguousKey: "ambiguous_key",
  /** A key that matched cannot verify (too small an RSA modulus, a broken JWK). */
  KeyUnusable: "key_unusable",
  /** The JWKS endpoint is down, slow, or answered something else than a key set: fail closed.
   * A server-side fault, not the client's: worth a 503 and an operator alert. */
  KeySetUnavailable: "jwks_unavailable",
  /** Anything unforeseen; fails closed. */
  Unverifiable: "unverifiable",
} as const;
export type TokenRejectReason = (typeof TokenRejectReason)[keyof typeof TokenRejectReason];

/**
 * A refused token: a GatewayError (ERR_TOKEN_INVALID, ERR_TOKEN_EXPIRED, or
 * ERR_TOKEN_KEYS_UNAVAILABLE when the keys could not be loaded) with a stable `reason`. The message is built from fixed texts only: never the token, any part of it, a
 * claim value or a jose message. No `cause` is kept either, because jose's claim errors carry
 * the decoded payload, which log serialisers would print.
 */
export class TokenError extends GatewayError {
  readonly reason: TokenRejectReason;

  constructor(reason: TokenRejectReason, detail?: KeySetFailure) {
    super(codeOf(reason), messageOf(reason, detail));
    this.reason = reason;
  }
}

const MESSAGES: Readonly<Record<TokenRejectReason, string>> = {
  too_large: "token invalid: too large",
  malformed: "token invalid: malformed token",
  alg_not_allowed: "token invalid: algorithm not allowed",
  signature_mismatch: "token invalid: signature mismatch",
  expired: "token expired",
  too_old: "token expired: issued too long ago",
  not_yet_valid: "token invalid: not yet valid (nbf)",
  iat_in_future: "token invalid: issued in the future (iat)",
  exp_missing: "token invalid: exp claim missing",
  iat_missing: "token invalid: iat claim missing",
  issuer_mismatch: "token invalid: issuer not accepted",
  audience_mismatch: "token invalid: audience not accepted",
  type_mismatch: "token invalid: typ header not accepted",
  claim_invalid: "token invalid: a claim has the wrong type",
  device_mismatch: "token invalid: bound to another Device-Id",
  unknown_kid: "token invalid: no key matches the token's kid",
  ambiguous_key: "token invalid: several keys match and the token has no kid",
  key_unusable: "token invalid: the matching key cannot verify",
  jwks_unavailable: "token not verifiable: key set unavailable",
  unverifiable: "token invalid: could not be verified",
};

/** Why a JWKS fetch failed, from a fixed set (logged as is; never a URL or a response body). */
export type KeySetFailure =
  | "endpoint unreachable"
  | "timed out"
  | "redirect refused"
  | `HTTP ${number}`
  | "response too large"
  | "not a JSON Web Key Set"
  | "recently failed, retrying later";

function codeOf(reason: TokenRejectReason): ErrorCode {
  if (reason === TokenRejectReason.Expired || reason === TokenRejectReason.TooOld) return ErrorCode.TokenExpired;
  // The client's token may be fine: callers answer 503, not 401, and alert an operator.
  if (reason === TokenRejectReason.KeySetUnavailable) return ErrorCode.TokenKeysUnavailable;
  return ErrorCode.TokenInvalid;
}

function messageOf(reason: TokenRejectReason, detail: KeySetFailure | undefined): string {
  const base = MESSAGES[reason];
  return detail === undefined ? base : `${base} (${detail})`;
}

/** Thrown by the remote key set's fetch: carries only a fixed-set detail. */
export class KeySetUnavailable extends Error {
  override readonly name = "KeySetUnavailable";
  readonly detail: KeySetFailure;

  constructor(detail: KeySetFailure) {
    super(`JWKS ${detail}`);
    this.detail = detail;
  }
}

/**
 * Translates whatever jose (or a key resolver) threw into a TokenError. jose's messages are
 * never used: its classes, `claim` and `reason` fields are mapped onto fixed texts.
 */
export function tokenErrorFrom(cause: unknown): TokenError {
  if (cause instanceof TokenError) return cause;
  if (cause instanceof KeySetUnavailable) return new TokenError(TokenRejectReason.KeySetUnavailable, cause.detail);
  if (cause instanceof joseErrors.JWTExpired) {
    return new TokenError(cause.claim === "iat" ? TokenRejectReason.TooOld : TokenRejectReason.Expired);
  }
  if (cause instanceof joseErrors.JWTClaimValidationFailed) return new TokenError(claimReason(cause.claim, cause.reason));
  if (cause instanceof joseErrors.JOSEAlgNotAllowed) return new TokenError(TokenRejectReason.AlgorithmNotAllowed);
  // With algorithms always pinned, an unknown alg never gets this far: what is left is a `crit`
  // extension nobody understands (RFC 7515 §4.1.11 says refuse) or a key type jose lacks.
  if (cause instanceof joseErrors.JOSENotSupported) return new TokenError(TokenRejectReason.Malformed);
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) return new TokenError(TokenRejectReason.SignatureMismatch);
  if (cause instanceof joseErrors.JWKSNoMatchingKey) return new TokenError(TokenRejectReason.UnknownKid);
  if (cause instanceof joseErrors.JWKSMultipleMatchingKeys) return new TokenError(TokenRejectReason.AmbiguousKey);
  if (cause instanceof joseErrors.JWKSTimeout) return new TokenError(TokenRejectReason.KeySetUnavailable, "timed out");
  if (cause instanceof joseErrors.JWKSInvalid) return new TokenError(TokenRejectReason.KeySetUnavailable, "not a JSON Web Key Set");
  if (cause instanceof joseErrors.JWKInvalid) return new TokenError(TokenRejectReason.KeyUnusable);
  if (cause instanceof joseErrors.JWSInvalid || cause instanceof joseErrors.JWTInvalid) return new TokenError(TokenRejectReason.Malformed);
  // jose throws TypeError for keys it will not use (e.g. an RSA modulus under 2048 bits).
  if (cause instanceof TypeError) return new TokenError(TokenRejectReason.KeyUnusable);
  return new TokenError(TokenRejectReason.Unverifiable);
}

function claimReason(claim: string, reason: string): TokenRejectReason {
  if (reason === "invalid") return TokenRejectReason.ClaimInvalid;
  switch (claim) {
    case "nbf":
      return TokenRejectReason.NotYetValid;
    case "iat":
      return reason === "missing" ? TokenRejectReason.IatMissing : TokenRejectReason.IssuedInFuture;
    case "exp":
      return reason === "missing" ? TokenRejectReason.ExpMissing : TokenRejectReason.Expired;
    case "iss":
      return TokenRejectReason.IssuerMismatch;
    case "aud":
      return TokenRejectReason.AudienceMismatch;
    case "typ":
      return TokenRejectReason.TypeMismatch;
    default:
      return TokenRejectReason.ClaimInvalid;
  }
}
