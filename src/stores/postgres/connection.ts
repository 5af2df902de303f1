import type pg from 'pg';
import { ConfigurationError, VouchError } from '../../core/errors.js';
import type { Queryable } from './sql.js';

/**
 * Connections: telling a lost connection from an SQL error, checking clients
 * out of the pool safely, and accepting the application's own transaction
 * (a `pg` client or a Kysely transaction) for transactional enqueue.
 */

const CONNECTION_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTCONN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  // SQLSTATE: admin_shutdown, crash_shutdown, cannot_connect_now (the server is starting or restarting).
  '57P01',
  '57P02',
  '57P03',
]);

/**
 * True when an error means the connection is gone (the server restarted, the
 * backend was terminated, the network dropped) rather than that a statement
 * failed. After such an error nothing more can be learned on that connection.
 */
export function isConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && (CONNECTION_CODES.has(code) || code.startsWith('08'))) return true;
  return /Connection terminated|not queryable|Client was closed|connection error|timeout exceeded when trying to connect/i.test(
    error.message,
  );
}

/** SQLSTATE undefined_table and invalid_schema_name: the store's tables are not there. */
function isMissingSchema(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '42P01' || code === '3F000';
}

/** Turns "relation does not exist" into an error that says how to create the schema. */
export function explainMissingSchema(error: unknown, schema: string): unknown {
  if (!isMissingSchema(error)) return error;
  return new VouchError(
    `the vouch schema ${JSON.stringify(schema)} is missing or not migrated (${(error as Error).message}). ` +
      'Run "vouch migrate --store postgres://..." or create the store with migrate: true.',
    { cause: error },
  );
}

/**
 * Checks a client out of the pool and runs `work` with it. While the client
 * is checked out, `pg` emits a lost connection as an 'error' event on it,
 * which would crash the process with no listener; the listener here records
 * it instead, and the broken client is destroyed rather than returned.
 */
export async function withClient<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const onError = (error: Error) => {
    broken = error;
  };
  client.on('error', onError);
  try {
    return await work(client);
  } catch (error) {
    if (isConnectionError(error)) broken ??= error as Error;
    throw error;
  } finally {
    client.removeListener('error', onError);
    client.release(broken ?? false);
  }
}

/** Rolls back, ignoring the failure of a connection that is already gone. */
export async function rollbackQuietly(client: Queryable): Promise<void> {
  try {
    await client.query({ text: 'ROLLBACK' });
  } catch {
    // The server rolls back on its own when the connection is gone.
  }
}

/** The parts of a Kysely transaction the adapter uses; Kysely itself stays an optional dependency. */
interface KyselyTransactionLike {
  readonly isTransaction: boolean;
  executeQuery(query: unknown): Promise<{ rows: unknown[]; numAffectedRows?: bigint }>;
  withoutPlugins?(): KyselyTransactionLike;
}

/**
 * Accepts the `tx` of a transactional enqueue: a `pg` Client or PoolClient
 * inside an open transaction, or a Kysely transaction (`trx` in
 * `db.transaction().execute(async (trx) => ...)`). Both run the store's
 * statements on the application's connection, so the jobs commit or roll
 * back with it.
 */
export function transactionQueryable(tx: unknown): Queryable {
  if (tx === null || typeof tx !== 'object') {
    throw new ConfigurationError(
      `enqueue option tx must be a pg client inside a transaction or a Kysely transaction; got ${tx === null ? 'null' : typeof tx}.`,
    );
  }
  const candidate = tx as Record<string, unknown>;
  if (typeof candidate.executeQuery === 'function' && 'isTransaction' in candidate) {
    const kysely = tx as KyselyTransactionLike;
    if (!kysely.isTransaction) {
      throw new ConfigurationError(
        'enqueue option tx is a Kysely instance outside a transaction; pass the transaction, as in db.transaction().execute((trx) => client.enqueue(job, payload, { tx: trx })).',
      );
    }
    return kyselyQueryable(kysely);
  }
  if (typeof candidate.query === 'function') {
    if (typeof candidate.connect === 'function' && typeof candidate.totalCount === 'number') {
      throw new ConfigurationError(
        'enqueue option tx is a pg Pool; pass the client that holds the open transaction (const tx = await pool.connect(); await tx.query("BEGIN")).',
      );
    }
    return tx as Queryable;
  }
  throw new ConfigurationError('enqueue option tx must be a pg client inside a transaction or a Kysely transaction.');
}

function kyselyQueryable(trx: KyselyTransactionLike): Queryable {
  // Plugins such as CamelCasePlugin rewrite result rows; the store reads its own column names.
  const plain = trx.withoutPlugins ? trx.withoutPlugins() : trx;
  return {
    async query(config) {
      const { CompiledQuery } = await import('kysely');
      const result = await plain.executeQuery(CompiledQuery.raw(config.text, [...(config.values ?? [])]));
      return {
        rows: result.rows as any[],
        rowCount: result.numAffectedRows === undefined ? result.rows.length : Number(result.numAffectedRows),
      };
    },
  };
}
