import os from "node:os";

/**
 * The bytes the gateway holds for devices, across every connection: device audio and images
 * accepted and waiting for the AI link (`queued`, counted as they are queued and handed on,
 * O(1) per frame), plus what slower sources report when sampled (answers waiting in device
 * sockets, bytes written to the AI link's HTTP/2 streams and not yet sent, the embedded AI
 * service's utterance buffers). Each connection is bounded by its own limits; this bounds
 * their sum: past `limitBytes` the largest holders are shed and new devices are refused
 * until the gateway is under it again, so that no set of connections, each within its
 * limits, can take the process's memory or its event loop.
 */
export class MemoryBudget {
  /** Bytes queued for the AI link, counted on the hot path. */
  queued = 0;
  private sampled = 0;
  private readonly sources: (() => number)[] = [];

  constructor(readonly limitBytes: number) {
    if (!(limitBytes > 0)) throw new RangeError("a memory budget needs a positive limit");
  }

  /** Adds a source read on every sample(): bytes it holds now. */
  addSource(source: () => number): void {
    this.sources.push(source);
  }

  /** Reads the sampled sources; returns the total held. */
  sample(): number {
    let sum = 0;
    for (const s of this.sources) sum += s();
    this.sampled = sum;
    return this.total;
  }

  /** Bytes held, as of the last sample for the sampled part. */
  get total(): number {
    return this.queued + this.sampled;
  }

  get over(): boolean {
    return this.total > this.limitBytes;
  }
}

/**
 * The default budget, from the machine's memory: a sixty-fourth of it, between 32 MiB and
 * 256 MiB. A fleet's real need is small (10,000 streaming devices hold a few frames each,
 * tens of MiB); the rest of the memory stays for sockets, sessions and copies in flight.
 */
export function defaultMemoryBudgetBytes(totalMemBytes = os.totalmem()): number {
  const mib = 1024 * 1024;
  return Math.min(256 * mib, Math.max(32 * mib, Math.floor(totalMemBytes / 64)));
}
