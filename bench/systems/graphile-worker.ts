import { makeWorkerUtils, run, type WorkerUtils } from 'graphile-worker';
import pg from 'pg';
import type { Adapter, AdapterContext, BenchPayload, WorkerSettings } from './adapter.js';
import { POSTGRES, POSTGRES_URL, QUEUE, SCHEMAS } from './catalog.js';

/**
 * graphile-worker 0.18 on PostgreSQL, in its own schema.
 *
 * - defaults: `concurrentJobs` set to the concurrency and `maxPoolSize` as its
 *   docs recommend (the larger of 10 and concurrency + 2); no batching.
 * - batched: the configuration behind its published headline figure
 *   (worker.graphile.org/docs/performance): `localQueue.size` 500,
 *   `completeJobBatchDelay` 0, `failJobBatchDelay` 0, `maxPoolSize`
 *   concurrency + 1.
 */
export class GraphileWorkerAdapter implements Adapter {
  private utils: WorkerUtils | undefined;
  private readonly pool = new pg.Pool({ ...POSTGRES, max: 1 });
  private readonly schema = SCHEMAS['graphile-worker'];

  constructor(private readonly context: AdapterContext) {}

  async reset(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
    const utils = await makeWorkerUtils({ connectionString: POSTGRES_URL, schema: this.schema });
    await utils.migrate();
    await utils.release();
  }

  async open(): Promise<void> {
    this.utils = await makeWorkerUtils({ connectionString: POSTGRES_URL, schema: this.schema });
    await this.pendingCount();
  }

  async enqueueMany(payloads: readonly BenchPayload[]): Promise<void> {
    await this.requireUtils().addJobs(payloads.map((payload) => ({ identifier: QUEUE, payload })));
  }

  async enqueueOne(payload: BenchPayload): Promise<void> {
    await this.requireUtils().addJob(QUEUE, payload);
  }

  async startWorker(settings: WorkerSettings): Promise<Record<string, unknown>> {
    const { body, concurrency } = settings;
    const worker =
      this.context.mode === 'tuned'
        ? {
            concurrentJobs: concurrency,
            maxPoolSize: concurrency + 1,
            localQueue: { size: 500 },
            completeJobBatchDelay: 0,
            failJobBatchDelay: 0,
          }
        : { concurrentJobs: concurrency, maxPoolSize: Math.max(10, concurrency + 2) };
    await run({
      noHandleSignals: true,
      taskList: {
        [QUEUE]: async (payload, helpers) => {
          await body(helpers.job.id, payload as BenchPayload);
        },
      },
      preset: { worker: { connectionString: POSTGRES_URL, schema: this.schema, ...worker } },
    });
    return {
      preset: `worker: ${JSON.stringify(worker)}, schema ${this.schema}; everything else at defaults (pollInterval 2 s, LISTEN/NOTIFY on, default console logger)`,
    };
  }

  /** graphile-worker keeps a dead worker's locks for 4 hours; its documented remedy is forceUnlockWorkers. */
  async recoverAfterKill(): Promise<void> {
    const result = await this.pool.query(`SELECT DISTINCT locked_by FROM ${this.schema}._private_jobs WHERE locked_by IS NOT NULL`);
    const workerIds = result.rows.map((row) => row.locked_by as string);
    if (workerIds.length > 0) await this.requireUtils().forceUnlockWorkers(workerIds);
  }

  async pendingCount(): Promise<number> {
    // Completed jobs are deleted; a job whose completion sits in an unflushed batch is still here.
    const result = await this.pool.query(`SELECT count(*)::int AS n FROM ${this.schema}._private_jobs`);
    return result.rows[0].n as number;
  }

  private requireUtils(): WorkerUtils {
    if (!this.utils) throw new Error('open() first');
    return this.utils;
  }
}
