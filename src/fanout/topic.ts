/**
 * The topics the gateway uses. They double as Bun websocket topic names, so a broker handler
 * can hand a payload straight to `server.publish(topic, payload)`.
 */
export const Topic = {
  /** Every connected device on every instance. */
  broadcast: "broadcast",
  /** One device, wherever it is connected. */
  device: (deviceId: string): string => `device:${deviceId}`,
  /** One instance: free for request/reply traffic between gateways (e.g. MCP answers). */
  instance: (instanceId: string): string => `instance:${instanceId}`,
  /** The directory's takeover notices to one instance (kept apart from `instance:`). */
  takeover: (instanceId: string): string => `takeover:${instanceId}`,
  /** Local Bun topics of this instance's clients, never sent through a broker. */
  clients: {
    /** Text-dialect clients: broadcast answers as `text` chunks and `text_end`. */
    text: "clients:text",
    /** Device-protocol clients: broadcast notices the device can show. */
    device: "clients:device",
  },
} as const;
