import { type Stack, startStack } from "../helpers/start-stack";

/**
 * A real gateway plus reference AI service whose gateway can be restarted on the same port:
 * restart() stops the gateway's Bun server (devices see 1001) and starts a new gateway (with
 * its own upstream, to the same AI service) on that port, the way an operator restarts it.
 */
export interface RestartableGateway extends AsyncDisposable {
  /** `http://127.0.0.1:port`, the same across restarts. */
  readonly url: string;
  readonly port: number;
  /** The stack serving now. */
  readonly current: Stack;
  restart(): Promise<void>;
  token(deviceId: string): Promise<string>;
}

export async function startRestartableGateway(): Promise<RestartableGateway> {
  const first = await startStack();
  if (first.ai === undefined) throw new Error("the stack started no AI service");
  const aiPort = first.ai.port;
  const port = first.gateway.port;
  const stacks: Stack[] = [first];
  const current = () => stacks[stacks.length - 1]!;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get current() {
      return current();
    },
    async restart() {
      await current().gateway.stop();
      stacks.push(await startStack({ ai: false, targets: [{ host: "127.0.0.1", port: aiPort }], gateway: { port } }));
    },
    token: (deviceId) => first.token(deviceId),
    async [Symbol.asyncDispose]() {
      // Newest first: the first stack owns the AI service the others talk to.
      for (const s of stacks.reverse()) await s[Symbol.asyncDispose]();
    },
  };
}
