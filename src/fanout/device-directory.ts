import type { Subscription } from "./broker";

/**
 * Where each device is connected across the cluster: device id -> {instance, session, since}.
 *
 * Newest wins across instances: `claim` makes this instance's session the device's one and
 * tells the instance that held it before, whose `onTakeover` listeners then close their stale
 * session. Replacing a session on the same instance is not reported here: the gateway's
 * `SessionRegistry` already does that, synchronously.
 *
 * Entries live as long as their instance refreshes them (Redis keys with a TTL), so an instance
 * that dies takes its devices with it after at most the TTL. Every method fails soft: while
 * Redis is unreachable local service goes on, and the next refresh repairs Redis.
 */
export interface DeviceDirectory {
  readonly instanceId: string;
  /**
   * Records that `sessionId` on this instance now serves `deviceId`, displacing whatever held it
   * (a stale session elsewhere is told via its instance's `onTakeover`). Call when a device
   * session becomes active. Resolves `deferred` when Redis is unreachable: the entry is then
   * written by a later refresh.
   */
  claim(deviceId: string, sessionId: string): Promise<ClaimResult>;
  /**
   * Forgets `deviceId` if `sessionId` is still its session (compare-and-delete: a session that
   * was taken over must not remove its successor). Call when a device session ends. Resolves
   * true when this removed the entry.
   */
  release(deviceId: string, sessionId: string): Promise<boolean>;
  /** Where `deviceId` is connected, if anywhere. */
  lookup(deviceId: string): Promise<Lookup>;
  /** The live instances and their connection counts, for a cluster `/api/status`. */
  instances(): Promise<ClusterView>;
  /**
   * Calls `listener` when a session of this instance was displaced by a newer one on another
   * instance. The listener should close the session named `staleSessionId` if it is still the
   * device's live one here (a yet newer local session may have replaced it meanwhile).
   */
  onTakeover(listener: TakeoverListener): Subscription;
  /** How many devices this instance holds. */
  readonly size: number;
  /** Stops refreshing, removes this instance's entries (best effort), stops listening. */
  close(): Promise<void>;
}

/** One device's registration. */
export interface DeviceLocation {
  readonly instanceId: string;
  readonly sessionId: string;
  /** When the session claimed the device (ms since the epoch, the claiming instance's clock). */
  readonly sinceMs: number;
}

/**
 * - `claimed`: registered; `previous` is who held the device before (undefined: nobody).
 * - `deferred`: Redis unreachable; held locally, registered by the next successful refresh.
 */
export type ClaimResult = { readonly t: "claimed"; readonly previous: DeviceLocation | undefined } | { readonly t: "deferred"; readonly reason: string };

/**
 * - `connected`: where the device is.
 * - `absent`: connected nowhere (as far as live registrations tell).
 * - `unknown`: not here, and Redis cannot be asked right now.
 */
export type Lookup =
  | { readonly t: "connected"; readonly location: DeviceLocation }
  | { readonly t: "absent" }
  | { readonly t: "unknown"; readonly reason: string };

/** One gateway instance as it last reported itself. */
export interface InstanceStatus {
  readonly instanceId: string;
  /** Open device connections. */
  readonly connections: number;
  readonly startedAtMs: number;
  /** When it last refreshed its registration. */
  readonly heartbeatAtMs: number;
}

/**
 * - `cluster`: every live instance (this one included).
 * - `partial`: Redis unreachable; only this instance is known.
 */
export type ClusterView =
  | { readonly t: "cluster"; readonly instances: readonly InstanceStatus[] }
  | { readonly t: "partial"; readonly instances: readonly InstanceStatus[]; readonly reason: string };

/** A session of this instance displaced by a newer connection of its device elsewhere. */
export interface Takeover {
  readonly deviceId: string;
  /** The session here that must close. */
  readonly staleSessionId: string;
  readonly newSessionId: string;
  readonly newInstanceId: string;
}

export type TakeoverListener = (takeover: Takeover) => void;
