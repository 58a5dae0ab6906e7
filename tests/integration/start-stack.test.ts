import { expect, test } from "bun:test";
import { startAiServer } from "../../src/ai/start-ai-server";
import { freePort } from "../fanout/fanout-test-kit";
import { startStack } from "../helpers/start-stack";

test("a stack whose start fails part-way stops what it had started: its AI server's port is free again", async () => {
  const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  try {
    const aiPort = await freePort();
    // The AI server and the upstream start; the gateway cannot listen.
    await expect(startStack({ ai: { port: aiPort }, gateway: { port: taken.port } })).rejects.toThrow(/in use/);
    // Listening on the AI server's port again works only if the failed start closed it.
    await using again = await startAiServer({ port: aiPort });
    expect(again.port).toBe(aiPort);
  } finally {
    taken.stop(true);
  }
});
