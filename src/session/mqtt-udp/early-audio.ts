/**
 * Audio of an MQTT + UDP session that arrives before the `listen start` it follows. The
 * firmware sends the start on MQTT and its first frames (the wake word's) in datagrams right
 * after: the frames can overtake the start, and an AI service drops audio it gets while not
 * listening. Such frames are held, at most `maxFrames` of them for `holdMs`, and delivered
 * right after the start (or when the hold ends, as they came).
 */
export class EarlyAudio {
  private listening = false;
  private held: Uint8Array[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly deliver: (opus: Uint8Array) => void,
    /** How long early frames wait for their start (one frame duration). */
    private readonly holdMs: () => number,
    private readonly maxFrames = 8,
  ) {}

  /** A listen message reached the session: `start` opens the way (and lets held frames
   * follow it), `stop` closes it. */
  listen(state: string | undefined): void {
    if (state === "start") {
      this.listening = true;
      this.flush();
    } else if (state === "stop") this.listening = false;
  }

  audio(opus: Uint8Array): void {
    if (this.listening) {
      this.deliver(opus);
      return;
    }
    if (this.held.length >= this.maxFrames) this.flush();
    this.held.push(opus);
    this.timer ??= setTimeout(() => this.flush(), this.holdMs());
  }

  /** The session ended: what is held is dropped with it. */
  close(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.held = [];
  }

  private flush(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    const frames = this.held;
    this.held = [];
    for (const opus of frames) this.deliver(opus);
  }
}
