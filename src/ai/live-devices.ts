import type { ChatTool } from "./voice/chat-turn";

/** What a live session offers to the service's other calls. */
export interface LiveSession {
  /** The device's MCP tools as the LLM may call them. */
  chatTools(): ChatTool[];
}

/**
 * The device sessions open in this AI service, by Device-Id: how an Ask for a device (the
 * HTTP API's `/api/message` with its id, the text dialect) reaches that device's tools. The
 * newest session of a device wins; a session leaving removes only itself.
 */
export class LiveDevices {
  private readonly byDevice = new Map<string, LiveSession>();

  add(deviceId: string, session: LiveSession): void {
    if (deviceId !== "") this.byDevice.set(deviceId, session);
  }

  remove(deviceId: string, session: LiveSession): void {
    if (this.byDevice.get(deviceId) === session) this.byDevice.delete(deviceId);
  }

  /** The tools of the device's live session; none when it has none open here. */
  tools(deviceId: string): ChatTool[] {
    return this.byDevice.get(deviceId)?.chatTools() ?? [];
  }
}
