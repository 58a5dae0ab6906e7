import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  type AiService,
  type AskRequest,
  type AskResponse,
  AskResponseSchema,
  type DeviceEvent,
  type ServerEvent,
  ServerEventSchema,
} from "../../gen/xiaozhi/ai/v1/ai_pb";
import { describeError } from "../errors";
import { type Logger, silentLogger } from "../log";
import { AiSession, type AiSessionOptions } from "./ai-session";
import type { Answerer, Question } from "./answerer";
import { AsyncQueue } from "./async-queue";
import { offlineAnswerer } from "./echo-answerer";
import { LiveDevices } from "./live-devices";

/** Options of the reference AI service: the session engine's tuning plus the service's own. */
export interface AiServiceOptions extends AiSessionOptions {
  /** Default: silent. */
  logger?: Logger;
  /**
   * An LLM provider: answers Ask, and the devices' text and images. Default: none; Ask
   * answers with {@link offlineAnswerer} and devices get deterministic answers.
   */
  answerer?: Answerer;
  /** Cap on events per RelayResponse. Default 256. */
  relayBatchMaxEvents?: number;
  /** Relay: on a busy stream, at most one response write per this many ms. Default 0. */
  relayBatchWindowMs?: number;
}

/** The per-session part of the service options. */
export function sessionOptionsOf(options: AiServiceOptions): AiSessionOptions {
  return {
    frameDurationMs: options.frameDurationMs,
    prebufferFrames: options.prebufferFrames,
    silenceFrames: options.silenceFrames,
    maxUtteranceFrames: options.maxUtteranceFrames,
    maxUtteranceBytes: options.maxUtteranceBytes,
    held: options.held,
    tone: options.tone,
    scheduler: options.scheduler,
    answerer: options.answerer,
    voice: options.voice,
    devices: options.devices,
  };
}

interface ServiceEnv {
  logger: Logger;
  answerer: Answerer;
  sessionOptions: AiSessionOptions;
}

/**
 * The reference implementation of `xiaozhi.ai.v1.AiService`, to register on a Connect router:
 * `router.service(AiService, createAiServiceImpl(options))`. Relay is not here: its streams
 * are served by `relay-http-handler.ts` on node:http2 directly (see start-ai-server.ts).
 * Converse runs one {@link AiSession} per device session and read requests concurrently with writing answers
 * (full duplex); Ask streams the {@link Answerer}'s text.
 */
export function createAiServiceImpl(options: AiServiceOptions = {}): Omit<ServiceImpl<typeof AiService>, "relay"> {
  if (options.devices === undefined) options = { ...options, devices: new LiveDevices() };
  const env: ServiceEnv = {
    logger: options.logger ?? silentLogger,
    answerer: options.answerer ?? offlineAnswerer,
    sessionOptions: sessionOptionsOf(options),
  };
  return {
    converse: (requests, ctx) => converse(requests, ctx, env),
    ask: (request, ctx) => ask(request, ctx, env),
  };
}

async function* converse(requests: AsyncIterable<DeviceEvent>, ctx: HandlerContext, env: ServiceEnv): AsyncGenerator<ServerEvent, void, undefined> {
  const it = requests[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) return;
  const opening = first.value.event;
  if (opening.case === "heartbeat") {
    yield* probe(opening.value.sentAtMs, it, env.logger);
    return;
  }
  if (opening.case !== "hello") {
    throw new ConnectError(`converse: the first event must be hello or heartbeat, not ${opening.case ?? "empty"}`, Code.InvalidArgument);
  }
  const queue = new AsyncQueue<ServerEvent>();
  const session = new AiSession(opening.value, (event) => queue.push(event), env.logger, env.sessionOptions);
  const end = (): void => {
    session.dispose();
    queue.close();
  };
  if (ctx.signal.aborted) end();
  ctx.signal.addEventListener("abort", end, { once: true });
  void readConverse(it, session, env.logger).finally(end);
  try {
    yield* queue;
    throwIfShuttingDown(ctx.signal);
  } finally {
    ctx.signal.removeEventListener("abort", end);
    end();
  }
}

/** A Converse stream opened with a Heartbeat: answers heartbeats until the gateway ends. */
async function* probe(firstSentAtMs: bigint, it: AsyncIterator<DeviceEvent>, logger: Logger): AsyncGenerator<ServerEvent, void, undefined> {
  yield heartbeat(firstSentAtMs, 0);
  for (;;) {
    const next = await it.next();
    if (next.done === true) return;
    const e = next.value.event;
    if (e.case === "heartbeat") yield heartbeat(e.value.sentAtMs, 0);
    else logger.debug({ event: e.case }, "converse probe: non-heartbeat event ignored");
  }
}

async function readConverse(it: AsyncIterator<DeviceEvent>, session: AiSession, logger: Logger): Promise<void> {
  try {
    while (session.open) {
      const next = await it.next();
      if (next.done === true) return;
      session.handle(next.value);
    }
  } catch (err) {
    // The usual cause is the gateway cancelling the call; the session just ends.
    logger.debug({ err: describeError(err) }, "converse: request stream failed");
  }
}

async function* ask(request: AskRequest, ctx: HandlerContext, env: ServiceEnv): AsyncGenerator<AskResponse, void, undefined> {
  if (request.text.trim() === "" && request.image.length === 0) {
    throw new ConnectError("ask: a text or an image is required", Code.InvalidArgument);
  }
  // A question for a device with a session here may use that device's tools.
  const question: Question = {
    text: request.text,
    deviceId: request.deviceId,
    userId: request.userId,
    tools: env.sessionOptions.devices?.tools(request.deviceId) ?? [],
  };
  if (request.image.length > 0) question.image = { data: request.image, mimeType: request.imageMimeType };
  for await (const text of env.answerer.answer(question, ctx.signal)) {
    yield create(AskResponseSchema, { text });
  }
}

function heartbeat(sentAtMs: bigint, sessionKey: number): ServerEvent {
  return create(ServerEventSchema, { sessionKey, event: { case: "heartbeat", value: { sentAtMs } } });
}

/**
 * A stream cut short by our shutdown must end with UNAVAILABLE, not OK: the contract reads a
 * clean end as "the AI service ended the session", while UNAVAILABLE makes the gateway
 * resume the session elsewhere (or here, once the service is back).
 */
function throwIfShuttingDown(signal: AbortSignal): void {
  if (signal.aborted) throw new ConnectError("ai service shutting down", Code.Unavailable);
}
