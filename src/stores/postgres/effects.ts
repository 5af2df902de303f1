import type pg from 'pg';
import { VouchError } from '../../core/errors.js';
import type { EffectDone, EffectIntent, EffectIntentOutcome, Lease } from '../../core/store.js';
import { withClient } from './connection.js';
import type { GroupItem, Settled } from './group-writer.js';
import { parseJson } from './rows.js';
import { jobFenceHolds, lockJobRow, NOW, type SchemaNames, Statement } from './sql.js';

/**
 * The effect ledger's writes, each grouped: the intents (or done records) of
 * many attempts go to the database in one statement.
 *
 * - an intent is written only under a held lease (running, same token, not
 *   expired by the database clock). The job row is locked FOR SHARE, so no
 *   commit, release or sweep moves the job out of `running` meanwhile. An
 *   effect already done is not touched, and its stored result is returned;
 * - a done record needs no lease, since it records what happened in the
 *   world, and it only ever turns an intent into done.
 *
 * Job rows are locked in id order, as the other group statements and the
 * heartbeat lock them. A dropped connection rejects every caller of the
 * group with the connection error, as it rejects a single write.
 */
export interface IntentGroupItem extends GroupItem {
  lease: Lease;
  effect: EffectIntent;
}

export interface DoneGroupItem extends GroupItem {
  lease: Lease;
  effect: EffectDone;
}

/**
 * A row of the intent statement, of one of two kinds. An `item` row describes
 * one input row: its position `n`, whether the lease held, and the
 * effect's done result if it was done before the statement began. A
 * `written` row describes one ledger row the statement inserted or renewed.
 */
interface IntentRow {
  kind: 'item' | 'written';
  n: number | null;
  job_id: string | null;
  name: string | null;
  held: boolean | null;
  done: boolean | null;
  result: string | null;
}

export interface EffectStatements {
  intent: Statement<IntentRow>;
  doneResult: Statement<{ result: string | null }>;
  done: Statement;
}

export function effectStatements(n: SchemaNames): EffectStatements {
  // Each job row is locked FOR SHARE where its fence is checked, in input order (see
  // compareJobIds). The done lookup reads the ledger as it was when the statement began, which
  // is how it distinguishes an effect done before from one this statement wrote. It is a lateral
  // subquery, so it is always one primary key lookup per item. The written rows come back
  // as rows of their own rather than by a join, so no plan can compare every item with every row.
  const intent = new Statement<IntentRow>(`
    WITH fence AS MATERIALIZED (
      SELECT input.*,
             coalesce(${jobFenceHolds('input', NOW)}, false) AS held
        FROM unnest($2::bigint[], $3::text[], $4::int[], $5::text[], $6::text[]) WITH ORDINALITY
             AS input(id, token, attempt, name, idempotency_key, n)
        LEFT JOIN LATERAL ${lockJobRow(n, 'input', 'FOR SHARE')} ON true
    ),
    written AS (
      INSERT INTO ${n.effects} (job_id, name, idempotency_key, state, attempt, lease_token, intent_at)
      SELECT id, name, idempotency_key, 'intent', attempt, token, ${NOW} FROM fence WHERE held ORDER BY n
      ON CONFLICT (job_id, name) DO UPDATE
         SET attempt = excluded.attempt, lease_token = excluded.lease_token, intent_at = excluded.intent_at
       WHERE ${n.effects}.state = 'intent'
      RETURNING job_id, name
    )
    SELECT 'item' AS kind, f.n::int AS n, NULL AS job_id, NULL AS name, f.held, d.result IS NOT NULL AS done, d.result
      FROM fence f
      LEFT JOIN LATERAL (
        SELECT coalesce(e.result::text, 'null') AS result FROM ${n.effects} e
         WHERE e.job_id = f.id AND e.name = f.name AND e.state = 'done'
        OFFSET 0
      ) AS d ON true
    UNION ALL
    SELECT 'written', NULL, w.job_id::text, w.name, NULL, NULL, NULL FROM written w`);

  // Read after the statement above found the effect done in a newer snapshot than its own.
  const doneResult = new Statement<{ result: string | null }>(`
    SELECT result::text AS result FROM ${n.effects} WHERE job_id = $1 AND name = $2 AND state = 'done'`);

  // Each intent row is locked where it is checked, in input order (sorted by job id, then name).
  // Locked, it cannot change before this statement commits, so the update names no state and
  // no partial index on state can be planned as the outer side of the join.
  const done = new Statement(`
    WITH target AS MATERIALIZED (
      SELECT input.*
        FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[]) AS input(id, name, result, resolution)
       CROSS JOIN LATERAL (
         SELECT e.state FROM ${n.effects} e WHERE e.job_id = input.id AND e.name = input.name FOR NO KEY UPDATE OFFSET 0
       ) AS locked
       WHERE locked.state = 'intent'
    )
    UPDATE ${n.effects} e
       SET state = 'done', result = target.result::json, resolution = target.resolution, done_at = ${NOW}
      FROM target
     WHERE e.job_id = target.id AND e.name = target.name`);

  return { intent, doneResult, done };
}

export async function writeIntentGroup(
  pool: pg.Pool,
  statements: EffectStatements,
  items: readonly IntentGroupItem[],
  now: number | null,
): Promise<Settled<EffectIntentOutcome>[]> {
  const { rows } = await withClient(pool, (client) =>
    statements.intent.run(client, [
      now,
      items.map((item) => item.lease.jobId),
      items.map((item) => item.lease.token),
      items.map((item) => item.lease.attempt),
      items.map((item) => item.effect.name),
      items.map((item) => item.effect.idempotencyKey),
    ]),
  );
  const found = new Map<number, IntentRow>();
  const written = new Set<string>();
  for (const row of rows) {
    if (row.kind === 'item') found.set(row.n as number, row);
    else written.add(`${row.job_id}\u0000${row.name}`);
  }
  return Promise.all(
    items.map(async (item, index): Promise<Settled<EffectIntentOutcome>> => {
      const row = found.get(index + 1);
      if (!row?.held) return { ok: true, value: { status: 'lease_lost' } };
      if (written.has(`${item.lease.jobId}\u0000${item.effect.name}`)) return { ok: true, value: { status: 'recorded' } };
      if (row.done) return { ok: true, value: { status: 'done', result: parseJson(row.result) } };
      // The insert met a done record committed after this statement's snapshot began: read it now.
      try {
        const again = await statements.doneResult.run(pool, [item.lease.jobId, item.effect.name]);
        if (again.rows[0]) return { ok: true, value: { status: 'done', result: parseJson(again.rows[0].result) } };
        return {
          ok: false,
          error: new VouchError(`effect "${item.effect.name}" of job ${item.lease.jobId} was neither recorded nor found done`),
        };
      } catch (error) {
        return { ok: false, error };
      }
    }),
  );
}

export async function writeDoneGroup(
  pool: pg.Pool,
  statements: EffectStatements,
  items: readonly DoneGroupItem[],
  now: number | null,
): Promise<Settled<void>[]> {
  await withClient(pool, (client) =>
    statements.done.run(client, [
      now,
      items.map((item) => item.lease.jobId),
      items.map((item) => item.effect.name),
      items.map((item) => item.effect.resultJson),
      items.map((item) => item.effect.resolution),
    ]),
  );
  return items.map(() => ({ ok: true, value: undefined }));
}
