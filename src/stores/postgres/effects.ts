import { VouchError } from '../../core/errors.js';
import type { EffectDone, EffectIntent, EffectIntentOutcome, Lease } from '../../core/store.js';
import { parseJson } from './rows.js';
import { NOW, type Queryable, type SchemaNames, Statement } from './sql.js';

/**
 * The effect ledger's writes. An intent is fenced on the lease: the fence
 * locks the job row FOR SHARE, so the sweep, a commit or a release cannot
 * move the job out of `running` between the check and the write. A done
 * record is a fact about the world and is kept even after the lease was
 * lost, as long as the effect is still only an intent.
 */
export interface EffectStatements {
  intent: Statement<{ held: number; written: number; done: boolean; result: string | null }>;
  doneResult: Statement<{ result: string | null }>;
  done: Statement;
}

export function effectStatements(n: SchemaNames): EffectStatements {
  const intent = new Statement<{ held: number; written: number; done: boolean; result: string | null }>(`
    WITH fence AS (
      SELECT id FROM ${n.jobs}
       WHERE id = $2 AND state = 'running' AND lease_token = $3 AND lease_expires_at > ${NOW}
         FOR SHARE
    ),
    written AS (
      INSERT INTO ${n.effects} (job_id, name, idempotency_key, state, attempt, lease_token, intent_at)
      SELECT fence.id, $4, $5, 'intent', $6, $3, ${NOW} FROM fence
      ON CONFLICT (job_id, name) DO UPDATE
         SET attempt = excluded.attempt, lease_token = excluded.lease_token, intent_at = excluded.intent_at
       WHERE ${n.effects}.state = 'intent'
      RETURNING 1
    )
    SELECT (SELECT count(*) FROM fence)::int AS held,
           (SELECT count(*) FROM written)::int AS written,
           e.state = 'done' AS done, e.result::text AS result
      FROM (SELECT 1) AS one
      LEFT JOIN ${n.effects} e ON e.job_id = $2 AND e.name = $4 AND e.state = 'done'`);

  // Read after the statement above found the effect done in a newer snapshot than its own.
  const doneResult = new Statement<{ result: string | null }>(`
    SELECT result::text AS result FROM ${n.effects} WHERE job_id = $1 AND name = $2 AND state = 'done'`);

  const done = new Statement(`
    UPDATE ${n.effects}
       SET state = 'done', result = $4::json, resolution = $5, done_at = ${NOW}
     WHERE job_id = $2 AND name = $3 AND state = 'intent'`);

  return { intent, doneResult, done };
}

export async function writeEffectIntent(
  db: Queryable,
  s: EffectStatements,
  now: number | null,
  lease: Lease,
  effect: EffectIntent,
): Promise<EffectIntentOutcome> {
  const { rows } = await s.intent.run(db, [now, lease.jobId, lease.token, effect.name, effect.idempotencyKey, lease.attempt]);
  const row = rows[0];
  if (!row || row.held === 0) return { status: 'lease_lost' };
  if (row.written === 1) return { status: 'recorded' };
  if (row.done) return { status: 'done', result: parseJson(row.result) };
  // The insert met a done record committed after this statement's snapshot began: read it now.
  const again = await s.doneResult.run(db, [lease.jobId, effect.name]);
  if (again.rows[0]) return { status: 'done', result: parseJson(again.rows[0].result) };
  throw new VouchError(`effect "${effect.name}" of job ${lease.jobId} was neither recorded nor found done`);
}

export async function writeEffectDone(
  db: Queryable,
  s: EffectStatements,
  now: number | null,
  lease: Lease,
  effect: EffectDone,
): Promise<void> {
  await s.done.run(db, [now, lease.jobId, effect.name, effect.resultJson, effect.resolution]);
}
