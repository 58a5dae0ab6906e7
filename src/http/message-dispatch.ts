import { ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import { ClientTopic, type DeviceSession } from "../session/device-session";
import type { SessionRegistry } from "../session/session-registry";
import type { AskQuestion, Upstream } from "../upstream/upstream";
import type { ClusterLink } from "./cluster-link";

/** Where a message from the HTTP API went; `id` names the answer (a text client's or a
 * broadcast's) or, for a device session, the session (`remote` when on another instance). */
export type Dispatched =
  | { readonly t: "device"; readonly id: string }
  | { readonly t: "broadcast"; readonly id: string }
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
    },
  ) {}

  async dispatch(question: AskQuestion, deviceId: string | undefined): Promise<Dispatched> {
    if (deviceId !== undefined) return this.toDevice(question, deviceId.toLowerCase());
    const id = `broadcast-${++this.seq}`;
    void this.broadcast(question, id);
    return { t: "broadcast", id };
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
        this.o.cluster.broadcast(ClientTopic.text, JSON.stringify({ type: "text", content: chunk, id }));
      }
      this.o.cluster.broadcast(ClientTopic.text, JSON.stringify({ type: "text_end", id }));
      this.o.cluster.broadcast(ClientTopic.device, JSON.stringify({ type: "alert", status: "message", message: answer, emotion: "neutral" }));
    } catch (err) {
      const code = isGatewayError(err) ? err.code : ErrorCode.Internal;
      this.o.logger.warn({ id, code }, "broadcast answer failed");
      this.o.cluster.broadcast(ClientTopic.text, JSON.stringify({ type: "error", code, message: "the AI service could not answer", id }));
    }
  }
}
