import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Answerer } from "../../src/ai/answerer";
import { OFFLINE_NOTE } from "../../src/ai/echo-answerer";
import { mintToken } from "../../src/auth/mint-token";
import { createTokenVerifier } from "../../src/auth/token-verifier";
import { createVisionRoute, VISION_PATHS, type VisionRouteOptions } from "../../src/http/vision-route";
import { type Stack, startStack, TEST_SECRET } from "../helpers/start-stack";
import { LogCapture, serveRoutes, tinyPng } from "./helpers";

const DEVICE = "aa:bb:cc:dd:ee:42";
const verifier = createTokenVerifier({ secret: TEST_SECRET });

interface VisionAnswer {
  success: boolean;
  action?: string;
  response?: string;
  message?: string;
  error?: { code: string; message: string };
}

/** A real reference AI service behind a real upstream, shared by the tests of this file. */
let stack: Stack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => {
  await stack[Symbol.asyncDispose]();
});

function serveVision(overrides: Partial<VisionRouteOptions> = {}) {
  const log = new LogCapture("debug");
  const route = createVisionRoute({ verifier, upstream: stack.upstream, authRequired: true, maxImageBytes: 64 * 1024, logger: log.logger, ...overrides });
  const server = serveRoutes(Object.fromEntries(VISION_PATHS.map((p) => [p, route])));
  return { log, server, base: `http://127.0.0.1:${server.port}` };
}

/** The firmware's camera upload: multipart `question` + `file`, Bearer token, Device-Id. */
function upload(url: string, opts: { token?: string; question?: string; file?: Blob; field?: string; deviceId?: string }) {
  const form = new FormData();
  if (opts.question !== undefined) form.append("question", opts.question);
  if (opts.file !== undefined) form.append(opts.field ?? "file", opts.file, "camera.png");
  const headers: Record<string, string> = { "device-id": opts.deviceId ?? DEVICE, "client-id": "c-1" };
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  return fetch(url, { method: "POST", headers, body: form });
}

async function answer(res: Response): Promise<VisionAnswer> {
  return (await res.json()) as VisionAnswer;
}

