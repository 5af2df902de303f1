import { describe, expect, it } from 'vitest';
import { PrefetchSizer } from '../../src/worker/prefetch-sizer.js';

const STARVED = true;
const BUSY = false;

describe('PrefetchSizer', () => {
  it('starts at the floor', () => {
    expect(new PrefetchSizer(10, 500).value).toBe(10);
  });

  it('doubles at most per starved lease', () => {
    const sizer = new PrefetchSizer(10, 500);
    // 40 starts per millisecond and 5 ms per lease need 400 ready jobs.
    const sizes = [1, 2, 3, 4, 5, 6].map(() => sizer.observe(200, 5, 5, STARVED));
    expect(sizes).toEqual([20, 40, 80, 160, 320, 400]);
  });

  it('grows only when the slots starved', () => {
    const sizer = new PrefetchSizer(10, 500);
    // The same fast starts, but every slot had a job ready: the prefetch is deep enough.
    for (let round = 0; round < 10; round += 1) expect(sizer.observe(200, 5, 5, BUSY)).toBe(10);
  });

  it('grows by one past its estimate', () => {
    const sizer = new PrefetchSizer(4, 500);
    // One start per millisecond and 2 ms leases need 4, yet the slots starved: the estimate is short.
    expect([1, 2, 3].map(() => sizer.observe(10, 10, 2, STARVED))).toEqual([5, 6, 7]);
  });

  it('stops at the ceiling', () => {
    const sizer = new PrefetchSizer(1, 64);
    for (let round = 0; round < 20; round += 1) sizer.observe(10_000, 1, 10, STARVED);
    expect(sizer.value).toBe(64);
  });

  it('keeps the floor for long jobs', () => {
    const sizer = new PrefetchSizer(8, 500);
    // Two starts per second: a 2 ms lease covers a small fraction of one job.
    for (let round = 0; round < 10; round += 1) expect(sizer.observe(2, 1000, 2, BUSY)).toBe(8);
  });

  it('shrinks gradually to the floor', () => {
    const sizer = new PrefetchSizer(4, 500);
    for (let round = 0; round < 6; round += 1) sizer.observe(400, 10, 5, STARVED);
    expect(sizer.value).toBe(256);
    // No starts at all: the average rate falls by 30% per report, and the size follows it down once the
    // estimate (280 after the first report) drops below it.
    expect([1, 2, 3].map(() => sizer.observe(0, 1000, 5, BUSY))).toEqual([256, 196, 138]);
    for (let round = 0; round < 30; round += 1) sizer.observe(0, 1000, 5, BUSY);
    expect(sizer.value).toBe(4);
  });

  it('never halves in one step', () => {
    const sizer = new PrefetchSizer(1, 500);
    for (let round = 0; round < 10; round += 1) sizer.observe(400, 10, 5, STARVED);
    const before = sizer.value;
    // A lease that returned at once would need nothing, yet the size falls to half, not to the floor.
    sizer.observe(0, 1000, 0, BUSY);
    expect(sizer.value).toBe(Math.ceil(before / 2));
  });

  it('smooths one slow lease', () => {
    const sizer = new PrefetchSizer(4, 1000);
    for (let round = 0; round < 4; round += 1) sizer.observe(100, 10, 2, STARVED);
    expect(sizer.value).toBe(40);
    // A lease that took 3 ms instead of 2 moves the average to 2.3 ms: 46 ready jobs, not the 60 that 3 ms alone would need.
    expect(sizer.observe(100, 10, 3, STARVED)).toBe(46);
  });

  it('starts over on reset', () => {
    const sizer = new PrefetchSizer(4, 500);
    for (let round = 0; round < 5; round += 1) sizer.observe(400, 10, 5, STARVED);
    sizer.reset();
    expect(sizer.value).toBe(4);
    // The first report after a reset is taken whole, not averaged with the old ones.
    expect(sizer.observe(1, 10, 1, BUSY)).toBe(4);
  });

  it('ignores a report over no time', () => {
    const sizer = new PrefetchSizer(4, 100);
    expect(sizer.observe(50, 0, 1, STARVED)).toBe(4);
  });
});
