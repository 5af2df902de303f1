/**
 * The crash demo: the same email workload, under the same random SIGKILLs,
 * once on vouch and once on a queue that acknowledges jobs on receipt. The
 * figures come from the job stores and from the SMTP server that received
 * the emails. Run it with `npm run demo`; flags are in README.md.
 */
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, InvalidArgumentError } from 'commander';
import { Client, runAudit } from '../../src/index.js';
import { compileWorker } from './compile-worker.js';
import { type EnqueuedNotification, emailsPerJob, naiveFigures, type RunChecks, type RunFigures, vouchFigures } from './figures.js';
import { NaiveQueue } from './naive-queue.js';
import { type NotificationPayload, notificationJob } from './notification-job.js';
import { DEMO_SETTINGS } from './settings.js';
import { type SmtpSink, startSmtpSink } from './smtp-sink.js';
import { type DemoStore, openDemoStore, redact, withRunSchema } from './store.js';
import { seededRandom, superviseWorkers } from './supervisor.js';
import { toWorkerArgv } from './worker-process.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Compiled workers live beside the sources, so their npm imports resolve from this package's node_modules. */
const BUILD_DIR = join(HERE, '.build');
const REPO = resolve(HERE, '../..');
const RUNS_FOLDER = join(REPO, '.vouch-demo');
const KEEP_RUNS = 10;
/** A run that has not finished by then is reported as unfinished, and the demo fails. */
const RUN_DEADLINE_MS = 150_000;

interface DemoOptions {
  jobs: number;
  workers: number;
  killInterval: number;
  seed: number;
  json: boolean;
  store: string | undefined;
}

interface RunOutcome {
  figures: RunFigures;
  checks: RunChecks;
  finished: boolean;
  startupMs: number[];
  startupCpuMs: number[];
  logFile: string;
}

function wholeNumber(flag: string, minimum: number, maximum: number, example: number) {
  return (value: string): number => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(parsed) || parsed < minimum || parsed > maximum) {
      throw new InvalidArgumentError(
        `${flag} takes a whole number from ${minimum} to ${maximum}; got "${value}". For example: ${flag} ${example}.`,
      );
    }
    return parsed;
  };
}

