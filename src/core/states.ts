/**
 * Job states. A job moves scheduled -> available -> running, and from running
 * to completed, retryable (then available again after its backoff), failed or
 * cancelled. The three terminal states never change again.
 */
export type JobState = 'scheduled' | 'available' | 'running' | 'retryable' | 'completed' | 'failed' | 'cancelled';

export const TERMINAL_STATES: readonly JobState[] = ['completed', 'failed', 'cancelled'];

/** States in which a job still waits for, or is in, an attempt. */
export const PENDING_STATES: readonly JobState[] = ['scheduled', 'available', 'running', 'retryable'];

/**
 * How one attempt ended.
 * - `succeeded`: perform returned and the job committed (the job has no verify).
 * - `verified`: perform returned, the job's verify confirmed, and the job committed.
 * - `errored`: perform or verify threw, verify did not confirm, or the attempt timed out.
 * - `abandoned`: the worker stopped renewing the lease (it died or stalled) and the sweep recovered the job.
 * - `lease_lost`: the attempt finished but its lease was no longer held, so its outcome was discarded.
 * - `released`: graceful shutdown gave the job back before the attempt finished; it does not use up an attempt.
 */
export type AttemptOutcome = 'succeeded' | 'verified' | 'errored' | 'abandoned' | 'lease_lost' | 'released';

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** A count of zero for every state, for stores to fill in. */
export function emptyStateCounts(): Record<JobState, number> {
  return { scheduled: 0, available: 0, running: 0, retryable: 0, completed: 0, failed: 0, cancelled: 0 };
}
