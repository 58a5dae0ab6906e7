import { describe, expect, test } from "bun:test";
import { OFFLINE_NOTE } from "../../src/ai/echo-answerer";
import { isGatewayError } from "../../src/errors";
import { startStack } from "../helpers/start-stack";

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const c of it) out.push(c);
  return out;
}

for (const transport of ["relay", "converse"] as const)
  describe(`${transport}: asking the AI service one question`, () => {
    test("the answer streams back in several chunks, with an image when one is given", async () => {
      await using stack = await startStack({ transport });
      const chunks = await collect(stack.upstream.ask({ text: "what time is it", userId: "u1" }, new AbortController().signal));
      expect(chunks.length).toBeGreaterThan(1);
      expect(chunks.join("")).toBe(`You asked: what time is it${OFFLINE_NOTE}`);
      const withImage = await collect(
        stack.upstream.ask({ text: "what is this", image: { data: new Uint8Array(10), mimeType: "image/png" } }, new AbortController().signal),
      );
      expect(withImage.join("")).toContain("10-byte image/png image");
    });

    test("no AI service: a clear ERR_UPSTREAM_UNAVAILABLE, not a hang", async () => {
      await using stack = await startStack({ transport, ai: false, targets: [{ host: "127.0.0.1", port: 1 }], waitReady: false });
      const err = await collect(stack.upstream.ask({ text: "hi" }, new AbortController().signal)).catch((e: unknown) => e);
      expect(isGatewayError(err, "ERR_UPSTREAM_UNAVAILABLE")).toBe(true);
    });

    test("an empty question is refused by the AI service as malformed", async () => {
      await using stack = await startStack({ transport });
      const err = await collect(stack.upstream.ask({ text: "" }, new AbortController().signal)).catch((e: unknown) => e);
      expect(isGatewayError(err, "ERR_MESSAGE_MALFORMED")).toBe(true);
    });
  });
