import type pg from 'pg';
import { rollbackQuietly, withClient } from './connection.js';
import type { SchemaNames } from './sql.js';

/** Rows changed since the last ANALYZE before the jobs table is analyzed again: at least this many... */
const MIN_CHANGED_ROWS = 10_000;
/** ...and at least this share of the rows the table had then. */
const MIN_CHANGED_SHARE = 0.1;

/**
 * Analyzes the jobs table when many rows changed since its last ANALYZE, and
 * returns whether it did. The lease query's plan depends on these statistics:
 * with a million jobs inserted and never analyzed, PostgreSQL 15 estimated a
 * few rows and chose a bitmap scan with an on-disk sort, 606 ms per lease of
 * 50 jobs, against 1.1 ms after ANALYZE. Autovacuum does the same when it is
 * on, but only after its nap time, and some servers run without it. A
 * transaction-scoped advisory lock lets one worker at a time do it.
 */
export async function analyzeIfStale(pool: pg.Pool, names: SchemaNames): Promise<boolean> {
  return withClient(pool, async (client) => {
    await client.query('BEGIN');
    try {
      const { rows } = await client.query<{ changed: string; tuples: number; locked: boolean }>(
        `SELECT s.n_mod_since_analyze AS changed, greatest(c.reltuples, 0) AS tuples,
                pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked
           FROM pg_stat_user_tables s
           JOIN pg_class c ON c.oid = s.relid
          WHERE s.relid = $2::regclass`,
        [`vouch-analyze:${names.schema}`, names.jobs],
      );
      const row = rows[0];
      const changed = Number(row?.changed ?? 0);
      const stale = row !== undefined && changed >= MIN_CHANGED_ROWS && changed >= MIN_CHANGED_SHARE * row.tuples;
      if (stale && row.locked) await client.query(`ANALYZE ${names.jobs}`);
      await client.query('COMMIT');
      return stale && row.locked;
    } catch (error) {
      await rollbackQuietly(client);
      throw error;
    }
  });
}
