import type { DeviceMessage } from "../device/device-message";
import { ErrorCode, isGatewayError } from "../errors";
import type { AskQuestion, Upstream } from "../upstream/upstream";
import type { SessionIdentity } from "./device-session";

/**
 * The text dialect's answers on one connection: each question goes to the AI service's Ask
 * and its answer streams back as `{"type":"text","content":<chunk>,"id":<id>}` messages, then
 * `{"type":"text_end","id":<id>}` (or `{"type":"error",...,"id":<id>}`). Several may run at
 * once; all stop when the connection ends.
 */
export class TextAnswers {
  private readonly running = new Set<AbortController>();
  private seq = 0;

  constructor(
    /** Names the connection in answer ids (a few characters of its session id). */
    private readonly idPrefix: string,
    private readonly upstream: Pick<Upstream, "ask">,
    private readonly send: (text: string) => void,
  ) {}

  /** Starts answering `question`; returns the answer's id. */
  ask(question: AskQuestion): string {
    const id = `${this.idPrefix}-${++this.seq}`;
    const abort = new AbortController();
    this.running.add(abort);
    void (async () => {
      try {
        for await (const chunk of this.upstream.ask(question, abort.signal)) this.send(JSON.stringify({ type: "text", content: chunk, id }));
        if (!abort.signal.aborted) this.send(JSON.stringify({ type: "text_end", id }));
      } catch (err) {
        if (abort.signal.aborted) return;
        const code = isGatewayError(err) ? err.code : ErrorCode.Internal;
        this.send(JSON.stringify({ type: "error", code, message: isGatewayError(err) ? err.message : "internal error", id }));
      } finally {
        this.running.delete(abort);
      }
    })();
    return id;
  }

  /** The connection ended: stops every answer being streamed. */
  abortAll(): void {
    for (const abort of this.running) abort.abort();
    this.running.clear();
  }
}

/** What a text-dialect message asks, or undefined when it is no question (`chat`, `image`). */
export function textDialectQuestion(msg: DeviceMessage, identity: SessionIdentity): AskQuestion | undefined {
  if (msg.type === "chat") return { text: msg.text, deviceId: identity.deviceId, userId: identity.userId };
  if (msg.type === "image")
    return { text: msg.prompt, image: { data: msg.data, mimeType: msg.mimeType }, deviceId: identity.deviceId, userId: identity.userId };
  return undefined;
}