describe("POST /api/vision", () => {
  test("a real PNG and a question: the reference AI's whole answer, synchronously, in the xiaozhi shape", async () => {
    const { server, base, log } = serveVision();
    using _ = server;
    const png = tinyPng(3, 2);
    const token = await stack.token(DEVICE);
    const res = await upload(`${base}/api/vision`, {
      token,
      question: "what colour is the sky here",
      file: new File([png], "camera.png", { type: "image/png" }),
    });
    expect(res.status).toBe(200);
    const body = await answer(res);
    expect(body).toEqual({
      success: true,
      action: "RESPONSE",
      response: `You asked: what colour is the sky here (with a ${png.length}-byte image/png image)${OFFLINE_NOTE}`,
    });
    const line = log.find("vision: answered")[0];
    expect(line).toMatchObject({ level: 30, deviceId: DEVICE, userId: DEVICE, imageBytes: png.length, mimeType: "image/png" });
    // Neither the question nor the token is logged.
    expect(log.text).not.toContain("colour");
    expect(log.text).not.toContain(token);
  });

  test("/mcp/vision/explain, the `image` field, no question, an octet-stream part: sniffed and answered", async () => {
    const { server, base } = serveVision();
    using _ = server;
    const png = tinyPng();
    const res = await upload(`${base}/mcp/vision/explain`, {
      token: await stack.token(DEVICE),
      field: "image",
      file: new Blob([png], { type: "application/octet-stream" }),
    });
    expect(res.status).toBe(200);
    expect((await answer(res)).response).toContain(`You asked: What is in this picture? (with a ${png.length}-byte image/png image)`);
  });

  test("no token: 401 with the JSON error; with authRequired false it is served", async () => {
    const file = new File([tinyPng()], "camera.png", { type: "image/png" });
    {
      const { server, base } = serveVision();
      using _ = server;
      const res = await upload(`${base}/api/vision`, { question: "q", file });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toBe("Bearer");
      const body = await answer(res);
      expect(body.success).toBe(false);
      expect(body.error?.code).toBe("ERR_TOKEN_MISSING");
    }
    {
      const { server, base } = serveVision({ authRequired: false });
      using _ = server;
      const res = await upload(`${base}/api/vision`, { question: "q", file });
      expect(res.status).toBe(200);
      expect((await answer(res)).success).toBe(true);
    }
  });

  test("a bad, foreign or other device's token: 401 (also when auth is not required)", async () => {
    const { server, base, log } = serveVision({ authRequired: false });
    using _ = server;
    const file = new File([tinyPng()], "camera.png", { type: "image/png" });
    const foreign = await mintToken({ secret: "another-secret-entirely-0123456789", deviceId: DEVICE });
    const otherDevice = await stack.token("aa:bb:cc:dd:ee:43");
    for (const token of ["not.a.jwt", foreign, otherDevice]) {
      const res = await upload(`${base}/api/vision`, { token, question: "q", file });
      expect(res.status).toBe(401);
      expect((await answer(res)).error?.code).toBe("ERR_TOKEN_INVALID");
      expect(log.text).not.toContain(token);
    }
  });

  test("not an image: 415; an empty file or no file: 400; not multipart: 415", async () => {
    const { server, base } = serveVision();
    using _ = server;
    const token = await stack.token(DEVICE);
    const text = await upload(`${base}/api/vision`, { token, question: "q", file: new File(["hello, not a picture"], "notes.txt", { type: "text/plain" }) });
    expect(text.status).toBe(415);
    expect((await answer(text)).error?.code).toBe("ERR_UNSUPPORTED_MEDIA_TYPE");
    // Claiming to be a PNG is not enough.
    const fake = await upload(`${base}/api/vision`, { token, file: new File(["GIF? no"], "x.png", { type: "image/png" }) });
    expect(fake.status).toBe(415);
    const empty = await upload(`${base}/api/vision`, { token, file: new File([], "camera.png", { type: "image/png" }) });
    expect(empty.status).toBe(400);
    expect((await answer(empty)).message).toContain("empty");
    const none = await upload(`${base}/api/vision`, { token, question: "q" });
    expect(none.status).toBe(400);
    const json = await fetch(`${base}/api/vision`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(json.status).toBe(415);
  });

  test("too big: 413 with the reason, both for an image over the limit and for a body announced far over it", async () => {
    const { server, base } = serveVision({ maxImageBytes: 1024 });
    using _ = server;
    const token = await stack.token(DEVICE);
    const big = new Uint8Array(4096);
    big.set(tinyPng());
    const over = await upload(`${base}/api/vision`, { token, question: "q", file: new File([big], "camera.png", { type: "image/png" }) });
    expect(over.status).toBe(413);
    const body = await answer(over);
    expect(body.error?.code).toBe("ERR_MESSAGE_TOO_LARGE");
    expect(body.message).toContain("4096 bytes");
    expect(body.message).toContain("1024");

    const huge = new Uint8Array(512 * 1024);
    huge.set(tinyPng());
    const unread = await upload(`${base}/api/vision`, { token, file: new File([huge], "camera.png", { type: "image/png" }) });
    expect(unread.status).toBe(413);

    // Chunked, no Content-Length: read up to the limit, then refused without buffering the rest.
    const chunk = new Uint8Array(64 * 1024);
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent >= 16 * 1024 * 1024) return controller.close();
        sent += chunk.length;
        controller.enqueue(chunk);
      },
    });
    const chunked = await fetch(`${base}/api/vision`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "multipart/form-data; boundary=xyz" },
      body: stream,
    });
    expect(chunked.status).toBe(413);
    expect(sent).toBeLessThan(16 * 1024 * 1024);
  });

  test("no AI service: 503 with success false and Retry-After", async () => {
    await using down = await startStack({ ai: false, targets: [{ host: "127.0.0.1", port: 1 }], waitReady: false });
    const { server, base, log } = serveVision({ upstream: down.upstream });
    using _ = server;
    const res = await upload(`${base}/api/vision`, {
      token: await stack.token(DEVICE),
      question: "q",
      file: new File([tinyPng()], "camera.png", { type: "image/png" }),
    });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    const body = await answer(res);
    expect(body.success).toBe(false);
    expect(body.message).toContain("not reachable");
    expect(body.error?.code).toBe("ERR_UPSTREAM_UNAVAILABLE");
    expect(log.find("vision: the AI service could not answer")).toHaveLength(1);
  });

  test("an AI that does not answer in time: 504, and the question is cancelled at the AI", async () => {
    const { promise: cancelled, resolve: onCancelled } = Promise.withResolvers<void>();
    const hanging: Answerer = {
      async *answer(_q, signal) {
        await new Promise<void>((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
        onCancelled();
      },
    };
    await using slow = await startStack({ ai: { answerer: hanging } });
    const { server, base } = serveVision({ upstream: slow.upstream, answerTimeoutMs: 300 });
    using _ = server;
    const res = await upload(`${base}/api/vision`, {
      token: await stack.token(DEVICE),
      question: "q",
      file: new File([tinyPng()], "camera.png", { type: "image/png" }),
    });
    expect(res.status).toBe(504);
    expect((await answer(res)).success).toBe(false);
    await cancelled;
  });

  test("OPTIONS 204 with CORS; GET 405", async () => {
    const { server, base } = serveVision();
    using _ = server;
    const pre = await fetch(`${base}/api/vision`, { method: "OPTIONS" });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-headers")).toContain("authorization");
    expect((await fetch(`${base}/api/vision`)).status).toBe(405);
  });
});
