import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { expect } from 'vitest';
import { Client } from '../../src/core/client.js';
import { idempotencyKeyFor } from '../../src/core/job-context.js';
import { isTerminal } from '../../src/core/states.js';
import type { AttemptRecord, EffectRecord, JobRecord } from '../../src/core/store.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent } from '../../src/stores/postgres/sql.js';
import { type EffectSink, startEffectSink } from '../support/effect-sink.js';
import { type FixtureProcess, ProcessGroup } from '../support/processes.js';
import { waitFor } from '../support/wait.js';
import { createDeliveriesSql, deliveriesTable, type PgDeliverPayload, pgDeliverJob } from './fixtures/pg-deliver-job.js';
import type { PgWorkerConfig } from './fixtures/pg-worker.js';

export const PG_WORKER = fileURLToPath(new URL('./fixtures/pg-worker.ts', import.meta.url));

export interface PgBedSettings {
  leaseMs: number;
  sweepIntervalMs: number;
  maxAttempts: number;
}

export interface PgReadback {
  job: JobRecord;
  attempts: AttemptRecord[];
  effects: EffectRecord[];
  /** The attempt numbers whose ctx.transaction row committed. */
  deliveries: number[];
}

/**
 * The world of one PostgreSQL fault test: a fresh schema in a real database,
 * a real effect sink on 127.0.0.1, and the worker processes the test starts.
 * The test process keeps its own store on the schema to enqueue and to read
 * back what happened.
 */
export class PgBed {
  readonly processes = new ProcessGroup();
  readonly client: Client;

  private constructor(
    readonly settings: PgBedSettings,
    /** The database URL without a schema. */
    readonly databaseUrl: string,
    readonly schema: string,
    readonly store: PostgresStore,
    readonly sink: EffectSink,
    private readonly dropSchema: boolean,
  ) {
    this.client = new Client({ store });
  }

  /** Creates the schema (unique unless named) with the store's tables and the deliveries table. */
  static async create(databaseUrl: string, settings: PgBedSettings, options: { schema?: string } = {}): Promise<PgBed> {
    const schema = options.schema ?? `vouch_fault_${process.pid}_${randomBytes(3).toString('hex')}`;
    const store = new PostgresStore({ connectionString: databaseUrl, schema, listen: false, logger: pino({ level: 'silent' }) });
    await store.migrate();
    await store.pool.query(createDeliveriesSql(schema));
    return new PgBed(settings, databaseUrl, schema, store, await startEffectSink(), options.schema === undefined);
  }

  /** The store's address as a worker process takes it. */
  get location(): string {
    const url = new URL(this.databaseUrl);
    url.searchParams.set('schema', this.schema);
    return url.toString();
  }

  definition() {
    return pgDeliverJob({ ...this.settings, sinkUrl: this.sink.url, schema: this.schema, workerId: 'enqueuer' });
  }

  /** Enqueues deliveries n = first .. first+count-1 in one bulk enqueue and returns their job ids. */
  async enqueue(count: number, payload: Omit<PgDeliverPayload, 'n'> = {}, first = 0): Promise<string[]> {
    const items = Array.from({ length: count }, (_, index) => ({ payload: { sleepMs: 0, blockMs: 0, ...payload, n: first + index } }));
    const jobs = await this.client.enqueueMany(this.definition(), items);
    return jobs.map((job) => job.id);
  }

  spawnWorker(workerId: string, overrides: Partial<PgWorkerConfig> = {}, failpoints = ''): FixtureProcess {
    const config: PgWorkerConfig = {
      url: this.location,
      schema: this.schema,
      sinkUrl: this.sink.url,
      workerId,
      leaseMs: this.settings.leaseMs,
      maxAttempts: this.settings.maxAttempts,
      sweepIntervalMs: this.settings.sweepIntervalMs,
      concurrency: 2,
      ...overrides,
    };
    return this.processes.start(workerId, PG_WORKER, [JSON.stringify(config)], { VOUCH_FAILPOINTS: failpoints });
  }

