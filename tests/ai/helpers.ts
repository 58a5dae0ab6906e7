import { Writable } from "node:stream";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import pino from "pino";
import { DeviceEventSchema, HelloSchema, type Hello, type DeviceEvent } from "../../gen/xiaozhi/ai/v1/ai_pb";
import type { Logger } from "../../src/log";
import type { CancelScheduled, Scheduler } from "../../src/ai/scheduler";

/**
 * Takes items from an async iterable in the background so that tests can wait for the next
 * one with a deadline (never a sleep).
 */
export class Inbox<T> {
  private readonly items: T[] = [];
  private waiter: (() => void) | undefined;
  private state: { t: "open" } | { t: "ended" } | { t: "failed"; error: unknown } = { t: "open" };
  /** Resolves when the source ends or fails (never rejects). */
  readonly done: Promise<void>;

  constructor(source: AsyncIterable<T>) {
    this.done = (async () => {
      try {
        for await (const item of source) {
          this.items.push(item);
          this.notify();
        }
        this.state = { t: "ended" };
      } catch (error) {
        this.state = { t: "failed", error };
      }
      this.notify();
    })();
  }

  /** Items received and not yet taken. */
  get buffered(): readonly T[] {
    return this.items;
  }

  /** The error the source failed with, if it did. */
  get error(): unknown {
    return this.state.t === "failed" ? this.state.error : undefined;
  }

  get ended(): boolean {
    return this.state.t !== "open";
  }

  /** The next item; rejects when the source ends first or after `deadlineMs`. */
  async next(deadlineMs = 5000): Promise<T> {
    const item = await this.nextOrEnd(deadlineMs);
    if (item.t === "end") throw new Error(`stream ended (${String(this.error ?? "ok")}) while waiting`);
    return item.value;
  }

  /** The next item, or `{t:"end"}` when the source ends; rejects after `deadlineMs`. */
  async nextOrEnd(deadlineMs = 5000): Promise<{ t: "item"; value: T } | { t: "end" }> {
    const deadline = performance.now() + deadlineMs;
    for (;;) {
      const item = this.items.shift();
      if (item !== undefined) return { t: "item", value: item };
      if (this.state.t !== "open") return { t: "end" };
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no item within ${deadlineMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** Collects what arrives until `windowMs` passes (for asserting that nothing more comes). */
  async collectFor(windowMs: number): Promise<T[]> {
    const got: T[] = [];
    const until = performance.now() + windowMs;
    for (;;) {
      const left = until - performance.now();
      if (left <= 0) return got;
      try {
        const item = await this.nextOrEnd(left);
        if (item.t === "end") return got;
        got.push(item.value);
      } catch {
        return got;
      }
    }
  }

  private notify(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}

/** A DeviceEvent from its oneof case. */
export function deviceEvent(event: NonNullable<MessageInitShape<typeof DeviceEventSchema>["event"]>, sessionKey = 0): DeviceEvent {
  return create(DeviceEventSchema, { sessionKey, event });
}

/** A Hello as the gateway would send it for a firmware device. */
export function hello(init: Exclude<MessageInitShape<typeof HelloSchema>, Hello> = {}): Hello {
  return create(HelloSchema, {
    sessionId: "s-1",
    deviceId: "aa:bb:cc:dd:ee:ff",
    clientId: "c-1",
    protocolVersion: 1,
    transport: "websocket",
    audioParams: { format: "opus", sampleRate: 16000, channels: 1, frameDurationMs: 60 },
    ...init,
  });
}

/** A pino logger whose lines tests can wait for. */
export class CapturedLog {
  readonly lines: Record<string, unknown>[] = [];
  readonly logger: Logger;
  private waiters: { match: (line: Record<string, unknown>) => boolean; resolve: (line: Record<string, unknown>) => void }[] = [];

  constructor(level: pino.Level = "debug") {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, callback) => {
        for (const text of chunk.toString("utf8").split("\n")) {
          if (text === "") continue;
          const line = JSON.parse(text) as Record<string, unknown>;
          this.lines.push(line);
          this.waiters = this.waiters.filter((w) => {
            if (!w.match(line)) return true;
            w.resolve(line);
            return false;
          });
        }
        callback();
      },
    });
    this.logger = pino({ level }, sink);
  }

  /** The first line (past or future) with this `msg`; rejects after `deadlineMs`. */
  waitFor(msg: string, deadlineMs = 5000): Promise<Record<string, unknown>> {
    const match = (line: Record<string, unknown>) => line.msg === msg;
    const seen = this.lines.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    const { promise, resolve, reject } = Promise.withResolvers<Record<string, unknown>>();
    const timer = setTimeout(() => reject(new Error(`no log "${msg}" within ${deadlineMs} ms`)), deadlineMs);
    this.waiters.push({
      match,
      resolve: (line) => {
        clearTimeout(timer);
        resolve(line);
      },
    });
    return promise;
  }
}

/** A clock that moves only when told: drives pacing deterministically. */
export class ManualScheduler implements Scheduler {
  private nowMs = 0;
  private seq = 0;
  private tasks: { atMs: number; seq: number; callback: () => void; cancelled: boolean }[] = [];

  now(): number {
    return this.nowMs;
  }

  schedule(callback: () => void, delayMs: number): CancelScheduled {
    const task = { atMs: this.nowMs + Math.max(0, delayMs), seq: this.seq++, callback, cancelled: false };
    this.tasks.push(task);
    return () => {
      task.cancelled = true;
    };
  }

  /** Timers not yet run nor cancelled. */
  get pending(): number {
    return this.tasks.filter((t) => !t.cancelled).length;
  }

  /** Moves time forward by `ms` without running timers: an event loop that was blocked. */
  jump(ms: number): void {
    this.nowMs += ms;
  }

  /** Moves time forward by `ms`, running due timers in time order. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      this.tasks = this.tasks.filter((t) => !t.cancelled);
      let next: (typeof this.tasks)[number] | undefined;
      for (const t of this.tasks) {
        if (t.atMs <= target && (next === undefined || t.atMs < next.atMs || (t.atMs === next.atMs && t.seq < next.seq))) {
          next = t;
        }
      }
      if (next === undefined) break;
      next.cancelled = true;
      this.nowMs = Math.max(this.nowMs, next.atMs);
      next.callback();
    }
    this.nowMs = target;
  }
}
