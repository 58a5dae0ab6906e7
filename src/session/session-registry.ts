/** Something the registry can retire when a newer connection of its device arrives. */
export interface Replaceable {
  replace(): void;
}

/**
 * The live session of each Device-Id on this instance. The newest connection wins: a
 * device reconnects after a network blip while its old socket may not have noticed yet.
 */
export class SessionRegistry<S extends Replaceable> {
  private readonly byDevice = new Map<string, S>();
  private readonly live = new Set<S>();
  private emptyWaiters: (() => void)[] = [];

  /** Tracks a connected session, with or without a Device-Id. */
  add(session: S): void {
    this.live.add(session);
  }

  /** Forgets a closed session. */
  remove(session: S): void {
    this.live.delete(session);
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
  }

  /** Forgets `session` if it is still the live one of `deviceId`. */
  release(deviceId: string, session: S): void {
    if (this.byDevice.get(deviceId) === session) this.byDevice.delete(deviceId);
  }

  get(deviceId: string): S | undefined {
    return this.byDevice.get(deviceId);
  }

  /** Devices with a live session (connections without a Device-Id not included). */
  get size(): number {
    return this.byDevice.size;
  }
}
