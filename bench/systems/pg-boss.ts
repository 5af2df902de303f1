import pg from 'pg';
import { PgBoss } from 'pg-boss';
import type { Adapter, AdapterContext, BenchPayload, WorkerSettings } from './adapter.js';
import { POSTGRES, QUEUE, SCHEMAS } from './catalog.js';

/** Jobs per fetch in the tuned mode; the handler runs them one after another, so at most `concurrency` run at once. */
const TUNED_BATCH_SIZE = 10;

/**
 * pg-boss 12 on PostgreSQL, in its own schema.
 *
 * - defaults: `localConcurrency` set to the concurrency, everything else as
 *   shipped (batchSize 1, pollingIntervalSeconds 2, no LISTEN/NOTIFY).
 * - tuned: as its docs tune it for throughput: `useListenNotify` on the
 *   instance and `notify` on the queue, `batchSize` 10 with
 *   `burstWhenBatchFull` (fetch again at once while batches come back full).
 */
export class PgBossAdapter implements Adapter {
  private boss: PgBoss | undefined;
  private readonly pool = new pg.Pool({ ...POSTGRES, max: 1 });
  private readonly schema = SCHEMAS['pg-boss'];

  constructor(
    private readonly context: AdapterContext,
    private readonly fastRecovery: boolean,
  ) {}

  private get tuned(): boolean {
    return this.context.mode === 'tuned';
  }

  private async start(extra: Record<string, unknown> = {}): Promise<PgBoss> {
    const boss = new PgBoss({ ...POSTGRES, schema: this.schema, ...(this.tuned ? { useListenNotify: true } : {}), ...extra });
    boss.on('error', () => {});
    await boss.start();
    return boss;
  }

  async reset(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
    const boss = await this.start();
    // For counting re-runs only: a dead worker's jobs expire after 2 s instead of 15 min.
    await boss.createQueue(QUEUE, { ...(this.tuned ? { notify: true } : {}), ...(this.fastRecovery ? { expireInSeconds: 2 } : {}) });
    await boss.stop({ graceful: false });
  }

  async open(): Promise<void> {
    this.boss = await this.start(this.fastRecovery ? { superviseIntervalSeconds: 1 } : {});
    await this.pendingCount();
  }

  async enqueueMany(payloads: readonly BenchPayload[]): Promise<void> {
    await this.requireBoss().insert(
      QUEUE,
      payloads.map((data) => ({ data: { ...data } })),
    );
  }

  async enqueueOne(payload: BenchPayload): Promise<void> {
    await this.requireBoss().send(QUEUE, { ...payload });
  }

  async startWorker(settings: WorkerSettings): Promise<Record<string, unknown>> {
    const { body, concurrency } = settings;
    const options = this.tuned
      ? { localConcurrency: concurrency, batchSize: TUNED_BATCH_SIZE, burstWhenBatchFull: true }
      : { localConcurrency: concurrency };
    await this.requireBoss().work<BenchPayload>(QUEUE, options, async (jobs) => {
      for (const job of jobs) await body(job.id, job.data);
    });
    if (this.fastRecovery) {
      setInterval(() => void this.boss?.supervise(QUEUE).catch(() => {}), 1000);
    }
    return {
      instance: this.tuned
        ? `useListenNotify true, schema ${this.schema}, other constructor options at defaults`
        : `constructor defaults, schema ${this.schema}`,
      queue: this.tuned ? 'createQueue notify: true' : 'createQueue defaults (expireInSeconds 900, retryLimit 2)',
      work: this.tuned
        ? `localConcurrency ${concurrency}, batchSize ${TUNED_BATCH_SIZE} (a batch's jobs run one after another), burstWhenBatchFull true, notifyPollingIntervalSeconds 30 (default)`
        : `localConcurrency ${concurrency}, batchSize 1, pollingIntervalSeconds 2 (defaults)`,
      ...(this.fastRecovery ? { recovery: 'queue expireInSeconds 2, superviseIntervalSeconds 1 (re-run count only)' } : {}),
    };
  }

  async pendingCount(): Promise<number> {
    const result = await this.pool.query(
      `SELECT count(*)::int AS n FROM ${this.schema}.job WHERE name = $1 AND state IN ('created', 'retry', 'active')`,
      [QUEUE],
    );
    return result.rows[0].n as number;
  }

  private requireBoss(): PgBoss {
    if (!this.boss) throw new Error('open() first');
    return this.boss;
  }
}
