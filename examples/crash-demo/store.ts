/**
 * Everything in the demo that depends on which database holds the jobs. The
 * demo and its worker processes open the store from one location string, here
 * and nowhere else: a file path selects SQLite, a postgres:// URL PostgreSQL.
 */
import type { Database } from 'better-sqlite3';
import type { PoolClient } from 'pg';
import type { Logger } from 'pino';
import type { Store } from '../../src/index.js';
import { SqliteStore } from '../../src/sqlite.js';

export interface NotificationRow {
  jobId: string;
  messageId: string;
}

export interface DemoStore {
  kind: 'sqlite' | 'postgres';
  store: Store<any>;
  /** Creates the application table that ctx.transaction writes to. */
  createNotificationsTable(): Promise<void>;
  /** Every row of the notifications table. */
  notificationRows(): Promise<NotificationRow[]>;
  /**
   * Writes one notifications row through the connection a ctx.transaction
   * callback receives: synchronously on SQLite, as that store requires, and
   * as a returned promise on PostgreSQL, which the commit awaits.
   */
  recordNotification(tx: unknown, row: NotificationRow): unknown;
  close(): Promise<void>;
}

/** The application's own table; UNIQUE on the job id, so a second row for one job would be refused rather than hidden. */
function notificationsTable(name: string): string {
  return `CREATE TABLE IF NOT EXISTS ${name} (
    job_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
  )`;
}

export function isPostgresLocation(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** Opens the store at `location`. The logger receives the store's own warnings (PostgreSQL connection trouble). */
export async function openDemoStore(location: string, options: { logger?: Logger } = {}): Promise<DemoStore> {
  if (isPostgresLocation(location)) return openPostgres(location, options.logger);
  return openSqlite(location);
}

function openSqlite(path: string): DemoStore {
  const store = new SqliteStore({ path });
  return {
    kind: 'sqlite',
    store,
    async createNotificationsTable() {
      store.db.exec(notificationsTable('notifications'));
    },
    async notificationRows() {
      return store.db.prepare('SELECT job_id AS jobId, message_id AS messageId FROM notifications').all() as NotificationRow[];
    },
    recordNotification(tx, row) {
      (tx as Database)
        .prepare('INSERT INTO notifications (job_id, message_id, created_at) VALUES (?, ?, ?)')
        .run(row.jobId, row.messageId, Date.now());
    },
    close: () => store.close(),
  };
}

async function openPostgres(url: string, logger: Logger | undefined): Promise<DemoStore> {
  // Imported here so that SQLite runs never load pg.
  const { PostgresStore } = await import('../../src/postgres.js');
  const store = new PostgresStore({ connectionString: url, ...(logger ? { logger } : {}) });
  try {
    await store.migrate();
  } catch (error) {
    await store.close();
    throw new Error(`--store ${redact(url)}: could not open the PostgreSQL store: ${(error as Error).message}`, { cause: error });
  }
  // The schema name was checked by the store; quoting keeps names such as vouch_demo_… exact.
  const table = `"${store.schema}".notifications`;
  return {
    kind: 'postgres',
    store,
    async createNotificationsTable() {
      await store.pool.query(notificationsTable(table));
    },
    async notificationRows() {
      const result = await store.pool.query(`SELECT job_id AS "jobId", message_id AS "messageId" FROM ${table}`);
      return result.rows as NotificationRow[];
    },
    recordNotification(tx, row) {
      return (tx as PoolClient).query(`INSERT INTO ${table} (job_id, message_id, created_at) VALUES ($1, $2, $3)`, [
        row.jobId,
        row.messageId,
        Date.now(),
      ]);
    },
    close: () => store.close(),
  };
}

/**
 * Gives a postgres:// URL without a `schema` parameter a fresh schema of its
 * own, so each run starts empty and never mixes with jobs already in the
 * database. SQLite paths and URLs that name a schema are returned unchanged.
 */
export function withRunSchema(location: string, runId: string): string {
  if (!isPostgresLocation(location)) return location;
  const url = new URL(location);
  if (url.searchParams.has('schema')) return location;
  url.searchParams.set('schema', `vouch_demo_${runId.replace(/[^a-z0-9_]/gi, '_').toLowerCase()}`);
  return url.toString();
}

/** Hides the password of a connection URL in messages. */
export function redact(location: string): string {
  return location.replace(/\/\/([^:/@]+):[^@/]*@/, '//$1:***@');
}
