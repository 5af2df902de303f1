import type { Clock } from '../../src/core/clock.js';

/**
 * A clock that tests move by hand. Frozen by default: time passes only when
 * a test calls advance(), so leases expire and backoffs come due exactly when
 * the test says, however slow the machine is. With `follow: true` it runs
 * with the system clock and advance() adds an offset.
 */
export class TestClock {
  private offsetMs = 0;
  private readonly startedAt: number;
  private readonly follow: boolean;

  constructor(options: { start?: number; follow?: boolean } = {}) {
    this.startedAt = options.start ?? Date.now();
    this.follow = options.follow ?? false;
  }

  /** The function to hand to stores, clients and workers. */
  readonly now: Clock = () => (this.follow ? Date.now() : this.startedAt) + this.offsetMs;

  advance(ms: number): void {
    this.offsetMs += ms;
  }
}
