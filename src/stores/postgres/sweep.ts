import type { RecoveredJob } from '../../core/store.js';
import { recoverySet } from './attempt-end.js';
import { insertEndedAttempts } from './attempt-row.js';
import { NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * The sweep: recovers jobs whose lease expired by the database clock, and
 * moves scheduled and retryable jobs whose time has come to `available`.
 *
 * Every worker sweeps, so the statements skip rows another sweep (or a
 * commit finishing at the last moment) has locked, instead of waiting, and
 * work in bounded batches; a backlog drains over a few sweep intervals.
 */
const SWEEP_BATCH = 1000;

interface RecoveredRow {
  job_id: string;
  name: string;
  queue: string;
  attempt: number;
  lease_token: string;
  worker_id: string;
  state: 'available' | 'failed';
}

export interface SweepStatements {
  recover: Statement<RecoveredRow>;
  promote: Statement;
}

export function sweepStatements(n: SchemaNames): SweepStatements {
  const recover = new Statement<RecoveredRow>(`
    WITH expired AS (
      SELECT id AS expired_id, lease_token AS expired_token, worker_id AS expired_worker,
             format('abandoned: the lease of attempt %s expired without a heartbeat (worker %s died or stalled)', attempt, worker_id) AS reason
        FROM ${n.jobs}
       WHERE state = 'running' AND lease_expires_at <= ${NOW}
       ORDER BY lease_expires_at
       LIMIT ${SWEEP_BATCH}
         FOR UPDATE SKIP LOCKED
    ),
    recovered AS (
      UPDATE ${n.jobs} j
         SET ${recoverySet('expired.reason')}
        FROM expired
       WHERE j.id = expired.expired_id
      RETURNING j.id, j.name, j.queue, j.attempt, j.state, j.attempt_started_at, expired.expired_token, expired.expired_worker, expired.reason
    ),
    closed AS (${insertEndedAttempts(
      n,
      `(SELECT id AS job_id, attempt, expired_worker AS worker_id, expired_token AS lease_token, attempt_started_at AS started_at,
               'abandoned'::text AS outcome, reason AS error FROM recovered) AS ended`,
      NOW,
    )}),
    woken AS (
      SELECT pg_notify($2, q.queue) FROM (SELECT DISTINCT queue FROM recovered WHERE state = 'available') q
    )
    SELECT r.id::text AS job_id, r.name, r.queue, r.attempt, r.expired_token AS lease_token, r.expired_worker AS worker_id, r.state
      FROM recovered r
     CROSS JOIN (SELECT count(*) FROM woken) AS notified`);

  // A due waiting job is leased straight from jobs_waiting too; moving it to `available` puts it
  // into the lease order by priority, and keeps the waiting range the lease scans short. The queues
  // are woken, because a lease that ran meanwhile skipped the locked row and may have found nothing.
  const promote = new Statement(`
    WITH promoted AS (
      UPDATE ${n.jobs} j
         SET state = 'available'
        FROM (SELECT id FROM ${n.jobs}
               WHERE state IN ('scheduled', 'retryable') AND run_at <= ${NOW}
               ORDER BY run_at
               LIMIT ${SWEEP_BATCH}
                 FOR UPDATE SKIP LOCKED) AS due
       WHERE j.id = due.id
      RETURNING j.queue
    )
    SELECT pg_notify($2, q.queue) FROM (SELECT DISTINCT queue FROM promoted) q`);

  return { recover, promote };
}

export async function sweepExpired(db: Queryable, s: SweepStatements, n: SchemaNames, now: number | null): Promise<RecoveredJob[]> {
  const { rows } = await s.recover.run(db, [now, n.channel]);
  await s.promote.run(db, [now, n.channel]);
  return rows.map((row) => ({
    jobId: row.job_id,
    name: row.name,
    queue: row.queue,
    attempt: row.attempt,
    leaseToken: row.lease_token,
    workerId: row.worker_id,
    state: row.state,
  }));
}
