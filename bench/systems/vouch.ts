import { rmSync } from 'node:fs';
import { join } from 'node:path';
// The build, as users run it: bench/run.ts compiles src/ into dist/ before the first child starts.
import type { StandardSchemaV1 } from '@standard-schema/spec';
import { Client, defineJob, type JobContext, type Store, Worker } from '../../dist/index.js';
import { SqliteStore } from '../../dist/sqlite.js';
import type { Adapter, AdapterContext, BenchPayload, WorkerSettings } from './adapter.js';
import { POSTGRES_URL, QUEUE, SCHEMAS } from './catalog.js';

/**
 * A Standard Schema that accepts the payload as it is. The peers validate
 * nothing, so vouch gets a validator that costs nothing instead of zod.
 */
export const passThrough: StandardSchemaV1<unknown, BenchPayload> = {
  '~standard': { version: 1, vendor: 'bench', validate: (value) => ({ value: value as BenchPayload }) },
};

/** The store is opened by a factory so that the same adapter serves SQLite and PostgreSQL. */
interface StoreKind {
  open(): Promise<Store<any>>;
  reset(): Promise<void>;
  settings: Record<string, unknown>;
}

export function sqliteStoreKind(context: AdapterContext): StoreKind {
  const path = join(context.dir, `${context.name}.db`);
  return {
    // Every vouch default applies: synchronous = full, busy timeout 5 s, wake poll 25 ms.
    open: async () => new SqliteStore({ path }),
    reset: async () => {
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    },
    settings: { store: 'SqliteStore defaults: WAL, synchronous=full, wakePollMs 25', path: 'a file in the run folder' },
  };
}

export function postgresStoreKind(): StoreKind {
  const schema = SCHEMAS['vouch-postgres'];
  return {
    open: async () => {
      const module = (await import('../../dist/postgres.js')) as Record<string, any>;
      const store = new module.PostgresStore({ connectionString: POSTGRES_URL, schema });
      await store.migrate();
      return store as Store<any>;
    },
    reset: async () => {
      const pg = await import('pg');
      const client = new pg.default.Client({ connectionString: POSTGRES_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    },
    settings: { store: 'PostgresStore defaults', schema },
  };
}

export class VouchAdapter implements Adapter {
  private store: Store<any> | undefined;
  private client: Client | undefined;
  private worker: Worker | undefined;

  constructor(private readonly kind: StoreKind) {}

  async reset(): Promise<void> {
    await this.kind.reset();
  }

  async open(): Promise<void> {
    this.store = await this.kind.open();
    this.client = new Client({ store: this.store });
    await this.store.countByState();
  }

  async enqueueMany(payloads: readonly BenchPayload[]): Promise<void> {
    await this.requireClient().enqueueMany(
      jobDefinition({ concurrency: 1, body: () => {} }),
      payloads.map((payload) => ({ payload })),
    );
  }

  async enqueueOne(payload: BenchPayload): Promise<void> {
    await this.requireClient().enqueue(jobDefinition({ concurrency: 1, body: () => {} }), payload);
  }

  async startWorker(settings: WorkerSettings): Promise<Record<string, unknown>> {
    if (!this.store) throw new Error('open() first');
    this.worker = new Worker({ store: this.store, jobs: [jobDefinition(settings)], concurrency: settings.concurrency });
    await this.worker.start();
    return {
      ...this.kind.settings,
      worker: `Worker defaults (lease 10 s, heartbeat 3.3 s, sweep 2 s, poll 1 s, prefetch auto (from the concurrency up to 500), default pino logger at info to stderr: failures logged, completions at debug not written), concurrency ${settings.concurrency}`,
      job:
        settings.variant === 'effect' ? 'perform calls ctx.effect once' : settings.variant === 'verify' ? 'job has a verify' : 'plain job',
    };
  }

  async pendingCount(): Promise<number> {
    if (!this.store) throw new Error('open() first');
    const counts = await this.store.countByState();
    return counts.scheduled + counts.available + counts.running + counts.retryable;
  }

  private requireClient(): Client {
    if (!this.client) throw new Error('open() first');
    return this.client;
  }
}

function jobDefinition(settings: WorkerSettings) {
  const { body, variant = 'plain' } = settings;
  return defineJob({
    name: QUEUE,
    payload: passThrough,
    async perform(ctx: JobContext<BenchPayload>) {
      await body(ctx.jobId, ctx.payload);
      if (variant === 'effect') await ctx.effect('noop', () => 1);
      return null;
    },
    ...(variant === 'verify' ? { verify: () => true } : {}),
  });
}
