/**
 * Sizes a queue's prefetch when the options leave it to the worker: enough
 * leased jobs waiting to keep every slot busy while the next lease is on its
 * way to the store and back.
 *
 * The worker reports each lease that came back full after another full one,
 * so the queue had a backlog all the while. The report gives the attempts started
 * since the previous one, over how long, how long the lease took, and
 * whether the slots ran out of ready jobs while it was away (starved). The
 * ready list must hold, when a lease is sent, the jobs that will start during
 * its round trip, and the sizer aims at twice that, so that one slow lease
 * does not starve the slots.
 *
 * The size grows only when the slots starved, and shrinks toward the aim
 * when they did not. Short jobs on a slow store get a deep prefetch and one
 * store write per batch. Long jobs never starve the slots, so they keep the
 * floor, and a worker does not sit on jobs that idle workers could run.
 * Averages smooth both inputs, and the size at most halves or doubles per
 * report, so that one stalled lease neither empties nor floods the queue.
 */
export class PrefetchSizer {
  private size: number;
  private startsPerMs = 0;
  private leaseMs = 0;
  private observed = false;

  constructor(
    /** The smallest prefetch, the one the queue starts with. */
    private readonly floor: number,
    /** The largest prefetch, however fast the jobs. */
    private readonly ceiling: number,
  ) {
    this.size = floor;
  }

  get value(): number {
    return this.size;
  }

  /** Forgets every observation: the size is the floor again. */
  reset(): void {
    this.size = this.floor;
    this.startsPerMs = 0;
    this.leaseMs = 0;
    this.observed = false;
  }

  /**
   * Records one full lease: `starts` attempts began in the `elapsedMs` since
   * the previous report, the lease itself took `leaseMs`, and `starved` is
   * true when a slot was free with nothing ready as it returned. Returns the
   * new size.
   */
  observe(starts: number, elapsedMs: number, leaseMs: number, starved: boolean): number {
    if (elapsedMs <= 0) return this.size;
    const rate = starts / elapsedMs;
    if (this.observed) {
      this.startsPerMs += SMOOTHING * (rate - this.startsPerMs);
      this.leaseMs += SMOOTHING * (leaseMs - this.leaseMs);
    } else {
      this.startsPerMs = rate;
      this.leaseMs = leaseMs;
      this.observed = true;
    }
    const needed = Math.ceil(2 * this.startsPerMs * this.leaseMs);
    const aim = starved ? Math.max(needed, this.size + 1) : Math.min(needed, this.size);
    const bounded = Math.min(Math.max(aim, Math.ceil(this.size / 2)), Math.max(this.size * 2, 1));
    this.size = Math.min(Math.max(bounded, this.floor), this.ceiling);
    return this.size;
  }
}

/** Weight of the newest observation in the running averages. */
const SMOOTHING = 0.3;
