import type pg from 'pg';
import type { Logger } from 'pino';
import { failpoint } from '../../core/failpoints.js';
import { errorForLog } from '../../core/log-error.js';
import type { Lease } from '../../core/store.js';
import { insertEndedAttempts, VERIFIED_ONLY } from './attempt-row.js';
import { type CommitStatements, findOutCommits } from './commit.js';
import { isConnectionError, withClient } from './connection.js';
import type { GroupItem, Settled } from './group-writer.js';
import { CLOCK_NOW, jobFenceHolds, lockJobRow, type SchemaNames, Statement } from './sql.js';

/**
 * Group commit: the commits that carry no ctx.transaction writes, many
 * attempts in one autocommitted statement.
 *
 * Each job keeps the fence of a single commit: it changes only while it is
 * `running` under the caller's token and its lease has not expired by the
 * database's wall clock. The job row keeps the lease token and is the record
 * of the attempt that completed it. Only a verified attempt also gets an
 * attempt row (see VERIFIED_ONLY), and only when its job row changed. The rows of the group are locked in id order (compareJobIds),
 * as the heartbeat and the other group statements lock them, so two
 * statements that share rows queue behind each other instead of deadlocking.
 * The group arrives sorted in that order (GroupWriter).
 *
 * The statement is atomic, so after a dropped connection the group landed
 * as a whole or not at all. Each caller's outcome is still read back for its
 * own attempt, because the fence may have rejected some of the group.
 */
export interface CommitGroupItem extends GroupItem {
  lease: Lease;
  resultJson: string;
  outcome: 'succeeded' | 'verified';
}

export function commitGroupStatement(n: SchemaNames): Statement<{ id: string }> {
  // The fence is checked where each row is locked. The locked row cannot change until this
  // statement commits, so the update checks only the token and the clock again. It names no
  // state, so no partial index on state can be planned as the outer side of the join.
  return new Statement<{ id: string }>(`
    WITH held AS MATERIALIZED (
      SELECT input.*
        FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], $6::text[]) AS input(id, token, attempt, result, outcome)
       CROSS JOIN LATERAL ${lockJobRow(n, 'input', 'FOR NO KEY UPDATE')}
       WHERE ${jobFenceHolds('input', CLOCK_NOW)}
    ),
    completed AS (
      UPDATE ${n.jobs} j
         SET state = 'completed', result = held.result::json, finished_at = ${CLOCK_NOW}, lease_expires_at = NULL
        FROM held
       WHERE j.id = held.id AND j.lease_token = held.token AND j.lease_expires_at > ${CLOCK_NOW}
      RETURNING j.id AS job_id, held.attempt, j.worker_id, held.token AS lease_token, j.attempt_started_at AS started_at,
                held.outcome, NULL::text AS error
    ),
    closed AS (${insertEndedAttempts(n, VERIFIED_ONLY, CLOCK_NOW)})
    SELECT job_id::text AS id FROM completed`);
}

export async function writeCommitGroup(
  pool: pg.Pool,
  group: Statement<{ id: string }>,
  statements: CommitStatements,
  logger: Logger,
  items: readonly CommitGroupItem[],
  now: number | null,
): Promise<Settled<boolean>[]> {
  const leases = items.map((item) => item.lease);
  let sent = false;
  try {
    const { rows } = await withClient(pool, async (client) => {
      // Failpoint: the commit is about to be sent. A kill here leaves every job of the group running.
      await failpoint('inside-commit');
      sent = true;
      return group.run(client, [
        now,
        leases.map((lease) => lease.jobId),
        leases.map((lease) => lease.token),
        leases.map((lease) => lease.attempt),
        items.map((item) => item.resultJson),
        items.map((item) => item.outcome),
      ]);
    });
    const completed = new Set(rows.map((row) => row.id));
    return leases.map((lease) => ({ ok: true, value: completed.has(lease.jobId) }));
  } catch (error) {
    // Before the statement was sent nothing can have landed, and an SQL error rolled all of it back.
    if (!sent || !isConnectionError(error)) throw error;
    const landed = await findOutCommits(pool, statements, leases, error as Error);
    logger.warn(
      {
        landed: leases.filter((_, index) => landed[index]).map((lease) => lease.jobId),
        notLanded: leases.filter((_, index) => !landed[index]).map((lease) => lease.jobId),
        error: errorForLog(error),
      },
      'the connection dropped during a group commit; each commit was read back',
    );
    return landed.map((value) => ({ ok: true, value }));
  }
}
