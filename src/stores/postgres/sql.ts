import { createHash } from 'node:crypto';
import { ConfigurationError } from '../../core/errors.js';

/**
 * What every statement of the PostgreSQL store is built from: quoted names of
 * the store's objects, the fragments that read the clock and convert times,
 * and a Statement type that runs as a named prepared statement.
 *
 * Identifiers (the schema the application chose) are quoted into the SQL
 * text once, when the store is built. Values are never put into SQL text:
 * every one is a bind parameter.
 */

/** Quotes an identifier: wraps it in double quotes and doubles any double quote inside. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** PostgreSQL truncates identifiers longer than this many bytes, which would make two schemas collide. */
const IDENTIFIER_BYTES = 63;

export function assertSchemaName(schema: unknown): asserts schema is string {
  if (typeof schema !== 'string' || schema.length === 0) {
    throw new ConfigurationError(`PostgresStore option schema must be a non-empty string; got ${JSON.stringify(schema)}.`);
  }
  if (Buffer.byteLength(schema, 'utf8') > IDENTIFIER_BYTES) {
    throw new ConfigurationError(
      `PostgresStore schema name ${JSON.stringify(schema)} is longer than ${IDENTIFIER_BYTES} bytes; use a shorter one.`,
    );
  }
  if (schema.includes('\u0000')) {
    throw new ConfigurationError('PostgresStore schema name contains a NUL character.');
  }
}

/** The store's objects in one schema, quoted for use in SQL text. */
export interface SchemaNames {
  /** The schema as the application named it, unquoted. */
  schema: string;
  jobs: string;
  attempts: string;
  effects: string;
  migrations: string;
  /** The job id sequence, as text for a `$n::regclass` parameter. */
  jobIdSequence: string;
  /** The NOTIFY channel that wakes idle workers of this schema; passed to pg_notify as a value. */
  channel: string;
}

export function schemaNames(schema: string): SchemaNames {
  const s = quoteIdent(schema);
  return {
    schema,
    jobs: `${s}.jobs`,
    attempts: `${s}.attempts`,
    effects: `${s}.effects`,
    migrations: `${s}.migrations`,
    jobIdSequence: `${s}.job_ids`,
    channel: wakeChannel(schema),
  };
}

/**
 * Builds the wake-up channel of a schema. Channel names are identifiers, cut
 * at 63 bytes, so a long schema name gets a hashed channel instead and two
 * schemas never share one.
 */
function wakeChannel(schema: string): string {
  const plain = `vouch_wake:${schema}`;
  if (Buffer.byteLength(plain, 'utf8') <= IDENTIFIER_BYTES) return plain;
  return `vouch_wake:${createHash('sha256').update(schema).digest('hex').slice(0, 40)}`;
}

/**
 * "Now" in every statement. `$1` is always the store's test clock in
 * milliseconds. In production it is null and the database clock decides, so
 * every worker on every machine compares lease times against one clock, and a
 * skewed machine clock cannot expire a lease early or keep it late.
 *
 * `now()` is the start of the transaction, which for the store's
 * single-statement writes is the start of the statement.
 */
export const NOW = 'coalesce(to_timestamp($1::float8 / 1000), now())';

/**
 * "Now" inside a transaction that spans several statements and application
 * code (the commit): the wall time of the database at that moment, because
 * `now()` stays at the time of BEGIN.
 */
export const CLOCK_NOW = 'coalesce(to_timestamp($1::float8 / 1000), clock_timestamp())';

/** A timestamptz column read as milliseconds since the epoch. */
export function ms(column: string): string {
  return `floor(extract(epoch FROM ${column}) * 1000)::float8`;
}

/**
 * A time the application computed with its own clock (a runAt, a retry
 * time), turned into a delay from now by that same clock. Statements add the
 * delay to the database clock, so a machine whose clock is minutes off still
 * schedules "in 30 seconds" 30 seconds from now. Null stays null.
 */
export function delayUntil(time: number | null, now: number | null): number | null {
  return time === null ? null : time - (now ?? Date.now());
}

/** A number of milliseconds, from an integer column or parameter, as an interval. */
export function interval(milliseconds: string): string {
  return `(${milliseconds} * interval '1 millisecond')`;
}

/** The part of the `pg` client API the store uses: Pool, Client and PoolClient all have it. */
export interface Queryable {
  query(config: { name?: string; text: string; values?: unknown[] }): Promise<{ rows: any[]; rowCount: number | null }>;
}

/**
 * One SQL statement, run as a named prepared statement: PostgreSQL parses
 * and plans it once per connection. The name comes from a hash of the text,
 * so stores on different schemas sharing one pool never collide.
 */
export class Statement<Row = any> {
  readonly name: string;

  constructor(readonly text: string) {
    this.name = `vouch_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`;
  }

  async run(db: Queryable, values: readonly unknown[]): Promise<{ rows: Row[]; rowCount: number | null }> {
    return db.query({ name: this.name, text: this.text, values: [...values] });
  }
}

/** The pending states, as SQL: a job in one of them still waits for, or is in, an attempt. */
export const PENDING_SQL = `('scheduled', 'available', 'running', 'retryable')`;

/**
 * The order in which statements that lock several job rows lock them:
 * ascending job id, so that two such statements (a heartbeat and a group
 * commit, say) can wait for each other but never deadlock. Ids are canonical
 * (see parseJobId), so a shorter id is a smaller one.
 *
 * How a statement keeps to it: its input is an unnest of arrays sorted by
 * this order, and drives a lateral subquery that looks one row up by its
 * primary key alone and locks it. A subquery with a locking clause and an
 * OFFSET is neither merged into the outer query nor given the outer
 * conditions, so the plan is a nested loop that walks the input in array
 * order with one primary key lookup per row, whatever the statistics say
 * (a condition on `state` could otherwise pick a partial index and scan all
 * of it for every row). The fence is checked on the row the lock returned,
 * which is its newest version. The CTE holding this is MATERIALIZED, so it
 * runs exactly once.
 */
export function compareJobIds(a: string, b: string): number {
  if (a.length !== b.length) return a.length - b.length;
  if (a === b) return 0;
  return a < b ? -1 : 1;
}

/** Parses a job id as the store issues them (a bigint as text); anything else names no job. */
export function parseJobId(id: string): string | null {
  return typeof id === 'string' && /^[1-9][0-9]{0,18}$/.test(id) && BigInt(id) <= 9223372036854775807n ? id : null;
}

/**
 * Builds the lateral subquery that looks up and locks the job row of each
 * row of `input`, by primary key alone, as compareJobIds requires. It names
 * the locked row `locked`, for jobFenceHolds.
 */
export function lockJobRow(n: SchemaNames, input: string, mode: 'FOR NO KEY UPDATE' | 'FOR SHARE'): string {
  return `(SELECT j.state, j.lease_token, j.lease_expires_at FROM ${n.jobs} j WHERE j.id = ${input}.id ${mode} OFFSET 0) AS locked`;
}

/** Builds the fence on a row that lockJobRow locked: running under the token of `input`, with the lease unexpired at `now`. */
export function jobFenceHolds(input: string, now: string): string {
  return `locked.state = 'running' AND locked.lease_token = ${input}.token AND locked.lease_expires_at > ${now}`;
}
