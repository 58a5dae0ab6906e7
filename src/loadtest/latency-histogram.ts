/**
 * Percentiles of one latency, in milliseconds (with microsecond resolution). Every figure is
 * null when nothing was recorded, so an empty measurement never reads as "0 ms".
 */
export interface LatencySummary {
  /** How many values were recorded. */
  readonly count: number;
  readonly minMs: number | null;
  readonly meanMs: number | null;
  readonly p50Ms: number | null;
  readonly p90Ms: number | null;
  readonly p99Ms: number | null;
  readonly p999Ms: number | null;
  readonly maxMs: number | null;
}

/** A histogram as plain data: its non-empty slots as (slot, count) pairs, and its exact figures. */
export interface HistogramData {
  readonly slots: number[];
  readonly total: number;
  readonly sumUs: number;
  readonly lowUs: number;
  readonly highUs: number;
}

/** log2 of the linear sub-buckets per power of two: 128 of them bound the error by 1/128. */
const SUB_BUCKET_HALF_BITS = 7;
const SUB_BUCKET_HALF_COUNT = 1 << SUB_BUCKET_HALF_BITS;
/** Values below this (256 us) are kept exactly, one bucket per microsecond. */
const SUB_BUCKET_MASK = (SUB_BUCKET_HALF_COUNT << 1) - 1;
/** Bucketing uses 32-bit integer arithmetic, so larger values share the top bucket. */
const MAX_TRACKABLE_US = 0x7fff_ffff;
const COUNTS_LENGTH = indexOf(MAX_TRACKABLE_US) + 1;

/** Slot of `us` (an integer in [0, MAX_TRACKABLE_US]) in the counts array. */
function indexOf(us: number): number {
  // Power-of-two range above the exact range; 0 for values under 256 us.
  const bucket = 31 - Math.clz32(us | SUB_BUCKET_MASK) - SUB_BUCKET_HALF_BITS;
  return (bucket << SUB_BUCKET_HALF_BITS) + (us >>> bucket);
}

/** The largest value that lands in slot `index`, microseconds. */
function highestInSlot(index: number): number {
  const bucket = Math.max(0, (index >>> SUB_BUCKET_HALF_BITS) - 1);
  const sub = index - (bucket << SUB_BUCKET_HALF_BITS);
  return sub * 2 ** bucket + 2 ** bucket - 1;
}

/**
 * A latency histogram in the manner of HdrHistogram: values are whole microseconds, kept
 * exactly below 256 us and above that in 128 linear sub-buckets per power of two, so a
 * percentile is never more than 1/128 (0.8%) above the true value. Memory is constant (3,200
 * slots, up to 2^31 us ~ 35.8 min; larger values count in the top slot while `max` stays
 * exact); `record()` allocates nothing; histograms of the same kind merge by adding counts.
 * Min, max and mean are exact.
 */
export class LatencyHistogram {
  /** Values at or above this many microseconds share the top slot. */
  static readonly maxTrackableUs = MAX_TRACKABLE_US;
  private readonly counts = new Float64Array(COUNTS_LENGTH);
  private total = 0;
  private sumUs = 0;
  private lowUs = Number.POSITIVE_INFINITY;
  private highUs = Number.NEGATIVE_INFINITY;

  /** Records one latency in microseconds (rounded to a whole one; negative counts as 0). */
  record(us: number): void {
    const v = us > 0 ? Math.round(us) : 0;
    this.counts[indexOf(Math.min(v, MAX_TRACKABLE_US))]!++;
    this.total++;
    this.sumUs += v;
    if (v < this.lowUs) this.lowUs = v;
    if (v > this.highUs) this.highUs = v;
  }

  /** Records one latency given in milliseconds (e.g. a difference of performance.now()). */
  recordMs(ms: number): void {
    this.record(ms * 1000);
  }

  /** How many values were recorded. */
  get count(): number {
    return this.total;
  }

