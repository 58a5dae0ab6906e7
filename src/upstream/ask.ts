import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { AskRequestSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";
import { ErrorCode, GatewayError } from "../errors";
import type { ConnectionPool } from "./connection-pool";
import type { AskQuestion } from "./upstream";

/**
 * Asks one question over the Ask RPC on a ready pooled connection. A server-streaming call
 * carries one answer, so Connect's generic client is fine here (the per-frame path is
 * Relay). Failures become a GatewayError the HTTP layer maps to 502/503.
 */
export async function* ask(pool: ConnectionPool, q: AskQuestion, signal: AbortSignal): AsyncGenerator<string> {
  const conn = pool.readyConnection();
  if (conn === undefined) throw new GatewayError(ErrorCode.UpstreamUnavailable, "the AI service is not reachable");
  const request = create(AskRequestSchema, {
    text: q.text,
    image: q.image?.data,
    imageMimeType: q.image?.mimeType ?? "",
    deviceId: q.deviceId ?? "",
    userId: q.userId ?? "",
  });
  try {
    for await (const res of conn.client.ask(request, { signal })) if (res.text !== "") yield res.text;
  } catch (err) {
    if (signal.aborted) return;
    const ce = ConnectError.from(err);
    const code = ce.code === Code.InvalidArgument ? ErrorCode.MessageMalformed : ErrorCode.UpstreamUnavailable;
    throw new GatewayError(code, `the AI service could not answer: ${ce.rawMessage}`, { cause: err });
  }
}
