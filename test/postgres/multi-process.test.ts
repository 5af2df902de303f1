import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { quoteIdent } from '../../src/stores/postgres/sql.js';
import { POSTGRES_TEST_URL, postgresAvailable } from '../support/postgres-harness.js';
import type { FixtureMessage, FixtureProcess } from '../support/processes.js';
import type { PgEnqueuerConfig } from './fixtures/pg-enqueuer.js';
import { PgBed } from './pg-bed.js';

/**
 * Four worker processes and two enqueueing processes on one database. The
 * enqueuers race on the same job keys through every enqueue path (single,
 * bulk, inside their own transactions, some rolled back) while the workers
 * drain the queue. Every job ends in exactly one terminal state, each key
 * has exactly one job, and rolled-back enqueues leave nothing behind.
 */
const PG_ENQUEUER = fileURLToPath(new URL('./fixtures/pg-enqueuer.ts', import.meta.url));
const KEYS = 120;
const UNKEYED = 40;

describe.skipIf(!postgresAvailable())('postgres: four workers and two enqueuers on one database', () => {
  let bed: PgBed;
  beforeEach(async () => {
    bed = await PgBed.create(POSTGRES_TEST_URL, { leaseMs: 5000, sweepIntervalMs: 500, maxAttempts: 5 });
    await bed.store.pool.query(`CREATE TABLE ${quoteIdent(bed.schema)}.orders (key text NOT NULL, label text NOT NULL)`);
  });
  afterEach(() => bed.dispose());

  function spawnEnqueuer(label: string, order: PgEnqueuerConfig['order']): FixtureProcess {
    const config: PgEnqueuerConfig = {
      url: bed.location,
      schema: bed.schema,
      sinkUrl: bed.sink.url,
      label,
      keys: KEYS,
      unkeyed: UNKEYED,
      order,
    };
    return bed.processes.start(label, PG_ENQUEUER, [JSON.stringify(config)]);
  }

  it('ends each job once, one job per key', async () => {
    const workers = ['w1', 'w2', 'w3', 'w4'].map((id) => bed.spawnWorker(id, { concurrency: 3, pollIntervalMs: 100 }));
    const enqueuers = [spawnEnqueuer('enqueuer-up', 'up'), spawnEnqueuer('enqueuer-down', 'down')];
    await Promise.all([...workers, ...enqueuers].map((child) => child.ready()));
    for (const enqueuer of enqueuers) enqueuer.send('go');
    for (const enqueuer of enqueuers) {
      const exit = await enqueuer.exited;
      expect(exit.code, `${enqueuer.label} exit${enqueuer.diagnostics()}`).toBe(0);
      expect(enqueuer.select('done')).toHaveLength(1);
    }

    const outcomes = enqueuers.flatMap((enqueuer) => enqueuer.select('outcome'));
    const rolledBack = enqueuers.flatMap((enqueuer) => enqueuer.select('rolled-back'));
    const { rows: jobs } = await bed.store.pool.query(`SELECT id::text AS id, key FROM ${quoteIdent(bed.schema)}.jobs ORDER BY id`);
    const jobIds = jobs.map((job: { id: string }) => job.id);
    expect(jobs).toHaveLength(KEYS + 2 * UNKEYED);

    // One job per key, named by every outcome for that key; exactly one outcome created it.
    const byKey = new Map<string, FixtureMessage[]>();
    for (const outcome of outcomes.filter((outcome) => outcome.key !== null)) {
      byKey.set(outcome.key as string, [...(byKey.get(outcome.key as string) ?? []), outcome]);
    }
    expect(byKey.size).toBe(KEYS);
    for (const [key, seen] of byKey) {
      const stored = jobs.filter((job: { key: string | null }) => job.key === key);
      expect(stored, `jobs with key ${key}`).toHaveLength(1);
      expect(new Set(seen.map((outcome) => outcome.id)), `ids returned for ${key}`).toEqual(new Set([stored[0].id]));
      expect(
        seen.filter((outcome) => !outcome.duplicate),
        `outcomes that created ${key}`,
      ).toHaveLength(1);
    }
    // A rolled-back enqueue that created a job left no job behind, and its key went to another enqueue.
    const created = rolledBack.filter((outcome) => !outcome.duplicate);
    expect(created.length).toBeGreaterThan(0);
    for (const outcome of created) expect(jobIds, `job ${outcome.id} of a rolled-back transaction`).not.toContain(outcome.id);
    // Orders and jobs committed together: one order per committed transactional enqueue.
    const { rows: orders } = await bed.store.pool.query(`SELECT count(*)::int AS count FROM ${quoteIdent(bed.schema)}.orders`);
    expect(orders[0].count).toBe(outcomes.filter((outcome) => outcome.via === 'tx').length);

    await bed.waitForTerminal(jobIds, 60_000, workers);
    await bed.expectEachCompletedOnce(jobIds);
    const completions = workers.flatMap((worker) => worker.select('event', 'job:completed'));
    expect(completions).toHaveLength(jobIds.length);
    expect(new Set(completions.map((event) => event.jobId)).size).toBe(jobIds.length);
    // The work was shared: every worker process completed some of it.
    for (const worker of workers) expect(worker.select('event', 'job:completed').length, worker.label).toBeGreaterThan(0);
  });
});