  /** Smallest value recorded, us; NaN when empty. */
  get minUs(): number {
    return this.total === 0 ? Number.NaN : this.lowUs;
  }

  /** Largest value recorded, us (exact, even beyond the trackable range); NaN when empty. */
  get maxUs(): number {
    return this.total === 0 ? Number.NaN : this.highUs;
  }

  /** Arithmetic mean, us; NaN when empty. */
  get meanUs(): number {
    return this.total === 0 ? Number.NaN : this.sumUs / this.total;
  }

  /**
   * The value at `percentile` (0-100), us: the smallest recorded value such that at least
   * that share of values are at or below it, to within 1/128 above (never beyond the exact
   * max). 0 gives the exact min, 100 the exact max. NaN when empty.
   */
  valueAtPercentile(percentile: number): number {
    if (this.total === 0) return Number.NaN;
    if (percentile <= 0) return this.lowUs;
    if (percentile >= 100) return this.highUs;
    const target = Math.max(1, Math.ceil((percentile / 100) * this.total));
    let seen = 0;
    for (let i = 0; i < COUNTS_LENGTH; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return Math.max(this.lowUs, Math.min(this.highUs, highestInSlot(i)));
    }
    return this.highUs;
  }

  /** The histogram as plain data (its non-empty slots), for another process to merge. */
  toJSON(): HistogramData {
    const slots: number[] = [];
    for (let i = 0; i < COUNTS_LENGTH; i++) if (this.counts[i] !== 0) slots.push(i, this.counts[i]!);
    return { slots, total: this.total, sumUs: this.sumUs, lowUs: this.total === 0 ? 0 : this.lowUs, highUs: this.total === 0 ? 0 : this.highUs };
  }

  /** A histogram from {@link toJSON}'s data. */
  static fromJSON(data: HistogramData): LatencyHistogram {
    const h = new LatencyHistogram();
    if (data.total === 0) return h;
    for (let i = 0; i + 1 < data.slots.length; i += 2) {
      const slot = data.slots[i]!;
      if (slot >= 0 && slot < COUNTS_LENGTH) h.counts[slot] = data.slots[i + 1]!;
    }
    h.total = data.total;
    h.sumUs = data.sumUs;
    h.lowUs = data.lowUs;
    h.highUs = data.highUs;
    return h;
  }

  /** Adds every value of `other` into this one (`other` is unchanged). */
  merge(other: LatencyHistogram): void {
    if (other.total === 0) return;
    const c = this.counts;
    const o = other.counts;
    for (let i = 0; i < COUNTS_LENGTH; i++) c[i]! += o[i]!;
    this.total += other.total;
    this.sumUs += other.sumUs;
    if (other.lowUs < this.lowUs) this.lowUs = other.lowUs;
    if (other.highUs > this.highUs) this.highUs = other.highUs;
  }

  /** Forgets every value (the memory is kept). */
  reset(): void {
    if (this.total === 0) return;
    this.counts.fill(0);
    this.total = 0;
    this.sumUs = 0;
    this.lowUs = Number.POSITIVE_INFINITY;
    this.highUs = Number.NEGATIVE_INFINITY;
  }

  /** Count, min, mean, p50/p90/p99/p99.9 and max in milliseconds (null when empty). */
  summary(): LatencySummary {
    if (this.total === 0) {
      return { count: 0, minMs: null, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null, p999Ms: null, maxMs: null };
    }
    const ms = (us: number) => Math.round(us) / 1000;
    return {
      count: this.total,
      minMs: ms(this.lowUs),
      meanMs: ms(this.meanUs),
      p50Ms: ms(this.valueAtPercentile(50)),
      p90Ms: ms(this.valueAtPercentile(90)),
      p99Ms: ms(this.valueAtPercentile(99)),
      p999Ms: ms(this.valueAtPercentile(99.9)),
      maxMs: ms(this.highUs),
    };
  }
}
