/**
 * No-op throughput of both stores in one run. For each store: 20,000 no-op
 * jobs enqueued in bulk (Client.enqueueMany in chunks of 1,000) into a fresh
 * store, then drained by one Worker in this process at concurrency 1, 10 and
 * 50. Each figure is the median of 3 runs; runs of the two stores alternate,
 * so a noisy moment on a shared machine does not hit one store only.
 *
 *   npx tsx bench/noop-throughput.ts
 *   npx tsx bench/noop-throughput.ts --stores sqlite --concurrency 50
 *   npm run build && npx tsx bench/noop-throughput.ts --from dist
 *   npx tsx bench/noop-throughput.ts --jobs 5000 --runs 1 --postgres postgres://postgres@127.0.0.1:5432/test
 *
 * Drain rate: jobs divided by the time from worker.start() to the last
 * job:completed event. Enqueue rate: jobs divided by the time of all bulk
 * calls. Both stores run with their defaults (SQLite: WAL, synchronous=full;
 * PostgreSQL: a pool of 10, synchronous_commit as the server has it) and the
 * Worker with its defaults, except a silent logger, so that writing a log
 * line per job is not what is measured.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { pino } from 'pino';
import type * as VouchApi from '../src/index.js';
import type * as VouchPostgres from '../src/postgres.js';
import type * as VouchSqlite from '../src/sqlite.js';

const { values: args } = parseArgs({
  options: {
    jobs: { type: 'string', default: '20000' },
    runs: { type: 'string', default: '3' },
    chunk: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1,10,50' },
    postgres: { type: 'string', default: process.env.VOUCH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test' },
    stores: { type: 'string', default: 'sqlite,postgres' },
    prefetch: { type: 'string' },
    from: { type: 'string', default: 'src' },
    log: { type: 'string', default: 'silent' },
    effect: { type: 'boolean', default: false },
  },
});
const JOBS = Number(args.jobs);
const RUNS = Number(args.runs);
const CHUNK = Number(args.chunk);
const CONCURRENCIES = (args.concurrency as string).split(',').map(Number);
const POSTGRES_URL = args.postgres as string;
const SCHEMA = `bench_noop_${process.pid}`;

// --from dist measures the build that users run (npm run build first), --from src the sources through tsx.
if (args.from !== 'src' && args.from !== 'dist') throw new Error(`--from takes src or dist; got "${args.from}".`);
const { Client, defineJob, Worker } = (await import(`../${args.from}/index.js`)) as typeof VouchApi;
const { PostgresStore } = (await import(`../${args.from}/postgres.js`)) as typeof VouchPostgres;
const { SqliteStore } = (await import(`../${args.from}/sqlite.js`)) as typeof VouchSqlite;
type Store<Tx> = VouchApi.Store<Tx>;

const noop = defineJob({
  name: 'noop',
  payload: { '~standard': { version: 1, vendor: 'bench', validate: (value: unknown) => ({ value: value as { n: number } }) } },
  // --effect: one ctx.effect per job, to measure what the effect ledger costs.
  perform: async (ctx) => {
    if (args.effect) await ctx.effect('noop', () => 1);
    return null;
  },
});

interface StoreKind {
  label: string;
  /** Opens an empty store. */
  open(): Promise<Store<any>>;
  dispose(): Promise<void>;
}

const folder = mkdtempSync(join(tmpdir(), 'vouch-bench-'));
let files = 0;
const sqlite: StoreKind = {
  label: 'sqlite',
  async open() {
    files += 1;
    return new SqliteStore({ path: join(folder, `noop-${files}.db`) });
  },
  async dispose() {
    rmSync(folder, { recursive: true, force: true });
  },
};

