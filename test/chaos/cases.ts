import type { FailpointName } from '../../src/core/failpoints.js';
import type { PgCluster } from '../support/pg-cluster.js';
import { chaosIdempotencyKey, chaosMessageId } from './chaos-job.js';
import type { Violation } from './checker.js';
import type { ChaosEnvironment, EnvironmentSettings, RunningWorker, StoreKind } from './environment.js';

export interface CaseOutcome {
  /** Faults injected: kills, terminations, stalls, clock jumps. */
  faults: number;
  /** Violations of what this case expects beyond the shared invariants, such as a failure reason. */
  expectations: Violation[];
}

export interface ChaosCase {
  name: string;
  stores: readonly StoreKind[];
  /** Part of the quick subset that runs inside `npm test`. */
  quick: boolean;
  settings?: Partial<EnvironmentSettings>;
  /** Runs on a throwaway PostgreSQL cluster (env.cluster) that the case may stop, restart or kill. */
  needsCluster?: boolean;
  /** Maximum time the case may take to become quiet, in milliseconds. */
  quietTimeoutMs?: number;
  run(env: ChaosEnvironment, random: () => number): Promise<CaseOutcome>;
}

const BOTH: readonly StoreKind[] = ['sqlite', 'postgres'];

/** Failpoints that a SIGKILL can meet inside an attempt; `inside-commit` exists only in stores that call it. */
const KILL_POINTS: readonly FailpointName[] = [
  'after-lease',
  'before-effect',
  'after-effect-before-ledger',
  'after-ledger-before-commit',
  'inside-commit',
];

function killAt(point: FailpointName): ChaosCase {
  return {
    name: `kill at ${point}`,
    stores: BOTH,
    quick: point === 'after-effect-before-ledger' || point === 'after-lease',
    async run(env) {
      await env.enqueue(12);
      const doomed = await env.startWorker({ concurrency: 4, failpoints: `${point}=kill@2` });
      await env.recordSelfKill(doomed);
      const expectations: Violation[] = [];
      if (doomed.child.signalCode !== 'SIGKILL') {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [],
          detail: `failpoint ${point} never fired; the worker exited with ${doomed.child.exitCode}`,
        });
      }
      await env.startWorker({ concurrency: 4 });
      if (!(await env.waitQuiet(30_000))) return { faults: 1, expectations };

      // The kill must have landed inside an attempt: its attempt is recovered as abandoned.
      const history = await env.history();
      if (!history.attempts.some((attempt) => attempt.outcome === 'abandoned' && attempt.workerId === doomed.workerId)) {
        expectations.push({
          invariant: 'bounded-recovery',
          jobIds: [],
          detail: `no attempt of the killed worker was recovered as abandoned after a kill at ${point}`,
        });
      }
      if (point === 'after-effect-before-ledger' && !history.effects.some((effect) => effect.resolution === 'verified')) {
        expectations.push({ invariant: 'effect-at-most-once', jobIds: [], detail: 'the in-doubt email was not settled by its verify' });
      }
      return { faults: 1, expectations };
    },
  };
}

const randomKills: ChaosCase = {
  name: 'random kills under load',
  stores: BOTH,
  quick: true,
  quietTimeoutMs: 90_000,
  async run(env, random) {
    await env.enqueue(300, 'slow', { ms: 100 });
    let workers: RunningWorker[] = await Promise.all([env.startWorker(), env.startWorker(), env.startWorker()]);
    let kills = 0;
    while (kills < 8) {
      await sleep(150 + random() * 300);
      const counts = await env.store.countByState();
      if (counts.available + counts.running + counts.retryable === 0) break;
      const victim = workers[Math.floor(random() * workers.length)] as RunningWorker;
      await env.kill(victim);
      kills += 1;
      workers = workers.filter((worker) => worker !== victim);
      workers.push(await env.startWorker());
    }
    return { faults: kills, expectations: [] };
  },
};

