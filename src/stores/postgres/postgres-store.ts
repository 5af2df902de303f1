import pg from 'pg';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.js';
import { ConfigurationError, toError, VouchError } from '../../core/errors.js';
import { errorForLog } from '../../core/log-error.js';
import { createDefaultLogger } from '../../core/logger.js';
import { rejectUnknownOptions, shown } from '../../core/option-errors.js';
import { emptyStateCounts, type JobState } from '../../core/states.js';
import type {
  AttemptRecord,
  AuditFindings,
  AuditQuery,
  Completion,
  EffectDone,
  EffectIntent,
  EffectIntentOutcome,
  EffectRecord,
  EnqueueOutcome,
  EnqueueTransactionOptions,
  Failure,
  JobRecord,
  Lease,
  LeasedJob,
  LeaseRequest,
  NewJob,
  RecoveredJob,
  Store,
} from '../../core/store.js';
import {
  type AttemptEndStatements,
  abandonAttempt,
  attemptEndStatements,
  type FailGroupItem,
  failGroup,
  releaseAttempt,
} from './attempt-end.js';
import { type CommitStatements, commitAttempt, commitStatements } from './commit.js';
import { type CommitGroupItem, commitGroupStatement, writeCommitGroup } from './commit-group.js';
import { explainMissingSchema, rollbackQuietly, transactionQueryable, withClient } from './connection.js';
import {
  type DoneGroupItem,
  type EffectStatements,
  effectStatements,
  type IntentGroupItem,
  writeDoneGroup,
  writeIntentGroup,
} from './effects.js';
import { type EnqueueStatements, enqueueStatements, insertJobs, needsKeyLocks } from './enqueue.js';
import { GroupWriter } from './group-writer.js';
import { auditFindings, type InspectStatements, inspectStatements } from './inspect.js';
import { type LeaseStatements, leaseJobs, leaseStatements, nextDueInMs, renewLeases } from './lease.js';
import { migrate } from './migrations.js';
import { Notifier } from './notifier.js';
import { type PruneOptions, pruneJobs, pruneStatement } from './prune.js';
import { toAttemptRecord, toEffectRecord, toJobRecord } from './rows.js';
import { assertSchemaName, compareJobIds, parseJobId, type SchemaNames, type Statement, schemaNames } from './sql.js';
import { analyzeIfStale } from './statistics.js';
import { type SweepStatements, sweepExpired, sweepStatements } from './sweep.js';

/** How often a sweep checks whether the jobs table needs ANALYZE, in milliseconds. */
const STATISTICS_CHECK_INTERVAL_MS = 10_000;

/** Maximum attempts one group statement settles (group-writer.ts). More wait for the next one. */
const GROUP_MAX = 1000;
/**
 * How many group statements of one kind may be in flight. One keeps each kind
 * to one connection, so a busy worker makes bigger groups, not more
 * connections. Two in flight measured no faster on the no-op benchmark.
 */
const GROUPS_IN_FLIGHT = 1;
/**
 * Items after which a forming group is written without waiting for the end of
 * the turn (group-writer.ts). 50 jobs of 5 ms at concurrency 50 end in one
 * burst of timers: with this, the commits of the first 32 are on their way
 * while the rest of the burst runs.
 */
const GROUP_EARLY_WRITE = 32;
/** Connections a store's own pool opens while its first lease runs (warmPool): the lease's, a commit group's and one more. */
const WARM_CONNECTIONS = 3;

/** The names of PostgresStoreOptions, for rejectUnknownOptions. */
const POSTGRES_STORE_OPTIONS = [
  'pool',
  'connectionString',
  'schema',
  'migrate',
  'poolSize',
  'connectTimeoutMs',
  'listen',
  'logger',
  'clock',
] as const;

export type { PruneOptions } from './prune.js';

export interface PostgresStoreOptions {
  /**
   * A `pg` Pool the application owns. The store uses it and never ends it.
   * Give the pool an 'error' listener: `pg` reports a lost idle connection
   * there, and crashes the process when no listener is attached.
   */
  pool?: pg.Pool;
  /**
   * Connection URL used when no pool is given. The store then owns its pool
   * and ends it on close. A `schema` query parameter (`?schema=jobs`) names the
   * schema, which is how the CLI reaches a schema other than the default.
   */
  connectionString?: string;
  /** Schema that contains the store's tables. @defaultValue 'vouch' */
  schema?: string;
  /** Apply migrations before the first operation. @defaultValue true */
  migrate?: boolean;
  /** Connections in the pool the store creates. @defaultValue 10 */
  poolSize?: number;
  /** How long connecting may take before the operation fails, in milliseconds, for the pool the store creates. @defaultValue 10_000 */
  connectTimeoutMs?: number;
  /** Keep a connection that LISTENs for enqueues, so idle workers wake at once. @defaultValue true */
  listen?: boolean;
  /** Logger for connection errors and outages. @defaultValue pino JSON lines on stderr */
  logger?: Logger;
  /**
   * For tests only: replaces the database clock in every statement, so a
   * test can move time without sleeping. In production leave it unset: the
   * point of the database clock is that no machine's clock decides a lease.
   */
  clock?: Clock;
}

