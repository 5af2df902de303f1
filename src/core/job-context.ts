import type { Logger } from 'pino';
import type { AttemptRecord } from './store.js';

/** What an effect's verify found when it looked the effect up by its idempotency key. */
export type EffectCheck<T> = { found: true; result: T } | { found: false };

export interface EffectOptions<T> {
  /**
   * Looks the effect up in the outside world by its idempotency key. It runs
   * only for an in-doubt effect (an intent with no done record, left by an
   * attempt that died), to decide between recording it done and running it again.
   */
  verify?: (idempotencyKey: string) => Promise<EffectCheck<T>> | EffectCheck<T>;
}

/** What a job's handler receives. */
export interface JobContext<Payload> {
  readonly jobId: string;
  readonly name: string;
  readonly queue: string;
  /** The job's business key, or null when it has none. */
  readonly key: string | null;
  /** The payload, already validated by the job's schema. */
  readonly payload: Payload;
  /** This attempt's number, from 1. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly leaseToken: string;
  /** The attempt before this one, and the state of the effects it left. */
  readonly previousAttempt: PreviousAttempt | null;
  /**
   * Fires when the lease is lost, the attempt times out, or shutdown runs out
   * of grace. `signal.reason` is the error that explains which.
   */
  readonly signal: AbortSignal;
  /** A pino logger bound to the job id, attempt and lease token. */
  readonly logger: Logger;

  /**
   * Performs an externally visible side effect at most once per idempotency
   * key: writes its intent (fenced on the lease), runs `fn`, records its result.
   * A retry gets the recorded result of a done effect without running it again.
   * The result must be JSON-serialisable. Each name may be used once per attempt.
   */
  effect<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T, options?: EffectOptions<T>): Promise<T>;

  /** The stable idempotency key of effect `name`: the same in every attempt of this job. */
  idempotencyKey(name: string): string;

  /**
   * Queues writes to the store's own database to run inside the commit
   * transaction, after verify confirmed, so they commit with the job or not
   * at all. `tx` is the store's connection: a better-sqlite3 Database (the
   * callback must then be synchronous) or a `pg` client.
   */
  transaction<Tx = any>(fn: (tx: Tx) => unknown): void;
}

export interface PreviousAttempt {
  attempt: number;
  outcome: AttemptRecord['outcome'];
  error: string | null;
  /** Names of effects recorded done. */
  effectsDone: string[];
  /** Names of effects with an intent and no done record. */
  effectsInDoubt: string[];
}

/** Builds the idempotency key of one effect of one job. */
export function idempotencyKeyFor(jobKey: string | null, jobId: string, effectName: string): string {
  return `${jobKey ?? `job-${jobId}`}:${effectName}`;
}
