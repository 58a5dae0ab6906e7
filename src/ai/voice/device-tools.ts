import type { McpCallOutcome, McpTool } from "../mcp-handshake";
import type { ChatTool } from "./chat-turn";

/** Calls one of the device's MCP tools by its own name. */
export type CallDeviceTool = (name: string, args: Record<string, unknown>, signal: AbortSignal) => Promise<McpCallOutcome>;

/**
 * A device's MCP tools as function tools an LLM may call. MCP names (`self.audio_speaker.set_volume`)
 * may hold characters OpenAI refuses in a function name (`^[a-zA-Z0-9_-]{1,64}$`): they are
 * replaced, and a name made equal to another's gets a numbered suffix. What the device
 * answers, or why it did not, is what the LLM reads back.
 */
export function deviceTools(tools: readonly McpTool[], call: CallDeviceTool): ChatTool[] {
  const taken = new Set<string>();
  return tools.map((tool) => {
    const name = uniqueName(tool.name, taken);
    return {
      name,
      description: tool.description || tool.name,
      parameters: tool.inputSchema,
      async call(args, signal) {
        const outcome = await call(tool.name, args, signal);
        if (outcome.t === "failed") return `error: ${outcome.reason}`;
        return outcome.isError ? `error: ${outcome.text}` : outcome.text || "done";
      },
    };
  });
}

function uniqueName(mcpName: string, taken: Set<string>): string {
  const base = mcpName.replace(/[^a-zA-Z0-9_-]/g, "_").slice(0, 60) || "tool";
  let name = base;
  for (let n = 2; taken.has(name); n++) name = `${base}_${n}`;
  taken.add(name);
  return name;
}