/** Connection that ctx.transaction callbacks receive on PostgreSQL: the client running the commit transaction. */
export type PostgresTransaction = pg.PoolClient;

/** Connection that transactional enqueue accepts as `tx`: a `pg` client inside an open transaction, or a Kysely transaction. */
export type PostgresEnqueueTransaction = pg.ClientBase | { readonly isTransaction: boolean; executeQuery(query: any): Promise<any> };

/**
 * The multi-machine store: any number of worker processes on any number of
 * machines share one PostgreSQL database. Leases are taken with FOR UPDATE
 * SKIP LOCKED, every lease decision uses the database clock, and idle
 * workers are woken by LISTEN/NOTIFY with polling as the fallback.
 */
export class PostgresStore implements Store<PostgresTransaction> {
  readonly pool: pg.Pool;
  readonly schema: string;
  private readonly ownsPool: boolean;
  private readonly names: SchemaNames;
  private statisticsCheckedAt = 0;
  private readonly logger: Logger;
  private readonly clock: Clock | undefined;
  private readonly migrateOnStart: boolean;
  private readonly poolSize: number;
  private poolWarmed = false;
  private migrated: Promise<void> | undefined;
  /** True once a migration of this store finished, so operations stop waiting for it. */
  private schemaReady = false;
  private readonly listeners = new Set<(queue: string | null) => void>();
  private readonly notifier: Notifier | undefined;
  private closed = false;

  /** Fenced writes of many attempts, grouped into one statement per kind (group-writer.ts). */
  private readonly groups: {
    commit: GroupWriter<CommitGroupItem, boolean>;
    fail: GroupWriter<FailGroupItem, boolean>;
    intent: GroupWriter<IntentGroupItem, EffectIntentOutcome>;
    done: GroupWriter<DoneGroupItem, void>;
  };

  /** Every statement, built once for this schema. */
  private readonly sql: {
    enqueue: EnqueueStatements;
    lease: LeaseStatements;
    commit: CommitStatements;
    commitGroup: Statement<{ id: string }>;
    end: AttemptEndStatements;
    effects: EffectStatements;
    sweep: SweepStatements;
    inspect: InspectStatements;
    prune: Statement<{ deleted: number }>;
  };

  constructor(options: PostgresStoreOptions) {
    rejectUnknownOptions('PostgresStore', options, POSTGRES_STORE_OPTIONS, {
      otherwise: 'Other node-postgres settings, such as ssl or max, go on a pg.Pool passed as pool.',
    });
    if (!options || (!options.pool && !options.connectionString)) {
      throw new ConfigurationError(
        'PostgresStore needs a pool or a connectionString, for example new PostgresStore({ connectionString: "postgres://user@host/db" }).',
      );
    }
    if (options.pool && options.connectionString) {
      throw new ConfigurationError('PostgresStore takes a pool or a connectionString, not both.');
    }
    const { connectionString, schemaFromUrl } = splitSchemaParameter(options.connectionString);
    if (options.schema !== undefined && schemaFromUrl !== undefined && options.schema !== schemaFromUrl) {
      throw new ConfigurationError(
        `PostgresStore got schema ${JSON.stringify(options.schema)} in its options and ${JSON.stringify(schemaFromUrl)} in its connection string; give one.`,
      );
    }
    const schema = options.schema ?? schemaFromUrl ?? 'vouch';
    assertSchemaName(schema);
    const poolSize = options.poolSize ?? 10;
    if (!Number.isInteger(poolSize) || poolSize < 1) {
      throw new ConfigurationError(`PostgresStore option poolSize must be a whole number of at least 1; got ${shown(poolSize)}.`);
    }
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    // node-postgres reads 0 as no limit.
    if (!(Number.isInteger(connectTimeoutMs) && connectTimeoutMs >= 0)) {
      throw new ConfigurationError(
        `PostgresStore option connectTimeoutMs must be a whole number of milliseconds, 0 or more (0: no limit); got ${shown(connectTimeoutMs)}.`,
      );
    }
    this.poolSize = poolSize;

    this.schema = schema;
    this.names = schemaNames(schema);
    this.logger = (options.logger ?? createDefaultLogger()).child({ store: 'postgres', schema });
    this.clock = options.clock;
    this.migrateOnStart = options.migrate ?? true;

    let listenConfig: pg.ClientConfig;
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
      listenConfig = { ...options.pool.options };
    } else {
      listenConfig = {
        connectionString,
        application_name: 'vouch',
        connectionTimeoutMillis: connectTimeoutMs,
        keepAlive: true,
      };
      this.pool = new pg.Pool({ ...listenConfig, max: poolSize });
      this.ownsPool = true;
      // pg reports a connection lost while idle in the pool here; without a listener it would crash the process.
      this.pool.on('error', (error) =>
        this.logger.warn({ error: errorForLog(error) }, 'an idle database connection was lost; the pool replaces it'),
      );
    }

