import type { SchemaNames } from './sql.js';

/*
 * The attempt row is written once, when the attempt ends: by its commit,
 * fail or release, by the worker that finds its lease lost, or by the sweep
 * that recovers it. While the attempt runs, the job row contains what the
 * attempt row will need (attempt number, worker, lease token and
 * attempt_started_at), so leasing a job writes one row, not two. An attempt
 * that completes the job without a verify gets no row at all: the completed
 * job row keeps those columns and is its record.
 */

/**
 * The source of the attempt rows that a commit writes, from its CTE named
 * `completed`: only the verified attempts, because the job row cannot tell
 * verified from succeeded. A succeeded attempt's row would repeat the job row.
 */
export const VERIFIED_ONLY = `(SELECT * FROM completed WHERE outcome = 'verified') AS verified`;

/**
 * Builds the INSERT that writes the rows of ended attempts from `source`, a
 * CTE or subquery with the columns job_id, attempt, worker_id, lease_token,
 * started_at, outcome and error. `endedAt` is the SQL expression of the end
 * time. A row that exists already for that attempt was opened at lease time
 * by a vouch before schema version 2: it is closed if it is still open under
 * the same token, and left alone otherwise. With `overLosses` (the row of a
 * lost lease), it also replaces the outcome that a concurrent statement wrote
 * first, such as the sweep's `abandoned`, keeping that row's end time. It
 * never replaces a recorded success.
 */
export function insertEndedAttempts(n: SchemaNames, source: string, endedAt: string, overLosses = false): string {
  // Only an attempt leased by an older vouch lacks attempt_started_at. Its row exists, so the conflict
  // clause keeps the stored start, but NOT NULL is checked before the conflict, hence the fallback.
  return `INSERT INTO ${n.attempts} AS a (job_id, attempt, worker_id, lease_token, started_at, ended_at, outcome, error)
    SELECT job_id, attempt, worker_id, lease_token, coalesce(started_at, ${endedAt}), ${endedAt}, outcome, error FROM ${source}
    ON CONFLICT (job_id, attempt) DO UPDATE
       SET outcome = excluded.outcome, error = excluded.error, ended_at = coalesce(a.ended_at, excluded.ended_at)
     WHERE a.lease_token = excluded.lease_token AND ${
       overLosses ? `a.outcome IS DISTINCT FROM 'succeeded' AND a.outcome IS DISTINCT FROM 'verified'` : 'a.ended_at IS NULL'
     }`;
}
