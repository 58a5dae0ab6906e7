/**
 * WebSocket close codes the gateway uses, and whether a client should reconnect after each.
 * A device itself reconnects on its next interaction whatever the code; these tell other
 * clients (apps, the test page, the load generator) what to do.
 */
export const CloseCode = {
  /** The session ended normally (the AI service ended it). Retry: on next interaction. */
  Normal: 1000,
  /** The gateway is shutting down. Retry: yes, at once (another instance takes it). */
  GoingAway: 1001,
  /** Protocol abuse (e.g. binary audio in a text-only dialect). Retry: no, fix the client. */
  PolicyViolation: 1008,
  /** A message over IM_MAX_FRAME_BYTES / IM_MAX_JSON_BYTES. Retry: no, fix the client. */
  MessageTooBig: 1009,
  /** A gateway bug. Retry: yes, with backoff. */
  InternalError: 1011,
  /** The gateway is overloaded. Retry: yes, with backoff. */
  TryAgainLater: 1013,
  /** A newer connection of the same Device-Id took over. Retry: no (the newer one is live). */
  Replaced: 4000,
  /** No hello within IM_HELLO_TIMEOUT_SECONDS. Retry: yes. */
  HelloTimeout: 4001,
  /** A slow consumer: the device did not read what the gateway sent (its socket stayed
   * under backpressure for IM_SLOW_CONSUMER_SECONDS, or over IM_SLOW_CONSUMER_BYTES were
   * queued). Retry: yes, with backoff (the network may have recovered). */
  SlowConsumer: 4002,
  /** A flood: the device sent more than IM_MAX_FRAMES_PER_SECOND / IM_MAX_BYTES_PER_SECOND
   * (after the IM_INBOUND_BURST_SECONDS allowance). Retry: yes, with backoff, never at once:
   * a client that floods again at once is closed again. */
  Flood: 4003,
} as const;

export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Whether a client should reconnect after a close with `code` (1006, a dropped TCP
 * connection, included). */
export function shouldRetry(code: number): boolean {
  return !(code === CloseCode.PolicyViolation || code === CloseCode.MessageTooBig || code === CloseCode.Replaced);
}
