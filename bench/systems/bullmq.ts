import { createPostgresBackend, Queue, Worker } from 'bullmq';
import pg from 'pg';
import type { Adapter, BenchPayload, WorkerSettings } from './adapter.js';
import { POSTGRES, QUEUE, REDIS, SCHEMAS } from './catalog.js';

/**
 * BullMQ at its defaults, on Redis or on its PostgreSQL backend. The backend
 * is chosen the way BullMQ documents it: by passing `createPostgresBackend` as
 * the backend factory (the last constructor argument) of Queue and Worker,
 * with a node-postgres config that carries the `schema` as connection.
 */
export class BullmqAdapter implements Adapter {
  private queue: Queue | undefined;
  private worker: Worker | undefined;

  constructor(private readonly backend: 'redis' | 'postgres') {}

  private get prefix(): string {
    return SCHEMAS['bullmq-redis'];
  }

  private get schema(): string {
    return SCHEMAS['bullmq-postgres'];
  }

  private makeQueue(): Queue {
    if (this.backend === 'redis') {
      return new Queue(QUEUE, { connection: { ...REDIS }, prefix: this.prefix });
    }
    return new Queue(QUEUE, { connection: { ...POSTGRES, schema: this.schema, migrate: true } }, createPostgresBackend) as unknown as Queue;
  }

  async reset(): Promise<void> {
    if (this.backend === 'postgres') {
      const client = new pg.Client({ ...POSTGRES });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
      await client.end();
      return;
    }
    // Only this benchmark's keys: the Redis server may be shared.
    const queue = this.makeQueue();
    await queue.obliterate({ force: true });
    await queue.close();
  }

  async open(): Promise<void> {
    this.queue = this.makeQueue();
    await this.queue.waitUntilReady();
    await this.queue.getJobCounts('wait');
  }

  async enqueueMany(payloads: readonly BenchPayload[]): Promise<void> {
    await this.requireQueue().addBulk(payloads.map((data) => ({ name: QUEUE, data })));
  }

  async enqueueOne(payload: BenchPayload): Promise<void> {
    await this.requireQueue().add(QUEUE, payload);
  }

  async startWorker(settings: WorkerSettings): Promise<Record<string, unknown>> {
    const { body, concurrency } = settings;
    // For counting re-runs only: a dead worker's lock expires after 5 s instead of 30 s.
    const recovery = settings.fastRecovery ? { lockDuration: 5000, stalledInterval: 1000 } : {};
    const processor = async (job: { id?: string; data: BenchPayload }) => {
      await body(String(job.id), job.data);
    };
    this.worker =
      this.backend === 'redis'
        ? new Worker(QUEUE, processor, { connection: { ...REDIS }, prefix: this.prefix, concurrency, ...recovery })
        : (new Worker(
            QUEUE,
            processor,
            { connection: { ...POSTGRES, schema: this.schema }, concurrency, ...recovery },
            createPostgresBackend,
          ) as unknown as Worker);
    this.worker.on('error', () => {});
    await this.worker.waitUntilReady();
    return {
      backend: this.backend === 'redis' ? `Redis, key prefix ${this.prefix}` : `PostgreSQL (createPostgresBackend), schema ${this.schema}`,
      worker: `Worker defaults (lockDuration 30 s, stalledInterval 30 s, maxStalledCount 1, completed jobs kept), concurrency ${concurrency}`,
      ...(settings.fastRecovery ? { recovery: 'lockDuration 5 s, stalledInterval 1 s (re-run count only)' } : {}),
    };
  }

  async pendingCount(): Promise<number> {
    const counts = await this.requireQueue().getJobCounts('wait', 'active', 'delayed', 'prioritized', 'waiting-children');
    return Object.values(counts).reduce((sum, count) => sum + count, 0);
  }

  private requireQueue(): Queue {
    if (!this.queue) throw new Error('open() first');
    return this.queue;
  }
}
