import { describe, expect, test } from "bun:test";
import { OFFLINE_NOTE } from "../../src/ai/echo-answerer";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { mintToken } from "../../src/auth/mint-token";
import { startStack, type Stack, TEST_SECRET } from "../helpers/start-stack";

/** A text-dialect client: connects with a token and never says hello. */
async function textClient(stack: Stack, deviceId: string): Promise<SimulatedDevice> {
  return SimulatedDevice.connect({ url: stack.wsUrl, token: await stack.token(deviceId), deviceId, identityInQuery: true });
}

/** The chunks of answer `id` (the first `text` message's when not given), once text_end came. */
async function answer(c: SimulatedDevice, id?: string): Promise<{ id: string; chunks: string[] }> {
  const first = await c.waitJson((m) => m.type === "text" && (id === undefined || m.id === id));
  const answerId = String(first.id);
  await c.waitJson((m) => m.type === "text_end" && m.id === answerId);
  const chunks = c.received.flatMap((r) => (r.kind === "json" && r.msg.type === "text" && r.msg.id === answerId ? [String(r.msg.content)] : []));
  // Take the rest of this answer's chunks, so that a later answer() starts at the next one.
  for (let i = 1; i < chunks.length; i++) await c.waitJson((m) => m.type === "text" && m.id === answerId);
  return { id: answerId, chunks };
}

