/**
 * The CPU of a PostgreSQL drain. The benchmark's no-op drain runs in this
 * process, and the CPU time of this process and of the server processes
 * that serve its connections is read from /proc. It runs once with the
 * store's default pool and once with a single connection, on which every
 * lease and commit queues behind the others on one server process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { PostgresStore } from '../../dist/postgres.js';
import { POSTGRES_URL } from '../systems/catalog.js';
import { median } from '../workloads/results.js';
import { type Drain, drain, enqueueJobs, profileJob, quiet } from './drain.js';

const SCHEMA = 'bench_profile';
const JOBS = 20_000;
const CONCURRENCY = 50;
const REPETITIONS = 3;
/** Marks this profile's connections, so that their server processes can be found in pg_stat_activity. */
const APPLICATION = 'vouch_profile';

/** Clock ticks per second of the CPU times in /proc/<pid>/stat. */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** Reads the CPU time in microseconds of each process in `pids` from /proc. A process that has ended is left out. */
function cpuMicros(pids: readonly number[]): Map<number, number> {
  const times = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The fields after the command name, which is in parentheses and may itself contain spaces.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(fields[11]) + Number(fields[12]);
      times.set(pid, (ticks / TICKS_PER_SECOND) * 1e6);
    } catch {
      // The process ended, or the server runs on another machine: nothing to read.
    }
  }
  return times;
}

interface MeasuredDrain extends Drain {
  /** CPU time of the server processes of this drain's connections, in microseconds per job. */
  serverCpuPerJob: number;
  /** Updates of job rows per job, and how many of them were HOT (no new index entries). */
  updatesPerJob: number;
  hotUpdatesPerJob: number;
}

/**
 * Reads the jobs table's update counters. A server process reports its
 * counters when it exits at the latest, so this runs after the store's pool
 * has closed, and waits up to 5 s for them to arrive.
 */
async function rowUpdates(db: pg.Client): Promise<{ updates: number; hot: number }> {
  let counters = { updates: 0, hot: 0 };
  for (const stopAt = Date.now() + 5000; Date.now() < stopAt; await sleep(100)) {
    const { rows } = await db.query(
      `SELECT n_tup_upd AS updates, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = 'jobs'`,
      [SCHEMA],
    );
    counters = { updates: Number(rows[0]?.updates ?? 0), hot: Number(rows[0]?.hot ?? 0) };
    if (counters.updates >= 2 * JOBS) break;
  }
  return counters;
}

async function measureDrain(db: pg.Client, poolSize: number | undefined): Promise<MeasuredDrain> {
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  const url = `${POSTGRES_URL}?application_name=${APPLICATION}`;
  const loader = new PostgresStore({ connectionString: url, schema: SCHEMA, logger: quiet });
  await loader.migrate();
  await enqueueJobs(loader, profileJob(false), JOBS);
  await loader.close();

  const store = new PostgresStore({
    connectionString: url,
    schema: SCHEMA,
    logger: quiet,
    ...(poolSize === undefined ? {} : { poolSize }),
  });
  await store.countByState();
  // The worker's pool opens connections as it needs them, so the server processes are listed after the drain,
  // while the pool keeps them open. A process that did not exist before the drain started at zero.
  const pids = async () =>
    (await db.query('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [APPLICATION])).rows.map((row) => row.pid as number);
  const before = cpuMicros(await pids());
  const measured = await drain(store, profileJob(false), JOBS, CONCURRENCY);
  const listed = await pids();
  const after = cpuMicros(listed);
  await store.close();
  let serverMicros = 0;
  for (const pid of listed) serverMicros += (after.get(pid) ?? 0) - (before.get(pid) ?? 0);
  const { updates, hot } = await rowUpdates(db);
  return { ...measured, serverCpuPerJob: serverMicros / JOBS, updatesPerJob: updates / JOBS, hotUpdatesPerJob: hot / JOBS };
}

export async function profilePostgresDrain(): Promise<void> {
  const db = new pg.Client({ connectionString: POSTGRES_URL });
  await db.connect();
  try {
    console.log(
      `PostgreSQL drain of ${JOBS.toLocaleString('en-US')} no-op jobs at concurrency ${CONCURRENCY} in this process (Node ${process.versions.node}), median of ${REPETITIONS}:`,
    );
    for (const [label, poolSize] of [
      ['default pool', undefined],
      ['poolSize 1', 1],
    ] as const) {
      const runs: MeasuredDrain[] = [];
      for (let repetition = 0; repetition < REPETITIONS; repetition += 1) runs.push(await measureDrain(db, poolSize));
      const rate = median(runs.map((run) => run.rate));
      const server = median(runs.map((run) => run.serverCpuPerJob));
      const worker = median(runs.map((run) => run.workerCpuPerJob));
      const gc = median(runs.map((run) => run.gcShare));
      console.log(
        `  ${label.padEnd(13)}${Math.round(rate).toLocaleString('en-US').padStart(7)} jobs/s; CPU per job: server ${server.toFixed(1)} µs, worker ${worker.toFixed(1)} µs; garbage collection paused the worker ${(100 * gc).toFixed(0)}% of the drain; row updates per job ${median(runs.map((run) => run.updatesPerJob)).toFixed(1)}, of them HOT ${median(runs.map((run) => run.hotUpdatesPerJob)).toFixed(1)}`,
      );
    }
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await db.end();
  }
}
