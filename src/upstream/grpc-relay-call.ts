import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader } from "node:http2";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { type RelayRequest, RelayRequestSchema, type RelayResponse, RelayResponseSchema } from "../../gen/xiaozhi/ai/v1/ai_pb";

/** The gRPC method path of Relay. */
export const RELAY_PATH = "/xiaozhi.ai.v1.AiService/Relay";

/** Largest response message accepted; a peer announcing more is broken or hostile. */
const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

export interface RelayCallHandlers {
  /** One RelayResponse, in order. */
  onResponse(res: RelayResponse): void;
  /** The call is over: `undefined` for a clean OK end, else why it failed. Called once. */
  onEnd(error: ConnectError | undefined): void;
  /** The stream can take writes again after write() returned false. */
  onDrain(): void;
}

/**
 * A Relay call on a raw HTTP/2 stream of a pooled connection, with gRPC's framing written
 * by hand: request headers, 5-byte length-prefixed messages both ways, and the status in
 * the trailers (or a trailers-only response). The wire is exactly what any gRPC server
 * expects (the interop test runs grpc-js); what goes away is the per-message chain of async
 * iterables, promises and closures of a generic client, measured at about a third of the
 * gateway's CPU at 1,000 streaming devices. A Relay stream is the hot path of every frame,
 * so it is worth the hundred lines.
 */
export class GrpcRelayCall {
  private pending: Buffer | undefined;
  private ended = false;
  private status: ConnectError | undefined | null = null;

  private constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly manager: Http2SessionManager,
    private readonly handlers: RelayCallHandlers,
  ) {
    stream.on("response", (headers) => this.onHeaders(headers));
    stream.on("trailers", (trailers) => this.onTrailers(trailers));
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("drain", () => handlers.onDrain());
    stream.on("error", (err) => this.finish(new ConnectError(`relay stream error: ${err.message}`, Code.Unavailable)));
    stream.on("close", () => this.finish(this.status ?? new ConnectError("relay stream closed without a status", Code.Unavailable)));
  }

  /** Opens the call on `manager`'s connection (which it connects if needed). */
  static async open(manager: Http2SessionManager, handlers: RelayCallHandlers): Promise<GrpcRelayCall> {
    const stream = await manager.request(
      "POST",
      RELAY_PATH,
      { "content-type": "application/grpc+proto", te: "trailers", "user-agent": "xiaozhi-im" },
      { endStream: false },
    );
    return new GrpcRelayCall(stream, manager, handlers);
  }

  /** Sends one request message. False: the stream's buffer is full, wait for onDrain. */
  write(req: RelayRequest): boolean {
    if (this.ended) return true;
    const body = toBinary(RelayRequestSchema, req);
    const frame = Buffer.allocUnsafe(5 + body.length);
    frame[0] = 0; // not compressed: we never announce grpc-accept-encoding
    frame.writeUInt32BE(body.length, 1);
    frame.set(body, 5);
    return this.stream.write(frame);
  }

  /** Half-closes: no more requests; the server ends when it has answered. */
  end(): void {
    if (!this.ended && !this.stream.closed) this.stream.end();
  }

  /** Cancels the call (RST_STREAM CANCEL). */
  cancel(): void {
    if (!this.stream.closed) this.stream.close(0x8);
  }

  private onHeaders(headers: IncomingHttpHeaders & IncomingHttpStatusHeader): void {
    const status = headers[":status"];
    if (status !== 200) {
      this.status = new ConnectError(`relay: HTTP status ${status}`, status === 404 ? Code.Unimplemented : Code.Unavailable);
      return;
    }
    // Trailers-only response: the server answered with a status straight away.
    if (headers["grpc-status"] !== undefined) this.onTrailers(headers);
  }

  private onTrailers(trailers: IncomingHttpHeaders): void {
    const raw = trailers["grpc-status"];
    const code = Number(Array.isArray(raw) ? raw[0] : raw);
    if (code === 0) {
      this.status = undefined;
      return;
    }
    const msg = trailers["grpc-message"];
    const text = typeof msg === "string" ? decodeURIComponent(msg) : "relay failed";
    this.status = new ConnectError(text, Number.isInteger(code) && code > 0 && code <= 16 ? (code as Code) : Code.Unknown);
  }

  private onData(chunk: Buffer): void {
    this.manager.notifyResponseByteRead(this.stream);
    let buf = this.pending === undefined ? chunk : Buffer.concat([this.pending, chunk]);
    this.pending = undefined;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (buf[0] !== 0 || len > MAX_MESSAGE_BYTES) {
        this.fail(new ConnectError(buf[0] !== 0 ? "relay: compressed message not negotiated" : `relay: message of ${len} bytes`, Code.Internal));
        return;
      }
      if (buf.length < 5 + len) break;
      let res: RelayResponse;
      try {
        res = fromBinary(RelayResponseSchema, buf.subarray(5, 5 + len));
      } catch (err) {
        this.fail(new ConnectError(`relay: undecodable response (${(err as Error).message})`, Code.Internal));
        return;
      }
      buf = buf.subarray(5 + len);
      this.handlers.onResponse(res);
      if (this.ended) return;
    }
    if (buf.length > 0) this.pending = buf;
  }

  private fail(err: ConnectError): void {
    this.status = err;
    this.cancel();
    this.finish(err);
  }

  private finish(err: ConnectError | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.handlers.onEnd(err);
  }
}
