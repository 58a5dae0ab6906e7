/** Something the registry can retire when a newer connection of its device arrives. */
export interface Replaceable {
  replace(): void;
}

/**
 * The live session of each Device-Id on this instance. The newest connection wins: a
 * device reconnects after a network blip while its old socket may not have noticed yet.
 */
/** Told of sessions coming and going: the cluster link mirrors devices across instances,
 * the handshake guard gives back a closed connection's place. */
export interface RegistryListener<S> {
  /** `session` became the live one of `deviceId`. */
  claimed?(deviceId: string, session: S): void;
  /** `session` is no longer the live one of `deviceId`. */
  released?(deviceId: string, session: S): void;
  /** `session` closed. */
  removed?(session: S): void;
}

export class SessionRegistry<S extends Replaceable> {
  private readonly byDevice = new Map<string, S>();
  private readonly listeners = new Set<RegistryListener<S>>();

  /** Adds a listener; returns how to remove it. */
  listen(listener: RegistryListener<S>): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  private readonly live = new Set<S>();
  private emptyWaiters: (() => void)[] = [];

  /** Tracks a connected session, with or without a Device-Id. */
  add(session: S): void {
    this.live.add(session);
  }

  /** Forgets a closed session. */
  remove(session: S): void {
    if (!this.live.delete(session)) return;
    for (const l of this.listeners) l.removed?.(session);
    if (this.live.size === 0 && this.emptyWaiters.length > 0) {
      const waiters = this.emptyWaiters;
      this.emptyWaiters = [];
      for (const resolve of waiters) resolve();
    }
  }

  /** Resolves once no session is connected (at once if none is). */
  whenEmpty(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.emptyWaiters.push(resolve);
    return promise;
  }

  /** Every connected session. */
  all(): ReadonlySet<S> {
    return this.live;
  }

  /** Makes `session` the live one of `deviceId`, retiring the previous one. */
  claim(deviceId: string, session: S): void {
    const old = this.byDevice.get(deviceId);
    this.byDevice.set(deviceId, session);
    if (old !== undefined && old !== session) old.replace();
    for (const l of this.listeners) l.claimed?.(deviceId, session);
  }

  /** Forgets `session` if it is still the live one of `deviceId`. */
  release(deviceId: string, session: S): void {
    if (this.byDevice.get(deviceId) !== session) return;
    this.byDevice.delete(deviceId);
    for (const l of this.listeners) l.released?.(deviceId, session);
  }

  get(deviceId: string): S | undefined {
    return this.byDevice.get(deviceId);
  }

  /** Devices with a live session (connections without a Device-Id not included). */
  get size(): number {
    return this.byDevice.size;
  }
}
