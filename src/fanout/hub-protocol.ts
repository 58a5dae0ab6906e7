import type { FanoutPayload } from "./broker";
import type { DeviceLocation, Takeover } from "./device-directory";

/**
 * What the workers of one `serve --workers N` and their supervisor say to each other over the
 * IPC channel Bun opens between parent and child (structured clone: strings and byte arrays
 * travel as they are). The supervisor is the hub: it routes publishes to the workers subscribed
 * to a topic, holds the device directory of the box, and gathers status and metrics from every
 * worker for one scrape.
 */

/** What a worker can be asked to report about itself, for a box-wide answer. */
export type GatherKind = "instance" | "status" | "metrics";

/** A worker's answer to a gather. */
export interface Gathered {
  /** The worker's number, 1..N. */
  readonly worker: number;
  readonly value: unknown;
}

/** Worker -> hub. Messages with an `id` are requests: the hub answers each with one `reply`. */
export type WorkerToHub =
  | { readonly t: "ready"; readonly instanceId: string; readonly port: number }
  | { readonly t: "sub"; readonly topic: string }
  | { readonly t: "unsub"; readonly topic: string }
  | { readonly t: "pub"; readonly id: number; readonly topic: string; readonly payload: FanoutPayload }
  | { readonly t: "subs"; readonly id: number; readonly topic: string }
  | { readonly t: "claim"; readonly id: number; readonly deviceId: string; readonly location: DeviceLocation }
  | { readonly t: "release"; readonly id: number; readonly deviceId: string; readonly sessionId: string }
  | { readonly t: "lookup"; readonly id: number; readonly deviceId: string }
  | { readonly t: "gather"; readonly id: number; readonly kind: GatherKind }
  | { readonly t: "collected"; readonly id: number; readonly value: unknown };

/** Hub -> worker. */
export type HubToWorker =
  | { readonly t: "reply"; readonly id: number; readonly value: unknown }
  | { readonly t: "msg"; readonly topic: string; readonly payload: FanoutPayload }
  | { readonly t: "takeover"; readonly takeover: Takeover }
  | { readonly t: "collect"; readonly id: number; readonly kind: GatherKind };

/** The hub's answers, by request. */
export interface PublishReply {
  /** Other workers subscribed to the topic, that got the message. */
  readonly remote: number;
}
export interface ClaimReply {
  readonly previous: DeviceLocation | undefined;
}
export type LookupReply = DeviceLocation | undefined;