const gracefulTerm: ChaosCase = {
  name: 'SIGTERM during work',
  stores: BOTH,
  quick: false,
  settings: { shutdownGraceMs: 300 },
  async run(env) {
    await env.enqueue(16, 'slow', { ms: 800 });
    const first = await env.startWorker({ concurrency: 8 });
    await sleep(300);
    const startedAt = Date.now();
    first.child.kill('SIGTERM');
    const code = await first.exited;
    const expectations: Violation[] = [];
    const counts = await env.store.countByState();
    if (code !== 0) expectations.push({ invariant: 'one-terminal-state', jobIds: [], detail: `worker exited with ${code} after SIGTERM` });
    if (counts.running > 0) {
      expectations.push({
        invariant: 'bounded-recovery',
        jobIds: [],
        detail: `${counts.running} jobs still running ${Date.now() - startedAt} ms after a graceful stop`,
      });
    }
    await env.startWorker({ concurrency: 8 });
    return { faults: 1, expectations };
  },
};

const eventLoopBlock: ChaosCase = {
  name: 'handler blocks past its lease',
  stores: BOTH,
  quick: true,
  settings: { leaseMs: 1000, sweepIntervalMs: 200 },
  async run(env) {
    const [blocked] = await env.enqueue(1, 'block', { ms: 2500 });
    await env.enqueue(5);
    await env.startWorker({ concurrency: 2 });
    await env.startWorker({ concurrency: 2 });
    const expectations: Violation[] = [];
    if (!(await env.waitQuiet(30_000))) return { faults: 1, expectations };
    const attempts = await env.store.listAttempts(blocked as string);
    if (!attempts.some((attempt) => attempt.outcome === 'abandoned' || attempt.outcome === 'lease_lost')) {
      expectations.push({
        invariant: 'no-commit-after-lease-expiry',
        jobIds: [blocked as string],
        detail: 'the blocked attempt was not recorded as having lost its lease',
      });
    }
    return { faults: 1, expectations };
  },
};

function clockJump(byMs: number): ChaosCase {
  return {
    name: `clock jumps ${byMs > 0 ? 'forward' : 'back'} on a worker`,
    stores: ['sqlite'],
    quick: false,
    async run(env) {
      await env.enqueue(80, 'slow', { ms: 150 });
      const jumping = await env.startWorker({ concurrency: 4, config: { clockJump: { afterMs: 300, byMs } } });
      await env.startWorker({ concurrency: 4 });
      const expectations: Violation[] = [];
      if (!(await env.waitQuiet(60_000))) return { faults: 1, expectations };

      // A worker whose clock runs ahead sees the other worker's leases as expired and takes them over, so some
      // attempt must lose its lease. A clock that runs behind sees no job as due yet, so that worker only idles.
      const history = await env.history();
      if (byMs > 0 && !history.attempts.some((attempt) => attempt.outcome === 'abandoned' || attempt.outcome === 'lease_lost')) {
        expectations.push({
          invariant: 'no-commit-after-lease-expiry',
          jobIds: [],
          detail: `the clock of ${jumping.workerId} jumped by ${byMs} ms and no lease was lost`,
        });
      }
      return { faults: 1, expectations };
    },
  };
}

const enqueueRace: ChaosCase = {
  name: 'enqueue race on one key',
  stores: BOTH,
  quick: true,
  async run(env) {
    const keys = 30;
    const results = await env.raceEnqueue(3, keys);
    const expectations: Violation[] = [];
    for (let n = 1; n <= keys; n += 1) {
      const ids = new Set(results.map((outcomes) => outcomes.find((outcome) => outcome.n === n)?.id));
      const created = results.filter((outcomes) => outcomes.some((outcome) => outcome.n === n && !outcome.duplicate)).length;
      if (ids.size !== 1 || created !== 1) {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [...ids].filter((id): id is string => id !== undefined),
          detail: `key chaos-${n} produced ${ids.size} job ids and ${created} non-duplicate enqueues`,
        });
      }
    }
    await env.startWorker();
    return { faults: 0, expectations };
  },
};

const delayedAcrossRestart: ChaosCase = {
  name: 'delayed jobs across a restart',
  stores: BOTH,
  quick: false,
  async run(env) {
    const due = Date.now() + 1500;
    const ids = await env.enqueue(10, 'send', { delayMs: 1500 });
    const worker = await env.startWorker();
    await sleep(500);
    await env.kill(worker);
    await sleep(1500);
    await env.startWorker();
    const expectations: Violation[] = [];
    if (!(await env.waitQuiet(30_000))) return { faults: 1, expectations };
    for (const id of ids) {
      const [first] = await env.store.listAttempts(id);
      if (first && first.startedAt < due - 50) {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [id],
          detail: `started ${due - first.startedAt} ms before it was due`,
        });
      }
    }
    return { faults: 1, expectations };
  },
};

