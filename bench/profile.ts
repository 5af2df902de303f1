/**
 * Profiles of a vouch job's time, for the two targets of the benchmark that
 * vouch misses (see "Where the time goes" in bench/README.md):
 *
 *   npm run bench:profile                 both parts
 *   npm run bench:profile -- --postgres   the server's work per job in the lease and commit statements
 *   npm run bench:profile -- --sqlite     the WAL a ctx.effect appends on SQLite, and the flush it waits for
 *
 * The PostgreSQL part enqueues jobs into a schema of its own on the bench's
 * server, runs vouch's own lease and group commit statements on batches of
 * 500 jobs under EXPLAIN (ANALYZE, BUFFERS, WAL), and drops the schema again.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { pino } from 'pino';
import { Client, defineJob, Worker } from '../dist/index.js';
import { PostgresStore } from '../dist/postgres.js';
import { SqliteStore } from '../dist/sqlite.js';
import { commitGroupStatement } from '../dist/stores/postgres/commit-group.js';
import { leaseStatements } from '../dist/stores/postgres/lease.js';
import { schemaNames } from '../dist/stores/postgres/sql.js';
import { POSTGRES_URL } from './systems/catalog.js';
import { REPO } from './workloads/process.js';

const SCHEMA = 'bench_profile';
/** Jobs per lease and per commit group, close to the 550 a worker at concurrency 50 reaches in a long drain. */
const BATCH = 500;
const ROUNDS = 12;
/** Rounds left out of the figures: they warm the server's caches, as a worker's first leases do. */
const WARM_UP_ROUNDS = 6;
const FLUSHES = 300;

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

const passThrough = { '~standard': { version: 1 as const, vendor: 'bench', validate: (value: unknown) => ({ value }) } };
const noop = defineJob({ name: 'profile', payload: passThrough, perform: () => null });

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
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

async function profilePostgres(): Promise<void> {
  const db = new pg.Client({ connectionString: POSTGRES_URL });
  await db.connect();
  const version = (await db.query('SHOW server_version')).rows[0].server_version as string;
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  const store = new PostgresStore({ connectionString: POSTGRES_URL, schema: SCHEMA });
  try {
    await store.migrate();
    const client = new Client({ store });
    const total = BATCH * (ROUNDS + 2);
    for (let from = 0; from < total; from += 1000) {
      await client.enqueueMany(
        noop,
        Array.from({ length: Math.min(1000, total - from) }, (_, index) => ({ payload: { i: from + index } })),
      );
    }
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

    console.log(`PostgreSQL ${version}: ${BATCH} jobs per statement, median of ${ROUNDS - WARM_UP_ROUNDS} rounds, per job`);
    console.log('statement      execution µs  of it finding and locking µs  WAL bytes  WAL records  buffers');
    for (const [label, costs] of [
      ['lease', leaseCosts],
      ['commit group', commitCosts],
    ] as const) {
      const figure = (pick: (cost: Cost) => number, digits: number) => median(costs.map(pick)).toFixed(digits);
      console.log(
        `${label.padEnd(14)} ${figure((c) => c.execution, 1).padStart(12)}  ${figure((c) => c.locking, 1).padStart(28)}  ${figure((c) => c.walBytes, 0).padStart(9)}  ${figure((c) => c.walRecords, 1).padStart(11)}  ${figure((c) => c.buffers, 1).padStart(7)}`,
      );
    }
  } finally {
    await store.close();
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await db.end();
  }
}

/** Jobs per SQLite drain that measures WAL bytes: few enough that no automatic checkpoint restarts the WAL. */
const SQLITE_JOBS = 300;

/**
 * Drains SQLITE_JOBS jobs at concurrency 10 from a new SQLite file with every
 * store default, and returns the bytes the drain appended to the WAL per job.
 */
async function walBytesPerJob(dir: string, withEffect: boolean): Promise<number> {
  const path = join(dir, withEffect ? 'effect.db' : 'plain.db');
  const job = defineJob({
    name: 'profile',
    payload: passThrough,
    async perform(ctx) {
      if (withEffect) await ctx.effect('noop', () => 1);
      return null;
    },
  });
  const store = new SqliteStore({ path });
  const worker = new Worker({ store, jobs: [job], concurrency: 10, logger: pino({ level: 'silent' }) });
  try {
    await new Client({ store }).enqueueMany(
      job,
      Array.from({ length: SQLITE_JOBS }, (_, index) => ({ payload: { i: index } })),
    );
    // A second connection empties the WAL, so that its size afterwards is what the drain appended.
    const reader = new Database(path);
    reader.pragma('wal_checkpoint(TRUNCATE)');
    reader.close();
    await worker.start();
    while ((await store.countByState()).completed < SQLITE_JOBS) await sleep(5);
    return statSync(`${path}-wal`).size / SQLITE_JOBS;
  } finally {
    await worker.stop();
    await store.close();
  }
}

/** Times fdatasync after each of FLUSHES appends of `bytes` to a new file in `dir`, in microseconds. */
function flushMicros(dir: string, bytes: number): number[] {
  const path = join(dir, 'flush.bin');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(bytes, 1);
  const micros: number[] = [];
  try {
    for (let index = 0; index < FLUSHES; index += 1) {
      writeSync(fd, chunk);
      const startedAt = process.hrtime.bigint();
      fdatasyncSync(fd);
      micros.push(Number(process.hrtime.bigint() - startedAt) / 1000);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  return micros;
}

/**
 * Measures what a ctx.effect adds on SQLite: the WAL each job appends, with
 * and without one effect, and how long the flush takes that the effect's
 * intent waits for before the effect may start. The slots of one worker
 * share each flush, so at concurrency C one flush covers about C jobs' WAL.
 * The files lie in the operating system's temporary folder, as the
 * benchmark's do.
 */
async function profileSqlite(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vouch-profile-'));
  try {
    const plain = await walBytesPerJob(dir, false);
    const effect = await walBytesPerJob(dir, true);
    console.log(
      `SQLite, ${SQLITE_JOBS} jobs at concurrency 10, WAL appended per job: plain ${plain.toFixed(0)} bytes, with one ctx.effect ${effect.toFixed(0)} bytes`,
    );
    for (const concurrency of [10, 50]) {
      const bytes = Math.ceil((effect * concurrency) / 4096) * 4096;
      const micros = flushMicros(dir, bytes);
      const flush = median(micros);
      const ceiling = Math.round((concurrency / flush) * 1e6).toLocaleString('en-US');
      console.log(
        `  concurrency ${concurrency}: fdatasync after appending ${bytes / 1024} KiB, median of ${FLUSHES}: ${flush.toFixed(0)} µs, so effect jobs start at most ${ceiling} per second, whatever else they do`,
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const both = !args.includes('--postgres') && !args.includes('--sqlite');
  execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  if (both || args.includes('--sqlite')) await profileSqlite();
  if (both || args.includes('--postgres')) await profilePostgres();
}

await main();
