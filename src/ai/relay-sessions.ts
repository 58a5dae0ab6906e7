import type { Hello, RelayRequest, ServerEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { Logger } from "../log";
import { AiSession, type AiSessionOptions } from "./ai-session";

/**
 * The sessions of one Relay stream, by session key: opened by Hello, fed the events of each
 * request batch in order, ended by End (or by their own Close). Every event a session emits
 * is tagged with its key and handed to `emit`; key 0 Heartbeats are answered with key 0.
 * The same engine serves Relay whatever carries the stream.
 */
export class RelaySessions {
  private readonly sessions = new Map<number, AiSession>();
  /** Events for keys with no session (late events after End, or a confused peer). */
  unknownKeyEvents = 0;

  constructor(
    private readonly emit: (event: ServerEvent) => void,
    private readonly logger: Logger,
    private readonly sessionOptions: AiSessionOptions,
  ) {}

  take(request: RelayRequest): void {
    for (const event of request.events) {
      const key = event.sessionKey;
      const e = event.event;
      if (e.case === "hello") {
        if (key === 0) this.logger.warn("relay: hello with session key 0; ignored");
        else this.open(key, e.value);
        continue;
      }
      if (key === 0) {
        if (e.case === "heartbeat") this.emit(heartbeat(e.value.sentAtMs));
        else this.logger.debug({ event: e.case }, "relay: stream-level event other than heartbeat; ignored");
        continue;
      }
      const session = this.sessions.get(key);
      if (session === undefined) {
        this.unknownKeyEvents++;
        this.logger.debug({ sessionKey: key, event: e.case, total: this.unknownKeyEvents }, "relay: event for unknown key");
        continue;
      }
      session.handle(event);
      if (e.case === "end") this.sessions.delete(key);
    }
  }

  /** Ends every session (the stream is gone). */
  close(): void {
    for (const session of this.sessions.values()) session.dispose();
    this.sessions.clear();
  }

  private open(key: number, hello: Hello): void {
    const previous = this.sessions.get(key);
    if (previous !== undefined) {
      this.logger.warn({ sessionKey: key }, "relay: hello for a key in use; the old session is replaced");
      previous.dispose();
    }
    const session: AiSession = new AiSession(
      hello,
      (event) => {
        event.sessionKey = key;
        this.emit(event);
        if (event.event.case === "close") {
          if (this.sessions.get(key) === session) this.sessions.delete(key);
          session.dispose();
        }
      },
      this.logger,
      this.sessionOptions,
    );
    this.sessions.set(key, session);
  }
}

function heartbeat(sentAtMs: bigint): ServerEvent {
  return {
    $typeName: "xiaozhi.ai.v1.ServerEvent",
    sessionKey: 0,
    event: { case: "heartbeat", value: { $typeName: "xiaozhi.ai.v1.Heartbeat", sentAtMs } },
  };
}