function parseOptions(argv: string[]): DemoOptions {
  const program = new Command('crash-demo')
    .description('Kill worker processes at random while they send emails, on vouch and on an ack-on-receive queue, and compare.')
    .option('--jobs <n>', 'notification jobs to run in each of the two runs', wholeNumber('--jobs', 1, 100_000, 1000), 1000)
    .option('--workers <k>', 'worker processes running at once', wholeNumber('--workers', 1, 32, 3), 3)
    .option('--kill-interval <ms>', 'mean time between SIGKILLs, in milliseconds', wholeNumber('--kill-interval', 20, 600_000, 300), 300)
    .option('--seed <s>', 'seed of the kill schedule (default: random, printed)', wholeNumber('--seed', 0, 4_294_967_295, 42))
    .option(
      '--store <location>',
      'where vouch keeps its jobs: a path for a new SQLite file, or a postgres:// URL (default: a SQLite file in .vouch-demo/)',
    )
    .option('--json', 'print the figures as one JSON object instead of the table')
    .allowExcessArguments(false)
    .showHelpAfterError('(run with --help for every flag)')
    .parse(argv);
  const options = program.opts();
  if (options.store !== undefined && String(options.store).trim() === '') {
    program.error('error: --store needs a location: a path for a new SQLite file, or a postgres:// URL.');
  }
  return {
    jobs: options.jobs,
    workers: options.workers,
    killInterval: options.killInterval,
    seed: options.seed ?? Math.floor(Math.random() * 1_000_000),
    json: options.json === true,
    store: options.store,
  };
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv);
  const say = (line = '') => (options.json ? process.stderr : process.stdout).write(`${line}\n`);
  const progress = (line: string) => process.stderr.write(`${line}\n`);

  const runDir = makeRunFolder(options.seed);
  const vouchLocation = withRunSchema(options.store ?? join(runDir, 'vouch.db'), basename(runDir));
  // Opened first, so that an unusable --store fails before anything starts.
  const demoStore = await openDemoStore(vouchLocation);
  try {
    const existing = Object.values(await demoStore.store.countByState()).reduce((sum, count) => sum + count, 0);
    if (existing > 0) {
      throw new Error(
        `--store ${redact(vouchLocation)} already holds ${existing} jobs; the demo needs an empty store. Pass a new location (a postgres:// URL without ?schema= gets a fresh schema), or leave --store out.`,
      );
    }
  } catch (error) {
    await demoStore.close();
    throw error;
  }
  const storeLabel = demoStore.kind === 'postgres' ? `${redact(vouchLocation)} (PostgreSQL)` : `${shown(vouchLocation)} (SQLite)`;

  say(
    `vouch crash demo: ${options.jobs} email jobs, ${options.workers} worker processes, a SIGKILL every ~${options.killInterval} ms while all are up (each worker lives an exponential random time, mean ${options.workers * options.killInterval} ms; one worker down at a time; seed ${options.seed})`,
  );
  say(
    `settings: lease ${DEMO_SETTINGS.leaseMs} ms, heartbeat every ${Math.floor(DEMO_SETTINGS.leaseMs / 3)} ms, sweep every ${DEMO_SETTINGS.sweepIntervalMs} ms, poll ${DEMO_SETTINGS.pollIntervalMs} ms, ${DEMO_SETTINGS.concurrency} jobs at once per worker, up to ${DEMO_SETTINGS.maxAttempts} attempts`,
  );
  say(`vouch store: ${storeLabel}; run folder: ${shown(runDir)}`);
  say();

  const sink = await startSmtpSink();
  try {
    progress(`vouch: running ${options.jobs} jobs ...`);
    const vouch = await runVouch(options, demoStore, vouchLocation, runDir, sink);
    progress(`vouch: done in ${seconds(vouch.figures.durationMs)}, ${vouch.figures.kills} kills`);

    progress(`naive: running ${options.jobs} jobs ...`);
    const naive = await runNaive(options, runDir, sink);
    progress(`naive: done in ${seconds(naive.figures.durationMs)}, ${naive.figures.kills} kills`);

    if (options.json) {
      process.stdout.write(`${JSON.stringify({ naive: naive.figures, vouch: vouch.figures })}\n`);
    } else {
      say(formatTable(naive.figures, vouch.figures));
      say();
    }
    say(`vouch audit: ${vouch.audit}`);
    say(`notifications table: ${notificationLine(vouch)}`);
    if (vouch.checks.inDoubtRerun > 0) {
      say(
        `in-doubt emails that had not reached the server (verify found none), so sent once, with the same Message-ID: ${vouch.checks.inDoubtRerun}`,
      );
    }
    say(`kills achieved: vouch ${killRate(vouch.figures)}, naive ${killRate(naive.figures)} (target: one per ${options.killInterval} ms)`);
    say(
      startupLine(
        [...vouch.startupMs, ...naive.startupMs],
        [...vouch.startupCpuMs, ...naive.startupCpuMs],
        options.killInterval,
        options.workers,
      ),
    );
    say(`worker logs (pino, warn and above): ${shown(vouch.logFile)}, ${shown(naive.logFile)}`);

    const failures = vouchFailures(vouch);
    say();
    if (failures.length > 0) {
      say(`FAILED: ${failures.join('; ')}`);
      return 1;
    }
    const naiveNote =
      naive.figures.lost > 0
        ? `the ack-on-receive queue lost ${naive.figures.lost} (marked done, never sent)`
        : 'the ack-on-receive queue lost none this time; more jobs or a shorter --kill-interval make its losses show';
    say(`vouch lost 0 and duplicated 0 of ${vouch.figures.jobs} emails across ${vouch.figures.kills} kills; ${naiveNote}.`);
    return 0;
  } finally {
    await sink.close();
    await demoStore.close();
  }
}

