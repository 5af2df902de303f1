import type { AttemptRecord, EffectRecord, JobRecord, Store } from '../../src/core/store.js';

/**
 * Everything a chaos run observed, gathered once the system is quiet: what
 * was accepted, what the store recorded, and the ground truth from the
 * external sink. The checker reads only this, so a history can also be made
 * by hand to test the checker itself.
 */
export interface History {
  /** Lease duration and sweep interval the workers ran with, in milliseconds. */
  leaseMs: number;
  sweepIntervalMs: number;
  /** Jobs whose enqueue returned success (duplicates excluded). */
  accepted: AcceptedJob[];
  /** The store's view at the end: every job, attempt and ledger row. */
  jobs: Pick<JobRecord, 'id' | 'state' | 'attempt'>[];
  attempts: Pick<AttemptRecord, 'jobId' | 'attempt' | 'leaseToken' | 'workerId' | 'startedAt' | 'endedAt' | 'outcome'>[];
  effects: Pick<EffectRecord, 'jobId' | 'name' | 'idempotencyKey' | 'state' | 'resolution'>[];
  /** Requests the sink received, per idempotency key. */
  sink: { idempotencyKey: string; count: number }[];
  /** Worker processes killed, with the worker id they ran as and when. */
  kills: { workerId: string; at: number }[];
}

export interface AcceptedJob {
  jobId: string;
  /** The idempotency key of the job's one effect, or null for a job without an effect. */
  effectKey: string | null;
  /**
   * True when the effect is deduplicated by the sink or checkable by an
   * effect verify, so at most one request per key may reach the sink.
   */
  effectOnce: boolean;
}

/** Reads the store's side of a history; the caller adds what it accepted, the sink and the kills. */
export async function readStoreHistory(
  store: Store<any>,
  jobIds: readonly string[],
): Promise<Pick<History, 'jobs' | 'attempts' | 'effects'>> {
  const jobs: History['jobs'] = [];
  const attempts: History['attempts'] = [];
  const effects: History['effects'] = [];
  for (const jobId of jobIds) {
    const job = await store.getJob(jobId);
    if (job) jobs.push({ id: job.id, state: job.state, attempt: job.attempt });
    attempts.push(...(await store.listAttempts(jobId)));
    effects.push(...(await store.listEffects(jobId)));
  }
  return { jobs, attempts, effects };
}
