import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { POSTGRES_TEST_URL, postgresAvailable } from '../support/postgres-harness.js';
import type { FixtureProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { deliveryKey, PgBed } from './pg-bed.js';

/**
 * Worker processes on PostgreSQL SIGKILLed in the middle of attempts: once
 * from outside at an arbitrary moment, and once by a failpoint right after
 * an effect happened and before the ledger knew. Nothing is lost, no effect
 * reaches the sink twice, and every interrupted job is recovered within its
 * lease plus one sweep interval of the kill.
 */
const LEASE_MS = 2000;
const SWEEP_MS = 300;
/** Room for a loaded machine: scheduling, the sweep statement itself, process start-up. */
const SLACK_MS = 1500;

const available = postgresAvailable();

describe.skipIf(!available)('postgres: worker processes killed mid-attempt', () => {
  let bed: PgBed;
  beforeEach(async () => {
    bed = await PgBed.create(POSTGRES_TEST_URL, { leaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, maxAttempts: 5 });
  });
  afterEach(() => bed.dispose());

  it('recovers every killed attempt exactly once', async () => {
    const jobIds = await bed.enqueue(60, { sleepMs: 300 });
    const kills = new Map<string, number>();
    const killWhenBusy = async (worker: FixtureProcess) => {
      const seen = worker.select('perform').length;
      await worker.waitFor(
        'an attempt in flight',
        (message) => message.type === 'perform' && worker.select('perform').length > seen + 1,
        20_000,
      );
      worker.kill('SIGKILL');
      kills.set(worker.label, Date.now());
      await worker.exited;
    };

    const first = bed.spawnWorker('crash-a', { concurrency: 4 });
    const second = bed.spawnWorker('crash-b', { concurrency: 4 });
    // Dies on its second effect after the sink applied it and before the ledger recorded it done.
    const doomed = bed.spawnWorker('crash-c', { concurrency: 2 }, 'after-effect-before-ledger=kill@2');
    await Promise.all([first.ready(), second.ready(), doomed.ready()]);

    await killWhenBusy(first);
    const replacement = bed.spawnWorker('crash-d', { concurrency: 4 });
    const doomedExit = await doomed.exited;
    expect(doomedExit.signal).toBe('SIGKILL');
    kills.set(doomed.label, doomedExit.at);
    await killWhenBusy(second);
    const survivor = bed.spawnWorker('crash-e', { concurrency: 4 });

    await bed.waitForTerminal(jobIds, 60_000, [replacement, survivor]);
    const all = await bed.expectEachCompletedOnce(jobIds);

    // Each killed worker left attempts behind, closed as abandoned by a sweep in time.
    const abandoned = all.flatMap(({ attempts }) => attempts.filter((attempt) => attempt.outcome === 'abandoned'));
    for (const worker of kills.keys()) {
      expect(abandoned.filter((attempt) => attempt.workerId === worker).length, `attempts abandoned by ${worker}`).toBeGreaterThan(0);
    }
    for (const attempt of abandoned) {
      const killedAt = kills.get(attempt.workerId);
      expect(killedAt, `attempt ${attempt.jobId}/${attempt.attempt} abandoned by a worker that was not killed`).toBeDefined();
      expect((attempt.endedAt as number) - (killedAt as number), `recovery of job ${attempt.jobId}`).toBeLessThanOrEqual(
        LEASE_MS + SWEEP_MS + SLACK_MS,
      );
    }

    // The failpoint's kill left an effect in doubt; the next attempt's verify found it at the sink instead of sending it again.
    const settled = all.filter(({ effects }) => effects.some((effect) => effect.resolution === 'verified'));
    expect(settled.length).toBeGreaterThanOrEqual(1);
    for (const { job } of settled) expect(bed.sink.count(deliveryKey(job))).toBe(1);

    for (const worker of [replacement, survivor]) worker.kill('SIGTERM');
    await waitFor('the surviving workers to stop', () => !replacement.alive && !survivor.alive, { timeoutMs: 10_000 });
  });
});
