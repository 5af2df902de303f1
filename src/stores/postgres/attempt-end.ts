import type pg from 'pg';
import type { Failure, Lease } from '../../core/store.js';
import { insertEndedAttempts } from './attempt-row.js';
import { withClient } from './connection.js';
import type { GroupItem, Settled } from './group-writer.js';
import { delayUntil, interval, jobFenceHolds, lockJobRow, NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * The other ways an attempt ends: it errored (fail), it was given back on
 * shutdown (release), or it found its lease lost (abandonLease). Each is one
 * statement that changes the job and writes the attempt row together. Fail
 * does it for a group of attempts at once.
 */
export interface AttemptEndStatements {
  fail: Statement<{ id: string }>;
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
  // Releasing is safe even after expiry, so only the token is checked. The released attempt
  // does not use up an attempt: max_attempts grows by one to give it back.
  const release = new Statement<{ changed: number }>(`
    WITH released AS (
      UPDATE ${n.jobs}
         SET state = 'available', run_at = ${NOW}, max_attempts = max_attempts + 1, lease_token = NULL, lease_expires_at = NULL
       WHERE id = $2 AND state = 'running' AND lease_token = $3
      RETURNING id AS job_id, queue, $4::int AS attempt, worker_id, $3::text AS lease_token, attempt_started_at AS started_at,
                'released'::text AS outcome, $5::text AS error
    ),
    closed AS (${insertEndedAttempts(n, 'released', NOW)}),
    woken AS (SELECT pg_notify($6, queue) FROM released)
    SELECT count(*)::int AS changed FROM released CROSS JOIN (SELECT count(*) FROM woken) AS notified`);

  // The attempt is recorded as lease_lost whatever ended it before (the sweep writes abandoned),
  // but never over a recorded success. With no row yet, it is written from the job row, if that
  // still runs this attempt: a job this attempt completed has no row, and keeps none. A sweep that inserts the row at the same moment makes this
  // insert conflict, and the conflict clause relabels that row. If the job still runs under this
  // token (expired, not yet swept), it is recovered at once, as the sweep would.
  const abandon = new Statement(`
    WITH closed AS (
      UPDATE ${n.attempts}
         SET outcome = 'lease_lost', error = $5, ended_at = coalesce(ended_at, ${NOW})
       WHERE job_id = $2 AND attempt = $4 AND lease_token = $3
         AND outcome IS DISTINCT FROM 'succeeded' AND outcome IS DISTINCT FROM 'verified'
    ),
    lost AS (
      SELECT id AS job_id, attempt, worker_id, lease_token, attempt_started_at AS started_at,
             'lease_lost'::text AS outcome, $5::text AS error
        FROM ${n.jobs}
       WHERE id = $2 AND attempt = $4 AND lease_token = $3 AND state = 'running'
         AND NOT EXISTS (SELECT 1 FROM ${n.attempts} WHERE job_id = $2 AND attempt = $4)
    ),
    opened AS (${insertEndedAttempts(n, 'lost', NOW, true)}),
    recovered AS (
      UPDATE ${n.jobs}
         SET ${recoverySet(`$6::text`)}
       WHERE id = $2 AND state = 'running' AND lease_token = $3
      RETURNING queue, state
    ),
    woken AS (SELECT pg_notify($7, queue) FROM recovered WHERE state = 'available')
    SELECT count(*) FROM woken`);

  return { fail: failStatement(n), release, abandon };
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

/**
 * Group fail: errored attempts of many jobs settled in one autocommitted
 * statement, each fenced as a single fail is (running, same token, lease not
 * expired by the database clock). A job becomes retryable after its delay,
 * available at once when the delay is not positive, or failed for good when
 * it has no retry time. Its attempt is recorded as `errored` only when its
 * job row changed. Rows are locked in id order (compareJobIds), as every group
 * statement and the heartbeat lock them.
 *
 * A dropped connection rejects every caller of the group with the
 * connection error, as it rejects a single fail.
 */
export interface FailGroupItem extends GroupItem {
  lease: Lease;
  failure: Failure;
}

function failStatement(n: SchemaNames): Statement<{ id: string }> {
  // Locked and fenced row by row in input order, as the group commit does (see compareJobIds).
  return new Statement<{ id: string }>(`
    WITH held AS MATERIALIZED (
      SELECT input.*
        FROM unnest($2::bigint[], $3::text[], $4::int[], $5::float8[], $6::text[]) AS input(id, token, attempt, delay, error)
       CROSS JOIN LATERAL ${lockJobRow(n, 'input', 'FOR NO KEY UPDATE')}
       WHERE ${jobFenceHolds('input', NOW)}
    ),
    failed AS (
      UPDATE ${n.jobs} j
         SET state = CASE WHEN held.delay IS NULL THEN 'failed'
                          WHEN held.delay > 0 THEN 'retryable'
                          ELSE 'available' END,
             run_at = ${NOW} + ${interval('coalesce(held.delay, 0)')},
             last_error = held.error,
             finished_at = CASE WHEN held.delay IS NULL THEN ${NOW} END,
             lease_token = NULL, lease_expires_at = NULL
        FROM held
       WHERE j.id = held.id AND j.lease_token = held.token AND j.lease_expires_at > ${NOW}
      RETURNING j.id AS job_id, held.attempt, j.worker_id, held.token AS lease_token, j.attempt_started_at AS started_at,
                'errored'::text AS outcome, held.error
    ),
    closed AS (${insertEndedAttempts(n, 'failed', NOW)})
    SELECT job_id::text AS id FROM failed`);
}

export async function failGroup(
  pool: pg.Pool,
  statement: Statement<{ id: string }>,
  items: readonly FailGroupItem[],
  now: number | null,
): Promise<Settled<boolean>[]> {
  const { rows } = await withClient(pool, (client) =>
    statement.run(client, [
      now,
      items.map((item) => item.lease.jobId),
      items.map((item) => item.lease.token),
      items.map((item) => item.lease.attempt),
      items.map((item) => delayUntil(item.failure.retryAt, now)),
      items.map((item) => item.failure.error),
    ]),
  );
  const changed = new Set(rows.map((row) => row.id));
  return items.map((item) => ({ ok: true, value: changed.has(item.lease.jobId) }));
}
