import { readDeviceIdentity } from "../auth/device-identity";
import { grantOf } from "../auth/token-grant";
import { TokenError, TokenRejectReason, type TokenVerifier, type VerifiedToken } from "../auth/token-verifier";
import { describeError, ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import type { Upstream } from "../upstream/upstream";
import { HTTP_STATUS } from "./error-response";
import { jsonResponse } from "./json-response";
import { readMultipartImage } from "./multipart-image";

/** `/api/vision`, and `/mcp/vision/explain`, the path xiaozhi servers hand devices in MCP
 * initialize's `capabilities.vision.url`. */
export const VISION_PATHS: readonly string[] = ["/api/vision", "/mcp/vision/explain"];

export interface VisionRouteOptions {
  readonly verifier: TokenVerifier;
  readonly upstream: Upstream;
  /** When false, a request without a token is served (a token that is present is still
   * verified). */
  readonly authRequired: boolean;
  /** Largest image accepted, bytes (IM_MAX_IMAGE_BYTES). */
  readonly maxImageBytes: number;
  readonly logger: Logger;
  /** Longest wait for the whole answer, ms; past it 504. Default 60000. */
  readonly answerTimeoutMs?: number;
}

/** Handles one request to a {@link VISION_PATHS} path. */
export type VisionRoute = (req: Request) => Promise<Response>;

const DEFAULT_QUESTION = "What is in this picture?";
const DEFAULT_ANSWER_TIMEOUT_MS = 60_000;
/** A question is a sentence or two; a longer one is refused, not truncated silently. */
const MAX_QUESTION_CHARS = 4000;
/** An answer is read into memory: past this many characters the rest is cut off. */
const MAX_ANSWER_CHARS = 64 * 1024;
const UNAVAILABLE_RETRY_AFTER_SECONDS = "5";

const CORS_HEADERS: Readonly<Record<string, string>> = {
  "access-control-allow-origin": "*",
  "access-control-allow-methods": "POST, OPTIONS",
  "access-control-allow-headers": "authorization, content-type, device-id, client-id",
  "access-control-max-age": "600",
};

/**
 * A refusal in both shapes clients read: xiaozhi servers' `{success:false, message}` and the
 * gateway's `{error:{code, message}}`.
 */
/** The firmware's failure shape around the one error body (status from the one table). */
function failure(code: ErrorCode, message: string, headers: Record<string, string> = {}): Response {
  return jsonResponse({ success: false, message, error: { code, message } }, HTTP_STATUS[code], { "access-control-allow-origin": "*", ...headers });
}

/** The HTTP answer to a refused token: 401, but 503 when the key set cannot be reached. */
function tokenFailure(err: unknown): Response {
  if (err instanceof TokenError && err.reason === TokenRejectReason.KeySetUnavailable) {
    return failure(ErrorCode.TokenKeysUnavailable, "tokens cannot be verified right now", { "retry-after": UNAVAILABLE_RETRY_AFTER_SECONDS });
  }
  const code = isGatewayError(err) ? err.code : ErrorCode.TokenInvalid;
  const message = isGatewayError(err) ? err.message : "the token is not valid";
  return failure(code, message, { "www-authenticate": 'Bearer error="invalid_token"' });
}

/**
 * The devices' camera endpoint (docs/device-protocol.md): `POST` multipart with `question` (text)
 * and the image under `file` or `image`, `Authorization: Bearer <token>`. Asks the AI service
 * the question about the image, waits for the whole answer and replies, as xiaozhi servers
 * answer the firmware's camera Explain:
 *
 * `{"success":true,"action":"RESPONSE","response":"<the AI's answer>"}`
 *
 * Failures carry `{"success":false,"message":...,"error":{"code","message"}}`: no or a bad
 * token 401 (unless `authRequired` is false and no token is given), not multipart or not an
 * image 415, an empty image, no image part or an overlong question 400, an image over
 * `maxImageBytes` 413 (a body announced bigger is refused unread), the AI service unreachable
 * 503 with Retry-After, its refusal of the question 400, no answer within `answerTimeoutMs`
 * 504, an empty answer 502. The answer is asked for the token's `device_id` (else the
 * Device-Id header) and user (`sub`). The question and the image are never logged; the info
 * line says who asked, the image's size and type and how long the answer took.
 */
export function createVisionRoute(options: VisionRouteOptions): VisionRoute {
  const { verifier, upstream, logger } = options;
  const answerTimeoutMs = options.answerTimeoutMs ?? DEFAULT_ANSWER_TIMEOUT_MS;

  return async function visionRoute(req) {
    if (req.method === "OPTIONS") return new Response(null, { status: 204, headers: CORS_HEADERS });
    if (req.method !== "POST") return failure(ErrorCode.MethodNotAllowed, `${req.method} is not allowed here; use POST`, { allow: "POST, OPTIONS" });

    const url = new URL(req.url);
    const identity = readDeviceIdentity(req.headers, url.searchParams);
    let verified: VerifiedToken | undefined;
    if (identity.token !== undefined) {
      try {
        verified = await verifier.verify(identity.token, { deviceId: identity.deviceId });
      } catch (err) {
        logger.info({ deviceId: identity.deviceId, err: describeError(err) }, "vision: token refused");
        return tokenFailure(err);
      }
    } else if (options.authRequired) {
      return failure(ErrorCode.TokenMissing, "a Bearer token is required", { "www-authenticate": "Bearer" });
    }

    // Scope `device-or-api`: a device token is bound to its device by verify() above; an
    // operator token must cover the device the answer is for.
    const grant = verified === undefined ? undefined : grantOf(verified);
    if (grant?.t === "api" && grant.devices !== undefined && (identity.deviceId === undefined || !grant.devices.has(identity.deviceId.toLowerCase()))) {
      return failure(ErrorCode.Forbidden, "this token may not act for that device");
    }
    const form = await readMultipartImage(req, { maxImageBytes: options.maxImageBytes });
    if (form.t === "refused") {
      logger.info({ deviceId: identity.deviceId, code: form.code, reason: form.message }, "vision: request refused");
      return failure(form.code, form.message);
    }
    const question = (form.text("question") ?? form.text("prompt") ?? "").trim();
    if (question.length > MAX_QUESTION_CHARS) return failure(ErrorCode.MessageMalformed, `the question is over ${MAX_QUESTION_CHARS} characters`);
    const deviceId = verified?.deviceId ?? identity.deviceId;
    const userId = verified?.subject || undefined;

    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, answerTimeoutMs);
    // A caller that hangs up no longer needs the answer: stop the AI too.
    const onGone = () => abort.abort();
    req.signal.addEventListener("abort", onGone, { once: true });
    const startedMs = performance.now();
    let answer = "";
    try {
      const chunks = upstream.ask({ text: question || DEFAULT_QUESTION, image: form.image, deviceId, userId }, abort.signal);
      for await (const chunk of chunks) {
        answer += chunk;
        if (answer.length >= MAX_ANSWER_CHARS) {
          answer = answer.slice(0, MAX_ANSWER_CHARS);
          break;
        }
      }
    } catch (err) {
      if (!timedOut) {
        logger.warn({ deviceId, err: describeError(err) }, "vision: the AI service could not answer");
        if (isGatewayError(err, ErrorCode.MessageMalformed)) return failure(ErrorCode.MessageMalformed, "the AI service refused the question");
        return failure(ErrorCode.UpstreamUnavailable, "the AI service is not reachable; try again shortly", { "retry-after": UNAVAILABLE_RETRY_AFTER_SECONDS });
      }
    } finally {
      clearTimeout(timer);
      req.signal.removeEventListener("abort", onGone);
      abort.abort();
    }
    const ms = Math.round(performance.now() - startedMs);
    if (timedOut) {
      logger.warn({ deviceId, ms }, "vision: no answer in time (504)");
      return failure(ErrorCode.UpstreamTimeout, `the AI service did not answer within ${Math.round(answerTimeoutMs / 1000)} s`);
    }
    if (answer.trim() === "") {
      logger.warn({ deviceId, ms }, "vision: empty answer (502)");
      return failure(ErrorCode.UpstreamProtocol, "the AI service gave no answer");
    }
    logger.info({ deviceId, userId, imageBytes: form.image.data.length, mimeType: form.image.mimeType, answerChars: answer.length, ms }, "vision: answered");
    return jsonResponse({ success: true, action: "RESPONSE", response: answer }, 200, { "access-control-allow-origin": "*" });
  };
}
