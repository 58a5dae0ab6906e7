import { createServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import {
  AiService,
  type DeviceEvent,
  DeviceEventSchema,
  RelayRequestSchema,
  RelayResponseSchema,
  type ServerEvent,
  ServerEventSchema,
} from "../../gen/xiaozhi/ai/v1/ai_pb";

/**
 * What the hostile AI service does when a session sends a Chat with this text:
 * - `garbage`: a gRPC message whose bytes are no protobuf at all;
 * - `unknown-oneof`: a ServerEvent for the session whose only field is one the proto does not
 *   have (a newer AI service's event, or a hostile one);
 * - `huge`: one message announcing (and carrying) `HUGE_BYTES`, over the gateway's 32 MiB limit.
 */
export type HostileAct = "garbage" | "unknown-oneof" | "huge" | StreamEnd;

/**
 * Ways to end the stream that carries the session (Relay: the whole stream), while the
 * gateway's side is still open, none with RST_STREAM unless named:
 * - `end-ok`: trailers `grpc-status: 0`;
 * - `end-50%`, `end-%ZZ`, `end-utf8`: UNAVAILABLE with a `grpc-message` that is not valid
 *   percent-encoding (`load at 50%`, `bad %ZZ escape`, `%FF%FE` = invalid UTF-8);
 * - `end-no-status`: trailers without `grpc-status`;
 * - `end-cut`: half a message (a 100-byte header and 10 bytes), then trailers OK;
 * - `end-cut-reset`: half a message, then RST_STREAM INTERNAL_ERROR (no trailers).
 */
export type StreamEnd = "end-ok" | "end-50%" | "end-%ZZ" | "end-utf8" | "end-no-status" | "end-cut" | "end-cut-reset";

/** How a new session stream (Relay, or a Converse stream opened with Hello) is refused. */
export type Refusal = { readonly http: number } | { readonly contentType: string } | { readonly trailersOnly: number } | { readonly silent: true };

const END_TRAILERS: Record<Exclude<StreamEnd, "end-cut-reset">, Record<string, string>> = {
  "end-ok": { "grpc-status": "0" },
  "end-50%": { "grpc-status": "14", "grpc-message": "load at 50%" },
  "end-%ZZ": { "grpc-status": "14", "grpc-message": "bad %ZZ escape" },
  "end-utf8": { "grpc-status": "14", "grpc-message": "%FF%FE" },
  "end-no-status": { "x-note": "no status here" },
  "end-cut": { "grpc-status": "0" },
};

/** 40 MiB. */
export const HUGE_BYTES = 40 * 1024 * 1024;

const RELAY_PATH = `/${AiService.typeName}/${AiService.method.relay.name}`;
const CONVERSE_PATH = `/${AiService.typeName}/${AiService.method.converse.name}`;

export interface HostileAi {
  readonly port: number;
  /** Every Hello received, in order (device id and `resumed`). */
  readonly hellos: { readonly deviceId: string; readonly resumed: boolean }[];
  /** Hostile acts done, in order. */
  readonly acts: HostileAct[];
  /** Relay streams whose first Heartbeat was answered (the gateway places sessions on them). */
  readonly relayStreams: () => number;
  /** Resolves once `pred` holds, re-checked whenever a message arrives. */
  until(pred: () => boolean): Promise<void>;
  /** Resolves at the Hello of `deviceId` with `resumed` (already received: at once). */
  helloOf(deviceId: string, resumed: boolean): Promise<void>;
  /** Sessions live on each open Relay stream (Hello seen, End not yet). */
  relaySessionCounts(): number[];
  /** The reason of every End received, in order (proto EndReason numbers). */
  readonly endReasons: number[];
  /** Stops (true) or resumes (false) reading every open Relay stream: an AI service that
   * does not keep up, so that the gateway's side backs up. */
  stallRelay(stalled: boolean): void;
  /** Ends every open Relay stream as `how` says. */
  endRelayStreams(how: StreamEnd): void;
  /** Refuse every new session stream this way from now on (undefined: serve again). */
  refuse(how: Refusal | undefined): void;
  /** Session streams refused so far. */
  readonly refused: () => number;
  close(): Promise<void>;
}

/**
 * A gRPC AI service written by hand on node:http2 (the framing the gateway reads: 5-byte
 * length prefix, status in the trailers), so that it can send what no gRPC library would:
 * garbage, unknown fields, 40 MiB messages. Otherwise it is a tiny well-behaved service: it
 * answers every Heartbeat (so the gateway's probes and stream checks pass) and echoes audio.
 */
export async function startHostileAi(): Promise<HostileAi> {
  const hellos: { deviceId: string; resumed: boolean }[] = [];
  const acts: HostileAct[] = [];
  let relayStreams = 0;
  let refusal: Refusal | undefined;
  let refused = 0;
  const endReasons: number[] = [];
  /** Open Relay streams: the keys of their live sessions, and how to end them. */
  const relayLive = new Map<Out, Set<number>>();
  const relayRequests = new Set<Http2ServerRequest>();
  let waiters: (() => void)[] = [];
  const notify = () => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };

  const server = createServer((req, res) => {
    if (req.url === RELAY_PATH && refusal !== undefined) refuseStream(res, refusal);
    else if (req.url === RELAY_PATH)
      serveStream(req, res, RelayRequestSchema, (batch, out) => {
        const events: ServerEvent[] = [];
        for (const ev of batch.events) {
          const reply = answer(ev, out);
          if (reply !== undefined) events.push(reply);
        }
        if (events.length > 0) out.send(toBinary(RelayResponseSchema, create(RelayResponseSchema, { events })));
      });
    else if (req.url === CONVERSE_PATH)
      serveStream(req, res, DeviceEventSchema, (ev, out) => {
        const reply = answer(ev, out);
        if (reply !== undefined) out.send(toBinary(ServerEventSchema, reply));
      });
    else {
      res.writeHead(200, { "content-type": "application/grpc+proto", "grpc-status": "12", "grpc-message": "unimplemented" });
      res.end();
    }
  });

  interface Out {
    send(message: Uint8Array): void;
    sendRaw(bytes: Uint8Array): void;
    /** Ends the stream as `how` says, the request side still open. */
    end(how: StreamEnd): void;
    /** Relay: the RelayResponse that carries `ev`; Converse: `ev` itself. */
    wrap(ev: ServerEvent): Uint8Array;
  }

  function answer(ev: DeviceEvent, out: Out): ServerEvent | undefined {
    const key = ev.sessionKey;
    switch (ev.event.case) {
      case "heartbeat":
        return create(ServerEventSchema, { sessionKey: key, event: { case: "heartbeat", value: { sentAtMs: ev.event.value.sentAtMs } } });
      case "hello":
        hellos.push({ deviceId: ev.event.value.deviceId, resumed: ev.event.value.resumed });
        relayLive.get(out)?.add(key);
        return undefined;
      case "end":
        endReasons.push(ev.event.value.reason);
        relayLive.get(out)?.delete(key);
        return undefined;
      case "audio":
        return create(ServerEventSchema, {
          sessionKey: key,
          event: { case: "audio", value: { opus: ev.event.value.opus, timestampMs: ev.event.value.timestampMs } },
        });
      case "chat": {
        const act = ev.event.value.text as HostileAct;
        acts.push(act);
        if (act.startsWith("end-")) {
          out.end(act as StreamEnd);
        } else if (act === "garbage") {
          // Field 15, wire type 7: no such wire type exists; no decoder gets past it.
          out.sendRaw(frame(new Uint8Array([0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01, 0x02])));
        } else if (act === "unknown-oneof") {
          const ev = create(ServerEventSchema, { sessionKey: key });
          // Field 99, length-delimited: what a newer (or a hostile) AI service's event looks like.
          ev.$unknown = [{ no: 99, wireType: WireType.LengthDelimited, data: new Uint8Array([0x03, 0x61, 0x62, 0x63]) }];
          out.send(out.wrap(ev));
        } else if (act === "huge") {
          const ev = create(ServerEventSchema, { sessionKey: key, event: { case: "audio", value: { opus: new Uint8Array(HUGE_BYTES), timestampMs: 0 } } });
          out.send(out.wrap(ev));
        }
        return undefined;
      }
      default:
        return undefined;
    }
  }

  function serveStream<S extends DescMessage>(
    req: Http2ServerRequest,
    res: Http2ServerResponse,
    schema: S,
    onMessage: (msg: MessageShape<S>, out: Out) => void,
  ): void {
    const relay = schema.typeName === RelayRequestSchema.typeName;
    // Converse: the headers wait for the first message, which tells a probe (Heartbeat)
    // from a session (Hello) that may be refused.
    let headed = relay;
    if (relay) res.writeHead(200, { "content-type": "application/grpc+proto" });
    let closed = false;
    res.on("close", () => {
      closed = true;
      relayLive.delete(out);
    });
    res.on("error", () => {});
    let counted = false;
    const out: Out = {
      send: (message) => {
        if (!closed) res.write(frame(message));
      },
      sendRaw: (bytes) => {
        if (!closed) res.write(bytes);
      },
      wrap: (ev) => (relay ? toBinary(RelayResponseSchema, create(RelayResponseSchema, { events: [ev] })) : toBinary(ServerEventSchema, ev)),
      end: (how) => {
        if (closed) return;
        closed = true;
        if (how === "end-cut" || how === "end-cut-reset") {
          const half = new Uint8Array(15);
          new DataView(half.buffer).setUint32(1, 100);
          res.write(half);
        }
        if (how === "end-cut-reset") {
          res.stream.close(2); // INTERNAL_ERROR
          return;
        }
        res.addTrailers(END_TRAILERS[how]);
        res.end();
        relayLive.delete(out);
      },
    };
    if (relay) {
      relayLive.set(out, new Set());
      relayRequests.add(req);
      res.on("close", () => relayRequests.delete(req));
    }
    let pending = Buffer.alloc(0);
    req.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 5) {
        const len = pending.readUInt32BE(1);
        if (pending.length < 5 + len) break;
        const msg = fromBinary(schema, pending.subarray(5, 5 + len));
        pending = pending.subarray(5 + len);
        if (!headed) {
          headed = true;
          const probe = (msg as DeviceEvent).event.case === "heartbeat";
          if (!probe && refusal !== undefined) {
            closed = true;
            refuseStream(res, refusal);
            notify();
            return;
          }
          res.writeHead(200, { "content-type": "application/grpc+proto" });
        }
        if (closed) return;
        onMessage(msg, out);
        if (relay && !counted) {
          counted = true;
          relayStreams++;
        }
        notify();
      }
    });
    req.on("end", () => {
      if (closed) return;
      res.addTrailers({ "grpc-status": "0" });
      res.end();
    });
    req.on("error", () => {});
  }

  function refuseStream(res: Http2ServerResponse, how: Refusal): void {
    refused++;
    res.on("error", () => {});
    if ("http" in how) {
      res.writeHead(how.http, { "content-type": "text/plain" });
      res.end(`refused with HTTP ${how.http}`);
    } else if ("contentType" in how) {
      res.writeHead(200, { "content-type": how.contentType });
      res.end("<html>a proxy's page</html>");
    } else if ("trailersOnly" in how) {
      res.writeHead(200, { "content-type": "application/grpc+proto", "grpc-status": String(how.trailersOnly), "grpc-message": "refused%20at%20once" });
      res.end();
    } else {
      // Accepted, never answered: a server with more streams than threads to serve them.
      res.writeHead(200, { "content-type": "application/grpc+proto" });
      res.req.on("data", () => {});
    }
  }

  async function until(pred: () => boolean): Promise<void> {
    while (!pred()) {
      const { promise, resolve } = Promise.withResolvers<void>();
      waiters.push(resolve);
      await promise;
    }
  }

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    hellos,
    acts,
    relayStreams: () => relayStreams,
    until,
    helloOf: (deviceId, resumed) => until(() => hellos.some((h) => h.deviceId === deviceId && h.resumed === resumed)),
    refuse: (how) => {
      refusal = how;
    },
    refused: () => refused,
    relaySessionCounts: () => [...relayLive.values()].map((keys) => keys.size),
    endReasons,
    stallRelay: (stalled) => {
      for (const req of relayRequests) {
        if (stalled) req.pause();
        else req.resume();
      }
    },
    endRelayStreams: (how) => {
      for (const out of [...relayLive.keys()]) out.end(how);
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open sessions would hold close() until they end: the gateway is gone by now.
        setTimeout(resolve, 500).unref();
      }),
  };
}

function frame(message: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}
