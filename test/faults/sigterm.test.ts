import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { deliveryEffectKey, FaultBed } from '../support/fault-bed.js';

/**
 * F5 with a real signal: SIGTERM to a worker process with one short and one
 * long attempt in flight. The lease is long (30 s) so that only the release
 * on shutdown, not lease expiry, can make the long job available again soon.
 */
const LEASE_MS = 30_000;
const GRACE_MS = 500;

describe('fault: graceful shutdown by SIGTERM', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: LEASE_MS, sweepIntervalMs: 100, maxAttempts: 1 });
  });
  afterEach(() => bed.dispose());

  it('finishes the short attempt, releases the long one at once, and exits cleanly', async () => {
    const [short] = await bed.enqueue(1, { sleepMs: 200 }, 0);
    const [long] = await bed.enqueue(1, { sleepMs: 60_000 }, 1);
    const worker = bed.spawnWorker('terminated', { concurrency: 2, shutdownGraceMs: GRACE_MS });
    await worker.waitFor('both attempts to start', () => worker.select('perform').length === 2);

    const signalledAt = Date.now();
    worker.kill('SIGTERM');
    const exit = await worker.exited;
    expect(exit.code, `exit after SIGTERM${worker.diagnostics()}`).toBe(0);
    expect(exit.at - signalledAt).toBeLessThan(GRACE_MS + 1500);
    expect(worker.select('stopped')).toHaveLength(1);

    const shortJob = await bed.read(short!);
    expect(shortJob.job.state).toBe('completed');
    expect(bed.sink.count(deliveryEffectKey(shortJob.job))).toBe(1);

    // The long job is available again long before its 30 s lease would have expired.
    const longJob = await bed.read(long!);
    expect(longJob.job).toMatchObject({ state: 'available', leaseToken: null, leaseExpiresAt: null });
    expect(longJob.job.maxAttempts - longJob.job.attempt).toBe(1);
    expect(longJob.attempts).toEqual([expect.objectContaining({ attempt: 1, workerId: 'terminated', outcome: 'released' })]);
    expect(worker.select('event', 'job:released')).toEqual([expect.objectContaining({ jobId: long })]);
    expect(bed.sink.count(deliveryEffectKey(longJob.job))).toBe(0);

    // Any worker can lease it now: no one waits for expiry.
    const [leased, ...others] = await bed.store.lease({ queue: 'default', limit: 10, workerId: 'next' });
    expect(others).toEqual([]);
    expect(leased?.lease).toMatchObject({ jobId: long, attempt: 2 });
    expect(leased?.previousAttempt).toMatchObject({ outcome: 'released' });
  });
});