const poison: ChaosCase = {
  name: 'permanent, timed-out and never-settling jobs',
  stores: BOTH,
  quick: true,
  settings: { timeoutMs: 400, maxAttempts: 2 },
  async run(env) {
    const [permanent] = await env.enqueue(1, 'permanent');
    const [never] = await env.enqueue(1, 'never');
    // Settles, but only after its timeout: the late effect must be refused, because the attempt no longer holds its lease.
    const lateNumber = env.accepted.length + 1;
    const [late] = await env.enqueue(1, 'slow', { ms: 800 });
    const good = await env.enqueue(10);
    await env.startWorker({ concurrency: 2 });
    const expectations: Violation[] = [];
    if (!(await env.waitQuiet(30_000))) return { faults: 0, expectations };
    const expect = async (jobId: string, state: string, reason: RegExp, attempts: number) => {
      const job = await env.store.getJob(jobId);
      if (job?.state !== state || !reason.test(job.lastError ?? '') || job.attempt !== attempts) {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [jobId],
          detail: `expected ${state} after ${attempts} attempts matching ${reason}; got ${job?.state} after ${job?.attempt}: ${job?.lastError}`,
        });
      }
    };
    await expect(permanent as string, 'failed', /PermanentError/, 1);
    await expect(never as string, 'failed', /timed out/, 2);
    await expect(late as string, 'failed', /timed out/, 2);
    // Wait past the late handler's wake-up: its effect must not reach the sink.
    await sleep(900);
    const lateEmails = env.sink.count(chaosMessageId(chaosIdempotencyKey(lateNumber)));
    if (lateEmails !== 0) {
      expectations.push({
        invariant: 'effect-has-job',
        jobIds: [late as string],
        detail: `a timed-out attempt still sent ${lateEmails} email(s)`,
      });
    }
    for (const id of good) await expect(id, 'completed', /^$/, 1);
    return { faults: 3, expectations };
  },
};

/** The database goes away in the middle of a run and comes back; workers must reconnect and finish every job. */
function databaseOutage(name: string, outage: (cluster: PgCluster) => Promise<void>): ChaosCase {
  return {
    name,
    stores: ['postgres'],
    quick: false,
    needsCluster: true,
    quietTimeoutMs: 90_000,
    async run(env) {
      const cluster = env.cluster as PgCluster;
      await env.enqueue(200, 'slow', { ms: 100 });
      await env.startWorker({ concurrency: 4 });
      await env.startWorker({ concurrency: 4 });
      await sleep(800);
      const before = await env.store.countByState();
      await outage(cluster);
      const expectations: Violation[] = [];
      if (before.completed === 0 || before.available + before.running === 0) {
        expectations.push({
          invariant: 'one-terminal-state',
          jobIds: [],
          detail: `the outage did not land during work (${before.completed} completed, ${before.available + before.running} waiting or running)`,
        });
      }
      return { faults: 1, expectations };
    },
  };
}

const restart = databaseOutage('database restarted mid-run', (cluster) => cluster.restart());
const killed = databaseOutage('database killed with SIGKILL mid-run', async (cluster) => {
  cluster.kill9();
  await sleep(1000);
  await cluster.start();
});
const dropped = databaseOutage('connections dropped mid-run', async (cluster) => {
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: cluster.url() });
  await admin.connect();
  // Ends every other session: the workers' pools and listeners, and the store the case reads through.
  await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND backend_type = $1', [
    'client backend',
  ]);
  await admin.end();
});

export const CASES: readonly ChaosCase[] = [
  ...KILL_POINTS.map(killAt),
  randomKills,
  gracefulTerm,
  eventLoopBlock,
  clockJump(10_000),
  clockJump(-10_000),
  enqueueRace,
  delayedAcrossRestart,
  poison,
  restart,
  killed,
  dropped,
];

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
