import type { AttemptOutcome, JobState } from './states.js';

/**
 * The contract between vouch's core and a database. The core knows nothing
 * else about storage: a new store is a new folder whose class implements
 * Store and passes the store contract suite in test/.
 *
 * Every method that an attempt calls with a Lease is fenced: it changes
 * nothing unless the job is still `running` under that lease token and the
 * lease has not expired by the store's clock. A fenced method reports a lost
 * lease with `false` (or `lease_lost`), never by silently doing nothing.
 */
export interface Store<Tx = unknown> {
  /** Creates or upgrades the schema. Safe to call from several processes at once. */
  migrate(): Promise<void>;

  /**
   * Inserts jobs in one transaction, all or none. A job whose key matches a
   * pending job, or a job completed within its dedup window, is not inserted:
   * its outcome names the existing job with `duplicate: true`.
   */
  enqueue(jobs: readonly NewJob[], options?: EnqueueTransactionOptions<Tx>): Promise<EnqueueOutcome[]>;

  /** Claims up to `limit` due jobs of one queue in one statement or transaction. */
  lease(request: LeaseRequest): Promise<LeasedJob[]>;

  /**
   * Milliseconds until the earliest scheduled or retryable job of `queue`
   * becomes due, by the store's clock (0 or less when one is due already),
   * or null when no such job waits.
   */
  nextDueInMs(queue: string): Promise<number | null>;

  /** Renews leases in one statement. Returns the ids of the jobs whose lease is still held. */
  heartbeat(leases: readonly Lease[]): Promise<Set<string>>;

  /** Writes an effect's intent, fenced on the lease. */
  recordEffectIntent(lease: Lease, effect: EffectIntent): Promise<EffectIntentOutcome>;

  /**
   * Records that an effect happened. It is a fact about the world, so it is
   * kept even when the lease has since been lost, as long as the effect is
   * still only an intent.
   *
   * It resolves once the record survives a crash of this process. A store
   * may leave it to the job's next write that reaches the disk (its outcome,
   * or the next effect's intent) to make it survive a power loss too. Until
   * then a power loss leaves the effect in doubt, as a crash just before the
   * write would.
   */
  recordEffectDone(lease: Lease, effect: EffectDone): Promise<void>;

  /**
   * The commit: runs `writes` and marks the job completed in one transaction,
   * fenced on the lease. Returns false, with nothing written, when the lease
   * was lost.
   */
  commit(lease: Lease, completion: Completion<Tx>): Promise<boolean>;

  /** Closes the attempt as errored and makes the job retryable (retryAt set) or failed. Fenced. */
  fail(lease: Lease, failure: Failure): Promise<boolean>;

  /** Gives a job back after a graceful shutdown. The released attempt does not use up an attempt. Fenced. */
  release(lease: Lease, reason: string): Promise<boolean>;

  /**
   * Closes an attempt that found it no longer held its lease, as `lease_lost`,
   * even when the sweep already closed it as `abandoned`: the worker was
   * alive, so the more precise outcome replaces the guess. If the job is
   * still running under this token (expired, not yet swept), the job is
   * recovered at once, as the sweep would.
   */
  abandonLease(lease: Lease, reason: string): Promise<void>;

  /** Recovers every job whose lease expired: its attempt becomes `abandoned`. */
  sweep(): Promise<RecoveredJob[]>;

  /** Cancels a job that is not running and not terminal. Returns false otherwise. */
  cancel(jobId: string): Promise<boolean>;

  getJob(jobId: string): Promise<JobRecord | null>;
  listAttempts(jobId: string): Promise<AttemptRecord[]>;
  listEffects(jobId: string): Promise<EffectRecord[]>;
  countByState(): Promise<Record<JobState, number>>;
  audit(options: AuditQuery): Promise<AuditFindings>;

  /**
   * Calls `listener` when new work may be due: after an enqueue in this
   * process, and on whatever cross-process signal the store has. Returns a
   * function that removes the listener.
   */
  onWake(listener: (queue: string | null) => void): () => void;

  close(): Promise<void>;
}

/** A job as stored. Times are milliseconds since the epoch. */
export interface JobRecord {
  id: string;
  name: string;
  queue: string;
  key: string | null;
  payload: unknown;
  state: JobState;
  priority: number;
  /** Attempts started so far; the running attempt's number while running. */
  attempt: number;
  maxAttempts: number;
  leaseMs: number;
  runAt: number;
  createdAt: number;
  finishedAt: number | null;
  result: unknown;
  lastError: string | null;
  leaseToken: string | null;
  leaseExpiresAt: number | null;
  workerId: string | null;
}

