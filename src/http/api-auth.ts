import type { TokenVerifier, VerifiedToken } from "../auth/token-verifier";
import { ErrorCode, isGatewayError } from "../errors";
import { errorResponse } from "./json-response";

/** Who called an API route: a verified token, or nobody when auth is not required. */
export type ApiCaller = { readonly t: "token"; readonly token: VerifiedToken } | { readonly t: "anonymous" };

/**
 * Authenticates an HTTP API call by its `Authorization: Bearer` token (or `?token=`), as the
 * device handshake does. Returns the caller, or the 401 response to send.
 */
export async function authenticateApiCall(req: Request, verifier: TokenVerifier, authRequired: boolean): Promise<ApiCaller | Response> {
  const header = req.headers.get("authorization");
  const bearer = header !== null && /^bearer\s+/i.test(header) ? header.replace(/^bearer\s+/i, "").trim() : undefined;
  const token = bearer || new URL(req.url).searchParams.get("token") || undefined;
  if (token === undefined) {
    return authRequired ? errorResponse(401, ErrorCode.TokenMissing, "a token is required (Authorization: Bearer <token>)") : { t: "anonymous" };
  }
  try {
    return { t: "token", token: await verifier.verify(token) };
  } catch (err) {
    if (isGatewayError(err)) return errorResponse(401, err.code, err.message);
    throw err;
  }
}
