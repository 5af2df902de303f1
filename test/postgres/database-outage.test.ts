import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EnqueueOutcome } from '../../src/core/store.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { COMPLETION, newJob } from '../support/jobs.js';
import { silentLogger } from '../support/logs.js';
import { PgCluster, pgClusterAvailable } from '../support/pg-cluster.js';
import type { FixtureProcess } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { PgBed } from './pg-bed.js';

/**
 * The database itself goes away in the middle of a run: restarted cleanly
 * once, then killed with SIGKILL and started again. Workers log the outage,
 * keep retrying with backoff, and when the database is back every job ends
 * completed exactly once, with its effect at the sink exactly once.
 *
 * It runs on a throwaway cluster of its own, so the shared server is never
 * restarted under other tests.
 */
const clusterProblem = pgClusterAvailable();

describe.skipIf(clusterProblem !== null)('postgres: the database restarts and crashes during a run', () => {
  let cluster: PgCluster;
  beforeAll(async () => {
    cluster = await PgCluster.create();
  }, 60_000);
  afterAll(async () => {
    await cluster?.destroy();
  });

  it('finishes every job once after restart and SIGKILL', async () => {
    const bed = await PgBed.create(cluster.url(), { leaseMs: 3000, sweepIntervalMs: 300, maxAttempts: 10 }, { schema: 'outage' });
    const workers: FixtureProcess[] = [];
    try {
      const jobIds = await bed.enqueue(200, { sleepMs: 200 });
      for (const id of ['outage-a', 'outage-b']) workers.push(bed.spawnWorker(id, { concurrency: 4, pollIntervalMs: 100 }));
      await Promise.all(workers.map((worker) => worker.waitFor('started', (message) => message.type === 'started')));

      const completedBefore = async (count: number) => {
        const completed = await waitFor(
          `${count} jobs to complete`,
          async () => {
            const now = await bed.completedCount();
            return now >= count ? now : null;
          },
          { timeoutMs: 60_000 },
        );
        // The fault must land in the middle of the run, with jobs still to do.
        expect(completed).toBeLessThan(jobIds.length);
      };
      await completedBefore(40);
      await cluster.restart();
      await completedBefore(100);
      cluster.kill9();
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await cluster.start();

      await bed.waitForTerminal(jobIds, 90_000, workers);
      await bed.expectEachCompletedOnce(jobIds);

      for (const worker of workers) {
        const logs = worker.select('log');
        const messages = logs.map((line) => line.msg);
        // The outage was logged, by the lease loop and by the connection that listens for wake-ups, and the listener came back.
        expect(messages, `${worker.label} logs`).toContain('leasing failed; retrying');
        expect(messages, `${worker.label} logs`).toContain('lost the connection that listens for wake-ups; polling until it is back');
        expect(messages, `${worker.label} logs`).toContain('listening for wake-ups again');
        // Retries backed off instead of hammering the database.
        const retries = logs.filter((line) => line.msg === 'leasing failed; retrying').map((line) => line.retryInMs as number);
        expect(Math.max(...retries), `${worker.label} lease retry delays`).toBeGreaterThan(100);
        expect(worker.alive, `${worker.label} kept running`).toBe(true);
      }
    } finally {
      for (const worker of workers) worker.kill('SIGTERM');
      await Promise.all(workers.map((worker) => worker.exited));
      await bed.dispose();
    }
  }, 180_000);

  it('throws while down and recovers after', async () => {
    const store = new PostgresStore({ connectionString: `${cluster.url()}?schema=down`, logger: silentLogger(), connectTimeoutMs: 2000 });
    try {
      const [{ job }] = (await store.enqueue([newJob()])) as [EnqueueOutcome];
      const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'down-worker' });
      const lease = leased!.lease;

      await cluster.stop();
      const refused = /ECONNREFUSED|terminat|Connection|not queryable|shutting down/i;
      await expect(store.enqueue([newJob()])).rejects.toThrow(refused);
      await expect(store.lease({ queue: 'default', limit: 1, workerId: 'down-worker' })).rejects.toThrow(refused);
      await expect(store.heartbeat([lease])).rejects.toThrow(refused);
      await expect(store.recordEffectIntent(lease, { name: 'e', idempotencyKey: 'k' })).rejects.toThrow(refused);
      await expect(store.recordEffectDone(lease, { name: 'e', resultJson: 'null', resolution: 'ran' })).rejects.toThrow(refused);
      await expect(store.commit(lease, COMPLETION)).rejects.toThrow(refused);
      await expect(store.fail(lease, { error: 'x', retryAt: null })).rejects.toThrow(refused);
      await expect(store.release(lease, 'x')).rejects.toThrow(refused);
      await expect(store.abandonLease(lease, 'x')).rejects.toThrow(refused);
      await expect(store.sweep()).rejects.toThrow(refused);
      await expect(store.getJob(job.id)).rejects.toThrow(refused);
      await expect(store.countByState()).rejects.toThrow(refused);

      await cluster.start();
      // The pool drops the connections the restart broke and opens new ones.
      expect(await store.commit(lease, COMPLETION)).toBe(true);
      expect((await store.getJob(job.id))?.state).toBe('completed');
    } finally {
      await store.close();
    }
  }, 60_000);
});
