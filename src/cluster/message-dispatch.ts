import { ErrorCode, isGatewayError } from "../errors";
import { Topic } from "../fanout/topic";
import type { Logger } from "../log";
import type { DeviceSession } from "../session/device-session";
import type { SessionRegistry } from "../session/session-registry";
import type { AskQuestion, Upstream } from "../upstream/upstream";
import type { ClusterLink } from "./cluster-link";

/** Where a message from the HTTP API went; `id` names the answer (a text client's or a
 * broadcast's) or, for a device session, the session (`remote` when on another instance). */
export type Dispatched =
  | { readonly t: "device"; readonly id: string }
  /** `coalesced`: the same content was broadcast within the interval; this call joined it. */
  | { readonly t: "broadcast"; readonly id: string; readonly coalesced: boolean }
  /** Another broadcast went out within the interval: try again after `retryAfterMs`. */
  | { readonly t: "throttled"; readonly retryAfterMs: number }
  | { readonly t: "not-found" }
  | { readonly t: "not-ready" }
  | { readonly t: "unreachable" };

/**
 * Routes a question from the HTTP API (`/api/message`, `/api/image`) to its audience.
 *
 * - To one device (`device_id`), wherever it is connected: a device-protocol session gets it
 *   as if the device had sent it (the AI answers by voice); a text-dialect client gets the
 *   answer streamed to it.
 * - To everyone: the AI is asked once, and each chunk is encoded once and published to every
 *   text-dialect client of every instance as `text` messages ending with `text_end`; when the
 *   answer is complete, device-protocol clients get it once as an `alert` they can show.
 */
export class MessageDispatch {
  private seq = 0;

  constructor(
    private readonly o: {
      readonly registry: SessionRegistry<DeviceSession>;
      readonly upstream: Upstream;
      readonly cluster: ClusterLink;
      readonly logger: Logger;
      /** At most one broadcast per this many ms (0: no limit). */
      readonly broadcastIntervalMs?: number;
      readonly nowMs?: () => number;
    },
  ) {}

  /** The last broadcast: when it went out, and what it asked (to tell a repeat). */
  private last: { readonly atMs: number; readonly id: string; readonly key: string } | undefined;

  async dispatch(question: AskQuestion, deviceId: string | undefined): Promise<Dispatched> {
    if (deviceId !== undefined) return this.toDevice(question, deviceId.toLowerCase());
    // A broadcast reaches every client of the fleet: a burst of them must cost the fleet one
    // message per interval, not one per call. The same question again joins the one under
    // way; another one is told when to try again (never accepted and dropped).
    const interval = this.o.broadcastIntervalMs ?? 0;
    const now = this.o.nowMs?.() ?? performance.now();
    const key = broadcastKey(question);
    const last = this.last;
    if (interval > 0 && last !== undefined && now - last.atMs < interval) {
      if (last.key === key) return { t: "broadcast", id: last.id, coalesced: true };
      return { t: "throttled", retryAfterMs: interval - (now - last.atMs) };
    }
    const id = `broadcast-${++this.seq}`;
    // Taken before the await below, so that concurrent calls see it.
    this.last = { atMs: now, id, key };
    // Promise no delivery that would reach only part of the cluster (Redis down, or an
    // instance resubscribing after a restart): refuse, so the caller retries.
    const reach = await this.o.cluster.broadcastReach();
    if (reach.t !== "all") {
      if (this.last?.id === id) this.last = last;
      this.o.logger.warn({ reach }, "broadcast refused: not every instance can receive it now");
      return { t: "unreachable" };
    }
    void this.broadcast(question, id);
    return { t: "broadcast", id, coalesced: false };
  }

  private async toDevice(question: AskQuestion, deviceId: string): Promise<Dispatched> {
    const session = this.o.registry.get(deviceId);
    if (session?.dialect === "text") {
      const answerId = session.askAndStream({ ...question, deviceId });
      return answerId === undefined ? { t: "not-ready" } : { t: "device", id: answerId };
    }
    if (session?.dialect === "device") {
      const delivered =
        question.image === undefined
          ? session.deliver({ type: "chat", text: question.text })
          : session.deliver({ type: "image", data: question.image.data, mimeType: question.image.mimeType, prompt: question.text });
      return delivered ? { t: "device", id: session.sessionId } : { t: "not-ready" };
    }
    if (session !== undefined) return { t: "not-ready" };
    // Not here: maybe on another instance.
    switch (await this.o.cluster.ask(deviceId, question)) {
      case "delivered":
        return { t: "device", id: "remote" };
      case "absent":
        return { t: "not-found" };
      case "not-ready":
        return { t: "not-ready" };
      case "unreachable":
        return { t: "unreachable" };
    }
  }

  private async broadcast(question: AskQuestion, id: string): Promise<void> {
    let answer = "";
    try {
      for await (const chunk of this.o.upstream.ask(question, AbortSignal.timeout(120_000))) {
        answer += chunk;
        this.o.cluster.broadcast(Topic.clients.text, JSON.stringify({ type: "text", content: chunk, id }));
      }
      this.o.cluster.broadcast(Topic.clients.text, JSON.stringify({ type: "text_end", id }));
      this.o.cluster.broadcast(Topic.clients.device, JSON.stringify({ type: "alert", status: "message", message: answer, emotion: "neutral" }));
    } catch (err) {
      const code = isGatewayError(err) ? err.code : ErrorCode.Internal;
      this.o.logger.warn({ id, code }, "broadcast answer failed");
      this.o.cluster.broadcast(Topic.clients.text, JSON.stringify({ type: "error", code, message: "the AI service could not answer", id }));
    }
  }
}

/** What makes two broadcasts the same: the text and, for an image, its size and type. */
function broadcastKey(q: AskQuestion): string {
  return q.image === undefined ? `t:${q.text}` : `i:${q.text}:${q.image.mimeType}:${q.image.data.length}:${Bun.hash(q.image.data)}`;
}
