import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { newJob } from '../support/jobs.js';
import { silentLogger } from '../support/logs.js';
import { PgCluster, pgClusterAvailable } from '../support/pg-cluster.js';

/**
 * A lease commits without waiting for a WAL flush, while an enqueue still
 * waits for one. The counts come from pg_stat_wal, which covers the whole
 * server, so the test runs on a throwaway cluster where nothing else writes.
 * A backend reports its WAL statistics at the latest when it exits, so each
 * step closes its store.
 */
const clusterProblem = pgClusterAvailable();

describe.skipIf(clusterProblem !== null)('postgres: how a lease commits', () => {
  let cluster: PgCluster;
  let admin: pg.Client;

  beforeAll(async () => {
    cluster = await PgCluster.create();
    admin = new pg.Client({ connectionString: cluster.url() });
    await admin.connect();
  }, 60_000);
  afterAll(async () => {
    await admin?.end();
    await cluster?.destroy();
  });

  const openStore = (poolSize = 10) =>
    new PostgresStore({ connectionString: cluster.url(), schema: 'lease_commit', poolSize, logger: silentLogger() });

  /** WAL flushes that `step` caused, counted once its store has closed. */
  const walFlushesDuring = async (step: (store: PostgresStore) => Promise<void>): Promise<number> => {
    const flushes = async () => Number((await admin.query('SELECT wal_sync FROM pg_stat_wal')).rows[0].wal_sync);
    const before = await flushes();
    const store = openStore();
    try {
      await step(store);
    } finally {
      await store.close();
    }
    // The exiting backends report their statistics on their way out.
    let after = await flushes();
    for (let tries = 0; tries < 50 && after === before; tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await flushes();
    }
    return after - before;
  };

  it('leases without a WAL flush', async () => {
    const setup = openStore();
    await setup.migrate();
    await setup.enqueue(Array.from({ length: 60 }, () => newJob()));
    await setup.close();

    const leaseFlushes = await walFlushesDuring(async (store) => {
      for (let lease = 0; lease < 40; lease += 1) {
        expect(await store.lease({ queue: 'default', limit: 1, workerId: 'w' })).toHaveLength(1);
      }
    });
    // The control: each enqueue is a synchronous commit, so the same count of them flushes each time.
    const enqueueFlushes = await walFlushesDuring(async (store) => {
      for (let enqueue = 0; enqueue < 40; enqueue += 1) await store.enqueue([newJob()]);
    });

    expect(enqueueFlushes).toBeGreaterThanOrEqual(40);
    // The WAL writer flushes asynchronous commits in the background, a few times over the run at most.
    expect(leaseFlushes).toBeLessThan(10);
  });

  it('keeps the setting in its transaction', async () => {
    const store = openStore(1);
    try {
      await store.enqueue([newJob()]);
      expect(await store.lease({ queue: 'default', limit: 1, workerId: 'w' })).toHaveLength(1);
      // The pool has one connection, so this query runs on the connection that ran the lease.
      const { rows } = await store.pool.query('SHOW synchronous_commit');
      expect(rows[0].synchronous_commit).toBe('on');
    } finally {
      await store.close();
    }
  });
});
