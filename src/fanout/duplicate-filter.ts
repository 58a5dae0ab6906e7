/** How far behind the newest sequence number a message may arrive and still be accepted. */
const WINDOW = 32;
/** Origins remembered; more means many gateway restarts: forgetting them all is then safe. */
const MAX_ORIGINS = 1024;

interface OriginWindow {
  /** The highest sequence number seen from this origin. */
  max: number;
  /** Bit i set: `max - i` was seen. */
  seen: number;
}

/**
 * Detects repeated envelopes per origin instance, the way IPsec detects replays: the highest
 * sequence seen plus a bitmap of the ones just below it. A bitmap rather than "only increasing"
 * because a subscriber sees only its topics' share of an origin's sequence numbers and a late
 * command on a half-dead publisher connection may land out of order; neither is a duplicate.
 * Anything more than {@link WINDOW} behind is treated as a duplicate: at most once wins over
 * delivering something that late.
 */
export class DuplicateFilter {
  private readonly origins = new Map<string, OriginWindow>();

  /** True the first time `origin`/`seq` is offered, false for a repeat (or a very late one). */
  accept(origin: string, seq: number): boolean {
    const w = this.origins.get(origin);
    if (w === undefined) {
      if (this.origins.size >= MAX_ORIGINS) this.origins.clear();
      this.origins.set(origin, { max: seq, seen: 1 });
      return true;
    }
    if (seq > w.max) {
      const shift = seq - w.max;
      w.seen = shift >= WINDOW ? 1 : ((w.seen << shift) | 1) >>> 0;
      w.max = seq;
      return true;
    }
    const behind = w.max - seq;
    if (behind >= WINDOW) return false;
    const bit = (1 << behind) >>> 0;
    if ((w.seen & bit) !== 0) return false;
    w.seen = (w.seen | bit) >>> 0;
    return true;
  }
}
