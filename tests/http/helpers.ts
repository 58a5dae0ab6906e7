import { deflateSync } from "node:zlib";
import type { Server } from "bun";
import pino from "pino";
import type { Logger } from "../../src/log";

/** A logger whose every raw line is kept, to assert on what is (never) logged. */
export class LogCapture {
  text = "";
  readonly logger: Logger;

  constructor(level: pino.Level = "debug") {
    this.logger = pino(
      { level },
      {
        write: (s: string) => {
          this.text += s;
        },
      },
    );
  }

  lines(): Record<string, unknown>[] {
    return this.text
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Lines with this `msg`. */
  find(msg: string): Record<string, unknown>[] {
    return this.lines().filter((l) => l.msg === msg);
  }
}

/** A handler as the gateway calls it: the request and the peer's address. */
export type Handler = (req: Request, clientAddress: string) => Promise<Response>;

/** A real HTTP server on port 0 routing exact paths to handlers (404 otherwise). */
export function serveRoutes(routes: Readonly<Record<string, Handler>>): Server<undefined> {
  return Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(req, srv) {
      const handler = routes[new URL(req.url).pathname];
      if (handler === undefined) return new Response("no route", { status: 404 });
      return handler(req, srv.requestIP(req)?.address ?? "");
    },
  });
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, Bun.hash.crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** A valid `width` x `height` RGB PNG (a gradient), built from scratch. */
export function tinyPng(width = 2, height = 2): Uint8Array {
  const ihdr = new Uint8Array(13);
  const v = new DataView(ihdr.buffer);
  v.setUint32(0, width);
  v.setUint32(4, height);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const raw = new Uint8Array(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) raw.set([(x * 255) / Math.max(1, width - 1), (y * 255) / Math.max(1, height - 1), 128], row + 1 + x * 3);
  }
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", new Uint8Array(deflateSync(raw))),
    chunk("IEND", new Uint8Array(0)),
  ];
  const png = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    png.set(p, at);
    at += p.length;
  }
  return png;
}
