import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { type RestartableGateway, startRestartableGateway } from "./restartable-gateway";
import { tinyPng } from "../http/helpers";

/**
 * The browser test page (`/test-websocket.html`) in a real headless Chromium (Debian's
 * `chromium`, driven by playwright-core) against the real gateway and reference AI service:
 * text chat with streamed answers, an image, a broadcast from the HTTP API, reconnecting
 * after a gateway restart, and voice mode with Chromium's fake microphone. The page exposes
 * `window.__xiaozhi` (state, counters, answers); every wait is on that, bounded.
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const ARTIFACTS = join(import.meta.dir, "../../.test-artifacts");
const SCREENSHOT = join(ARTIFACTS, "test-page.png");
const DEVICE_ID = "02:00:00:00:b0:01";
/** Per-test budget; the waits inside are shorter. */
const TEST_MS = 30_000;

/** What the page publishes on `window.__xiaozhi` (the fields this test reads). */
interface Hook {
  state: string;
  states: string[];
  mode: string;
  devToken: string;
  sessionId: string | null;
  lastClose: { code: number; reason: string; opened: boolean } | null;
  counters: Record<"connects" | "textsSent" | "imagesSent" | "framesSent" | "framesReceived" | "framesPlayed" | "framesDropped" | "framesBad", number>;
  answers: { id: string; text: string; chunks: number; done: boolean; interrupted: boolean; error: string | null }[];
  lastMessages: Record<string, unknown>[];
  sentMessages: Record<string, unknown>[];
  errors: string[];
  alerts: unknown[];
  stt: string;
  emotion: string;
  subtitle: string;
  listening: boolean;
  speaking: boolean;
}

let gateway: RestartableGateway;
let context: BrowserContext;
let page: Page;
let profileDir: string;
const pageErrors: string[] = [];
const foreignRequests: string[] = [];

/** Set once the gateway served the page and it came up: later tests fail fast without it. */
let pageLoaded = false;

function requirePage(): void {
  if (!pageLoaded) throw new Error("the test page did not load from the gateway (see the first test)");
}

/** The page's hook, read once. */
function hook(): Promise<Hook> {
  return page.evaluate(() => (globalThis as unknown as { __xiaozhi: Hook }).__xiaozhi);
}

/**
 * Waits until `predicate(hook, arg)` holds in the page. The predicate runs in the browser:
 * it may use only its parameters (it is sent as source).
 */
async function until<A>(what: string, predicate: (h: Hook, arg: A) => boolean, arg: A, timeoutMs = 10_000): Promise<void> {
  const expression = `(${predicate.toString()})(globalThis.__xiaozhi, ${JSON.stringify(arg)})`;
  try {
    await page.waitForFunction(expression, undefined, { timeout: timeoutMs, polling: 50 });
  } catch (err) {
    const h = await hook().catch(() => undefined);
    const snapshot = h && {
      state: h.state,
      states: h.states,
      lastClose: h.lastClose,
      counters: h.counters,
      errors: h.errors,
      answers: h.answers,
      last: h.lastMessages.slice(-5),
    };
    throw new Error(`waiting for ${what}: ${(err as Error).message.split("\n")[0]}\npage: ${JSON.stringify(snapshot)}`);
  }
}

/** The finished answer whose text contains `needle`. */
async function answerContaining(needle: string, timeoutMs = 10_000) {
  await until(`an answer containing ${JSON.stringify(needle)}`, (h, n) => h.answers.some((a) => a.done && a.text.includes(n)), needle, timeoutMs);
  const answer = (await hook()).answers.find((a) => a.done && a.text.includes(needle))!;
  return answer;
}

async function sendText(text: string) {
  await page.fill("#text-input", text);
  await page.click("#send-text");
}

