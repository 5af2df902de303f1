import { randomBytes } from 'node:crypto';
import type { Lease, LeasedJob, LeaseRequest } from '../../core/store.js';
import {
  type AttemptRow,
  attemptColumns,
  type EffectRow,
  effectColumns,
  type JobRow,
  jobColumns,
  toAttemptRecord,
  toEffectRecord,
  toJobRecord,
} from './rows.js';
import { compareJobIds, interval, jobFenceHolds, lockJobRow, ms, NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * Leasing and heartbeats.
 *
 * A lease is one statement: pick up to N due jobs with FOR UPDATE SKIP
 * LOCKED, so concurrent workers each take different rows instead of waiting
 * on one another, mark them running with a fresh token and an expiry by the
 * database clock, all in one data-modifying CTE that commits or fails as a
 * unit. The attempt rows are written when the attempts end (attempt-row.ts).
 */
export interface LeaseStatements {
  claim: Statement<JobRow>;
  nextDue: Statement<{ due_in_ms: number | null }>;
  previousAttempts: Statement<AttemptRow>;
  effects: Statement<EffectRow>;
  heartbeat: Statement<{ id: string }>;
}

export function leaseStatements(n: SchemaNames): LeaseStatements {
  // Due jobs come from two partial indexes. `available` jobs are due by definition and the
  // jobs_available index holds them in lease order, so the first arm reads LIMIT rows off its front.
  // Scheduled and retryable jobs become due when run_at passes; the second arm reads only those
  // whose time has come, through a range on jobs_waiting, however many wait for later. Each arm
  // locks at most LIMIT rows; the rows the final LIMIT leaves out are unlocked when the statement ends.
  // The update finds the picked rows by `id = ANY (array)`, which plans as a primary key lookup.
  // A join on `picked` was planned as a hash join over a sequential scan of every job.
  // The lease commits without waiting for a WAL flush: commit_mode turns synchronous_commit off for this
  // statement's transaction only, and the update reads it, so it is set whenever a row changes. A lease lost
  // in a server crash leaves its jobs available again. Every write that depends on it (an effect's intent,
  // the commit) flushes the WAL up to itself, and so flushes the lease first.
  const claim = new Statement<JobRow>(`
    WITH ready AS (
      SELECT id, priority, run_at
        FROM ${n.jobs}
       WHERE queue = $2 AND state = 'available'
       ORDER BY priority, run_at, id
       LIMIT $3
         FOR UPDATE SKIP LOCKED
    ),
    due AS (
      SELECT id, priority, run_at
        FROM ${n.jobs}
       WHERE state IN ('scheduled', 'retryable') AND run_at <= ${NOW} AND queue = $2
       ORDER BY priority, run_at, id
       LIMIT $3
         FOR UPDATE SKIP LOCKED
    ),
    picked AS (
      SELECT id FROM (SELECT * FROM ready UNION ALL SELECT * FROM due) AS candidate
       ORDER BY priority, run_at, id
       LIMIT $3
    ),
    commit_mode AS (
      SELECT set_config('synchronous_commit', 'off', true) AS setting
    ),
    leased AS (
      UPDATE ${n.jobs} j
         SET state = 'running',
             attempt = j.attempt + 1,
             lease_token = $5 || j.id::text,
             lease_expires_at = ${NOW} + ${interval('j.lease_ms')},
             worker_id = $4,
             attempt_started_at = ${NOW}
       WHERE j.id = ANY (ARRAY(SELECT id FROM picked))
         AND (SELECT setting FROM commit_mode) IS NOT NULL
      RETURNING j.*
    )
    SELECT ${jobColumns('leased')} FROM leased
     ORDER BY leased.priority, leased.run_at, leased.id`);

  // These two take no clock parameter. Only a job on its second attempt or later has an earlier attempt and perhaps effects; these
  // two reads run for those jobs alone, so a first attempt costs the one statement above.
  const previousAttempts = new Statement<AttemptRow>(`
    SELECT ${attemptColumns('a')}
      FROM ${n.attempts} a
      JOIN unnest($1::bigint[], $2::int[]) AS p(job_id, attempt) ON a.job_id = p.job_id AND a.attempt = p.attempt`);
  const effects = new Statement<EffectRow>(`
    SELECT ${effectColumns('e')} FROM ${n.effects} e WHERE e.job_id = ANY($1::bigint[])`);

  // Every lease a worker holds, renewed in one statement. A lease already expired by the
  // database clock is not renewed, even if the sweep has not recovered it yet. The rows are
  // locked in id order (compareJobIds), the order of the group commit, fail and effect
  // statements, so a heartbeat and a group that share rows wait for each other, never deadlock.
  const heartbeat = new Statement<{ id: string }>(`
    WITH held AS MATERIALIZED (
      SELECT requested.*
        FROM unnest($2::bigint[], $3::text[]) AS requested(id, token)
       CROSS JOIN LATERAL ${lockJobRow(n, 'requested', 'FOR NO KEY UPDATE')}
       WHERE ${jobFenceHolds('requested', NOW)}
    )
    UPDATE ${n.jobs} j
       SET lease_expires_at = ${NOW} + ${interval('j.lease_ms')}
      FROM held
     WHERE j.id = held.id AND j.lease_token = held.token AND j.lease_expires_at > ${NOW}
    RETURNING j.id::text AS id`);

  // The earliest waiting job of the queue, read off the front of jobs_waiting, by the database clock.
  const nextDue = new Statement<{ due_in_ms: number | null }>(`
    SELECT ${ms(`min(run_at)`)} - ${ms(NOW)} AS due_in_ms
      FROM ${n.jobs}
     WHERE state IN ('scheduled', 'retryable') AND queue = $2`);

  return { claim, nextDue, previousAttempts, effects, heartbeat };
}

export async function nextDueInMs(db: Queryable, statements: LeaseStatements, now: number | null, queue: string): Promise<number | null> {
  const { rows } = await statements.nextDue.run(db, [now, queue]);
  return rows[0]?.due_in_ms ?? null;
}

export async function leaseJobs(
  db: Queryable,
  statements: LeaseStatements,
  now: number | null,
  request: LeaseRequest,
): Promise<LeasedJob[]> {
  if (request.limit < 1) return [];
  // Each attempt's token is this lease's random prefix and the job's id: unique per attempt. A random
  // UUID per row cost about 1.5 microseconds of the server's time per job, some 15% of the lease.
  const tokenPrefix = `${randomBytes(6).toString('hex')}-`;
  const { rows } = await statements.claim.run(db, [now, request.queue, request.limit, request.workerId, tokenPrefix]);
  const leased: LeasedJob[] = rows.map((row) => ({
    job: toJobRecord(row),
    lease: { jobId: row.id, attempt: row.attempt, token: row.lease_token as string },
    previousAttempt: null,
    effects: [],
  }));

  const resumed = leased.filter((job) => job.lease.attempt > 1);
  if (resumed.length === 0) return leased;
  const ids = resumed.map((job) => job.lease.jobId);
  const [attempts, effects] = await Promise.all([
    statements.previousAttempts.run(db, [ids, resumed.map((job) => job.lease.attempt - 1)]),
    statements.effects.run(db, [ids]),
  ]);
  for (const job of resumed) {
    const previous = attempts.rows.find((row) => row.job_id === job.lease.jobId);
    job.previousAttempt = previous ? toAttemptRecord(previous) : null;
    job.effects = effects.rows.filter((row) => row.job_id === job.lease.jobId).map(toEffectRecord);
  }
  return leased;
}

export async function renewLeases(
  db: Queryable,
  statements: LeaseStatements,
  now: number | null,
  leases: readonly Lease[],
): Promise<Set<string>> {
  if (leases.length === 0) return new Set();
  const ordered = [...leases].sort((a, b) => compareJobIds(a.jobId, b.jobId));
  const { rows } = await statements.heartbeat.run(db, [now, ordered.map((lease) => lease.jobId), ordered.map((lease) => lease.token)]);
  return new Set(rows.map((row) => row.id));
}
