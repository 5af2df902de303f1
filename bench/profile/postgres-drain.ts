/**
 * The CPU of a PostgreSQL drain. The benchmark's no-op drain runs in this
 * process, and the CPU time of this process and of the server processes
 * that serve its connections is read from /proc. It runs once with the
 * store's default pool and once with a single connection, on which every
 * lease and commit queues behind the others on one server process.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PostgresStore } from '../../dist/postgres.js';
import { POSTGRES_URL } from '../systems/catalog.js';
import { type Drain, drain, enqueueJobs, median, profileJob } from './drain.js';

const SCHEMA = 'bench_profile';
const JOBS = 20_000;
const CONCURRENCY = 50;
const REPETITIONS = 3;
/** Marks this profile's connections, so that their server processes can be found in pg_stat_activity. */
const APPLICATION = 'vouch_profile';

/** Clock ticks per second of the CPU times in /proc/<pid>/stat. */
const TICKS_PER_SECOND = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/** CPU time in microseconds of each process in `pids`, from /proc; a process that has gone counts as absent. */
function cpuMicros(pids: readonly number[]): Map<number, number> {
  const times = new Map<number, number>();
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // The fields after the command name, which is in parentheses and may itself hold spaces.
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
}

async function measureDrain(db: pg.Client, poolSize: number | undefined): Promise<MeasuredDrain> {
  await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
  const url = `${POSTGRES_URL}?application_name=${APPLICATION}`;
  const loader = new PostgresStore({ connectionString: url, schema: SCHEMA });
  await loader.migrate();
  await enqueueJobs(loader, profileJob(false), JOBS);
  await loader.close();

  const store = new PostgresStore({ connectionString: url, schema: SCHEMA, ...(poolSize === undefined ? {} : { poolSize }) });
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
  return { ...measured, serverCpuPerJob: serverMicros / JOBS };
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
        `  ${label.padEnd(13)}${Math.round(rate).toLocaleString('en-US').padStart(7)} jobs/s; CPU per job: server ${server.toFixed(1)} µs, worker ${worker.toFixed(1)} µs; garbage collection paused the worker ${(100 * gc).toFixed(0)}% of the drain`,
      );
    }
  } finally {
    await db.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await db.end();
  }
}