export interface AttemptRecord {
  jobId: string;
  attempt: number;
  workerId: string;
  leaseToken: string;
  startedAt: number;
  endedAt: number | null;
  outcome: AttemptOutcome | null;
  error: string | null;
}

/**
 * How an effect came to be `done`: `ran` on its first try, `verified` when an
 * in-doubt effect was found by its verify and not run again, `rerun` when an
 * in-doubt effect was run again with the same idempotency key.
 */
export type EffectResolution = 'ran' | 'verified' | 'rerun';

export interface EffectRecord {
  jobId: string;
  name: string;
  idempotencyKey: string;
  state: 'intent' | 'done';
  result: unknown;
  /** The attempt that wrote the latest intent. */
  attempt: number;
  resolution: EffectResolution | null;
  intentAt: number;
  doneAt: number | null;
}

export interface NewJob {
  name: string;
  queue: string;
  key: string | null;
  /** The payload already validated and serialised to JSON. */
  payloadJson: string;
  priority: number;
  maxAttempts: number;
  leaseMs: number;
  /** When the job becomes due; null means now by the store's clock. */
  runAt: number | null;
  /** How long a completed job with the same key keeps absorbing new enqueues, in milliseconds. */
  dedupWindowMs: number;
}

export interface EnqueueTransactionOptions<Tx> {
  /** The application's own connection inside an open transaction: the jobs commit or roll back with it. */
  tx?: Tx;
}

export interface EnqueueOutcome {
  job: JobRecord;
  duplicate: boolean;
}

export interface LeaseRequest {
  queue: string;
  limit: number;
  workerId: string;
  /**
   * The room the worker has when the lease is written. A store that defers
   * the lease to a batched write may call it then and lease up to that many
   * (never fewer than `limit`), since slots free up in the meantime.
   */
  roomAtWrite?: () => number;
}

/** An attempt's exclusive claim on one job. */
export interface Lease {
  jobId: string;
  attempt: number;
  token: string;
}

export interface LeasedJob {
  job: JobRecord;
  lease: Lease;
  /** The attempt before this one, if any. */
  previousAttempt: AttemptRecord | null;
  /** The job's effect ledger as this attempt starts. */
  effects: EffectRecord[];
}

export interface EffectIntent {
  name: string;
  idempotencyKey: string;
}

export type EffectIntentOutcome = { status: 'recorded' } | { status: 'done'; result: unknown } | { status: 'lease_lost' };

export interface EffectDone {
  name: string;
  resultJson: string;
  resolution: EffectResolution;
}

export interface Completion<Tx> {
  resultJson: string;
  outcome: 'succeeded' | 'verified';
  /** Writes made through ctx.transaction, run inside the commit transaction in order. */
  writes: readonly ((tx: Tx) => unknown)[];
}

export interface Failure {
  error: string;
  /** When to try again; null fails the job for good. */
  retryAt: number | null;
}

export interface RecoveredJob {
  jobId: string;
  name: string;
  queue: string;
  attempt: number;
  leaseToken: string;
  workerId: string;
  /** `available` when attempts remain, `failed` when the abandoned attempt was the last. */
  state: 'available' | 'failed';
}

export interface AuditQuery {
  /** A due job not started for this long is overdue, in milliseconds. */
  overdueAfterMs: number;
  /** An effect intent with no done record for this long, on a job not running, is in doubt. */
  inDoubtAfterMs: number;
  /** How far back recovered and dead jobs are listed, in milliseconds. */
  windowMs: number;
  /** Most rows returned per category. */
  limit: number;
}

export interface AuditFindings {
  overdue: { jobId: string; name: string; queue: string; state: JobState; dueSinceMs: number }[];
  inDoubt: { jobId: string; name: string; effect: string; idempotencyKey: string; jobState: JobState; sinceMs: number }[];
  /** Attempts recovered by the sweep (`abandoned`) or ended by their worker finding the lease lost (`lease_lost`). */
  recovered: { jobId: string; name: string; attempt: number; workerId: string; outcome: 'abandoned' | 'lease_lost'; endedAt: number }[];
  dead: { jobId: string; name: string; attempt: number; lastError: string | null; finishedAt: number }[];
}
