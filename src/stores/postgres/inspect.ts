import type { JobState } from '../../core/states.js';
import type { AuditFindings, AuditQuery } from '../../core/store.js';
import { type AttemptRow, attemptColumns, type EffectRow, effectColumns, type JobRow, jobColumns } from './rows.js';
import { interval, ms, NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * Reads for applications, the CLI and the audit, and cancel, the one write
 * an operator makes on a job that is not running.
 */
export interface InspectStatements {
  job: Statement<JobRow>;
  attempts: Statement<AttemptRow>;
  effects: Statement<EffectRow>;
  countByState: Statement<{ state: JobState; count: number }>;
  cancel: Statement;
  overdue: Statement<{ id: string; name: string; queue: string; state: JobState; due_since_ms: number }>;
  inDoubt: Statement<{ job_id: string; name: string; effect: string; idempotency_key: string; state: JobState; since_ms: number }>;
  recovered: Statement<{
    job_id: string;
    name: string;
    attempt: number;
    worker_id: string;
    outcome: 'abandoned' | 'lease_lost';
    ended_at: number;
  }>;
  dead: Statement<{ id: string; name: string; attempt: number; last_error: string | null; finished_at: number }>;
}

export function inspectStatements(n: SchemaNames): InspectStatements {
  return {
    job: new Statement(`SELECT ${jobColumns('j')} FROM ${n.jobs} j WHERE j.id = $1`),
    // Two attempts have no row, and the job row describes them: the one that runs now (its row is written
    // when it ends, attempt-row.ts) and the one that completed the job without a verify (commit.ts).
    // A job completed by an older vouch kept no token, and has a row for every attempt.
    attempts: new Statement(`
      SELECT ${attemptColumns('a')}
        FROM (SELECT job_id, attempt, worker_id, lease_token, started_at, ended_at, outcome, error
                FROM ${n.attempts} WHERE job_id = $1
              UNION ALL
              SELECT j.id, j.attempt, j.worker_id, j.lease_token, coalesce(j.attempt_started_at, j.finished_at),
                     CASE j.state WHEN 'completed' THEN j.finished_at END,
                     CASE j.state WHEN 'completed' THEN 'succeeded' END, NULL
                FROM ${n.jobs} j
               WHERE j.id = $1 AND j.lease_token IS NOT NULL
                 AND (j.state = 'completed' OR (j.state = 'running' AND j.attempt_started_at IS NOT NULL))
                 AND NOT EXISTS (SELECT 1 FROM ${n.attempts} o WHERE o.job_id = j.id AND o.attempt = j.attempt)) AS a
       ORDER BY a.attempt`),
    effects: new Statement(`SELECT ${effectColumns('e')} FROM ${n.effects} e WHERE e.job_id = $1 ORDER BY e.intent_at, e.name`),
    countByState: new Statement(`SELECT state, count(*)::int AS count FROM ${n.jobs} GROUP BY state`),
    cancel: new Statement(`
      UPDATE ${n.jobs} SET state = 'cancelled', finished_at = ${NOW}
       WHERE id = $2 AND state IN ('scheduled', 'available', 'retryable')`),

    // A due job not started for $2 ms, or a running one whose lease expired $2 ms ago and was not recovered.
    overdue: new Statement(`
      SELECT id::text AS id, name, queue, state, ${ms(`${NOW} - due`)} AS due_since_ms
        FROM (SELECT id, name, queue, state, run_at AS due FROM ${n.jobs}
               WHERE state IN ('scheduled', 'available', 'retryable') AND run_at < ${NOW} - ${interval('$2::bigint')}
              UNION ALL
              SELECT id, name, queue, state, lease_expires_at AS due FROM ${n.jobs}
               WHERE state = 'running' AND lease_expires_at < ${NOW} - ${interval('$2::bigint')}) AS late
       ORDER BY due
       LIMIT $3`),
    inDoubt: new Statement(`
      SELECT e.job_id::text AS job_id, j.name, e.name AS effect, e.idempotency_key, j.state,
             ${ms(`${NOW} - e.intent_at`)} AS since_ms
        FROM ${n.effects} e
        JOIN ${n.jobs} j ON j.id = e.job_id
       WHERE e.state = 'intent' AND e.intent_at < ${NOW} - ${interval('$2::bigint')} AND j.state <> 'running'
       ORDER BY e.intent_at
       LIMIT $3`),
    recovered: new Statement(`
      SELECT a.job_id::text AS job_id, j.name, a.attempt, a.worker_id, a.outcome, ${ms('a.ended_at')} AS ended_at
        FROM ${n.attempts} a
        JOIN ${n.jobs} j ON j.id = a.job_id
       WHERE a.outcome IN ('abandoned', 'lease_lost') AND a.ended_at > ${NOW} - ${interval('$2::bigint')}
       ORDER BY a.ended_at DESC
       LIMIT $3`),
    dead: new Statement(`
      SELECT id::text AS id, name, attempt, last_error, ${ms('finished_at')} AS finished_at
        FROM ${n.jobs}
       WHERE state = 'failed' AND finished_at > ${NOW} - ${interval('$2::bigint')}
       ORDER BY finished_at DESC
       LIMIT $3`),
  };
}

export async function auditFindings(db: Queryable, s: InspectStatements, now: number | null, query: AuditQuery): Promise<AuditFindings> {
  const [overdue, inDoubt, recovered, dead] = await Promise.all([
    s.overdue.run(db, [now, query.overdueAfterMs, query.limit]),
    s.inDoubt.run(db, [now, query.inDoubtAfterMs, query.limit]),
    s.recovered.run(db, [now, query.windowMs, query.limit]),
    s.dead.run(db, [now, query.windowMs, query.limit]),
  ]);
  return {
    overdue: overdue.rows.map((row) => ({
      jobId: row.id,
      name: row.name,
      queue: row.queue,
      state: row.state,
      dueSinceMs: row.due_since_ms,
    })),
    inDoubt: inDoubt.rows.map((row) => ({
      jobId: row.job_id,
      name: row.name,
      effect: row.effect,
      idempotencyKey: row.idempotency_key,
      jobState: row.state,
      sinceMs: row.since_ms,
    })),
    recovered: recovered.rows.map((row) => ({
      jobId: row.job_id,
      name: row.name,
      attempt: row.attempt,
      workerId: row.worker_id,
      outcome: row.outcome,
      endedAt: row.ended_at,
    })),
    dead: dead.rows.map((row) => ({
      jobId: row.id,
      name: row.name,
      attempt: row.attempt,
      lastError: row.last_error,
      finishedAt: row.finished_at,
    })),
  };
}
