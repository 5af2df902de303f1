import { type ChildProcess, fork, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type SmtpSink, startSmtpSink } from '../../examples/crash-demo/smtp-sink.js';
import { Client, openStore, type Store } from '../../src/index.js';
import type { PgCluster } from '../support/pg-cluster.js';
import { CHAOS_JOB, type ChaosPayload, chaosIdempotencyKey, chaosJob, chaosMessageId } from './chaos-job.js';
import type { AcceptedJob, History } from './history.js';
import { readStoreHistory } from './history.js';
import type { WorkerConfig } from './worker-process.js';

export type StoreKind = 'sqlite' | 'postgres';

/** The PostgreSQL server chaos cases use; each case gets its own schema in it. */
export const POSTGRES_URL = process.env.VOUCH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface EnvironmentSettings {
  leaseMs: number;
  sweepIntervalMs: number;
  timeoutMs: number;
  maxAttempts: number;
  shutdownGraceMs: number;
}

export const DEFAULT_SETTINGS: EnvironmentSettings = {
  leaseMs: 1500,
  sweepIntervalMs: 250,
  timeoutMs: 5000,
  maxAttempts: 5,
  shutdownGraceMs: 1000,
};

export interface RunningWorker {
  workerId: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const WORKER_FILE = fileURLToPath(new URL('./worker-process.ts', import.meta.url));
const ENQUEUE_FILE = fileURLToPath(new URL('./enqueue-process.ts', import.meta.url));

/**
 * One chaos case's world: a fresh store (SQLite file or PostgreSQL schema),
 * an SMTP sink as the external ground truth, worker processes that can be
 * killed, and the bookkeeping a History needs.
 */
export class ChaosEnvironment {
  readonly accepted: AcceptedJob[] = [];
  readonly kills: History['kills'] = [];
  readonly workers: RunningWorker[] = [];
  private workerCount = 0;

  private constructor(
    readonly kind: StoreKind,
    readonly location: string,
    readonly store: Store<any>,
    readonly sink: SmtpSink,
    readonly settings: EnvironmentSettings,
    private readonly folder: string,
    private readonly schema: string | null,
    private readonly postgresUrl: string,
  ) {}

  /** A throwaway PostgreSQL cluster the case may stop, restart or kill; set for cases that ask for one. */
  cluster: PgCluster | null = null;

  /** `postgresUrl` selects another PostgreSQL server, such as a throwaway cluster. */
  static async create(
    kind: StoreKind,
    overrides: Partial<EnvironmentSettings> = {},
    postgresUrl = POSTGRES_URL,
  ): Promise<ChaosEnvironment> {
    const settings = { ...DEFAULT_SETTINGS, ...overrides };
    const folder = mkdtempSync(join(tmpdir(), 'vouch-chaos-'));
    const schema = kind === 'postgres' ? `chaos_${randomBytes(4).toString('hex')}` : null;
    const location = kind === 'postgres' ? `${postgresUrl}?schema=${schema}` : join(folder, 'jobs.db');
    const store = await openStore(location);
    const sink = await startSmtpSink();
    return new ChaosEnvironment(kind, location, store, sink, settings, folder, schema, postgresUrl);
  }

  get client(): Client {
    return new Client({ store: this.store });
  }

  /** Enqueues jobs numbered from `first`, all of one mode, and records them as accepted. */
  async enqueue(
    count: number,
    mode: ChaosPayload['mode'] = 'send',
    options: { first?: number; ms?: number; delayMs?: number } = {},
  ): Promise<string[]> {
    const definition = chaosJob(this.settings);
    const first = options.first ?? this.accepted.length + 1;
    const items = Array.from({ length: count }, (_, index) => ({
      payload: { n: first + index, mode, ms: options.ms ?? 0 },
      ...(options.delayMs ? { delayMs: options.delayMs } : {}),
    }));
    const jobs = await this.client.enqueueMany(definition, items);
    const ids: string[] = [];
    for (const [index, job] of jobs.entries()) {
      if (job.duplicate) continue;
      const n = first + index;
      const sends = mode !== 'permanent' && mode !== 'never';
      this.accepted.push({ jobId: job.id, effectKey: sends ? chaosMessageId(chaosIdempotencyKey(n)) : null, effectOnce: true });
      ids.push(job.id);
    }
    return ids;
  }

