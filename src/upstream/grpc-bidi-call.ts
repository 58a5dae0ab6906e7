import type { ClientHttp2Stream, IncomingHttpHeaders, IncomingHttpStatusHeader } from "node:http2";
import { type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { GrpcFrameReader, grpcFrame } from "../grpc-frames";

/** A bidi-streaming method of a generated service (e.g. `AiService.method.relay`). */
export interface BidiMethod<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly parent: { readonly typeName: string };
  readonly input: I;
  readonly output: O;
}

/** Largest response message accepted from an AI service; a peer announcing more is broken
 * or hostile (a Relay batch of 256 events is a few hundred KiB). */
export const MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

export interface BidiCallHandlers<O extends DescMessage> {
  /** One response message, in order. */
  onResponse(res: MessageShape<O>): void;
  /** The call is over: `undefined` for a clean OK end, else why it failed. Called once. */
  onEnd(error: ConnectError | undefined): void;
  /** The stream can take writes again after write() returned false. */
  onDrain(): void;
}

/**
 * A bidi-streaming gRPC call on a raw HTTP/2 stream of a pooled connection, with gRPC's
 * framing written by hand: request headers, 5-byte length-prefixed messages both ways, and
 * the status in the trailers (or a trailers-only response). The wire is exactly what any
 * gRPC server expects (the interop test runs grpc-js); what goes away is the per-message
 * chain of async iterables, promises and closures of a generic client, measured at about a
 * third of the gateway's CPU at 1,000 streaming devices on Relay. It also exposes the
 * connection's settings (the server's stream limit), which a generic client hides.
 */
export class GrpcBidiCall<I extends DescMessage, O extends DescMessage> {
  private readonly reader = new GrpcFrameReader(MAX_MESSAGE_BYTES);
  private ended = false;
  private status: ConnectError | undefined | null = null;

  private constructor(
    private readonly stream: ClientHttp2Stream,
    private readonly manager: Http2SessionManager,
    private readonly method: BidiMethod<I, O>,
    private readonly handlers: BidiCallHandlers<O>,
  ) {
    stream.on("response", (headers) => this.onHeaders(headers));
    stream.on("trailers", (trailers) => this.onTrailers(trailers));
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("drain", () => handlers.onDrain());
    stream.on("error", (err) => this.finish(new ConnectError(`${method.name} stream error: ${err.message}`, Code.Unavailable)));
    stream.on("close", () => this.finish(this.status ?? new ConnectError(`${method.name} stream closed without a status`, Code.Unavailable)));
  }

  /** Opens a call of `method` on `manager`'s connection (which it connects if needed). */
  static async open<I extends DescMessage, O extends DescMessage>(
    manager: Http2SessionManager,
    method: BidiMethod<I, O>,
    handlers: BidiCallHandlers<O>,
  ): Promise<GrpcBidiCall<I, O>> {
    const stream = await manager.request(
      "POST",
      `/${method.parent.typeName}/${method.name}`,
      { "content-type": "application/grpc+proto", te: "trailers", "user-agent": "xiaozhi-im" },
      { endStream: false },
    );
    return new GrpcBidiCall(stream, manager, method, handlers);
  }

  /** How many concurrent streams the server allows on this connection (its SETTINGS). */
  get serverMaxConcurrentStreams(): number | undefined {
    return this.stream.session?.remoteSettings?.maxConcurrentStreams;
  }

  /** Sends one request message. False: the stream's buffer is full, wait for onDrain. */
  write(req: MessageShape<I>): boolean {
    if (this.ended) return true;
    return this.stream.write(grpcFrame(toBinary(this.method.input, req)));
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
      this.status = new ConnectError(`${this.method.name}: HTTP status ${status}`, status === 404 ? Code.Unimplemented : Code.Unavailable);
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
    const text = typeof msg === "string" ? decodeURIComponent(msg) : `${this.method.name} failed`;
    this.status = new ConnectError(text, Number.isInteger(code) && code > 0 && code <= 16 ? (code as Code) : Code.Unknown);
  }

  private onData(chunk: Buffer): void {
    this.manager.notifyResponseByteRead(this.stream);
    const error = this.reader.push(chunk, (body) => {
      let res: MessageShape<O>;
      try {
        res = fromBinary(this.method.output, body);
      } catch (err) {
        this.fail(new ConnectError(`${this.method.name}: undecodable response (${(err as Error).message})`, Code.Internal));
        return false;
      }
      this.handlers.onResponse(res);
      return !this.ended;
    });
    if (error !== undefined) {
      this.fail(
        new ConnectError(error.t === "compressed" ? `${this.method.name}: compressed message not negotiated` : `${this.method.name}: message of ${error.bytes} bytes`, Code.Internal),
      );
    }
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
