import type { AttemptRow as StoredAttemptRow, EffectRow as StoredEffectRow, JobRow as StoredJobRow } from '../rows.js';
import { ms } from './sql.js';

/**
 * Row mapping. Every query selects its columns through the lists below, so
 * that the values reaching JavaScript do not depend on the pool's type
 * parsers, which an application may have changed. Ids and JSON arrive as
 * text, and times as float8 milliseconds since the epoch, the unit of JobRecord.
 */

/** The columns of a job row, read from the table or CTE aliased `a`. */
export function jobColumns(a: string): string {
  return [
    `${a}.id::text AS id`,
    `${a}.name`,
    `${a}.queue`,
    `${a}.key`,
    `${a}.payload::text AS payload`,
    `${a}.state`,
    `${a}.priority`,
    `${a}.attempt`,
    `${a}.max_attempts`,
    `${a}.lease_ms`,
    `${ms(`${a}.run_at`)} AS run_at`,
    `${ms(`${a}.created_at`)} AS created_at`,
    `${ms(`${a}.finished_at`)} AS finished_at`,
    `${a}.result::text AS result`,
    `${a}.last_error`,
    `${a}.lease_token`,
    `${ms(`${a}.lease_expires_at`)} AS lease_expires_at`,
    `${a}.worker_id`,
  ].join(', ');
}

export function attemptColumns(a: string): string {
  return [
    `${a}.job_id::text AS job_id`,
    `${a}.attempt`,
    `${a}.worker_id`,
    `${a}.lease_token`,
    `${ms(`${a}.started_at`)} AS started_at`,
    `${ms(`${a}.ended_at`)} AS ended_at`,
    `${a}.outcome`,
    `${a}.error`,
  ].join(', ');
}

export function effectColumns(a: string): string {
  return [
    `${a}.job_id::text AS job_id`,
    `${a}.name`,
    `${a}.idempotency_key`,
    `${a}.state`,
    `${a}.result::text AS result`,
    `${a}.attempt`,
    `${a}.resolution`,
    `${ms(`${a}.intent_at`)} AS intent_at`,
    `${ms(`${a}.done_at`)} AS done_at`,
  ].join(', ');
}

// PostgreSQL ids arrive as text (see the column lists above).
export type JobRow = StoredJobRow<string>;
export type AttemptRow = StoredAttemptRow<string>;
export type EffectRow = StoredEffectRow<string>;
export { parseStoredJson as parseJson, toAttemptRecord, toEffectRecord, toJobRecord } from '../rows.js';
