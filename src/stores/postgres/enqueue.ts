import type { EnqueueOutcome, NewJob } from '../../core/store.js';
import { type JobRow, jobColumns, toJobRecord } from './rows.js';
import { delayUntil, interval, NOW, PENDING_SQL, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * Enqueue: a whole batch in one INSERT, with deduplication by job key and
 * one wake-up notification per queue.
 *
 * Dedup must hold when two processes enqueue the same key at the same moment,
 * including inside applications' own transactions, where neither sees the
 * other's uncommitted job. So a keyed batch first takes a transaction-scoped
 * advisory lock per key, in one sorted order so two batches cannot deadlock
 * each other; the second enqueuer waits until the first commits or rolls back
 * and then sees the outcome. Jobs without a key take no lock.
 */
export interface EnqueueStatements {
  lockKeys: Statement;
  insert: Statement<JobRow & { duplicate: boolean }>;
}

export function enqueueStatements(n: SchemaNames): EnqueueStatements {
  // $1 is the schema, so that keys of two schemas on one database do not contend.
  const lockKeys = new Statement(`
    SELECT count(pg_advisory_xact_lock(k.hash)) AS locked
      FROM (SELECT DISTINCT hashtextextended($1 || ':' || key, 0) AS hash
              FROM unnest($2::text[]) AS key
             ORDER BY 1) AS k`);

  const insert = new Statement<JobRow & { duplicate: boolean }>(`
    WITH input AS (
      SELECT i.*, ${NOW} AS now, row_number() OVER (PARTITION BY i.key ORDER BY i.ord) AS nth_of_key
        FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[], $8::int[], $9::float8[], $10::bigint[])
             WITH ORDINALITY AS i(name, queue, key, payload, priority, max_attempts, lease_ms, run_in_ms, dedup_window_ms, ord)
    ),
    -- The newest job already holding each key: pending, or completed within its dedup window.
    holder AS (
      SELECT DISTINCT ON (j.key) j.key, j.id
        FROM ${n.jobs} j
       WHERE j.key IN (SELECT key FROM input WHERE key IS NOT NULL)
         AND (j.state IN ${PENDING_SQL}
              OR (j.state = 'completed' AND j.finished_at + ${interval('j.dedup_window_ms')} > ${NOW}))
       ORDER BY j.key, j.id DESC
    ),
    -- What is inserted: every job without a key, and the first job of each key nobody holds.
    -- Ids are drawn here, in batch order, so every input row can be matched to its job below.
    fresh AS (
      SELECT nextval($11::regclass) AS id, i.*, i.now + ${interval('coalesce(i.run_in_ms, 0)')} AS run_at
        FROM input i
       WHERE i.key IS NULL
          OR (i.nth_of_key = 1 AND NOT EXISTS (SELECT 1 FROM holder h WHERE h.key = i.key))
       ORDER BY i.ord
    ),
    inserted AS (
      INSERT INTO ${n.jobs} (id, name, queue, key, payload, state, priority, max_attempts, lease_ms, run_at, created_at, dedup_window_ms)
      SELECT f.id, f.name, f.queue, f.key, f.payload::json,
             CASE WHEN f.run_in_ms > 0 THEN 'scheduled' ELSE 'available' END,
             f.priority, f.max_attempts, f.lease_ms, f.run_at, f.now, f.dedup_window_ms
        FROM fresh f
      RETURNING *
    ),
    -- One notification per queue per statement, whatever the batch size; PostgreSQL also folds
    -- identical notifications of one transaction into one, so a loop of enqueues inside an
    -- application's transaction wakes each queue once, at its commit. Scheduled jobs wake it too:
    -- a worker then reads when the next one is due and wakes itself at that moment.
    woken AS (
      SELECT pg_notify($12, q.queue) FROM (SELECT DISTINCT queue FROM inserted) q
    ),
    outcome AS (
      SELECT i.ord, coalesce(mine.id, h.id, leader.id) AS id, mine.id IS NULL AS duplicate
        FROM input i
        LEFT JOIN fresh mine ON mine.ord = i.ord
        LEFT JOIN holder h ON h.key = i.key
        LEFT JOIN fresh leader ON leader.key = i.key
    ),
    job AS (
      SELECT ${jobColumns('ins')} FROM inserted ins
      UNION ALL
      SELECT ${jobColumns('old')} FROM ${n.jobs} old WHERE old.id IN (SELECT id FROM holder)
    )
    SELECT job.*, o.duplicate
      FROM outcome o
      JOIN job ON job.id = o.id::text
     CROSS JOIN (SELECT count(*) FROM woken) AS notified
     ORDER BY o.ord`);

  return { lockKeys, insert };
}

/**
 * Inserts `jobs` on `db`. The caller provides the transaction: for a keyed
 * batch the key locks last until that transaction ends, which is what makes
 * a concurrent enqueue of the same key wait and then see this one's job.
 */
export async function insertJobs(
  db: Queryable,
  statements: EnqueueStatements,
  n: SchemaNames,
  now: number | null,
  jobs: readonly NewJob[],
): Promise<EnqueueOutcome[]> {
  const keys = jobs.flatMap((job) => (job.key === null ? [] : [job.key]));
  if (keys.length > 0) await statements.lockKeys.run(db, [n.schema, keys]);
  const { rows } = await statements.insert.run(db, [
    now,
    jobs.map((job) => job.name),
    jobs.map((job) => job.queue),
    jobs.map((job) => job.key),
    jobs.map((job) => job.payloadJson),
    jobs.map((job) => job.priority),
    jobs.map((job) => job.maxAttempts),
    jobs.map((job) => job.leaseMs),
    jobs.map((job) => delayUntil(job.runAt, now)),
    jobs.map((job) => job.dedupWindowMs),
    n.jobIdSequence,
    n.channel,
  ]);
  return rows.map((row) => ({ job: toJobRecord(row), duplicate: row.duplicate }));
}

/** True when `jobs` needs key locks, and so a transaction around the two statements. */
export function needsKeyLocks(jobs: readonly NewJob[]): boolean {
  return jobs.some((job) => job.key !== null);
}