async function post(stack: Stack, path: string, body: unknown, token?: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${stack.gateway.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe("the text dialect", () => {
  test("a client that starts with text gets the answer streamed in chunks, then text_end", async () => {
    await using stack = await startStack();
    const c = await textClient(stack, "ba:00:00:00:00:01");
    c.sendJson({ type: "text", content: "what time is it" });
    const a = await answer(c);
    expect(a.chunks.length).toBeGreaterThan(1);
    expect(a.chunks.join("")).toBe(`You asked: what time is it${OFFLINE_NOTE}`);
  });

  test("an image (base64) with a prompt is answered; binary frames are refused with 1008", async () => {
    await using stack = await startStack();
    const c = await textClient(stack, "ba:00:00:00:00:02");
    c.sendJson({ type: "image", content: Buffer.from(new Uint8Array(321).fill(7)).toString("base64"), mime_type: "image/png", prompt: "what is this" });
    expect((await answer(c)).chunks.join("")).toContain("321-byte image/png image");
    c.sendRaw(new Uint8Array([1, 2, 3]));
    expect((await c.closed).code).toBe(1008);
  });
});

describe("POST /api/message", () => {
  test("without a device: the answer streams to every text client, and devices get it once as an alert", async () => {
    await using stack = await startStack();
    const a = await textClient(stack, "bb:00:00:00:00:01");
    const b = await textClient(stack, "bb:00:00:00:00:02");
    // A text client's dialect is told by its first message: say something first.
    for (const c of [a, b]) c.sendJson({ type: "text", content: "hi" });
    await Promise.all([answer(a), answer(b)]);
    const device = await stack.device("bb:00:00:00:00:03", 3);
    await device.hello();
    const res = await post(stack, "/api/message", { content: "the news" }, await stack.apiToken());
    expect(res.status).toBe(200);
    expect(res.json.code).toBe(200);
    const id = String(res.json.id);
    for (const c of [a, b]) expect((await answer(c, id)).chunks.join("")).toBe(`You asked: the news${OFFLINE_NOTE}`);
    const alert = await device.waitJson((m) => m.type === "alert");
    expect(alert).toMatchObject({ status: "message", emotion: "neutral" });
    expect(String(alert.message)).toContain("You asked: the news");
  });

  test("to one device: a device session hears it as a conversation turn; a text client gets the stream; others nothing", async () => {
    await using stack = await startStack();
    const device = await stack.device("bc:00:00:00:00:01", 2);
    await device.hello();
    const text = await textClient(stack, "bc:00:00:00:00:02");
    text.sendJson({ type: "text", content: "hi" });
    await answer(text);
    const token = await stack.apiToken();
    expect((await post(stack, "/api/message", { content: "turn on the light", device_id: "BC:00:00:00:00:01" }, token)).status).toBe(200);
    const sub = await device.waitJson((m) => m.type === "tts" && m.state === "sentence_start");
    expect(String(sub.text)).toContain("turn on the light");
    const res = await post(stack, "/api/message", { content: "just you", device_id: "bc:00:00:00:00:02" }, token);
    expect((await answer(text, String(res.json.id))).chunks.join("")).toBe(`You asked: just you${OFFLINE_NOTE}`);
    expect(device.received.some((r) => r.kind === "json" && JSON.stringify(r.msg).includes("just you"))).toBe(false);
  });

  test("bad requests get a reason: no token 401, bad JSON or empty content 400, unknown device 404", async () => {
    await using stack = await startStack();
    const token = await stack.apiToken();
    expect((await post(stack, "/api/message", { content: "x" })).status).toBe(401);
    expect((await post(stack, "/api/message", "{not json", token)).status).toBe(400);
    const empty = await post(stack, "/api/message", { content: "  " }, token);
    expect(empty.status).toBe(400);
    expect(empty.json).toMatchObject({ error: { code: "ERR_MESSAGE_MALFORMED" } });
    expect((await post(stack, "/api/message", { content: "x", device_id: "00:00:00:00:00:00" }, token)).status).toBe(404);
    expect((await fetch(`${stack.gateway.url}/api/message`)).status).toBe(405);
  });

  test("with IM_AUTH_REQUIRED=false no token is needed; /api/health answers", async () => {
    await using stack = await startStack({ gateway: { authRequired: false } });
    expect((await post(stack, "/api/message", { content: "open" })).status).toBe(200);
    expect(await (await fetch(`${stack.gateway.url}/api/health`)).json()).toMatchObject({ status: "ok" });
  });
});

describe("the text dialect announced at the handshake (?dialect=text)", () => {
  test("an idle client is not closed for want of a hello and receives broadcasts before saying anything", async () => {
    await using stack = await startStack({ gateway: { helloTimeoutMs: 150 } });
    const idle = await SimulatedDevice.connect({
      url: `${stack.wsUrl}?dialect=text`,
      token: await stack.token("bd:00:00:00:00:01"),
      deviceId: "bd:00:00:00:00:01",
      identityInQuery: true,
    });
    const device = await stack.device("bd:00:00:00:00:02");
    // A device-protocol client that says nothing is closed by the hello timeout meanwhile.
    expect((await device.closed).code).toBe(4001);
    const res = await post(stack, "/api/message", { content: "to all" }, await stack.apiToken());
    expect((await answer(idle, String(res.json.id))).chunks.join("")).toBe(`You asked: to all${OFFLINE_NOTE}`);
    expect(idle.isOpen).toBe(true);
  });
});

describe("a client that only listens (names no device, says nothing)", () => {
  // Found before: such clients (the second seed's, which open /ws and wait) were closed 4001
  // by the hello timeout and never heard a broadcast.
  test("is not closed by the hello timeout, receives broadcasts, and can still start a device session", async () => {
    await using stack = await startStack({ gateway: { helloTimeoutMs: 150 } });
    const token = await mintToken({ secret: TEST_SECRET, subject: "a listening app" });
    const listener = await SimulatedDevice.connect({ url: stack.wsUrl, token });
    const device = await stack.device("be:00:00:00:00:02");
    expect((await device.closed).code).toBe(4001);
    const res = await post(stack, "/api/message", { content: "to all" }, await stack.apiToken());
    expect((await answer(listener, String(res.json.id))).chunks.join("")).toBe(`You asked: to all${OFFLINE_NOTE}`);
    expect(listener.isOpen).toBe(true);
    // It says hello after all: a device session, which text broadcasts no longer reach.
    await listener.hello();
    const again = await post(stack, "/api/message", { content: "to all again" }, await stack.apiToken());
    await listener.waitJson((m) => m.type === "alert" && m.status === "message");
    expect(listener.received.some((r) => r.kind === "json" && r.msg.type === "text" && r.msg.id === again.json.id)).toBe(false);
  });
});
