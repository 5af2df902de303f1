import type { Failure, Lease } from '../../core/store.js';
import { delayUntil, interval, NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * The other ways an attempt ends: it errored (fail), it was given back on
 * shutdown (release), or it found its lease lost (abandonLease). Each is one
 * statement that changes the job and closes the attempt row together.
 */
export interface AttemptEndStatements {
  fail: Statement<{ changed: number }>;
  release: Statement<{ changed: number }>;
  abandon: Statement;
}

/**
 * What recovering a running job means, shared with the sweep: it becomes
 * available again, or failed when the attempt that lost it was its last.
 * Its run_at is kept, so it goes ahead of jobs that became due after it.
 * `reason` is the SQL expression of the error to record.
 */
export function recoverySet(reason: string): string {
  return `state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'available' END,
          last_error = CASE WHEN attempt >= max_attempts THEN ${reason} || ' (no attempts left)' ELSE ${reason} END,
          finished_at = CASE WHEN attempt >= max_attempts THEN ${NOW} END,
          lease_token = NULL, lease_expires_at = NULL`;
}

export function attemptEndStatements(n: SchemaNames): AttemptEndStatements {
  // Fenced like the commit. $5 is the delay until the retry: null fails the job for good.
  const fail = new Statement<{ changed: number }>(`
    WITH failed AS (
      UPDATE ${n.jobs}
         SET state = CASE WHEN $5::float8 IS NULL THEN 'failed'
                          WHEN $5::float8 > 0 THEN 'retryable'
                          ELSE 'available' END,
             run_at = ${NOW} + ${interval('coalesce($5::float8, 0)')},
             last_error = $6,
             finished_at = CASE WHEN $5::float8 IS NULL THEN ${NOW} END,
             lease_token = NULL, lease_expires_at = NULL
       WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at > ${NOW}
      RETURNING id
    ),
    closed AS (
      UPDATE ${n.attempts} SET outcome = 'errored', error = $6, ended_at = ${NOW}
       WHERE job_id = $2 AND attempt = $4 AND lease_token = $3 AND EXISTS (SELECT 1 FROM failed)
    )
    SELECT count(*)::int AS changed FROM failed`);

  // Releasing is safe even after expiry, so only the token is checked. The released attempt
  // does not use up an attempt: max_attempts grows by one to give it back.
  const release = new Statement<{ changed: number }>(`
    WITH released AS (
      UPDATE ${n.jobs}
         SET state = 'available', run_at = ${NOW}, max_attempts = max_attempts + 1, lease_token = NULL, lease_expires_at = NULL
       WHERE id = $2 AND state = 'running' AND lease_token = $3
      RETURNING id, queue
    ),
    closed AS (
      UPDATE ${n.attempts} SET outcome = 'released', error = $5, ended_at = ${NOW}
       WHERE job_id = $2 AND attempt = $4 AND lease_token = $3 AND EXISTS (SELECT 1 FROM released)
    ),
    woken AS (SELECT pg_notify($6, queue) FROM released)
    SELECT count(*)::int AS changed FROM released CROSS JOIN (SELECT count(*) FROM woken) AS notified`);

  // The attempt is closed as lease_lost whatever closed it before (the sweep writes abandoned),
  // but never over a recorded success. If the job still runs under this token (expired, not yet
  // swept), it is recovered at once, as the sweep would.
  const abandon = new Statement(`
    WITH closed AS (
      UPDATE ${n.attempts}
         SET outcome = 'lease_lost', error = $5, ended_at = coalesce(ended_at, ${NOW})
       WHERE job_id = $2 AND attempt = $4 AND lease_token = $3
         AND outcome IS DISTINCT FROM 'succeeded' AND outcome IS DISTINCT FROM 'verified'
    ),
    recovered AS (
      UPDATE ${n.jobs}
         SET ${recoverySet(`$6::text`)}
       WHERE id = $2 AND state = 'running' AND lease_token = $3
      RETURNING queue, state
    ),
    woken AS (SELECT pg_notify($7, queue) FROM recovered WHERE state = 'available')
    SELECT count(*) FROM woken`);

  return { fail, release, abandon };
}

export async function failAttempt(
  db: Queryable,
  s: AttemptEndStatements,
  now: number | null,
  lease: Lease,
  failure: Failure,
): Promise<boolean> {
  const { rows } = await s.fail.run(db, [now, lease.jobId, lease.token, lease.attempt, delayUntil(failure.retryAt, now), failure.error]);
  return rows[0]?.changed === 1;
}

export async function releaseAttempt(
  db: Queryable,
  s: AttemptEndStatements,
  n: SchemaNames,
  now: number | null,
  lease: Lease,
  reason: string,
): Promise<boolean> {
  const { rows } = await s.release.run(db, [now, lease.jobId, lease.token, lease.attempt, reason, n.channel]);
  return rows[0]?.changed === 1;
}

export async function abandonAttempt(
  db: Queryable,
  s: AttemptEndStatements,
  n: SchemaNames,
  now: number | null,
  lease: Lease,
  reason: string,
): Promise<void> {
  await s.abandon.run(db, [
    now,
    lease.jobId,
    lease.token,
    lease.attempt,
    reason,
    `lease lost on attempt ${lease.attempt}: ${reason}`,
    n.channel,
  ]);
}