async function runVouch(
  options: DemoOptions,
  demoStore: DemoStore,
  location: string,
  runDir: string,
  sink: SmtpSink,
): Promise<RunOutcome & { audit: string }> {
  const { store } = demoStore;
  await demoStore.createNotificationsTable();

  const definition = notificationJob();
  const enqueued = await new Client({ store }).enqueueMany(
    definition,
    payloads(options.jobs).map((payload) => ({ payload })),
  );
  const jobs: EnqueuedNotification[] = enqueued.map((job, index) => ({ id: job.id, n: index + 1 }));

  const logFile = join(runDir, 'vouch-workers.log');
  const run = await superviseWorkers({
    label: 'vouch',
    workerFile: await compileWorker(join(HERE, 'vouch-worker.ts'), BUILD_DIR, 'vouch-worker'),
    workerArgs: (workerId) => toWorkerArgv({ store: location, smtpPort: sink.smtpPort, lookupUrl: sink.lookupUrl, logFile, workerId }),
    workers: options.workers,
    killIntervalMs: options.killInterval,
    random: seededRandom(options.seed),
    logFile,
    deadlineMs: RUN_DEADLINE_MS,
    isFinished: async () => {
      const counts = await store.countByState();
      return counts.scheduled + counts.available + counts.running + counts.retryable === 0;
    },
  });

  const { figures, checks } = await vouchFigures(store, jobs, emailsPerJob(sink), await demoStore.notificationRows(), run);
  // Thresholds of zero: once every job is terminal, nothing may be overdue or in doubt at all.
  const report = await runAudit(store, { overdueAfterMs: 0, inDoubtAfterMs: 0, limit: 1_000_000 });
  const { overdue, inDoubt, recovered, dead } = report.findings;
  const counts = `overdue ${overdue.length}, in doubt ${inDoubt.length}, recovered ${recovered.length}, dead ${dead.length}`;
  const audit = report.passed ? `passed (${counts})` : `FAILED: ${report.breaches.join(', ')} (${counts})`;
  return { figures, checks, finished: run.finished, startupMs: run.startupMs, startupCpuMs: run.startupCpuMs, logFile, audit };
}

async function runNaive(options: DemoOptions, runDir: string, sink: SmtpSink): Promise<RunOutcome> {
  const path = join(runDir, 'naive.db');
  const queue = new NaiveQueue(path);
  try {
    queue.enqueue(payloads(options.jobs));
    const logFile = join(runDir, 'naive-workers.log');
    const run = await superviseWorkers({
      label: 'naive',
      workerFile: await compileWorker(join(HERE, 'naive-worker.ts'), BUILD_DIR, 'naive-worker'),
      workerArgs: (workerId) => toWorkerArgv({ store: path, smtpPort: sink.smtpPort, lookupUrl: sink.lookupUrl, logFile, workerId }),
      workers: options.workers,
      killIntervalMs: options.killInterval,
      random: seededRandom(options.seed),
      logFile,
      deadlineMs: RUN_DEADLINE_MS,
      isFinished: async () => queue.pendingCount() === 0,
    });
    const { figures, checks } = naiveFigures(queue, emailsPerJob(sink), run);
    return { figures, checks, finished: run.finished, startupMs: run.startupMs, startupCpuMs: run.startupCpuMs, logFile };
  } finally {
    queue.close();
  }
}

function payloads(count: number): NotificationPayload[] {
  return Array.from({ length: count }, (_, index) => ({ n: index + 1, to: `user-${index + 1}@example.test` }));
}