beforeAll(async () => {
  gateway = await startRestartableGateway();
  profileDir = mkdtempSync(join(tmpdir(), "xiaozhi-chromium-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    viewport: { width: 1200, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
    ],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10_000);
  page.on("pageerror", (err) => pageErrors.push(err.message));
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const text = msg.text();
    // Network noise Chromium logs by itself: failed sockets while the gateway restarts, and
    // the 404 of /api/dev-token from a gateway with its own secret (the page handles both).
    if (text.startsWith("WebSocket connection to")) return;
    if (text.startsWith("Failed to load resource") && URL.parse(msg.location().url)?.pathname === "/api/dev-token") return;
    pageErrors.push(text);
  });
  page.on("request", (req) => {
    const u = new URL(req.url());
    if (u.protocol !== "data:" && u.protocol !== "blob:" && u.origin !== gateway.url) foreignRequests.push(req.url());
  });
});

afterAll(async () => {
  try {
    if (page !== undefined) {
      mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 10_000 }).catch((err) => console.error(`screenshot failed: ${err}`));
    }
  } finally {
    await context?.close().catch(() => {});
    if (profileDir !== undefined) rmSync(profileDir, { recursive: true, force: true });
    await gateway?.[Symbol.asyncDispose]();
  }
});

describe("the browser test page against the real gateway", () => {
  test(
    "the gateway serves the page; it loads with no request to another origin",
    async () => {
      const res = await fetch(`${gateway.url}/test-websocket.html`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type") ?? "").toContain("text/html");
      await res.arrayBuffer();

      await page.goto(`${gateway.url}/test-websocket.html`, { waitUntil: "load" });
      await until("the dev-token lookup to finish", (h) => h.devToken !== "pending", null);
      pageLoaded = true;
      const h = await hook();
      // 200 with a token in local mode (built-in secret), else 404; never a failed request.
      expect(["prefilled", "unavailable"]).toContain(h.devToken);
      expect(h.state).toBe("disconnected");
      expect(await page.inputValue("#url")).toBe(`ws://127.0.0.1:${gateway.port}/ws`);
      expect(await page.inputValue("#device-id")).toMatch(/^02(:[0-9a-f]{2}){5}$/);
      expect(await page.inputValue("#protocol-version")).toBe("3");
    },
    TEST_MS,
  );

  test(
    "connects with a token and shows the state",
    async () => {
      requirePage();
      await page.fill("#device-id", DEVICE_ID);
      await page.fill("#token", await gateway.token(DEVICE_ID));
      await page.click("#connect");
      await until("connected", (h) => h.state === "connected", null);
      expect(await page.textContent("#state")).toBe("connected");
    },
    TEST_MS,
  );

  test(
    "sends a text and shows the streamed answer, chunk by chunk",
    async () => {
      requirePage();
      await sendText("hello from the browser");
      const answer = await answerContaining("You asked: hello from the browser");
      expect(answer.chunks).toBeGreaterThan(1);
      expect(answer.interrupted).toBe(false);
      const bubble = page.locator(".bubble.ai", { hasText: "You asked: hello from the browser" });
      expect(await bubble.count()).toBe(1);
      expect(await bubble.locator(".body").textContent()).toBe(answer.text);
      expect((await hook()).sentMessages).toContainEqual({ type: "text", content: "hello from the browser" });
    },
    TEST_MS,
  );

  test(
    "uploads an image and shows the answer, which names its size",
    async () => {
      requirePage();
      const png = tinyPng(8, 8);
      await page.setInputFiles("#image-file", { name: "red.png", mimeType: "image/png", buffer: Buffer.from(png) });
      await page.fill("#image-prompt", "what colour is this");
      await page.click("#send-image");
      const answer = await answerContaining(`${png.length}-byte`);
      expect(answer.text).toContain("what colour is this");
      const sent = (await hook()).sentMessages.find((m) => m.type === "image");
      expect(sent).toMatchObject({ type: "image", mime_type: "image/png", prompt: "what colour is this" });
      expect(await page.locator(".bubble.me img").count()).toBe(1);
    },
    TEST_MS,
  );

  test(
    "shows an answer broadcast from the HTTP API (POST /api/message)",
    async () => {
      requirePage();
      const res = await fetch(`${gateway.url}/api/message`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${await gateway.current.apiToken()}` },
        body: JSON.stringify({ content: "a broadcast to every client" }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ code: 200 });
      const answer = await answerContaining("a broadcast to every client");
      expect(answer.chunks).toBeGreaterThan(1);
    },
    TEST_MS,
  );

  test(
    "reconnects by itself after the gateway restarts on the same port",
    async () => {
      requirePage();
      const before = (await hook()).counters.connects;
      await gateway.restart();
      await until("reconnected", (h, n) => h.state === "connected" && h.counters.connects > n, before, 20_000);
      const h = await hook();
      expect(h.states).toContain("reconnecting");
      expect([1001, 1006]).toContain(h.lastClose?.code ?? 0);
      expect(await page.textContent("#close-info")).toBe("");

      await sendText("are you back");
      await answerContaining("You asked: are you back");
    },
    TEST_MS,
  );

  for (const [version, how] of [
    [3, "hold-to-talk"],
    [2, "the talk toggle"],
  ] as const) {
    test(
      `voice mode, protocol v${version}: the fake microphone speaks via ${how}, the echoed answer plays`,
      async () => {
        requirePage();
        await page.selectOption("#protocol-version", String(version));
        if ((await hook()).mode === "voice") {
          await page.click("#disconnect");
          await page.click("#connect");
        } else {
          await page.check("#mode-voice"); // switching modes reconnects
        }
        await until("a voice session", (h) => h.mode === "voice" && h.state === "connected" && h.sessionId !== null, null);
        const h0 = await hook();
        expect(h0.sentMessages).toContainEqual({
          type: "hello",
          version,
          transport: "websocket",
          features: { mcp: false },
          audio_params: { format: "opus", sample_rate: 16000, channels: 1, frame_duration: 60 },
        });
        expect(await page.textContent("#session-id")).toBe(h0.sessionId || "(none given)");
        const base = h0.counters;

        // About 1.5 s of speech: 25 frames of 60 ms.
        if (how === "hold-to-talk") {
          await page.hover("#talk");
          await page.mouse.down();
        } else {
          await page.click("#talk-toggle");
        }
        await until("25 frames sent", (h, n) => h.listening && h.counters.framesSent >= n + 25, base.framesSent, 10_000);
        if (how === "hold-to-talk") await page.mouse.up();
        else await page.click("#talk-toggle");

        await until("listen stop", (h) => !h.listening && h.sentMessages.some((m) => m.type === "listen" && m.state === "stop"), null);
        await until("stt", (h) => h.stt !== "", null, 10_000);
        // The reference AI answers with the utterance's own frames, paced in real time.
        await until(
          "the answer played out",
          (h, b) =>
            !h.speaking &&
            h.counters.framesPlayed > b.framesPlayed &&
            h.counters.framesPlayed - b.framesPlayed === h.counters.framesReceived - b.framesReceived - (h.counters.framesDropped - b.framesDropped),
          base,
          15_000,
        );

        const h = await hook();
        const sent = h.counters.framesSent - base.framesSent;
        expect(sent).toBeGreaterThan(10);
        expect(h.counters.framesReceived - base.framesReceived).toBeGreaterThan(10);
        expect(h.counters.framesPlayed - base.framesPlayed).toBeGreaterThan(10);
        expect(h.counters.framesBad).toBe(0);
        expect(h.stt).toMatch(/heard .* frames/);
        expect(await page.textContent("#stt")).toBe(h.stt);
        expect(h.emotion).not.toBe("");
        expect(await page.textContent("#frames-sent")).toBe(String(h.counters.framesSent));
        const listens = h.sentMessages.filter((m) => m.type === "listen").slice(-2);
        expect(listens).toEqual([
          { session_id: h.sessionId, type: "listen", state: "start", mode: "manual" },
          { session_id: h.sessionId, type: "listen", state: "stop" },
        ]);
      },
      TEST_MS,
    );
  }

  test("no page errors, and nothing fetched from another origin", () => {
    expect(pageErrors).toEqual([]);
    expect(foreignRequests).toEqual([]);
  });
});
