import type { Server } from "bun";
import { ErrorCode, isGatewayError } from "../errors";
import type { Logger } from "../log";
import { ClientTopic, type DeviceSession, type WsData } from "../session/device-session";
import type { SessionRegistry } from "../session/session-registry";
import type { AskQuestion, Upstream } from "../upstream/upstream";

/** Where a message from the HTTP API went; `id` names the answer (a text client's or a
 * broadcast's) or, for a device session, the session. */
export type Dispatched =
  | { readonly t: "device"; readonly id: string }
  | { readonly t: "broadcast"; readonly id: string }
  | { readonly t: "not-found" }
  | { readonly t: "not-ready" };

/**
 * Routes a question from the HTTP API (`/api/message`, `/api/image`) to its audience.
 *
 * - To one device (`device_id`): a device-protocol session gets it as if the device had sent
 *   it (the AI answers by voice); a text-dialect client gets the answer streamed to it.
 * - To everyone: the AI is asked once, and each chunk is encoded once and published (Bun
 *   pub/sub) to every text-dialect client as `text` messages ending with `text_end`; when the
 *   answer is complete, device-protocol clients get it once as an `alert` they can show.
 */
export class MessageDispatch {
  private seq = 0;

  constructor(
    private readonly o: {
      readonly registry: SessionRegistry<DeviceSession>;
      readonly upstream: Upstream;
      readonly server: () => Server<WsData>;
      readonly logger: Logger;
    },
  ) {}

  dispatch(question: AskQuestion, deviceId: string | undefined): Dispatched {
    if (deviceId !== undefined) return this.toDevice(question, deviceId.toLowerCase());
    const id = `broadcast-${++this.seq}`;
    void this.broadcast(question, id);
    return { t: "broadcast", id };
  }

  private toDevice(question: AskQuestion, deviceId: string): Dispatched {
    const session = this.o.registry.get(deviceId);
    if (session === undefined) return { t: "not-found" };
    switch (session.dialect) {
      case "device": {
        const delivered =
          question.image === undefined
            ? session.deliver({ type: "chat", text: question.text })
            : session.deliver({ type: "image", data: question.image.data, mimeType: question.image.mimeType, prompt: question.text });
        return delivered ? { t: "device", id: session.sessionId } : { t: "not-ready" };
      }
      case "text": {
        const answerId = session.askAndStream({ ...question, deviceId });
        return answerId !== undefined ? { t: "device", id: answerId } : { t: "not-ready" };
      }
      case "unknown":
        return { t: "not-ready" };
    }
  }

  private async broadcast(question: AskQuestion, id: string): Promise<void> {
    const server = this.o.server();
    let answer = "";
    try {
      for await (const chunk of this.o.upstream.ask(question, AbortSignal.timeout(120_000))) {
        answer += chunk;
        server.publish(ClientTopic.text, JSON.stringify({ type: "text", content: chunk, id }));
      }
      server.publish(ClientTopic.text, JSON.stringify({ type: "text_end", id }));
      server.publish(ClientTopic.device, JSON.stringify({ type: "alert", status: "message", message: answer, emotion: "neutral" }));
    } catch (err) {
      const code = isGatewayError(err) ? err.code : ErrorCode.Internal;
      this.o.logger.warn({ id, code }, "broadcast answer failed");
      server.publish(ClientTopic.text, JSON.stringify({ type: "error", code, message: "the AI service could not answer", id }));
    }
  }
}
