/**
 * Sizes a queue's prefetch when the options leave it to the worker: enough
 * leased jobs waiting to keep every slot busy while the next lease is on its
 * way to the store and back.
 *
 * Each lease that comes back full (the queue has a backlog) is one
 * observation: how many attempts the queue started per millisecond since the
 * previous one, and how long the lease took. The ready list must hold, when
 * a lease is sent, the jobs that will start during its round trip. The sizer
 * keeps twice that, so that one slow lease does not starve the slots. Short jobs on a slow store get a deep prefetch and one store write
 * per batch; long jobs start few per round trip and keep the floor, so a
 * worker does not sit on jobs that idle workers could run.
 *
 * The size moves at most by half or double per observation, and averages
 * smooth both inputs, so that one stalled lease neither empties nor floods
 * the queue.
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
   * the previous observation, and the lease itself took `leaseMs`. Returns the
   * new size.
   */
  observe(starts: number, elapsedMs: number, leaseMs: number): number {
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
    const bounded = Math.min(Math.max(needed, Math.ceil(this.size / 2)), Math.max(this.size * 2, 1));
    this.size = Math.min(Math.max(bounded, this.floor), this.ceiling);
    return this.size;
  }
}

/** Weight of the newest observation in the running averages. */
const SMOOTHING = 0.3;
