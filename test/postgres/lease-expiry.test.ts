import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { POSTGRES_TEST_URL, postgresAvailable } from '../support/postgres-harness.js';
import type { FixtureProcess } from '../support/processes.js';
import { deliveryKey, PgBed } from './pg-bed.js';

/**
 * A worker process that stops for longer than its lease while a second
 * worker takes the job over. The paused attempt cannot commit, renew or start
 * its effect once it runs again: the database clock expired its lease, the
 * new owner's token replaced its own, and the new owner's result stands.
 */
const LEASE_MS = 1500;
const PAUSE_MS = 4000;

describe.skipIf(!postgresAvailable())('postgres: a worker paused past its lease', () => {
  let bed: PgBed;
  beforeEach(async () => {
    bed = await PgBed.create(POSTGRES_TEST_URL, { leaseMs: LEASE_MS, sweepIntervalMs: 200, maxAttempts: 3 });
  });
  afterEach(() => bed.dispose());

  async function takeOver(stalled: FixtureProcess) {
    const takeover = bed.spawnWorker('takeover', { concurrency: 1, waitForGo: true });
    await takeover.ready();
    await stalled.waitFor('attempt 1 to start', (message) => message.type === 'perform' && message.attempt === 1);
    return takeover;
  }

  it('rejects the commit after a pause', async () => {
    const [jobId] = await bed.enqueue(1);
    const stalled = bed.spawnWorker('stalled', { concurrency: 1 }, `after-ledger-before-commit=block:${PAUSE_MS}@1`);
    const takeover = await takeOver(stalled);
    takeover.send('go');

    const completed = await takeover.waitFor('its completion', (message) => message.event === 'job:completed', 15_000);
    const lost = await stalled.waitFor('its lost lease', (message) => message.event === 'lease:lost', 15_000);
    // The paused attempt reached the commit and the fence refused it.
    expect(lost).toMatchObject({ jobId, attempt: 1, reason: expect.stringMatching(/commit changed no row/) });
    expect(lost.at).toBeGreaterThan(completed.at);
    await stopGracefully(stalled);

    const [readback] = await bed.expectEachCompletedOnce([jobId!]);
    expect(readback?.job).toMatchObject({ state: 'completed', attempt: 2, workerId: 'takeover', result: { workerId: 'takeover' } });
    expect(readback?.attempts).toEqual([
      expect.objectContaining({ attempt: 1, workerId: 'stalled', outcome: 'lease_lost' }),
      expect.objectContaining({ attempt: 2, workerId: 'takeover', outcome: 'succeeded' }),
    ]);
    // The effect was recorded done before the pause; the new owner reused it instead of sending it again.
    expect(readback?.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 1, resolution: 'ran' })]);
    expect(bed.sink.receipt(deliveryKey(readback!.job))?.body).toMatchObject({ attempt: 1, workerId: 'stalled' });
    expect(stalled.select('event', 'job:completed')).toEqual([]);
    expect(stalled.select('event', 'job:failed')).toEqual([]);
  });

  it('rejects every write after SIGSTOP', async () => {
    const [jobId] = await bed.enqueue(1, { sleepMs: 800 });
    const stalled = bed.spawnWorker('stalled', { concurrency: 1 });
    const takeover = await takeOver(stalled);
    stalled.kill('SIGSTOP');
    const stoppedAt = Date.now();
    takeover.send('go');

    await takeover.waitFor('its completion', (message) => message.event === 'job:completed', 15_000);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(LEASE_MS);
    stalled.kill('SIGCONT');
    const lost = await stalled.waitFor('its lost lease', (message) => message.event === 'lease:lost', 15_000);
    expect(lost).toMatchObject({ jobId, attempt: 1 });
    await stopGracefully(stalled);

    const [readback] = await bed.expectEachCompletedOnce([jobId!]);
    expect(readback?.job).toMatchObject({ attempt: 2, workerId: 'takeover', result: { workerId: 'takeover' } });
    expect(readback?.attempts[0]).toMatchObject({ attempt: 1, workerId: 'stalled', outcome: 'lease_lost' });
    // Only the new owner's effect reached the sink: the stalled attempt's intent was refused when it woke.
    expect(readback?.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 2 })]);
    expect(bed.sink.receipt(deliveryKey(readback!.job))?.body).toMatchObject({ attempt: 2, workerId: 'takeover' });
  });
});

/** Stops a worker with SIGTERM; a stop waits for its attempts, so their lost leases are closed when it returns. */
async function stopGracefully(worker: FixtureProcess): Promise<void> {
  worker.kill('SIGTERM');
  const exit = await worker.exited;
  expect(exit.code, `${worker.label} should stop cleanly${worker.diagnostics()}`).toBe(0);
}