  async read(jobId: string): Promise<PgReadback> {
    const job = await this.store.getJob(jobId);
    if (!job) throw new Error(`job ${jobId} is missing from the store`);
    const { rows } = await this.store.pool.query(`SELECT attempt FROM ${deliveriesTable(this.schema)} WHERE job_id = $1 ORDER BY attempt`, [
      jobId,
    ]);
    return {
      job,
      attempts: await this.store.listAttempts(jobId),
      effects: await this.store.listEffects(jobId),
      deliveries: rows.map((row: { attempt: number }) => row.attempt),
    };
  }

  async readAll(jobIds: readonly string[]): Promise<PgReadback[]> {
    const all: PgReadback[] = [];
    for (const id of jobIds) all.push(await this.read(id));
    return all;
  }

  /** How many jobs are completed now; reads errors as "unknown" (-1), for polling through an outage. */
  async completedCount(): Promise<number> {
    try {
      return (await this.store.countByState()).completed;
    } catch {
      return -1;
    }
  }

  /** Waits until every job is terminal; fails with the states seen and the workers' output if that takes too long. */
  async waitForTerminal(jobIds: readonly string[], timeoutMs: number, workers: readonly FixtureProcess[] = []): Promise<void> {
    let waiting: string[] = [];
    try {
      await waitFor(
        `${jobIds.length} jobs to finish`,
        async () => {
          try {
            const { rows } = await this.store.pool.query(
              `SELECT id::text AS id, state FROM ${quoteIdent(this.schema)}.jobs WHERE id = ANY($1::bigint[])`,
              [jobIds],
            );
            waiting = rows
              .filter((row: { state: JobRecord['state'] }) => !isTerminal(row.state))
              .map((row: any) => `${row.id}:${row.state}`);
            return rows.length === jobIds.length && waiting.length === 0;
          } catch {
            return false;
          }
        },
        { timeoutMs, intervalMs: 100 },
      );
    } catch (error) {
      const diagnostics = workers.map((worker) => worker.diagnostics()).join('');
      throw new Error(`${(error as Error).message}; still waiting: ${waiting.slice(0, 10).join(', ')}${diagnostics}`);
    }
  }

  /**
   * The end state every fault test demands: each job completed by exactly one
   * attempt, its ctx.transaction row committed once by that attempt, and the
   * sink holding exactly one request per delivery.
   */
  async expectEachCompletedOnce(jobIds: readonly string[]): Promise<PgReadback[]> {
    const all = await this.readAll(jobIds);
    for (const { job, attempts, deliveries } of all) {
      const context = `job ${job.id}`;
      expect(job.state, context).toBe('completed');
      const committed = attempts.filter((attempt) => attempt.outcome === 'succeeded' || attempt.outcome === 'verified');
      expect(
        committed.map((attempt) => attempt.attempt),
        context,
      ).toEqual([job.attempt]);
      expect(deliveries, `${context}: committed ctx.transaction rows`).toEqual([job.attempt]);
      expect(
        attempts.filter((attempt) => attempt.outcome === null),
        `${context}: attempts left open`,
      ).toEqual([]);
      const key = deliveryKey(job);
      expect(this.sink.count(key), `${context}: requests at the sink`).toBe(1);
      expect((job.result as { receiptId: string }).receiptId, `${context}: result`).toBe(this.sink.receipt(key)?.receiptId);
    }
    expect(this.sink.duplicates()).toEqual([]);
    expect(this.sink.total()).toBe(jobIds.length);
    return all;
  }

  async dispose(): Promise<void> {
    await this.processes.killAll();
    await this.sink.close();
    if (this.dropSchema) await this.store.pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(this.schema)} CASCADE`).catch(() => {});
    await this.store.close();
  }
}

/** The idempotency key of a delivery's one effect, as the sink sees it. */
export function deliveryKey(job: Pick<JobRecord, 'id' | 'key'>): string {
  return idempotencyKeyFor(job.key, job.id, 'deliver');
}

/** Runs one query on a short-lived connection, for tests that poke the server from the side. */
export async function sideQuery<T = any>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  client.on('error', () => {});
  await client.connect();
  try {
    return (await client.query(text, values)).rows as T[];
  } finally {
    await client.end().catch(() => {});
  }
}