async function adminQuery(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

const postgres: StoreKind = {
  label: 'postgres',
  async open() {
    await adminQuery(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    const store = new PostgresStore({ connectionString: POSTGRES_URL, schema: SCHEMA, logger: pino({ level: 'warn' }) });
    await store.migrate();
    return store;
  },
  async dispose() {
    await adminQuery(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  },
};

interface Measurement {
  enqueuePerSecond: number;
  drainPerSecond: number;
}

async function measure(kind: StoreKind, concurrency: number): Promise<Measurement> {
  const store = await kind.open();
  try {
    const client = new Client({ store });
    const enqueueStarted = performance.now();
    for (let first = 0; first < JOBS; first += CHUNK) {
      const count = Math.min(CHUNK, JOBS - first);
      await client.enqueueMany(
        noop,
        Array.from({ length: count }, (_, index) => ({ payload: { n: first + index } })),
      );
    }
    const enqueueSeconds = (performance.now() - enqueueStarted) / 1000;

    const worker = new Worker({
      store,
      jobs: [noop],
      concurrency,
      logger: args.log === 'silent' ? pino({ level: 'silent' }) : pino({ level: args.log }, pino.destination(join(folder, 'worker.log'))),
      ...(args.prefetch === undefined ? {} : { prefetch: args.prefetch === 'auto' ? 'auto' : Number(args.prefetch) }),
    });
    let completed = 0;
    let finishedAt = 0;
    const done = new Promise<void>((resolve) => {
      worker.on('job:completed', () => {
        completed += 1;
        if (completed === JOBS) {
          finishedAt = performance.now();
          resolve();
        }
      });
    });
    const drainStarted = performance.now();
    await worker.start();
    await done;
    await worker.stop();
    const counts = await store.countByState();
    if (counts.completed !== JOBS) throw new Error(`${kind.label}: ${counts.completed} of ${JOBS} jobs completed`);
    return { enqueuePerSecond: JOBS / enqueueSeconds, drainPerSecond: JOBS / ((finishedAt - drainStarted) / 1000) };
  } finally {
    await store.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

const chosen = (args.stores as string).split(',');
const kinds = [sqlite, postgres].filter((kind) => chosen.includes(kind.label));
if (kinds.length === 0) throw new Error(`--stores takes sqlite, postgres or both, comma-separated; got "${args.stores}".`);
const results = new Map<string, Measurement[]>();
const started = Date.now();
console.log(`no-op throughput: ${JOBS} jobs, enqueueMany chunks of ${CHUNK}, concurrency ${CONCURRENCIES.join('/')}, median of ${RUNS}`);
for (let run = 1; run <= RUNS; run += 1) {
  for (const concurrency of CONCURRENCIES) {
    // Alternate which store goes first, run by run.
    for (const kind of run % 2 ? kinds : [...kinds].reverse()) {
      const result = await measure(kind, concurrency);
      const key = `${kind.label} c=${concurrency}`;
      results.set(key, [...(results.get(key) ?? []), result]);
      console.log(
        `  run ${run} ${key}: enqueue ${Math.round(result.enqueuePerSecond)} jobs/s, drain ${Math.round(result.drainPerSecond)} jobs/s`,
      );
    }
  }
}
for (const kind of kinds) await kind.dispose();

console.log(`\nmedian of ${RUNS} (jobs/s), ${((Date.now() - started) / 60_000).toFixed(1)} minutes in all:`);
console.log(`| store    | enqueue | ${CONCURRENCIES.map((c) => `drain c=${c}`).join(' | ')} |`);
console.log(`| -------- | ------: | ${CONCURRENCIES.map(() => '---------:').join(' | ')} |`);
for (const kind of kinds) {
  const all = CONCURRENCIES.flatMap((c) => results.get(`${kind.label} c=${c}`) ?? []);
  const enqueue = Math.round(median(all.map((result) => result.enqueuePerSecond)));
  const drains = CONCURRENCIES.map((c) => Math.round(median((results.get(`${kind.label} c=${c}`) ?? []).map((r) => r.drainPerSecond))));
  console.log(`| ${kind.label.padEnd(8)} | ${String(enqueue).padStart(7)} | ${drains.map((d) => String(d).padStart(10)).join(' | ')} |`);
}
