import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { newJob } from '../support/jobs.js';
import { postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { waitFor } from '../support/wait.js';

/**
 * The sweep analyzes the jobs table after a large bulk enqueue, so the lease
 * query is planned with fresh statistics even where autovacuum is off or has
 * not woken up yet.
 */
describe.skipIf(!postgresAvailable())('postgres: planner statistics', () => {
  let harness: StoreHarness;
  let store: PostgresStore;

  beforeAll(async () => {
    harness = postgresHarness();
    store = (await harness.open()).store as PostgresStore;
  });
  afterAll(() => harness.cleanup());

  async function tableStats(): Promise<{ changed: number; analyzed: boolean }> {
    const { rows } = await store.pool.query<{ changed: string; analyzed: boolean }>(
      `SELECT n_mod_since_analyze AS changed, (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL) AS analyzed
         FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'`,
      [store.schema],
    );
    return { changed: Number(rows[0]?.changed ?? 0), analyzed: rows[0]?.analyzed ?? false };
  }

  it('sweep analyzes after a bulk enqueue', { timeout: 30_000 }, async () => {
    for (let batch = 0; batch < 12; batch += 1) {
      await store.enqueue(Array.from({ length: 1000 }, () => newJob({ queue: 'statistics' })));
    }
    // PostgreSQL publishes its change counters a moment after the transactions end.
    await waitFor('the change counters of 12,000 inserts', async () => (await tableStats()).changed >= 12_000, {
      timeoutMs: 15_000,
      intervalMs: 200,
    });
    expect((await tableStats()).analyzed).toBe(false);

    // A second store on the same pool and schema, whose log lines are kept as written.
    const written: string[] = [];
    const logged = new PostgresStore({
      pool: store.pool,
      schema: store.schema,
      logger: pino({ level: 'info' }, { write: (line: string) => void written.push(line) }),
    });
    await logged.sweep();
    await logged.close();

    const after = await tableStats();
    expect(after.analyzed).toBe(true);
    expect(after.changed).toBe(0);
    const analyzedLines = written.filter((line) => line.includes('analyzed the jobs table'));
    expect(analyzedLines).toHaveLength(1);
    // The store's logger already names the schema, so the line names it once.
    expect(analyzedLines[0]?.match(/"schema":/g)).toHaveLength(1);
  });
});
