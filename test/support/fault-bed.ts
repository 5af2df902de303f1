import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { Client } from '../../src/core/client.js';
import { idempotencyKeyFor } from '../../src/core/job-context.js';
import { isTerminal } from '../../src/core/states.js';
import type { AttemptRecord, EffectRecord, JobRecord } from '../../src/core/store.js';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { type DeliverPayload, deliverJob, FAULT_NOTES_SQL } from '../fixtures/deliver-job.js';
import type { FaultWorkerConfig } from '../fixtures/fault-worker.js';
import { type EffectSink, startEffectSink } from './effect-sink.js';
import { type FixtureProcess, ProcessGroup } from './processes.js';
import { waitFor } from './wait.js';

export const FAULT_WORKER = fileURLToPath(new URL('../fixtures/fault-worker.ts', import.meta.url));

export interface FaultSettings {
  leaseMs: number;
  sweepIntervalMs: number;
  maxAttempts: number;
}

/** A job's whole record as the parent reads it back: the row, its attempts, its effects and its committed notes. */
export interface JobReadback {
  job: JobRecord;
  attempts: AttemptRecord[];
  effects: EffectRecord[];
  /** The attempt numbers whose ctx.transaction write committed. */
  notes: number[];
}

/**
 * The world of one fault test: a real SQLite file, a real effect sink on
 * 127.0.0.1 and the worker processes the test starts. The test process
 * holds its own connection to the file, on the system clock, to enqueue and
 * to read back what happened.
 */
export class FaultBed {
  readonly processes = new ProcessGroup();
  readonly store: SqliteStore;
  readonly client: Client;

  private constructor(
    readonly settings: FaultSettings,
    readonly folder: string,
    readonly dbPath: string,
    readonly sink: EffectSink,
  ) {
    this.store = new SqliteStore({ path: dbPath });
    this.store.db.exec(FAULT_NOTES_SQL);
    this.client = new Client({ store: this.store });
  }

  static async create(settings: FaultSettings): Promise<FaultBed> {
    const folder = mkdtempSync(join(tmpdir(), 'vouch-fault-'));
    return new FaultBed(settings, folder, join(folder, 'jobs.db'), await startEffectSink());
  }

  /** Enqueues deliveries n = first .. first+count-1 and returns their job ids. */
  async enqueue(count: number, payload: Omit<DeliverPayload, 'n'> = {}, first = 0): Promise<string[]> {
    const definition = deliverJob({ sinkUrl: this.sink.url, leaseMs: this.settings.leaseMs, maxAttempts: this.settings.maxAttempts });
    const items = Array.from({ length: count }, (_, index) => ({ payload: { ...payload, n: first + index } }));
    const jobs = await this.client.enqueueMany(definition, items);
    return jobs.map((job) => job.id);
  }

  /** Starts a fault-worker process. `failpoints` becomes its VOUCH_FAILPOINTS. */
  spawnWorker(workerId: string, overrides: Partial<FaultWorkerConfig> = {}, failpoints = ''): FixtureProcess {
    const config: FaultWorkerConfig = {
      dbPath: this.dbPath,
      sinkUrl: this.sink.url,
      workerId,
      leaseMs: this.settings.leaseMs,
      maxAttempts: this.settings.maxAttempts,
      sweepIntervalMs: this.settings.sweepIntervalMs,
      concurrency: 2,
      ...overrides,
    };
    return this.processes.start(workerId, FAULT_WORKER, [JSON.stringify(config)], { VOUCH_FAILPOINTS: failpoints });
  }

  async read(jobId: string): Promise<JobReadback> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new Error(`job ${jobId} is missing from the store`);
    const notes = this.store.db
      .prepare('SELECT attempt FROM fault_notes WHERE job_id = ? ORDER BY attempt')
      .pluck()
      .all(Number(jobId)) as number[];
    return { job, attempts: await this.store.listAttempts(jobId), effects: await this.store.listEffects(jobId), notes };
  }

  readAll(jobIds: readonly string[]): Promise<JobReadback[]> {
    return Promise.all(jobIds.map((id) => this.read(id)));
  }

  /** Waits until every job is terminal, and fails with the states seen if that takes longer than timeoutMs. */
  async waitForTerminal(jobIds: readonly string[], timeoutMs: number, workers: readonly FixtureProcess[] = []): Promise<void> {
    let waiting: string[] = [];
    try {
      await waitFor(
        `${jobIds.length} jobs to finish`,
        async () => {
          const jobs = await Promise.all(jobIds.map((id) => this.store.getJob(id)));
          waiting = jobs.filter((job) => !job || !isTerminal(job.state)).map((job) => `${job?.id}:${job?.state}`);
          return waiting.length === 0;
        },
        { timeoutMs, intervalMs: 50 },
      );
    } catch (error) {
      const diagnostics = workers.map((worker) => worker.diagnostics()).join('');
      throw new Error(`${(error as Error).message}; still waiting: ${waiting.slice(0, 10).join(', ')}${diagnostics}`);
    }
  }

  /**
   * The end state every fault test demands: each job completed by exactly one
   * attempt, its ctx.transaction write committed once by that attempt, and
   * the sink holding exactly one request per delivery key.
   */
  async expectEachCompletedOnce(jobIds: readonly string[]): Promise<JobReadback[]> {
    const all = await this.readAll(jobIds);
    for (const { job, attempts, notes } of all) {
      const context = `job ${job.id} (${job.key})`;
      expect(job.state, context).toBe('completed');
      const committed = attempts.filter((attempt) => attempt.outcome === 'succeeded' || attempt.outcome === 'verified');
      expect(
        committed.map((attempt) => attempt.attempt),
        context,
      ).toEqual([job.attempt]);
      expect(notes, `${context}: committed ctx.transaction writes`).toEqual([job.attempt]);
      expect(
        attempts.filter((attempt) => attempt.outcome === null),
        `${context}: attempts left open`,
      ).toEqual([]);
      const effectKey = deliveryEffectKey(job);
      expect(this.sink.count(effectKey), `${context}: requests at the sink`).toBe(1);
      expect(job.result, `${context}: result`).toEqual({ receiptId: this.sink.receipt(effectKey)?.receiptId });
    }
    expect(this.sink.duplicates()).toEqual([]);
    expect(this.sink.total()).toBe(jobIds.length);
    return all;
  }

  async dispose(): Promise<void> {
    await this.processes.killAll();
    await this.sink.close();
    await this.store.close();
    rmSync(this.folder, { recursive: true, force: true });
  }
}

/** The idempotency key of a delivery job's one effect, as the sink sees it. */
export function deliveryEffectKey(job: Pick<JobRecord, 'id' | 'key'>): string {
  return idempotencyKeyFor(job.key, job.id, 'deliver');
}
