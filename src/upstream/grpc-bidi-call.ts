import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader } from "node:http2";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { GrpcFrameReader, grpcFrame, MAX_MESSAGE_BYTES } from "../grpc-frames";
import { type CallStatus, grpcRequestHeaders, readResponseHeaders, readTrailers, resetStatus, statusError } from "../grpc-status";

/** A bidi-streaming method of a generated service (e.g. `AiService.method.relay`). */
export interface BidiMethod<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly parent: { readonly typeName: string };
  readonly input: I;
  readonly output: O;
}

export interface BidiCallHandlers<O extends DescMessage> {
  /** One response message, in order. */
  onResponse(res: MessageShape<O>): void;
  /** The call is over: OK, or why it failed. Called once. */
  onEnd(status: CallStatus): void;
  /** The stream can take writes again after write() returned false. */
  onDrain(): void;
}

/** How a call's messages become gRPC frames and back. */
export interface BidiCodec<I extends DescMessage, O extends DescMessage> {
  /** One request as a whole gRPC frame (the 5-byte prefix included). */
  encode(req: MessageShape<I>): Buffer;
  /** One response from its body; throws when it cannot be decoded. */
  decode(body: Uint8Array): MessageShape<O>;
}

/** protobuf-es both ways: right for any method. */
function reflectiveCodec<I extends DescMessage, O extends DescMessage>(method: BidiMethod<I, O>): BidiCodec<I, O> {
  return { encode: (req) => grpcFrame(toBinary(method.input, req)), decode: (body) => fromBinary(method.output, body) };
}

const REQUEST_HEADERS = grpcRequestHeaders("xiaozhi-im");

/**
 * A bidi-streaming gRPC call on a raw HTTP/2 stream of a pooled connection, with gRPC's
 * framing written by hand: 5-byte length-prefixed messages both ways, read and written
 * without the per-message chain of async iterables, promises and closures of a generic
 * client (measured at about a third of the gateway's CPU at 1,000 streaming devices on
 * Relay). The status half follows PROTOCOL-HTTP2.md through Connect's own functions
 * (grpc-status.ts): the response is validated when it opens, and the call ends at
 * END_STREAM with the status of its trailers, whether or not the server also resets the
 * stream. It also exposes the connection's settings (the server's stream limit), which a
 * generic client hides.
 */
export class GrpcBidiCall<I extends DescMessage, O extends DescMessage> {
  private readonly reader = new GrpcFrameReader(MAX_MESSAGE_BYTES);
  private ended = false;
  /** The status the server gave (headers or trailers), until the stream ends. */
  private status: CallStatus | undefined;
  private streamError: string | undefined;

  private constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly manager: Http2SessionManager,
    private readonly method: BidiMethod<I, O>,
    private readonly handlers: BidiCallHandlers<O>,
    private readonly codec: BidiCodec<I, O>,
  ) {
    stream.on("response", (headers) => this.onHeaders(headers));
    stream.on("trailers", (trailers) => {
      this.status ??= readTrailers(trailers);
    });
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("end", () => this.onEndStream());
    stream.on("drain", () => handlers.onDrain());
    // An error is always followed by close, which knows the RST_STREAM code, if any.
    stream.on("error", (err) => {
      this.streamError = err.message;
    });
    stream.on("close", () => this.onClose());
  }

  /** Opens a call of `method` on `manager`'s connection (which it connects if needed);
   * `codec` replaces protobuf-es where a method's messages have a faster one. */
  static async open<I extends DescMessage, O extends DescMessage>(
    manager: Http2SessionManager,
    method: BidiMethod<I, O>,
    handlers: BidiCallHandlers<O>,
    codec: BidiCodec<I, O> = reflectiveCodec(method),
  ): Promise<GrpcBidiCall<I, O>> {
    const stream = await manager.request("POST", `/${method.parent.typeName}/${method.name}`, REQUEST_HEADERS, { endStream: false });
    return new GrpcBidiCall(stream, manager, method, handlers, codec);
  }

  /** How many concurrent streams the server allows on this connection (its SETTINGS). */
  get serverMaxConcurrentStreams(): number | undefined {
    return this.stream.session?.remoteSettings?.maxConcurrentStreams;
  }

  /** Bytes written and not yet sent on the connection (the stream's write buffer). */
  get bufferedBytes(): number {
    return this.stream.writableLength;
  }

  /** Sends one request message. False: the stream's buffer is full, wait for onDrain. */
  write(req: MessageShape<I>): boolean {
    if (this.ended) return true;
    return this.stream.write(this.codec.encode(req));
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
    const verdict = readResponseHeaders(headers);
    if (verdict.t === "open") return;
    if (verdict.status.t === "error" && headers["grpc-status"] === undefined) {
      // Not a gRPC response at all (an HTTP error, a proxy's page): nothing else will come.
      this.fail(verdict.status);
      return;
    }
    // Trailers-only: the status is final; END_STREAM follows.
    this.status = verdict.status;
  }

  /** END_STREAM: the server has said all it will say. The call is over now, with the
   * status it gave; the stream is reset if our side is still open, so that neither end
   * keeps it. */
  private onEndStream(): void {
    const status = this.status;
    if (status === undefined) {
      // No trailers: END_STREAM on a DATA frame (a broken server), or a reset, which Bun
      // reports as the end of the readable side before the close that carries its code.
      setImmediate(() => {
        this.finish(statusError(`${this.method.name}: protocol error: missing status`, Code.Internal));
        if (!this.stream.closed) this.stream.close(0);
      });
      return;
    }
    this.finish(
      status.t === "ok" && this.reader.midMessage ? statusError(`${this.method.name}: stream ended in the middle of a message`, Code.Internal) : status,
    );
    if (!this.stream.closed) this.stream.close(0);
  }

  private onClose(): void {
    if (this.status !== undefined) this.finish(this.status);
    else if (this.stream.rstCode) this.finish(resetStatus(this.stream.rstCode, this.method.name));
    else this.finish(statusError(`${this.method.name}: connection lost${this.streamError ? ` (${this.streamError})` : ""}`, Code.Unavailable));
  }

  private onData(chunk: Buffer): void {
    this.manager.notifyResponseByteRead(this.stream);
    if (this.ended) return;
    const error = this.reader.push(chunk, (body) => {
      let res: MessageShape<O>;
      try {
        res = this.codec.decode(body);
      } catch (err) {
        this.fail(statusError(`${this.method.name}: undecodable response (${(err as Error).message})`, Code.Internal));
        return false;
      }
      this.handlers.onResponse(res);
      return !this.ended;
    });
    if (error !== undefined) {
      this.fail(
        statusError(
          error.t === "compressed" ? `${this.method.name}: compressed message not negotiated` : `${this.method.name}: message of ${error.bytes} bytes`,
          Code.Internal,
        ),
      );
    }
  }

  private fail(status: CallStatus): void {
    this.status = status;
    this.cancel();
    this.finish(status);
  }

  private finish(status: CallStatus): void {
    if (this.ended) return;
    this.ended = true;
    this.handlers.onEnd(status);
  }
}
