import type { DeviceLink } from "./device-link";

/**
 * Local broadcast topics for links Bun's websocket pub/sub cannot reach (MQTT + UDP): a
 * broadcast goes to Bun's `server.publish` for WebSocket clients and here for the others.
 */
export class LinkTopics {
  private readonly topics = new Map<string, Set<DeviceLink>>();

  subscribe(topic: string, link: DeviceLink): void {
    let links = this.topics.get(topic);
    if (links === undefined) {
      links = new Set();
      this.topics.set(topic, links);
    }
    links.add(link);
  }

  unsubscribe(topic: string, link: DeviceLink): void {
    const links = this.topics.get(topic);
    links?.delete(link);
    if (links?.size === 0) this.topics.delete(topic);
  }

  /** Whether any link is on `topic`. */
  has(topic: string): boolean {
    return this.topics.has(topic);
  }

  /** Sends `text` to every link on `topic`; returns how many. */
  publish(topic: string, text: string): number {
    const links = this.topics.get(topic);
    if (links === undefined) return 0;
    for (const link of links) link.sendText(text);
    return links.size;
  }
}