    this.sql = {
      enqueue: enqueueStatements(this.names),
      lease: leaseStatements(this.names),
      commit: commitStatements(this.names),
      commitGroup: commitGroupStatement(this.names),
      end: attemptEndStatements(this.names),
      effects: effectStatements(this.names),
      sweep: sweepStatements(this.names),
      inspect: inspectStatements(this.names),
      prune: pruneStatement(this.names),
    };
    const sizes = { maxGroup: GROUP_MAX, maxInFlight: GROUPS_IN_FLIGHT, flushAt: GROUP_EARLY_WRITE };
    const byJob = (a: { lease: Lease }, b: { lease: Lease }) => compareJobIds(a.lease.jobId, b.lease.jobId);
    const byEffect = (a: { lease: Lease; effect: { name: string } }, b: { lease: Lease; effect: { name: string } }) => {
      const job = byJob(a, b);
      if (job !== 0) return job;
      if (a.effect.name === b.effect.name) return 0;
      return a.effect.name < b.effect.name ? -1 : 1;
    };
    this.groups = {
      commit: new GroupWriter<CommitGroupItem, boolean>({
        ...sizes,
        order: byJob,
        write: (items, now) => writeCommitGroup(this.pool, this.sql.commitGroup, this.sql.commit, this.logger, items, now),
      }),
      fail: new GroupWriter<FailGroupItem, boolean>({
        ...sizes,
        order: byJob,
        write: (items, now) => failGroup(this.pool, this.sql.end.fail, items, now),
      }),
      intent: new GroupWriter<IntentGroupItem, EffectIntentOutcome>({
        ...sizes,
        order: byEffect,
        write: (items, now) => writeIntentGroup(this.pool, this.sql.effects, items, now),
      }),
      done: new GroupWriter<DoneGroupItem, void>({
        ...sizes,
        order: byEffect,
        write: (items, now) => writeDoneGroup(this.pool, this.sql.effects, items, now),
      }),
    };
    if (options.listen !== false) {
      this.notifier = new Notifier(
        { ...listenConfig, application_name: `${listenConfig.application_name ?? 'vouch'}:listen` },
        this.names.channel,
        (queue) => this.wake(queue),
        this.logger,
      );
    }
  }

  /** Creates the schema or brings it to the newest version. Safe to call from several processes at once. */
  async migrate(): Promise<void> {
    this.assertOpen();
    await migrate(this.pool, this.names);
    this.migrated ??= Promise.resolve();
    this.schemaReady = true;
  }

  async enqueue(jobs: readonly NewJob[], options: EnqueueTransactionOptions<PostgresEnqueueTransaction> = {}): Promise<EnqueueOutcome[]> {
    if (jobs.length === 0) return [];
    if (options.tx !== undefined) {
      // The application's transaction: its BEGIN and COMMIT decide, and its commit sends the notification.
      const db = transactionQueryable(options.tx);
      return this.run(() => insertJobs(db, this.sql.enqueue, this.names, this.now(), jobs));
    }
    const outcomes = await this.run(() => {
      if (!needsKeyLocks(jobs)) return insertJobs(this.pool, this.sql.enqueue, this.names, this.now(), jobs);
      return withClient(this.pool, async (client) => {
        await client.query('BEGIN');
        try {
          const inserted = await insertJobs(client, this.sql.enqueue, this.names, this.now(), jobs);
          await client.query('COMMIT');
          return inserted;
        } catch (error) {
          await rollbackQuietly(client);
          throw error;
        }
      });
    });
    const queues = new Set(outcomes.filter((outcome) => !outcome.duplicate).map((outcome) => outcome.job.queue));
    for (const queue of queues) this.wake(queue);
    return outcomes;
  }

  lease(request: LeaseRequest): Promise<LeasedJob[]> {
    if (!this.poolWarmed) this.warmPool();
    return this.run(() => leaseJobs(this.pool, this.sql.lease, this.now(), request));
  }

  /**
   * Opens the connections that the first attempts' commits and heartbeats
   * will use while the first lease runs, instead of when those writes are
   * due. A cold pool made the first commit group of a new worker wait for a
   * connection (a few milliseconds on loopback, network round trips elsewhere),
   * and a worker killed in that time re-ran every job it had performed.
   * Only a pool the store made is warmed. A failure is left to the writes
   * that need the connection, which report it.
   */
  private warmPool(): void {
    this.poolWarmed = true;
    if (!this.ownsPool) return;
    const missing = Math.min(WARM_CONNECTIONS, this.poolSize) - this.pool.totalCount;
    for (let index = 0; index < missing; index += 1) {
      this.pool.connect().then(
        (client) => client.release(),
        (error: unknown) => this.logger.debug({ error: errorForLog(toError(error)) }, 'opening a pool connection ahead of use failed'),
      );
    }
  }

  async nextDueInMs(queue: string): Promise<number | null> {
    return this.run(() => nextDueInMs(this.pool, this.sql.lease, this.now(), queue));
  }

  async heartbeat(leases: readonly Lease[]): Promise<Set<string>> {
    const valid = leases.filter((lease) => parseJobId(lease.jobId) !== null);
    return this.run(() => renewLeases(this.pool, this.sql.lease, this.now(), valid));
  }

  recordEffectIntent(lease: Lease, effect: EffectIntent): Promise<EffectIntentOutcome> {
    if (!parseJobId(lease.jobId)) return Promise.resolve({ status: 'lease_lost' });
    return this.run(() => this.groups.intent.submit({ key: `${lease.jobId}\u0000${effect.name}`, now: this.now(), lease, effect }));
  }

  recordEffectDone(lease: Lease, effect: EffectDone): Promise<void> {
    if (!parseJobId(lease.jobId)) return Promise.resolve();
    return this.run(() => this.groups.done.submit({ key: `${lease.jobId}\u0000${effect.name}`, now: this.now(), lease, effect }));
  }

  commit(lease: Lease, completion: Completion<PostgresTransaction>): Promise<boolean> {
    if (!parseJobId(lease.jobId)) return Promise.resolve(false);
    if (completion.writes.length > 0) {
      // The application's writes need a transaction of their own: this commit is not grouped.
      return this.run(() => commitAttempt(this.pool, this.sql.commit, this.now(), lease, completion, this.logger));
    }
    const { resultJson, outcome } = completion;
    return this.run(() => this.groups.commit.submit({ key: lease.jobId, now: this.now(), lease, resultJson, outcome }));
  }

  fail(lease: Lease, failure: Failure): Promise<boolean> {
    if (!parseJobId(lease.jobId)) return Promise.resolve(false);
    return this.run(() => this.groups.fail.submit({ key: lease.jobId, now: this.now(), lease, failure }));
  }

  async release(lease: Lease, reason: string): Promise<boolean> {
    if (!parseJobId(lease.jobId)) return false;
    return this.run(() => releaseAttempt(this.pool, this.sql.end, this.names, this.now(), lease, reason));
  }

  async abandonLease(lease: Lease, reason: string): Promise<void> {
    if (!parseJobId(lease.jobId)) return;
    await this.run(() => abandonAttempt(this.pool, this.sql.end, this.names, this.now(), lease, reason));
  }

  async sweep(): Promise<RecoveredJob[]> {
    const recovered = await this.run(() => sweepExpired(this.pool, this.sql.sweep, this.names, this.now()));
    // The sweep runs on every worker every few seconds, so it also keeps the lease query's statistics fresh.
    if (Date.now() - this.statisticsCheckedAt >= STATISTICS_CHECK_INTERVAL_MS) {
      this.statisticsCheckedAt = Date.now();
      const analyzed = await this.run(() => analyzeIfStale(this.pool, this.names));
      if (analyzed) this.logger.info('analyzed the jobs table after many changes');
    }
    return recovered;
  }

  async cancel(jobId: string): Promise<boolean> {
    const id = parseJobId(jobId);
    if (!id) return false;
    const { rowCount } = await this.run(() => this.sql.inspect.cancel.run(this.pool, [this.now(), id]));
    return (rowCount ?? 0) > 0;
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    const id = parseJobId(jobId);
    if (!id) return null;
    const { rows } = await this.run(() => this.sql.inspect.job.run(this.pool, [id]));
    return rows[0] ? toJobRecord(rows[0]) : null;
  }

  async listAttempts(jobId: string): Promise<AttemptRecord[]> {
    const id = parseJobId(jobId);
    if (!id) return [];
    const { rows } = await this.run(() => this.sql.inspect.attempts.run(this.pool, [id]));
    return rows.map(toAttemptRecord);
  }

  async listEffects(jobId: string): Promise<EffectRecord[]> {
    const id = parseJobId(jobId);
    if (!id) return [];
    const { rows } = await this.run(() => this.sql.inspect.effects.run(this.pool, [id]));
    return rows.map(toEffectRecord);
  }

  async countByState(): Promise<Record<JobState, number>> {
    const counts = emptyStateCounts();
    const { rows } = await this.run(() => this.sql.inspect.countByState.run(this.pool, []));
    for (const row of rows) counts[row.state] = row.count;
    return counts;
  }

  async audit(query: AuditQuery): Promise<AuditFindings> {
    return this.run(() => auditFindings(this.pool, this.sql.inspect, this.now(), query));
  }

  /**
   * Retention: deletes jobs that finished more than `olderThanMs` ago (by
   * default only completed ones), with their attempts and effect ledger
   * rows, `batchSize` jobs per statement. A completed job whose dedup window
   * is still open is kept. Returns the number of jobs deleted.
   */
  async prune(options: PruneOptions): Promise<number> {
    return this.run(() => pruneJobs(this.pool, this.sql.prune, this.now(), options));
  }

  onWake(listener: (queue: string | null) => void): () => void {
    this.listeners.add(listener);
    if (!this.closed) this.notifier?.start();
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) void this.notifier?.stop();
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    await this.notifier?.stop();
    // Group writes already accepted are written before the pool goes.
    await Promise.all(Object.values(this.groups).map((group) => group.drain()));
    // Waits for an in-flight migration, so the pool is not ended under it.
    await this.migrated?.catch(() => {});
    if (this.ownsPool) await this.pool.end();
  }

  private wake(queue: string | null): void {
    for (const listener of this.listeners) listener(queue);
  }

  private now(): number | null {
    return this.clock ? this.clock() : null;
  }

  /**
   * Runs one operation once the schema is ready, and explains a missing
   * schema. Connection errors pass through unchanged, so callers see them
   * thrown, with the driver's code.
   */
  private run<T>(operation: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(this.closedError());
    if (this.migrateOnStart && !this.schemaReady) return this.ready().then(() => this.run(operation));
    // Not async: a lease and each commit pass through here, and once the schema is ready this costs one promise, not three.
    let pending: Promise<T>;
    try {
      pending = operation();
    } catch (error) {
      return Promise.reject(explainMissingSchema(error, this.schema));
    }
    return pending.catch(this.rethrowExplained);
  }

  private readonly rethrowExplained = (error: unknown): never => {
    throw explainMissingSchema(error, this.schema);
  };

  /** Migrates once, before the first operation; a failed try (the database was down) is tried again by the next operation. */
  private ready(): Promise<void> {
    this.migrated ??= migrate(this.pool, this.names).then(
      () => {
        this.schemaReady = true;
      },
      (error: unknown) => {
        this.migrated = undefined;
        throw error;
      },
    );
    return this.migrated;
  }

  private assertOpen(): void {
    if (this.closed) throw this.closedError();
  }

  private closedError(): VouchError {
    return new VouchError(`the PostgreSQL store of schema ${JSON.stringify(this.schema)} is closed.`);
  }
}

/** Takes a `schema` query parameter off a connection string; `pg` would not know what to do with it. */
function splitSchemaParameter(connectionString: string | undefined): {
  connectionString: string | undefined;
  schemaFromUrl: string | undefined;
} {
  if (!connectionString?.includes('schema=')) return { connectionString, schemaFromUrl: undefined };
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    return { connectionString, schemaFromUrl: undefined };
  }
  const schema = url.searchParams.get('schema');
  if (schema === null) return { connectionString, schemaFromUrl: undefined };
  url.searchParams.delete('schema');
  return { connectionString: url.toString(), schemaFromUrl: schema };
}