  /**
   * Races `processes` enqueueing processes on keys 1..count, released at the
   * same moment, and records every job they created as accepted. Returns each
   * process's outcomes.
   */
  async raceEnqueue(processes: number, count: number): Promise<{ n: number; id: string; duplicate: boolean }[][]> {
    const racers = Array.from({ length: processes }, () => {
      const child = spawn(process.execPath, ['--import', 'tsx', ENQUEUE_FILE, this.location, String(count)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      let output = '';
      const ready = new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.startsWith('ready\n')) resolve();
        });
      });
      const done = new Promise<{ n: number; id: string; duplicate: boolean }[]>((resolve, reject) => {
        child.once('exit', (code) => {
          if (code !== 0) reject(new Error(`enqueue process exited with ${code}`));
          else resolve(JSON.parse(output.slice('ready\n'.length)));
        });
      });
      return { child, ready, done };
    });
    await Promise.all(racers.map((racer) => racer.ready));
    for (const racer of racers) racer.child.stdin.end('go\n');
    const results = await Promise.all(racers.map((racer) => racer.done));
    const seen = new Set(this.accepted.map((job) => job.jobId));
    for (const outcome of results.flat()) {
      if (outcome.duplicate || seen.has(outcome.id)) continue;
      seen.add(outcome.id);
      this.accepted.push({ jobId: outcome.id, effectKey: chaosMessageId(chaosIdempotencyKey(outcome.n)), effectOnce: true });
    }
    return results;
  }

  /** Starts a worker process and resolves once it is leasing. */
  async startWorker(options: { concurrency?: number; failpoints?: string; config?: Partial<WorkerConfig> } = {}): Promise<RunningWorker> {
    this.workerCount += 1;
    const workerId = `chaos-worker-${this.workerCount}`;
    const config: WorkerConfig = {
      store: this.location,
      workerId,
      smtpPort: this.sink.smtpPort,
      lookupUrl: this.sink.lookupUrl,
      concurrency: options.concurrency ?? 4,
      ...this.settings,
      logFile: join(this.folder, `${workerId}.log`),
      ...options.config,
    };
    const env: NodeJS.ProcessEnv = { ...process.env, CHAOS_CONFIG: JSON.stringify(config) };
    if (options.failpoints) env.VOUCH_FAILPOINTS = options.failpoints;
    else delete env.VOUCH_FAILPOINTS;
    const child = fork(WORKER_FILE, [], { env, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const ready = new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      void exited.then((code) =>
        reject(new Error(`chaos worker ${workerId} exited with ${code} before it was ready: ${stderr.slice(-2000)}`)),
      );
    });
    const running = { workerId, child, exited };
    this.workers.push(running);
    await ready;
    return running;
  }

  /** SIGKILLs a worker and records when, for the recovery check. */
  async kill(worker: RunningWorker): Promise<void> {
    if (worker.child.exitCode !== null || worker.child.signalCode !== null) return;
    this.kills.push({ workerId: worker.workerId, at: Date.now() });
    worker.child.kill('SIGKILL');
    await worker.exited;
  }

  /** Records a worker that killed itself through a failpoint. */
  async recordSelfKill(worker: RunningWorker): Promise<void> {
    await worker.exited;
    if (worker.child.signalCode === 'SIGKILL') this.kills.push({ workerId: worker.workerId, at: Date.now() });
  }

  /** Polls the store until no accepted job is pending, or the time runs out. Returns true when quiet. */
  async waitQuiet(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const counts = await this.store.countByState();
      const pending = counts.scheduled + counts.available + counts.running + counts.retryable;
      if (pending === 0) return true;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return false;
  }

  /** Reads the whole history of the case. */
  async history(): Promise<History> {
    const fromStore = await readStoreHistory(
      this.store,
      this.accepted.map((job) => job.jobId),
    );
    const counts = new Map<string, number>();
    for (const message of this.sink.messages()) {
      if (message.messageId) counts.set(message.messageId, (counts.get(message.messageId) ?? 0) + 1);
    }
    return {
      leaseMs: this.settings.leaseMs,
      sweepIntervalMs: this.settings.sweepIntervalMs,
      accepted: this.accepted,
      ...fromStore,
      sink: [...counts].map(([idempotencyKey, count]) => ({ idempotencyKey, count })),
      kills: this.kills,
    };
  }

  async close(): Promise<void> {
    for (const worker of this.workers) {
      if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
    }
    await Promise.all(this.workers.map((worker) => worker.exited));
    await this.store.close();
    await this.sink.close();
    if (this.schema && this.cluster === null) {
      const { default: pg } = await import('pg');
      const client = new pg.Client({ connectionString: this.postgresUrl });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS "${this.schema}" CASCADE`);
      await client.end();
    }
    rmSync(this.folder, { recursive: true, force: true });
  }
}

export { CHAOS_JOB };
