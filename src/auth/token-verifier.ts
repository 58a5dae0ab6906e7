import { errors as joseErrors, jwtVerify } from "jose";
import { ErrorCode, GatewayError } from "../errors";

/** What a verified token says about its holder. */
export interface VerifiedToken {
  /** `sub`, or "" when absent. */
  readonly subject: string;
  /** The `device_id` claim, if any. */
  readonly deviceId: string | undefined;
  /** Every claim except the registered ones, string values verbatim, others as JSON. */
  readonly claims: Readonly<Record<string, string>>;
}

export interface TokenVerifierOptions {
  /** HS256 shared secret. */
  readonly secret: string;
  /** Allowed clock skew in seconds for exp/nbf. Default 30. */
  readonly clockToleranceSeconds?: number;
}

export interface TokenVerifier {
  /** Verifies `token`; throws GatewayError ERR_TOKEN_INVALID / ERR_TOKEN_EXPIRED. */
  verify(token: string): Promise<VerifiedToken>;
}

const REGISTERED = new Set(["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]);
/** Longer tokens are refused unparsed: a real device token is a few hundred bytes. */
const MAX_TOKEN_CHARS = 8192;

/**
 * An HS256 verifier with the algorithm pinned (so `alg: none` and algorithm confusion are
 * refused by jose before any signature check) and `exp`/`nbf` honoured.
 * Error messages name the reason, never the token.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  // Imported once: handing jose raw bytes re-imports the key on every verification
  // (measured: importKey was a visible share of connect cost in a 2,000-device ramp).
  const key = crypto.subtle.importKey("raw", new TextEncoder().encode(options.secret), { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
  const clockTolerance = options.clockToleranceSeconds ?? 30;
  return {
    async verify(token) {
      if (token.length > MAX_TOKEN_CHARS) throw new GatewayError(ErrorCode.TokenInvalid, "token too long");
      try {
        const { payload } = await jwtVerify(token, await key, { algorithms: ["HS256"], clockTolerance });
        const claims: Record<string, string> = {};
        for (const [k, v] of Object.entries(payload)) {
          if (REGISTERED.has(k)) continue;
          claims[k] = typeof v === "string" ? v : JSON.stringify(v);
        }
        const deviceId = payload.device_id;
        return {
          subject: payload.sub ?? "",
          deviceId: typeof deviceId === "string" ? deviceId.toLowerCase() : undefined,
          claims,
        };
      } catch (cause) {
        if (cause instanceof joseErrors.JWTExpired) {
          throw new GatewayError(ErrorCode.TokenExpired, "token expired", { cause });
        }
        throw new GatewayError(ErrorCode.TokenInvalid, `token invalid: ${reason(cause)}`, { cause });
      }
    },
  };
}

/** A short reason from jose's stable error codes; messages of other errors are not trusted
 * to be token-free, so they are not used. */
function reason(cause: unknown): string {
  if (cause instanceof joseErrors.JOSEAlgNotAllowed) return "algorithm not allowed";
  if (cause instanceof joseErrors.JWSSignatureVerificationFailed) return "signature mismatch";
  if (cause instanceof joseErrors.JWTClaimValidationFailed) return `claim ${cause.claim} ${cause.reason}`;
  if (cause instanceof joseErrors.JWSInvalid || cause instanceof joseErrors.JWTInvalid) return "malformed token";
  if (cause instanceof joseErrors.JOSEError) return cause.code;
  return "malformed token";
}
