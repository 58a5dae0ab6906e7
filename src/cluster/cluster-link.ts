import type { Server } from "bun";
import { describeError } from "../errors";
import type { Fanout } from "../fanout/create-fanout";
import type { FanoutPayload, Subscription } from "../fanout/broker";
import { Topic } from "../fanout/topic";
import type { Logger } from "../log";
import type { DeviceSession, WsData } from "../session/device-session";
import type { LinkTopics } from "../session/link-topics";
import type { RegistryListener, SessionRegistry } from "../session/session-registry";
import type { AskQuestion } from "../upstream/upstream";

const utf8 = new TextDecoder();

/** What one instance asks the instance holding a device to do (on the device's topic). */
type DeviceCommand =
  | { readonly op: "ask"; readonly text: string; readonly imageBase64?: string; readonly imageMime?: string; readonly userId: string }
  | { readonly op: "send"; readonly message: Record<string, unknown> }
  | { readonly op: "mcp"; readonly payload: Record<string, unknown>; readonly corr: string; readonly replyTo: string; readonly timeoutMs: number };

/** What comes back to the asking instance (on its instance topic). */
type InstanceNote = { readonly op: "mcp-reply"; readonly corr: string; readonly payload: unknown };

/** Where a command went. */
export type CommandOutcome = "delivered" | "absent" | "not-ready" | "unreachable";

/** Whether a broadcast would reach every instance now. */
export type BroadcastReach =
  | { readonly t: "all" }
  | { readonly t: "partial"; readonly subscribed: number; readonly instances: number }
  | { readonly t: "down" };

/** How long a command to a device waits for the cluster to settle (Redis back, an instance
 * resubscribing) before it is answered absent or unreachable. */
const SETTLE_MS = 5000;

/**
 * Makes the gateways behind one REDIS_URL behave like one (and, without Redis, is the same
 * code over the in-process broker):
 * - every device session on this instance is claimed in the device directory (newest wins
 *   across the cluster: a takeover notice closes a stale session here) and listens on its
 *   device topic for commands from any instance;
 * - broadcasts travel on the broker and each instance hands them to its own clients with one
 *   Bun `server.publish` (encoded once per message, not per recipient), and to the clients of
 *   other transports (MQTT + UDP) through the link topics;
 * - an MCP request pushed to a device on another instance gets its reply routed back here.
 */
export class ClusterLink implements RegistryListener<DeviceSession> {
  private readonly deviceSubs = new Map<DeviceSession, Subscription>();
  private readonly waiting = new Map<string, (payload: unknown) => void>();
  private readonly subs: Subscription[] = [];
  private seq = 0;
  private unlisten: (() => void) | undefined;

  constructor(
    private readonly fanout: Fanout,
    private readonly registry: SessionRegistry<DeviceSession>,
    private readonly server: () => Server<WsData>,
    private readonly linkTopics: LinkTopics,
    private readonly logger: Logger,
  ) {}

  start(): void {
    for (const topic of [Topic.clients.text, Topic.clients.device]) {
      this.subs.push(
        this.fanout.broker.subscribe(topic, (payload) => {
          this.server().publish(topic, payload);
          if (typeof payload === "string") this.linkTopics.publish(topic, payload);
          else if (this.linkTopics.has(topic)) this.linkTopics.publish(topic, utf8.decode(payload));
        }),
      );
    }
    this.subs.push(this.fanout.broker.subscribe(Topic.instance(this.fanout.instanceId), (payload) => this.onNote(payload)));
    const takeover = this.fanout.directory.onTakeover((t) => {
      const s = this.registry.get(t.deviceId);
      if (s !== undefined && s.sessionId === t.staleSessionId) {
        this.logger.info({ deviceId: t.deviceId, newInstanceId: t.newInstanceId }, "device reconnected on another instance: closing the stale session");
        s.replace();
      }
    });
    this.subs.push(takeover);
    this.unlisten = this.registry.listen(this);
  }

  close(): void {
    this.unlisten?.();
    for (const s of this.subs.splice(0)) s.unsubscribe();
    for (const s of this.deviceSubs.values()) s.unsubscribe();
    this.deviceSubs.clear();
  }

  claimed(deviceId: string, session: DeviceSession): void {
    this.deviceSubs.get(session)?.unsubscribe();
    this.deviceSubs.set(
      session,
      this.fanout.broker.subscribe(Topic.device(deviceId), (payload) => this.onCommand(session, payload)),
    );
    void this.fanout.directory.claim(deviceId, session.sessionId);
  }

  released(deviceId: string, session: DeviceSession): void {
    this.deviceSubs.get(session)?.unsubscribe();
    this.deviceSubs.delete(session);
    void this.fanout.directory.release(deviceId, session.sessionId);
  }

  /**
   * Whether a broadcast published now would reach every live instance: the link is up and
   * as many instances are subscribed to the text topic as the directory lists. After a Redis
   * restart the instances resubscribe one by one; a broadcast accepted meanwhile would miss
   * some, so the caller refuses it (503) instead of answering 200 for a partial delivery.
   */
  async broadcastReach(): Promise<BroadcastReach> {
    const state = this.fanout.broker.state;
    if (state === "local") return { t: "all" };
    if (state !== "ready") return { t: "down" };
    const [view, subscribed] = await Promise.all([this.fanout.directory.instances(), this.fanout.broker.subscribers(Topic.clients.text)]);
    if (subscribed === undefined || view.t !== "cluster") return { t: "down" };
    return subscribed >= view.instances.length ? { t: "all" } : { t: "partial", subscribed, instances: view.instances.length };
  }

