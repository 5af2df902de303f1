import type { AttemptOutcome, JobState } from '../../core/states.js';
import type { AttemptRecord, EffectRecord, EffectResolution, JobRecord } from '../../core/store.js';
import { ms } from './sql.js';

/**
 * Row mapping. Every query selects its columns through the lists below, so
 * that the values reaching JavaScript do not depend on the pool's type
 * parsers, which an application may have changed. Ids and JSON arrive as
 * text, and times as float8 milliseconds since the epoch, the unit of JobRecord.
 */

export interface JobRow {
  id: string;
  name: string;
  queue: string;
  key: string | null;
  payload: string;
  state: JobState;
  priority: number;
  attempt: number;
  max_attempts: number;
  lease_ms: number;
  run_at: number;
  created_at: number;
  finished_at: number | null;
  result: string | null;
  last_error: string | null;
  lease_token: string | null;
  lease_expires_at: number | null;
  worker_id: string | null;
}

export interface AttemptRow {
  job_id: string;
  attempt: number;
  worker_id: string;
  lease_token: string;
  started_at: number;
  ended_at: number | null;
  outcome: AttemptOutcome | null;
  error: string | null;
}

export interface EffectRow {
  job_id: string;
  name: string;
  idempotency_key: string;
  state: 'intent' | 'done';
  result: string | null;
  attempt: number;
  resolution: EffectResolution | null;
  intent_at: number;
  done_at: number | null;
}

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

/** JSON columns are of type json, so PostgreSQL has already checked that the text parses. */
export function parseJson(text: string | null): unknown {
  return text === null ? null : JSON.parse(text);
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    id: row.id,
    name: row.name,
    queue: row.queue,
    key: row.key,
    payload: parseJson(row.payload),
    state: row.state,
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    leaseMs: row.lease_ms,
    runAt: row.run_at,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    result: parseJson(row.result),
    lastError: row.last_error,
    leaseToken: row.lease_token,
    leaseExpiresAt: row.lease_expires_at,
    workerId: row.worker_id,
  };
}

export function toAttemptRecord(row: AttemptRow): AttemptRecord {
  return {
    jobId: row.job_id,
    attempt: row.attempt,
    workerId: row.worker_id,
    leaseToken: row.lease_token,
    startedAt: row.started_at,
    endedAt: row.ended_at,
    outcome: row.outcome,
    error: row.error,
  };
}

export function toEffectRecord(row: EffectRow): EffectRecord {
  return {
    jobId: row.job_id,
    name: row.name,
    idempotencyKey: row.idempotency_key,
    state: row.state,
    result: parseJson(row.result),
    attempt: row.attempt,
    resolution: row.resolution,
    intentAt: row.intent_at,
    doneAt: row.done_at,
  };
}
