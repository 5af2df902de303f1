import { ConfigurationError } from '../../core/errors.js';
import { rejectUnknownOptions, shown } from '../../core/option-errors.js';
import { interval, NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/** Which finished jobs `prune` deletes, and how many per statement. */
export interface PruneOptions {
  /** Deletes jobs that finished longer ago than this, in milliseconds. */
  olderThanMs: number;
  /** Jobs deleted per statement; each batch is its own short transaction. @defaultValue 1000 */
  batchSize?: number;
  /** The terminal states to delete. @defaultValue ['completed'] */
  states?: readonly ('completed' | 'failed' | 'cancelled')[];
}

/**
 * Retention: deletes finished jobs with their attempts and effect ledger
 * rows, oldest first, in batches, so that no statement holds many locks or
 * writes a large transaction. A completed job whose key still absorbs
 * enqueues (its dedup window is open) is kept whatever its age, so pruning
 * never lets a duplicate in.
 */
export function pruneStatement(n: SchemaNames): Statement<{ deleted: number }> {
  return new Statement(`
    WITH doomed AS (
      SELECT id FROM ${n.jobs}
       WHERE state = ANY($2::text[]) AND finished_at IS NOT NULL
         AND finished_at < ${NOW} - ${interval('$3::bigint')}
         AND (key IS NULL OR state <> 'completed' OR finished_at + ${interval('dedup_window_ms')} <= ${NOW})
       ORDER BY finished_at
       LIMIT $4
         FOR UPDATE SKIP LOCKED
    ),
    attempts_gone AS (DELETE FROM ${n.attempts} a USING doomed WHERE a.job_id = doomed.id),
    effects_gone AS (DELETE FROM ${n.effects} e USING doomed WHERE e.job_id = doomed.id),
    jobs_gone AS (DELETE FROM ${n.jobs} j USING doomed WHERE j.id = doomed.id RETURNING 1)
    SELECT count(*)::int AS deleted FROM jobs_gone`);
}

export async function pruneJobs(
  db: Queryable,
  statement: Statement<{ deleted: number }>,
  now: number | null,
  options: PruneOptions,
): Promise<number> {
  rejectUnknownOptions('prune', options, ['olderThanMs', 'batchSize', 'states']);
  const olderThanMs = options?.olderThanMs;
  if (!Number.isFinite(olderThanMs) || olderThanMs < 0) {
    throw new ConfigurationError(`prune needs olderThanMs, a number of milliseconds of 0 or more; got ${shown(olderThanMs)}.`);
  }
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new ConfigurationError(`prune option batchSize must be a whole number of at least 1; got ${shown(batchSize)}.`);
  }
  const states = options.states ?? ['completed'];
  for (const state of states) {
    if (state !== 'completed' && state !== 'failed' && state !== 'cancelled') {
      throw new ConfigurationError(`prune option states may hold completed, failed and cancelled; got ${JSON.stringify(state)}.`);
    }
  }
  let total = 0;
  for (;;) {
    const { rows } = await statement.run(db, [now, states, Math.floor(olderThanMs), batchSize]);
    const deleted = rows[0]?.deleted ?? 0;
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
