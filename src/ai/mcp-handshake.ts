import type { Logger } from "../log";
import { describeError } from "../errors";

/** The JSON-RPC id of the `initialize` request. */
export const MCP_INITIALIZE_ID = 1;
/** The JSON-RPC id of the first `tools/list` request; later pages count up from it. */
export const MCP_TOOLS_LIST_ID = 2;

/** The MCP revision xiaozhi firmware speaks. */
const PROTOCOL_VERSION = "2024-11-05";
/** Bounds a device whose `nextCursor` never ends. */
const MAX_TOOL_PAGES = 20;
/** Ids of `tools/call` requests count up from here, clear of the handshake's. */
const FIRST_CALL_ID = 1000;

/** One tool of the device, as its `tools/list` describes it. */
export interface McpTool {
  readonly name: string;
  readonly description: string;
  /** The JSON Schema of its arguments (an object schema). */
  readonly inputSchema: Record<string, unknown>;
}

/** How a `tools/call` ended: the device's result as text, or why there is none. */
export type McpCallOutcome = { t: "result"; text: string; isError: boolean } | { t: "failed"; reason: string };

type HandshakeState =
  | { t: "idle" }
  | { t: "initializing" }
  | { t: "listing"; requestId: number; pages: number; tools: McpTool[] }
  | { t: "ready"; tools: readonly McpTool[] }
  | { t: "failed" };

interface PendingCall {
  resolve(outcome: McpCallOutcome): void;
}

/**
 * The AI side of MCP over a device session: sends `initialize` (id 1), then on its result
 * `tools/list` (id 2, following `nextCursor` with ids 3, 4, ...), and logs the device's tool
 * names at info. Device payloads that are not JSON-RPC objects are logged and ignored; nothing
 * here throws.
 */
export class McpHandshake {
  private state: HandshakeState = { t: "idle" };
  private nextCallId = FIRST_CALL_ID;
  private readonly calls = new Map<number, PendingCall>();

  /**
   * @param send sends one JSON-RPC object (as JSON text) to the device.
   */
  constructor(
    private readonly send: (payloadJson: string) => void,
    private readonly logger: Logger,
  ) {}

  /** The device's tool names once listed, else undefined. */
  get tools(): readonly string[] | undefined {
    return this.state.t === "ready" ? this.state.tools.map((t) => t.name) : undefined;
  }

  /** The device's tools once listed (empty before): what an LLM may call. */
  get toolDefinitions(): readonly McpTool[] {
    return this.state.t === "ready" ? this.state.tools : [];
  }

  /**
   * Calls one of the device's tools (`tools/call`) and resolves with its result, or with why
   * there is none: the device answered an error, did not answer within `timeoutMs`, or the
   * call was abandoned (`signal`, or {@link cancelAll} when the session ends). Never rejects.
   */
  call(name: string, args: Record<string, unknown>, timeoutMs: number, signal?: AbortSignal): Promise<McpCallOutcome> {
    const id = this.nextCallId++;
    return new Promise<McpCallOutcome>((resolve) => {
      const finish = (outcome: McpCallOutcome) => {
        if (!this.calls.delete(id)) return;
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        resolve(outcome);
      };
      const onAbort = () => finish({ t: "failed", reason: "cancelled" });
      const timer = setTimeout(() => finish({ t: "failed", reason: `the device did not answer within ${timeoutMs} ms` }), timeoutMs);
      this.calls.set(id, { resolve: finish });
      if (signal?.aborted) return onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      this.request(id, "tools/call", { name, arguments: args });
    });
  }

  /** Ends every pending call (the session is over). */
  cancelAll(): void {
    for (const call of [...this.calls.values()]) call.resolve({ t: "failed", reason: "the session ended" });
  }

  /** Sends `initialize`. Only the first call acts. */
  start(): void {
    if (this.state.t !== "idle") return;
    this.state = { t: "initializing" };
    this.request(MCP_INITIALIZE_ID, "initialize", {
      protocolVersion: PROTOCOL_VERSION,
      capabilities: {},
      clientInfo: { name: "xiaozhi-im-ai", version: "0.1.0" },
    });
  }

  /** Takes one JSON-RPC object from the device (its `payload_json`). */
  handle(payloadJson: string): void {
    let message: unknown;
    try {
      message = JSON.parse(payloadJson);
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, "mcp payload is not JSON; ignored");
      return;
    }
    if (!isRecord(message)) {
      this.logger.warn("mcp payload is not a JSON object; ignored");
      return;
    }
    const id = message.id;
    if (typeof id !== "number") {
      this.logger.debug({ method: message.method }, "mcp notification from device");
      return;
    }
    const call = this.calls.get(id);
    if (call !== undefined) {
      call.resolve(callOutcome(message));
      return;
    }
    if ("error" in message) {
      if (this.isPending(id)) {
        this.logger.warn({ id, error: message.error }, "mcp request failed on the device");
        this.state = { t: "failed" };
      }
      return;
    }
    const result = message.result;
    if (!isRecord(result)) {
      this.logger.debug({ id, method: message.method }, "mcp message is not a result; ignored");
      return;
    }
    const s = this.state;
    if (s.t === "initializing" && id === MCP_INITIALIZE_ID) {
      this.logger.debug({ serverInfo: result.serverInfo }, "mcp initialized");
      this.state = { t: "listing", requestId: MCP_TOOLS_LIST_ID, pages: 1, tools: [] };
      this.request(MCP_TOOLS_LIST_ID, "tools/list", {});
      return;
    }
    if (s.t === "listing" && id === s.requestId) {
      if (Array.isArray(result.tools)) {
        for (const tool of result.tools) {
          if (!isRecord(tool) || typeof tool.name !== "string") continue;
          s.tools.push({
            name: tool.name,
            description: typeof tool.description === "string" ? tool.description : "",
            inputSchema: isRecord(tool.inputSchema) ? tool.inputSchema : { type: "object", properties: {} },
          });
        }
      }
      const cursor = result.nextCursor;
      if (typeof cursor === "string" && cursor !== "" && s.pages < MAX_TOOL_PAGES) {
        s.requestId++;
        s.pages++;
        this.request(s.requestId, "tools/list", { cursor });
        return;
      }
      this.state = { t: "ready", tools: s.tools };
      this.logger.info({ tools: s.tools.map((t) => t.name) }, "mcp tools of the device");
      return;
    }
    this.logger.debug({ id }, "mcp result for no pending request; ignored");
  }

  private isPending(id: number): boolean {
    const s = this.state;
    return (s.t === "initializing" && id === MCP_INITIALIZE_ID) || (s.t === "listing" && id === s.requestId);
  }

  private request(id: number, method: string, params: Record<string, unknown>): void {
    this.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
  }
}

/** A `tools/call` response as an outcome: its text content joined, or the error's message. */
function callOutcome(message: Record<string, unknown>): McpCallOutcome {
  if (isRecord(message.error)) return { t: "failed", reason: `the device refused: ${String(message.error.message ?? "error")}`.slice(0, 500) };
  const result = message.result;
  if (!isRecord(result)) return { t: "failed", reason: "the device answered without a result" };
  const parts = Array.isArray(result.content) ? result.content : [];
  const text = parts
    .map((p) => (isRecord(p) && typeof p.text === "string" ? p.text : JSON.stringify(p)))
    .join("\n")
    .slice(0, 4000);
  return { t: "result", text, isError: result.isError === true };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
