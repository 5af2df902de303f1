import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { Client } from '../../src/core/client.js';
import { defineJob } from '../../src/core/job-definition.js';
import { leaseStatements } from '../../src/stores/postgres/lease.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent, schemaNames } from '../../src/stores/postgres/sql.js';
import { sweepStatements } from '../../src/stores/postgres/sweep.js';
import { Worker } from '../../src/worker/worker.js';
import { EventLog } from '../support/events.js';
import { newJob } from '../support/jobs.js';
import { silentLogger } from '../support/logs.js';
import { POSTGRES_TEST_URL, postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * What is particular to leasing on PostgreSQL: the lease and the heartbeat
 * are one statement each, they stay fast beside hundreds of thousands of
 * waiting and finished jobs, and lease expiry follows the database clock,
 * never a worker's.
 */
describe.skipIf(!postgresAvailable())('postgres: leasing', () => {
  let harness: StoreHarness;
  let store: PostgresStore;

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());
  beforeEach(async () => {
    store = (await harness.open()).store as PostgresStore;
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('leases and renews in one statement each', async () => {
    await store.enqueue(Array.from({ length: 40 }, () => newJob()));
    const queries = vi.spyOn(store.pool, 'query');

    const leased = await store.lease({ queue: 'default', limit: 25, workerId: 'w' });
    expect(leased).toHaveLength(25);
    expect(queries).toHaveBeenCalledTimes(1);

    queries.mockClear();
    const held = await store.heartbeat(leased.map((job) => job.lease));
    expect(held.size).toBe(25);
    expect(queries).toHaveBeenCalledTimes(1);
  });

  it('warms the pool on first lease', async () => {
    // A store with a pool of its own, on the schema the harness migrated.
    const own = new PostgresStore({ connectionString: POSTGRES_TEST_URL, schema: store.schema, logger: silentLogger(), listen: false });
    const single = new PostgresStore({
      connectionString: POSTGRES_TEST_URL,
      schema: store.schema,
      logger: silentLogger(),
      listen: false,
      poolSize: 1,
    });
    try {
      await store.enqueue([newJob(), newJob()]);
      expect(own.pool.totalCount).toBe(0);
      expect(await own.lease({ queue: 'default', limit: 1, workerId: 'w' })).toHaveLength(1);
      await waitFor('three open connections', async () => own.pool.totalCount >= 3);
      // A pool of one is not overfilled, and its lease still gets the connection.
      expect(await single.lease({ queue: 'default', limit: 1, workerId: 'w' })).toHaveLength(1);
      expect(single.pool.totalCount).toBe(1);
    } finally {
      await own.close();
      await single.close();
    }
  });

  it('sets expiry by the database clock', async () => {
    await store.enqueue([newJob({ leaseMs: 30_000 })]);
    const { rows } = await store.pool.query('SELECT floor(extract(epoch FROM now()) * 1000)::float8 AS now');
    const databaseNow = rows[0].now as number;
    const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'w' });
    const job = leased!.job;
    for (const time of [job.runAt, job.createdAt, job.leaseExpiresAt]) expect(Number.isInteger(time)).toBe(true);
    expect(job.leaseExpiresAt! - databaseNow).toBeGreaterThanOrEqual(30_000 - 50);
    expect(job.leaseExpiresAt! - databaseNow).toBeLessThan(30_000 + 2000);
  });

  it('keeps leases of skewed workers', async () => {
    const LEASE_MS = 1000;
    const slow = defineJob({
      name: 'slow',
      payload: z.object({}),
      leaseMs: LEASE_MS,
      perform: async () => {
        await sleep(3 * LEASE_MS);
        return 'done';
      },
    });
    const client = new Client({ store });
    const jobs = [await client.enqueue(slow, {}), await client.enqueue(slow, {})];
    const logs: EventLog[] = [];
    const workers = [3_600_000, -3_600_000].map((skewMs, index) => {
      const worker = new Worker({
        store,
        jobs: [slow],
        concurrency: 1,
        workerId: `skewed-${index}`,
        clock: () => Date.now() + skewMs,
        sweepIntervalMs: 100,
        logger: silentLogger(),
      });
      logs.push(new EventLog(worker));
      return worker;
    });
    try {
      await Promise.all(workers.map((worker) => worker.start()));
      for (const job of jobs) {
        await waitFor(`job ${job.id} to complete`, async () => (await store.getJob(job.id))?.state === 'completed', { timeoutMs: 15_000 });
        expect(await store.listAttempts(job.id)).toEqual([expect.objectContaining({ attempt: 1, outcome: 'succeeded' })]);
      }
      for (const log of logs) {
        expect(log.of('lease:lost')).toEqual([]);
        expect(log.of('attempt:abandoned')).toEqual([]);
      }
    } finally {
      await Promise.all(workers.map((worker) => worker.stop({ graceMs: 0 })));
    }
  });

  it('relabels a concurrently swept attempt', async () => {
    // The worker's abandon and a sweep both write the attempt row of one expired lease. The sweep's
    // insert is held open in a side transaction, so the abandon's insert waits on it and then conflicts.
    const names = schemaNames(store.schema);
    const [outcome] = await store.enqueue([newJob()]);
    const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'stalled' });
    const lease = leased!.lease;
    const side = await store.pool.connect();
    try {
      await side.query('BEGIN');
      await side.query(
        `INSERT INTO ${names.attempts} (job_id, attempt, worker_id, lease_token, started_at, ended_at, outcome, error)
         VALUES ($1, 1, 'stalled', $2, now(), now(), 'abandoned', 'swept')`,
        [lease.jobId, lease.token],
      );
      const abandoned = store.abandonLease(lease, 'heartbeat refused');
      await waitFor('the abandon to wait on the sweep', async () => {
        const { rows } = await store.pool.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%lease_lost%'`,
        );
        return rows.length > 0;
      });
      await side.query('COMMIT');
      await abandoned;
    } finally {
      side.release();
    }
    expect(await store.listAttempts(outcome!.job.id)).toEqual([
      expect.objectContaining({ attempt: 1, outcome: 'lease_lost', error: 'heartbeat refused' }),
    ]);
  });

  describe('beside many waiting and finished jobs', () => {
    const WAITING = 200_000;
    const COMPLETED = 200_000;
    const SCHEDULED = 50_000;

    beforeEach(async () => {
      const jobs = `${quoteIdent(store.schema)}.jobs`;
      await store.pool.query(`
        INSERT INTO ${jobs} (name, queue, key, payload, state, priority, attempt, max_attempts, lease_ms, run_at, created_at, finished_at, dedup_window_ms, result)
        SELECT 'old', 'default', 'old-' || g, '{}', 'completed', 0, 1, 3, 10000,
               now() - interval '2 days', now() - interval '2 days', now() - interval '1 day', 1000, 'null'
          FROM generate_series(1, ${COMPLETED}) g`);
      await store.pool.query(`
        INSERT INTO ${jobs} (name, queue, payload, state, priority, max_attempts, lease_ms, run_at, created_at, dedup_window_ms)
        SELECT 'waiting', CASE WHEN g % 2 = 0 THEN 'default' ELSE 'other' END, '{}', 'available', g % 3, 3, 10000,
               now() - interval '1 hour' + g * interval '1 millisecond', now(), 1000
          FROM generate_series(1, ${WAITING}) g`);
      await store.pool.query(`
        INSERT INTO ${jobs} (name, queue, payload, state, priority, max_attempts, lease_ms, run_at, created_at, dedup_window_ms)
        SELECT 'later', 'default', '{}', 'scheduled', -1, 3, 10000, now() + interval '1 day' + g * interval '1 millisecond', now(), 1000
          FROM generate_series(1, ${SCHEDULED}) g`);
      await store.pool.query(`ANALYZE ${jobs}`);
    }, 120_000);

    /** Runs a statement under EXPLAIN ANALYZE and rolls its writes back; returns the plan. */
    async function explain(text: string, values: unknown[]): Promise<{ plan: string; executionMs: number }> {
      const client = await store.pool.connect();
      try {
        await client.query('BEGIN');
        const { rows } = await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values);
        await client.query('ROLLBACK');
        const [result] = rows[0]['QUERY PLAN'] as { Plan: unknown; 'Execution Time': number }[];
        return { plan: JSON.stringify(result!.Plan), executionMs: result!['Execution Time'] };
      } finally {
        client.release();
      }
    }

    it('reads only the front of jobs_available', async () => {
      const statements = leaseStatements(schemaNames(store.schema));
      const { plan, executionMs } = await explain(statements.claim.text, [null, 'default', 10, 'w', 'prefix-']);
      expect(plan).toContain('"Index Name":"jobs_available"');
      expect(plan).toContain('"Index Name":"jobs_waiting"');
      expect(plan).not.toContain('Seq Scan');
      expect(executionMs).toBeLessThan(50);

      // Leased in lease order: lowest priority number first, then oldest run_at; the jobs scheduled for tomorrow stay put.
      const leased = await store.lease({ queue: 'default', limit: 10, workerId: 'w' });
      expect(leased.map((job) => [job.job.name, job.job.priority])).toEqual(Array.from({ length: 10 }, () => ['waiting', 0]));
    });

    it('sweeps and deduplicates through indexes', async () => {
      const sweep = sweepStatements(schemaNames(store.schema));
      const recover = await explain(sweep.recover.text, [null, 'channel']);
      expect(recover.plan).toContain('"Index Name":"jobs_running"');
      expect(recover.plan).not.toContain('Seq Scan');
      const promote = await explain(sweep.promote.text, [null, 'channel']);
      expect(promote.plan).toContain('"Index Name":"jobs_waiting"');
      expect(promote.plan).not.toContain('Seq Scan');

      const started = performance.now();
      const [outcome] = await store.enqueue([newJob({ key: 'old-77' })]);
      // The completed job with that key is past its dedup window, so a new job is created, found through jobs_key.
      expect(outcome?.duplicate).toBe(false);
      expect(performance.now() - started).toBeLessThan(1000);
    });
  });
});
