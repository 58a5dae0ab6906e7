/**
 * A device driven by a FramePacer: called once per frame period, at its own offset in the
 * period, for as long as the measured phase lasts.
 */
export interface PacedDevice {
  /**
   * The device's slot `frameIndex` (0-based since the phase began) is due at `dueMs` and it
   * is now `nowMs` (both performance.now()); the device sends what its scenario sends then.
   */
  onSlot(frameIndex: number, dueMs: number, nowMs: number): void;
  /** The measured phase ended: send nothing more; finish what is under way. */
  onPhaseEnd(nowMs: number): void;
}
