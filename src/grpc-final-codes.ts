import { Code } from "@connectrpc/connect";

/**
 * The gRPC codes after which the gateway does not retry a session: the AI service refused it
 * in a way that re-opening the stream cannot change (it lacks the RPC, the gateway is not
 * authorised, or the AI rejects what the session sent). The device is told and closed with
 * an error. Every other code (UNAVAILABLE above all, also CANCELLED, DEADLINE_EXCEEDED,
 * RESOURCE_EXHAUSTED, ABORTED, INTERNAL, UNKNOWN, ...) is retried with backoff and the
 * session resumed with Hello `resumed=true`. Shared by both transports and documented in
 * the proto and docs/ai-service.md: change all three together.
 */
export const FINAL_CODES: ReadonlySet<Code> = new Set([
  Code.InvalidArgument,
  Code.FailedPrecondition,
  Code.Unimplemented,
  Code.PermissionDenied,
  Code.Unauthenticated,
]);

export function isFinal(code: Code): boolean {
  return FINAL_CODES.has(code);
}
