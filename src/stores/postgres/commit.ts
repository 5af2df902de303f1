import type pg from 'pg';
import type { Logger } from 'pino';
import { VouchError } from '../../core/errors.js';
import { failpoint } from '../../core/failpoints.js';
import { errorForLog } from '../../core/log-error.js';
import type { Completion, Lease } from '../../core/store.js';
import { insertEndedAttempts, VERIFIED_ONLY } from './attempt-row.js';
import { isConnectionError, rollbackQuietly, withClient } from './connection.js';
import { CLOCK_NOW, compareJobIds, lockJobRow, type SchemaNames, Statement } from './sql.js';

/**
 * The commit: the ctx.transaction writes and the fenced transition to
 * `completed`, in one transaction.
 *
 * The transaction starts by locking the job row under the fence. While it is
 * open, the sweep (which skips locked rows) cannot recover the job and no
 * other attempt can lease it. The final update checks the fence again by the
 * database's wall clock, so a lease that expired while the writes ran is
 * refused and everything rolls back. A commit without writes does not come
 * here: it joins a group commit (commit-group.ts).
 *
 * The completed job row keeps the lease token: with its attempt number,
 * worker and attempt_started_at, it is the record of the attempt that
 * completed it. Only a verified attempt also gets an attempt row, because
 * the job row cannot tell verified from succeeded.
 *
 * If the connection drops, the outcome is found out, never guessed. A fresh
 * connection first locks the job row with FOR SHARE, which waits for the
 * old transaction to end if its backend is still finishing, and then reads
 * the outcome. The commit landed exactly when the job row is completed
 * under this attempt and token, or this attempt's row records `verified`
 * (or `succeeded`, written by an older vouch).
 */
export interface CommitStatements {
  fence: Statement;
  complete: Statement<{ completed: number }>;
  lockJobs: Statement;
  outcome: Statement<{ job_id: string; attempt: number; lease_token: string }>;
}

export function commitStatements(n: SchemaNames): CommitStatements {
  const fence = new Statement(`
    SELECT 1 FROM ${n.jobs}
     WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at > ${CLOCK_NOW}
       FOR NO KEY UPDATE`);

  const complete = new Statement<{ completed: number }>(`
    WITH completed AS (
      UPDATE ${n.jobs}
         SET state = 'completed', result = $5::json, finished_at = ${CLOCK_NOW}, lease_expires_at = NULL
       WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at > ${CLOCK_NOW}
      RETURNING id AS job_id, $4::int AS attempt, worker_id, $3::text AS lease_token, attempt_started_at AS started_at, $6::text AS outcome, NULL::text AS error
    ),
    closed AS (${insertEndedAttempts(n, VERIFIED_ONLY, CLOCK_NOW)})
    SELECT count(*)::int AS completed FROM completed`);

  // Waits until no other transaction has the job rows locked, because a commit whose connection
  // dropped may still be finishing in its backend. The ids come sorted (compareJobIds).
  const lockJobs = new Statement(`
    SELECT locked.state FROM unnest($1::bigint[]) AS input(id) CROSS JOIN LATERAL ${lockJobRow(n, 'input', 'FOR SHARE')}`);

  // The leases, as three parallel arrays, whose commit landed: the job row completed under the lease, or
  // an attempt row of a commit. It runs after `lockJobs`, so its snapshot includes what a finishing commit wrote.
  const outcome = new Statement<{ job_id: string; attempt: number; lease_token: string }>(`
    SELECT requested.job_id::text AS job_id, requested.attempt, requested.lease_token
      FROM unnest($1::bigint[], $2::int[], $3::text[]) AS requested(job_id, attempt, lease_token)
     WHERE EXISTS (SELECT 1 FROM ${n.jobs} j
                    WHERE j.id = requested.job_id AND j.state = 'completed'
                      AND j.attempt = requested.attempt AND j.lease_token = requested.lease_token)
        OR EXISTS (SELECT 1 FROM ${n.attempts} a
                    WHERE a.job_id = requested.job_id AND a.attempt = requested.attempt
                      AND a.lease_token = requested.lease_token AND a.outcome IN ('succeeded', 'verified'))`);

  return { fence, complete, lockJobs, outcome };
}