  /** Publishes to every client of every instance (text or device topic). */
  broadcast(topic: (typeof Topic.clients)[keyof typeof Topic.clients], payload: string): void {
    void this.fanout.broker.publish(topic, payload);
  }

  /** Asks the device (wherever it is connected) a question, answered to that device. */
  ask(deviceId: string, q: AskQuestion): Promise<CommandOutcome> {
    const image = q.image === undefined ? {} : { imageBase64: Buffer.from(q.image.data).toString("base64"), imageMime: q.image.mimeType };
    return this.command(deviceId, { op: "ask", text: q.text, userId: q.userId ?? "", ...image });
  }

  /** Sends a device-protocol message (alert, system, custom...) to the device. */
  send(deviceId: string, message: Record<string, unknown>): Promise<CommandOutcome> {
    return this.command(deviceId, { op: "send", message });
  }

  /** Sends an MCP request to the device and resolves its reply (undefined: none in time). */
  async mcp(deviceId: string, payload: Record<string, unknown>, timeoutMs: number): Promise<{ outcome: CommandOutcome; reply?: unknown }> {
    const corr = `${this.fanout.instanceId}-${++this.seq}`;
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.waiting.set(corr, resolve);
    const timer = setTimeout(() => resolve(undefined), timeoutMs + 1000);
    try {
      const outcome = await this.command(deviceId, { op: "mcp", payload, corr, replyTo: this.fanout.instanceId, timeoutMs });
      if (outcome !== "delivered") return { outcome };
      return { outcome, reply: await promise };
    } finally {
      clearTimeout(timer);
      this.waiting.delete(corr);
    }
  }

  /**
   * Sends `cmd` to the device wherever it is. Right after a Redis restart the instance that
   * holds the device may not have resubscribed yet (the command reaches nobody) or the link
   * may still be down (nothing was sent): while the directory says the device is connected
   * somewhere, or cannot say, the command is tried again for up to SETTLE_MS instead of being
   * answered 404/503 at once. Only commands known not to have been delivered are repeated.
   */
  private async command(deviceId: string, cmd: DeviceCommand): Promise<CommandOutcome> {
    const id = deviceId.toLowerCase();
    const deadline = performance.now() + SETTLE_MS;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 1000)) {
      const outcome = await this.commandOnce(id, cmd);
      if (outcome === "delivered" || outcome === "not-ready") return outcome;
      if (performance.now() + delayMs > deadline) return outcome;
      // A failed publish while the link is up may have reached Redis: never repeated.
      if (outcome === "unreachable" && this.fanout.broker.state === "ready") return outcome;
      if (outcome === "absent" && (await this.fanout.directory.lookup(id)).t === "absent") return outcome;
      await Bun.sleep(delayMs);
    }
  }

  private async commandOnce(id: string, cmd: DeviceCommand): Promise<CommandOutcome> {
    const local = this.registry.get(id);
    if (local !== undefined && local.dialect === "unknown") return "not-ready";
    const receipt = await this.fanout.broker.publish(Topic.device(id), JSON.stringify(cmd));
    if (receipt.local > 0) return "delivered";
    if (receipt.t === "failed") return "unreachable";
    return receipt.remote > 0 ? "delivered" : "absent";
  }

  private onCommand(session: DeviceSession, payload: FanoutPayload): void {
    let cmd: DeviceCommand;
    try {
      cmd = JSON.parse(typeof payload === "string" ? payload : utf8.decode(payload)) as DeviceCommand;
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, "undecodable device command; dropped");
      return;
    }
    switch (cmd.op) {
      case "ask": {
        const image = cmd.imageBase64 === undefined ? undefined : { data: Buffer.from(cmd.imageBase64, "base64"), mimeType: cmd.imageMime ?? "image/jpeg" };
        if (session.dialect === "text") session.askAndStream({ text: cmd.text, image, userId: cmd.userId, deviceId: session.identity.deviceId });
        else if (image === undefined) session.deliver({ type: "chat", text: cmd.text });
        else session.deliver({ type: "image", data: image.data, mimeType: image.mimeType, prompt: cmd.text });
        return;
      }
      case "send":
        session.sendDeviceJson(cmd.message);
        return;
      case "mcp":
        session.pushMcp(
          cmd.payload,
          (reply) => void this.fanout.broker.publish(Topic.instance(cmd.replyTo), JSON.stringify({ op: "mcp-reply", corr: cmd.corr, payload: reply ?? null })),
          cmd.timeoutMs,
        );
        return;
    }
  }

  private onNote(payload: FanoutPayload): void {
    try {
      const note = JSON.parse(typeof payload === "string" ? payload : utf8.decode(payload)) as InstanceNote;
      if (note.op === "mcp-reply") this.waiting.get(note.corr)?.(note.payload ?? undefined);
    } catch (err) {
      this.logger.warn({ err: describeError(err) }, "undecodable instance note; dropped");
    }
  }
}