function vouchFailures(vouch: RunOutcome): string[] {
  const failures: string[] = [];
  const { figures, checks } = vouch;
  if (!vouch.finished) failures.push(`the vouch run did not finish within ${RUN_DEADLINE_MS / 1000} s`);
  if (figures.lost > 0) failures.push(`vouch lost ${figures.lost} emails`);
  if (figures.duplicates > 0) failures.push(`vouch sent ${figures.duplicates} emails more than once`);
  if (checks.notTerminal > 0) failures.push(`${checks.notTerminal} vouch jobs are not terminal`);
  if (checks.notificationProblems.length > 0) failures.push(`notifications table: ${checks.notificationProblems.slice(0, 3).join('; ')}`);
  return failures;
}

function formatTable(naive: RunFigures, vouch: RunFigures): string {
  const notApplicable = 'n/a';
  const rows: [string, string, string][] = [
    ['', 'naive (ack on receive)', 'vouch'],
    ['jobs', String(naive.jobs), String(vouch.jobs)],
    ['completed', String(naive.completed), String(vouch.completed)],
    ['failed', String(naive.failed), String(vouch.failed)],
    ['emails delivered (jobs with an email)', String(naive.delivered), String(vouch.delivered)],
    ['lost (completed, no email at the sink)', String(naive.lost), String(vouch.lost)],
    ['duplicates (more than one email)', String(naive.duplicates), String(vouch.duplicates)],
    ['attempts abandoned and recovered', notApplicable, String(vouch.abandoned)],
    ['in-doubt effects resolved by verify', notApplicable, String(vouch.inDoubtResolved)],
    ['kills (SIGKILL)', String(naive.kills), String(vouch.kills)],
    ['wall time', seconds(naive.durationMs), seconds(vouch.durationMs)],
  ];
  const widths = [0, 1, 2].map((column) => Math.max(...rows.map((row) => row[column]?.length ?? 0)));
  const lines = rows.map((row) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[0] ?? 0) : cell.padStart(widths[column] ?? 0))).join('   '),
  );
  lines.splice(1, 0, '-'.repeat(lines[0]?.length ?? 0));
  lines.push('', `${notApplicable}: the naive queue has no leases, attempts or effect ledger, so it never notices a dead worker.`);
  return lines.join('\n');
}

function notificationLine(vouch: RunOutcome): string {
  const problems = vouch.checks.notificationProblems;
  if (problems.length === 0) return `one row per completed job (${vouch.figures.completed}), written in the commit transaction`;
  return `${problems.length} problems: ${problems.slice(0, 3).join('; ')}`;
}

function startupLine(startupMs: number[], startupCpuMs: number[], killIntervalMs: number, workers: number): string {
  if (startupMs.length === 0) return 'worker start-up: no worker reported ready';
  const wall = median(startupMs);
  let line = `worker start-up (spawn to taking jobs, compiled, plain node): median ${Math.round(wall)} ms (max ${Math.round(Math.max(...startupMs))} ms), using ${Math.round(median(startupCpuMs))} ms of CPU, over ${startupMs.length} starts`;
  // Each worker lives killInterval * workers on average; if start-up eats much of that, say so.
  const life = killIntervalMs * workers;
  if (wall > life / 2) {
    line += `. That is slow next to a worker's mean life of ${life} ms, and as only one worker is down at a time, kills come less often than asked`;
  }
  return line;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

function killRate(figures: RunFigures): string {
  return figures.kills === 0 ? 'none' : `one per ${Math.round(figures.durationMs / figures.kills)} ms`;
}

function makeRunFolder(seed: number): string {
  mkdirSync(RUNS_FOLDER, { recursive: true });
  const runs = readdirSync(RUNS_FOLDER)
    .filter((name) => name.startsWith('run-'))
    .sort();
  for (const old of runs.slice(0, Math.max(0, runs.length - (KEEP_RUNS - 1))))
    rmSync(join(RUNS_FOLDER, old), { recursive: true, force: true });
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const folder = join(RUNS_FOLDER, `run-${stamp}-${process.pid}-seed${seed}`);
  mkdirSync(folder, { recursive: true });
  return folder;
}

function shown(path: string): string {
  const relativePath = relative(process.cwd(), path);
  return relativePath.startsWith('..') ? path : relativePath;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`crash demo: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 2;
  },
);
