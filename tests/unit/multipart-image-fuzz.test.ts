import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { HTTP_STATUS } from "../../src/http/error-response";
import { readMultipartImage, sniffImageType } from "../../src/http/multipart-image";

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const MAX = 4096;

function request(body: Uint8Array | FormData, contentType?: string): Request {
  return new Request("http://x/api/image", { method: "POST", body, headers: contentType ? { "content-type": contentType } : undefined });
}

describe("readMultipartImage on hostile input", () => {
  test("arbitrary bytes under a multipart content type never throw: ok only for a real image within the limit, else 400/413/415", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.string({ minLength: 1, maxLength: 40 }).filter((b) => /^[\w'()+,./:=?-]+$/.test(b)),
        fc.uint8Array({ maxLength: 6000 }),
        async (boundary, bytes) => {
          const r = await readMultipartImage(request(bytes, `multipart/form-data; boundary=${boundary}`), { maxImageBytes: MAX });
          if (r.t === "ok") {
            expect(r.image.data.length).toBeGreaterThan(0);
            expect(r.image.data.length).toBeLessThanOrEqual(MAX);
          } else expect([400, 413, 415]).toContain(HTTP_STATUS[r.code]);
        },
      ),
      { seed: 7, numRuns: 400 },
    );
  });

  test("truncated and garbled real forms never throw", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 2000 }), fc.nat(), fc.nat(), async (payload, cutAt, flipAt) => {
        const form = new FormData();
        form.set("image", new Blob([new Uint8Array([...PNG, ...payload])], { type: "image/png" }), "x.png");
        form.set("prompt", "what");
        const wire = new Uint8Array(await new Response(form).arrayBuffer());
        const ct = new Response(form).headers.get("content-type") ?? "";
        const cut = wire.slice(0, cutAt % (wire.length + 1));
        if (cut.length > 0) cut[flipAt % cut.length] = (cut[flipAt % cut.length] ?? 0) ^ 0xff;
        const r = await readMultipartImage(request(cut, ct), { maxImageBytes: MAX });
        if (r.t === "refused") expect([400, 413, 415]).toContain(HTTP_STATUS[r.code]);
      }),
      { seed: 8, numRuns: 300 },
    );
  });

  test("valid forms round-trip: the image bytes, its sniffed type and the text fields", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.string({ maxLength: 50 }), async (payload, prompt) => {
        const data = new Uint8Array([...PNG, ...payload]);
        const form = new FormData();
        form.set("image", new Blob([data], { type: "application/octet-stream" }), "x");
        form.set("prompt", prompt);
        const r = await readMultipartImage(request(form), { maxImageBytes: MAX, imageFields: ["image"] });
        if (data.length > MAX) {
          expect(r.t === "refused" && HTTP_STATUS[r.code]).toBe(413);
          return;
        }
        expect(r.t).toBe("ok");
        if (r.t !== "ok") return;
        expect([...r.image.data]).toEqual([...data]);
        expect(r.image.mimeType).toBe("image/png");
        expect(sniffImageType(r.image.data)).toBe("image/png");
        expect(r.text("prompt")).toBe(prompt);
      }),
      { seed: 9, numRuns: 300 },
    );
  });
});
