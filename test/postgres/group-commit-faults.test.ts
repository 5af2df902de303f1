import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { VouchError } from '../../src/core/errors.js';
import type { Lease } from '../../src/core/store.js';
import { commitGroupStatement } from '../../src/stores/postgres/commit-group.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent, schemaNames } from '../../src/stores/postgres/sql.js';
import { COMPLETION, newJob } from '../support/jobs.js';
import { capturingLogger, type LogLine } from '../support/logs.js';
import { PgCluster, pgClusterAvailable } from '../support/pg-cluster.js';
import { POSTGRES_TEST_URL, postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { waitFor } from '../support/wait.js';
import { CommitCutter } from './commit-cutter.js';
import { sideQuery } from './pg-bed.js';

/**
 * The connection of a group commit drops while its statement is in flight.
 * The statement is atomic, so the group landed whole or not at all, but the
 * fence may have rejected some of its jobs. Each caller's outcome is read
 * from its own attempt row on a fresh connection. When that read is
 * impossible, every caller is rejected rather than guessed for.
 */

const GROUP_MESSAGE = 'the connection dropped during a group commit; each commit was read back';

/** Opens a session that keeps one job row locked, so a group statement that reaches the row waits on it. */
async function holdRow(url: string, schema: string, jobId: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  await client.query('BEGIN');
  await client.query(`SELECT 1 FROM ${quoteIdent(schema)}.jobs WHERE id = $1 FOR UPDATE`, [jobId]);
  return client;
}

/** Waits until the group commit of `schema` waits for a row lock, and returns its backend pid. */
async function waitingGroup(url: string, schema: string): Promise<number> {
  const [row] = await waitFor('the group commit to wait for the locked row', async () => {
    const rows = await sideQuery<{ pid: number }>(
      url,
      `SELECT pid FROM pg_stat_activity
        WHERE wait_event_type = 'Lock' AND query LIKE '%unnest%' AND query LIKE '%' || $1 || '%'`,
      [`${quoteIdent(schema)}.jobs`],
    );
    return rows.length > 0 ? rows : null;
  });
  return row!.pid;
}

async function leaseAll(store: PostgresStore, count: number): Promise<Lease[]> {
  await store.enqueue(Array.from({ length: count }, () => newJob()));
  const leased = await store.lease({ queue: 'default', limit: count, workerId: 'fault-worker' });
  expect(leased).toHaveLength(count);
  return leased.map((job) => job.lease);
}

async function expire(store: PostgresStore, lease: Lease): Promise<void> {
  await store.pool.query(`UPDATE ${quoteIdent(store.schema)}.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [
    lease.jobId,
  ]);
}

/** Checks that a commit did not land: the job still runs under this lease and its attempt is open. */
async function expectNotCommitted(store: PostgresStore, lease: Lease): Promise<void> {
  expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'running', leaseToken: lease.token, result: null });
  const attempts = await store.listAttempts(lease.jobId);
  expect(attempts.find((attempt) => attempt.leaseToken === lease.token)?.outcome).toBeNull();
}

describe.skipIf(!postgresAvailable())('postgres: a connection dropped during a group commit', () => {
  let harness: StoreHarness;
  let store: PostgresStore;
  let lines: LogLine[];

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());

  describe('terminated by pg_terminate_backend', () => {
    beforeEach(async () => {
      const { location } = await harness.open();
      const captured = capturingLogger();
      lines = captured.lines;
      store = new PostgresStore({ connectionString: location, migrate: false, listen: false, logger: captured.logger, poolSize: 4 });
    });
    afterEach(() => store.close());

    it('terminated statement: every caller false', async () => {
      const leases = await leaseAll(store, 5);
      const [, , middle] = leases as [Lease, Lease, Lease];
      await expire(store, leases[4]!);
      const blocker = await holdRow(POSTGRES_TEST_URL, store.schema, middle.jobId);
      try {
        const commits = leases.map((lease) => store.commit(lease, COMPLETION));
        const pid = await waitingGroup(POSTGRES_TEST_URL, store.schema);
        const [terminated] = await sideQuery<{ done: boolean }>(POSTGRES_TEST_URL, 'SELECT pg_terminate_backend($1) AS done', [pid]);
        expect(terminated?.done).toBe(true);
        await blocker.query('ROLLBACK');
        expect(await Promise.all(commits)).toEqual([false, false, false, false, false]);
      } finally {
        await blocker.end();
      }
      for (const lease of leases) await expectNotCommitted(store, lease);
      expect(lines.find((line) => line.msg === GROUP_MESSAGE)).toMatchObject({
        landed: [],
        notLanded: leases.map((lease) => lease.jobId),
      });

      // The held leases are still held, so committing again lands them. The expired one stays rejected.
      expect(await Promise.all(leases.map((lease) => store.commit(lease, COMPLETION)))).toEqual([true, true, true, true, false]);
    });
  });

  describe('cut by the network after the statement reached the server', () => {
    let cutter: CommitCutter;
    beforeEach(async () => {
      const { store: direct } = await harness.open();
      const schema = (direct as unknown as PostgresStore).schema;
      const target = new URL(POSTGRES_TEST_URL);
      cutter = await CommitCutter.start({ host: target.hostname, port: Number(target.port || 5432) });
      const through = new URL(POSTGRES_TEST_URL);
      through.port = String(cutter.port);
      through.searchParams.set('schema', schema);
      const captured = capturingLogger();
      lines = captured.lines;
      store = new PostgresStore({ connectionString: through.toString(), migrate: false, listen: false, logger: captured.logger });
    });
    afterEach(async () => {
      await store.close();
      await cutter.close();
    });

    it('reply lost: landed true, rejected false', async () => {
      const leases = await leaseAll(store, 4);
      await expire(store, leases[1]!);
      cutter.arm('deliver-then-cut', commitGroupStatement(schemaNames(store.schema)).name);
      const outcomes = await Promise.all(leases.map((lease) => store.commit(lease, COMPLETION)));
      expect(cutter.cuts).toBe(1);
      expect(outcomes).toEqual([true, false, true, true]);
      for (const lease of [leases[0]!, leases[2]!, leases[3]!]) expect((await store.getJob(lease.jobId))?.state).toBe('completed');
      await expectNotCommitted(store, leases[1]!);
      expect(lines.find((line) => line.msg === GROUP_MESSAGE)).toMatchObject({
        landed: [leases[0]!.jobId, leases[2]!.jobId, leases[3]!.jobId],
        notLanded: [leases[1]!.jobId],
      });
    });

    it('statement never sent: every caller false', async () => {
      const leases = await leaseAll(store, 3);
      cutter.arm('cut-before', commitGroupStatement(schemaNames(store.schema)).name);
      expect(await Promise.all(leases.map((lease) => store.commit(lease, COMPLETION)))).toEqual([false, false, false]);
      expect(cutter.cuts).toBe(1);
      for (const lease of leases) await expectNotCommitted(store, lease);
    });
  });
});

const clusterProblem = pgClusterAvailable();

/**
 * Makes every job that becomes completed sleep before its row changes, so a
 * group commit is still executing (its rows locked, none completed yet) when
 * the server goes away. The sleep ends only by the shutdown, so the statement
 * cannot finish first: what the callers get must be "not landed" or an error.
 */
async function stallCompletions(store: PostgresStore): Promise<void> {
  const schema = quoteIdent(store.schema);
  await store.pool.query(`
    CREATE FUNCTION ${schema}.stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
    CREATE TRIGGER stall BEFORE UPDATE ON ${schema}.jobs FOR EACH ROW
      WHEN (NEW.state = 'completed' AND OLD.state = 'running') EXECUTE FUNCTION ${schema}.stall();`);
}

async function removeStall(store: PostgresStore): Promise<void> {
  await store.pool.query(`DROP TRIGGER stall ON ${quoteIdent(store.schema)}.jobs`);
}

/** Waits until the group commit of `schema` sleeps inside the stalled statement. */
async function stalledGroup(url: string, schema: string): Promise<void> {
  await waitFor('the group commit to stall', async () => {
    const rows = await sideQuery<{ pid: number }>(
      url,
      `SELECT pid FROM pg_stat_activity
        WHERE wait_event = 'PgSleep' AND query LIKE '%unnest%' AND query LIKE '%' || $1 || '%'`,
      [`${quoteIdent(schema)}.jobs`],
    );
    return rows.length > 0 ? rows : null;
  });
}

describe.skipIf(clusterProblem !== null)('postgres: the server stops during a group commit', () => {
  let cluster: PgCluster;
  let store: PostgresStore;
  let lines: LogLine[];
  let schemaCount = 0;
  beforeAll(async () => {
    cluster = await PgCluster.create();
  }, 60_000);
  afterAll(async () => {
    await cluster?.destroy();
  });
  beforeEach(async () => {
    schemaCount += 1;
    const captured = capturingLogger();
    lines = captured.lines;
    store = new PostgresStore({
      connectionString: `${cluster.url()}?schema=group_${schemaCount}`,
      listen: false,
      logger: captured.logger,
      connectTimeoutMs: 2000,
    });
    await store.migrate();
  });
  afterEach(() => store.close());

  it('server stays down: every caller rejected', async () => {
    const leases = await leaseAll(store, 3);
    await stallCompletions(store);
    const settled = Promise.allSettled(leases.map((lease) => store.commit(lease, COMPLETION)));
    await stalledGroup(cluster.url(), store.schema);
    await cluster.stop();
    try {
      const outcomes = await settled;
      for (const outcome of outcomes) {
        expect(outcome.status).toBe('rejected');
        const reason = (outcome as PromiseRejectedResult).reason;
        expect(reason).toBeInstanceOf(VouchError);
        expect((reason as Error).message).toMatch(/outcome could not be read back/);
      }
    } finally {
      await cluster.start();
    }
    for (const lease of leases) await expectNotCommitted(store, lease);
    await removeStall(store);
    expect(await Promise.all(leases.map((lease) => store.commit(lease, COMPLETION)))).toEqual([true, true, true]);
  }, 60_000);

  it('server back in time: every caller false', async () => {
    const leases = await leaseAll(store, 4);
    await expire(store, leases[2]!);
    await stallCompletions(store);
    const commits = Promise.all(leases.map((lease) => store.commit(lease, COMPLETION)));
    await stalledGroup(cluster.url(), store.schema);
    await cluster.stop();
    // The read-back retries for about three seconds; the server comes back within them.
    await cluster.start();
    expect(await commits).toEqual([false, false, false, false]);
    for (const lease of leases) await expectNotCommitted(store, lease);
    expect(lines.find((line) => line.msg === GROUP_MESSAGE)).toMatchObject({ landed: [], notLanded: leases.map((lease) => lease.jobId) });
  }, 60_000);
});