/** How long finding out a commit's outcome waits for the old transaction's row locks. */
const OUTCOME_LOCK_TIMEOUT = '10s';
/** Pauses between tries to read the outcome while the database may be restarting. */
const OUTCOME_RETRY_DELAYS_MS = [250, 1000, 2000];

export async function commitAttempt(
  pool: pg.Pool,
  statements: CommitStatements,
  now: number | null,
  lease: Lease,
  completion: Completion<pg.PoolClient>,
  logger: Logger,
): Promise<boolean> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken = error;
  };
  client.on('error', onError);
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    client.removeListener('error', onError);
    client.release(broken ?? false);
  };
  const complete = [now, lease.jobId, lease.token, lease.attempt, completion.resultJson, completion.outcome];
  try {
    await client.query('BEGIN');
    const held = await statements.fence.run(client, [now, lease.jobId, lease.token]);
    if (held.rows.length === 0) {
      await client.query('ROLLBACK');
      return false;
    }
    for (const apply of completion.writes) await apply(client);
    // Failpoint: inside the open commit transaction; a kill or a dropped connection here must roll back the writes above.
    await failpoint('inside-commit');
    const { rows } = await statements.complete.run(client, complete);
    if (rows[0]?.completed !== 1) {
      await client.query('ROLLBACK');
      return false;
    }
    await client.query('COMMIT');
    return true;
  } catch (error) {
    if (!isConnectionError(error)) {
      await rollbackQuietly(client);
      throw error;
    }
    broken ??= error as Error;
    // The broken client goes first, so a small pool has a connection free for the read-back.
    release();
    const [committed = false] = await findOutCommits(pool, statements, [lease], error as Error);
    logger.warn(
      { jobId: lease.jobId, attempt: lease.attempt, leaseToken: lease.token, committed, error: errorForLog(error) },
      committed
        ? 'the connection dropped during commit; the commit had landed'
        : 'the connection dropped during commit; the commit did not land and its writes were rolled back',
    );
    return committed;
  } finally {
    release();
  }
}

/**
 * Reads, on a fresh connection, whether each lease's commit landed, in the
 * order of `leases`. Throws when the read fails too, because the outcome is
 * then unknown. A commit that did not land is recovered by the sweep once
 * its lease expires.
 */
export async function findOutCommits(
  pool: pg.Pool,
  statements: CommitStatements,
  leases: readonly Lease[],
  cause: Error,
): Promise<boolean[]> {
  let lastError: unknown;
  for (let attempt = 0; attempt <= OUTCOME_RETRY_DELAYS_MS.length; attempt += 1) {
    if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, OUTCOME_RETRY_DELAYS_MS[attempt - 1]));
    try {
      return await withClient(pool, async (client) => {
        await client.query('BEGIN');
        try {
          await client.query({ text: `SELECT set_config('lock_timeout', $1, true)`, values: [OUTCOME_LOCK_TIMEOUT] });
          const ids = [...new Set(leases.map((lease) => lease.jobId))].sort(compareJobIds);
          await statements.lockJobs.run(client, [ids]);
          const { rows } = await statements.outcome.run(client, [
            leases.map((lease) => lease.jobId),
            leases.map((lease) => lease.attempt),
            leases.map((lease) => lease.token),
          ]);
          await client.query('COMMIT');
          const landed = new Set(rows.map((row) => `${row.job_id}/${row.attempt}/${row.lease_token}`));
          return leases.map((lease) => landed.has(`${lease.jobId}/${lease.attempt}/${lease.token}`));
        } catch (error) {
          await rollbackQuietly(client);
          throw error;
        }
      });
    } catch (error) {
      lastError = error;
      if (!isConnectionError(error)) break;
    }
  }
  const subject =
    leases.length === 1
      ? `job ${leases[0]?.jobId} (attempt ${leases[0]?.attempt})`
      : `a group of ${leases.length} jobs (${leases.map((lease) => lease.jobId).join(', ')})`;
  throw new VouchError(
    `the connection dropped while committing ${subject} and the outcome could not be read back ` +
      `(${(lastError as Error)?.message ?? 'unknown error'}); if the commit did not land, the job is recovered when its lease expires`,
    { cause },
  );
}
