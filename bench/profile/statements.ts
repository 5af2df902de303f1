/**
 * The server's work per job in vouch's own lease and group commit
 * statements: jobs enqueued into a schema of its own on the bench's server,
 * leased and committed in batches of 500 under EXPLAIN (ANALYZE, BUFFERS,
 * WAL). The schema is dropped again at the end.
 */
import pg from 'pg';
import { PostgresStore } from '../../dist/postgres.js';
import { commitGroupStatement } from '../../dist/stores/postgres/commit-group.js';
import { leaseStatements } from '../../dist/stores/postgres/lease.js';
import { schemaNames } from '../../dist/stores/postgres/sql.js';
import { POSTGRES_URL } from '../systems/catalog.js';
import { median } from '../workloads/results.js';
import { enqueueJobs, profileJob, quiet } from './drain.js';

const SCHEMA = 'bench_profile';
/** Jobs per lease and per commit group, close to the 550 a worker at concurrency 50 reaches in a long drain. */
const BATCH = 500;
const ROUNDS = 12;
/** Rounds left out of the figures: they warm the server's caches, as a worker's first leases do. */
const WARM_UP_ROUNDS = 6;

interface PlanNode {
  'Node Type': string;
  'Subplan Name'?: string;
  'Actual Total Time': number;
  'Actual Loops': number;
  'WAL Records'?: number;
  'WAL Bytes'?: number;
  'Shared Hit Blocks'?: number;
  Plans?: PlanNode[];
}

interface Explained {
  Plan: PlanNode;
  'Execution Time': number;
}

/** One statement's cost per job in one round: microseconds of execution, WAL bytes and records, buffers touched. */
interface Cost {
  execution: number;
  walBytes: number;
  walRecords: number;
  buffers: number;
  /** Microseconds per job spent finding and locking the rows before they are updated. */
  locking: number;
}

/** Finds the first node of the plan tree that matches, depth first. */
function findNode(node: PlanNode, matches: (node: PlanNode) => boolean): PlanNode | undefined {
  if (matches(node)) return node;
  for (const child of node.Plans ?? []) {
    const found = findNode(child, matches);
    if (found) return found;
  }
  return undefined;
}

function costOf(explained: Explained, jobs: number, lockingNode: PlanNode | undefined): Cost {
  const plan = explained.Plan;
  const locking = lockingNode ? lockingNode['Actual Total Time'] * lockingNode['Actual Loops'] : 0;
  return {
    execution: (explained['Execution Time'] * 1000) / jobs,
    walBytes: (plan['WAL Bytes'] ?? 0) / jobs,
    walRecords: (plan['WAL Records'] ?? 0) / jobs,
    buffers: (plan['Shared Hit Blocks'] ?? 0) / jobs,
    locking: (locking * 1000) / jobs,
  };
}

async function explain(db: pg.Client, text: string, values: unknown[]): Promise<Explained> {
  const { rows } = await db.query({ text: `EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) ${text}`, values });
  return (rows[0]['QUERY PLAN'] as Explained[])[0] as Explained;
}

export async function profileStatements(): Promise<void> {
  const db = new pg.Client({ connectionString: POSTGRES_URL });
  await db.connect();
  const version = (await db.query('SHOW server_version')).rows[0].server_version as string;
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  const store = new PostgresStore({ connectionString: POSTGRES_URL, schema: SCHEMA, logger: quiet });
  try {
    await store.migrate();
    await enqueueJobs(store, profileJob(false), BATCH * (ROUNDS + 2));
    const names = schemaNames(SCHEMA);
    await db.query(`VACUUM ANALYZE ${names.jobs}`);
    const lease = leaseStatements(names).claim.text;
    const commit = commitGroupStatement(names).text;

    const leaseCosts: Cost[] = [];
    const commitCosts: Cost[] = [];
    for (let round = 0; round < ROUNDS; round += 1) {
      // The lease commits with synchronous_commit off for its own transaction, as the store runs it.
      await db.query('BEGIN');
      const leased = await explain(db, lease, [null, 'default', BATCH, 'profile-worker', `profile${round}-`]);
      await db.query('COMMIT');
      const { rows } = await db.query(`SELECT id::text AS id, lease_token, attempt FROM ${names.jobs} WHERE state = 'running' ORDER BY id`);
      if (rows.length !== BATCH) throw new Error(`the lease took ${rows.length} jobs instead of ${BATCH}`);
      const committed = await explain(db, commit, [
        null,
        rows.map((row) => row.id),
        rows.map((row) => row.lease_token),
        rows.map((row) => row.attempt),
        rows.map(() => 'null'),
        rows.map(() => 'succeeded'),
      ]);
      if (round < WARM_UP_ROUNDS) continue;
      // The lease locks its rows in the CTE `ready`, the group commit in the CTE `held`.
      const readyRows = findNode(leased.Plan, (node) => node['Subplan Name'] === 'CTE ready');
      const heldRows = findNode(committed.Plan, (node) => node['Subplan Name'] === 'CTE held');
      leaseCosts.push(costOf(leased, BATCH, readyRows));
      commitCosts.push(costOf(committed, BATCH, heldRows));
    }

    console.log(`PostgreSQL ${version}, vouch's statements on ${BATCH} jobs each, median of ${ROUNDS - WARM_UP_ROUNDS} rounds, per job:`);
    console.log('  statement      execution µs  finding and locking rows µs  WAL bytes  WAL records  buffers');
    for (const [label, costs] of [
      ['lease', leaseCosts],
      ['group commit', commitCosts],
    ] as const) {
      const figure = (pick: (cost: Cost) => number, digits: number, width: number) =>
        median(costs.map(pick)).toFixed(digits).padStart(width);
      const columns = [
        figure((cost) => cost.execution, 1, 12),
        figure((cost) => cost.locking, 1, 27),
        figure((cost) => cost.walBytes, 0, 9),
        figure((cost) => cost.walRecords, 1, 11),
        figure((cost) => cost.buffers, 1, 7),
      ];
      console.log(`  ${label.padEnd(14)}${columns.join('  ')}`);
    }
  } finally {
    await store.close();
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await db.end();
  }
}
