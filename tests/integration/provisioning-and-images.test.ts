import { describe, expect, test } from "bun:test";
import { OFFLINE_NOTE } from "../../src/ai/echo-answerer";
import { SimulatedDevice } from "../../src/loadtest/simulated-device";
import { tinyPng } from "../http/helpers";
import { packets, startStack } from "../helpers/start-stack";

describe("a device provisions itself and converses", () => {
  test("POST /xiaozhi/ota/ hands out the ws URL, a token and the version; the device connects with exactly those", async () => {
    await using stack = await startStack();
    const deviceId = "ca:fe:00:00:00:01";
    const res = await fetch(`${stack.gateway.url}/xiaozhi/ota/`, {
      method: "POST",
      headers: {
        "Device-Id": deviceId,
        "Client-Id": "2f1c1c32-0000-4000-8000-000000000001",
        "User-Agent": "bread-compact-wifi/1.6.2",
        "content-type": "application/json",
      },
      body: JSON.stringify({ application: { version: "1.6.2" }, mac_address: deviceId }),
    });
    expect(res.status).toBe(200);
    const ota = (await res.json()) as { websocket: { url: string; token: string; version: 1 | 2 | 3 }; mqtt?: unknown };
    expect(ota.mqtt).toBeUndefined();
    expect(ota.websocket.version).toBe(3);
    const dev = await SimulatedDevice.connect({ url: ota.websocket.url, token: ota.websocket.token, deviceId, protocolVersion: ota.websocket.version });
    await dev.hello({ audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 20 } });
    dev.sendJson({ type: "listen", state: "start", mode: "manual" });
    for (const p of packets(5)) dev.sendAudio(p);
    dev.sendJson({ type: "listen", state: "stop" });
    await dev.waitJson((m) => m.type === "tts" && m.state === "stop");
    expect(dev.audio()).toHaveLength(5);
  });
});

describe("images over HTTP", () => {
  test("POST /api/image streams the answer about the picture to every text client", async () => {
    await using stack = await startStack();
    const client = await SimulatedDevice.connect({
      url: `${stack.wsUrl}?dialect=text`,
      token: await stack.token("ca:fe:00:00:00:02"),
      deviceId: "ca:fe:00:00:00:02",
      identityInQuery: true,
    });
    const png = tinyPng();
    const form = new FormData();
    form.set("image", new Blob([png], { type: "image/png" }), "cat.png");
    form.set("prompt", "what is this");
    const res = await fetch(`${stack.gateway.url}/api/image`, { method: "POST", headers: { authorization: `Bearer ${await stack.apiToken()}` }, body: form });
    expect(res.status).toBe(200);
    const id = String(((await res.json()) as { id: string }).id);
    await client.waitJson((m) => m.type === "text_end" && m.id === id);
    const text = client.received.flatMap((r) => (r.kind === "json" && r.msg.type === "text" && r.msg.id === id ? [String(r.msg.content)] : [])).join("");
    expect(text).toBe(`You asked: what is this (with a ${png.length}-byte image/png image)${OFFLINE_NOTE}`);
  });

  test("POST /api/image refuses what is not an image, and a picture over the limit", async () => {
    await using stack = await startStack({ gateway: { maxImageBytes: 2048 } });
    const token = await stack.apiToken();
    const send = async (bytes: Uint8Array, type: string) => {
      const form = new FormData();
      form.set("image", new Blob([bytes], { type }), "x");
      return (await fetch(`${stack.gateway.url}/api/image`, { method: "POST", headers: { authorization: `Bearer ${token}` }, body: form })).status;
    };
    expect(await send(new TextEncoder().encode("hello, not a picture"), "text/plain")).toBe(415);
    expect(await send(new Uint8Array(4096), "image/png")).toBe(413);
  });

  test("POST /api/vision (the device camera) answers synchronously with the AI's text", async () => {
    await using stack = await startStack();
    const form = new FormData();
    form.set("question", "what do you see");
    form.set("file", new Blob([tinyPng()], { type: "image/png" }), "camera.png");
    const res = await fetch(`${stack.gateway.url}/api/vision`, {
      method: "POST",
      headers: { authorization: `Bearer ${await stack.token("ca:fe:00:00:00:03")}` },
      body: form,
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { success: boolean; response: string };
    expect(body.success).toBe(true);
    expect(body.response).toContain("You asked: what do you see");
  });
});
