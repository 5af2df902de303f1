import type { AttemptOutcome, JobState } from '../core/states.js';
import type { AttemptRecord, EffectRecord, EffectResolution, JobRecord } from '../core/store.js';

/*
 * Rows as both SQL stores return them: snake_case columns, JSON as text and
 * times as milliseconds since the epoch. Ids are numbers from SQLite and
 * text from PostgreSQL, where a bigint does not fit a JavaScript number.
 */

export interface JobRow<Id extends string | number = string | number> {
  id: Id;
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

export interface AttemptRow<Id extends string | number = string | number> {
  job_id: Id;
  attempt: number;
  worker_id: string;
  lease_token: string;
  started_at: number;
  ended_at: number | null;
  outcome: AttemptOutcome | null;
  error: string | null;
}

export interface EffectRow<Id extends string | number = string | number> {
  job_id: Id;
  name: string;
  idempotency_key: string;
  state: 'intent' | 'done';
  result: string | null;
  attempt: number;
  resolution: EffectResolution | null;
  intent_at: number;
  done_at: number | null;
}

/**
 * Parses stored JSON. A stored payload that no longer parses becomes a marker
 * value that fails schema validation, so the job fails with a clear reason
 * instead of stalling its queue.
 */
export function parseStoredJson(text: string | null): unknown {
  if (text === null) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { $undecodable: text.slice(0, 200) };
  }
}

export function toJobRecord(row: JobRow): JobRecord {
  return {
    id: String(row.id),
    name: row.name,
    queue: row.queue,
    key: row.key,
    payload: parseStoredJson(row.payload),
    state: row.state,
    priority: row.priority,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    leaseMs: row.lease_ms,
    runAt: row.run_at,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    result: parseStoredJson(row.result),
    lastError: row.last_error,
    // A completed job's row keeps the token of the attempt that completed it, as that attempt's record.
    // The job holds a lease only while it runs, so only a running job reports one.
    leaseToken: row.state === 'running' ? row.lease_token : null,
    leaseExpiresAt: row.lease_expires_at,
    workerId: row.worker_id,
  };
}

export function toAttemptRecord(row: AttemptRow): AttemptRecord {
  return {
    jobId: String(row.job_id),
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
    jobId: String(row.job_id),
    name: row.name,
    idempotencyKey: row.idempotency_key,
    state: row.state,
    result: parseStoredJson(row.result),
    attempt: row.attempt,
    resolution: row.resolution,
    intentAt: row.intent_at,
    doneAt: row.done_at,
  };
}
