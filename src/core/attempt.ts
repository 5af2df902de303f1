import type { Logger } from 'pino';
import type { AttemptAbort } from './attempt-abort.js';
import { AttemptState, attemptLogger, jobContext } from './attempt-context.js';
import { backoffDelayMs, DEFAULT_MAX_ATTEMPTS } from './backoff.js';
import type { Clock } from './clock.js';
import {
  AttemptTimeoutError,
  describeError,
  InvalidPayloadError,
  InvalidResultError,
  LeaseLostError,
  PermanentError,
  ShutdownError,
  toError,
  UnknownJobError,
  VerificationError,
} from './errors.js';
import type { AttemptRef, VouchEventEmitter } from './events.js';
import { failpoint } from './failpoints.js';
import type { PreviousAttempt } from './job-context.js';
import type { JobDefinition } from './job-definition.js';
import { errorForLog } from './log-error.js';
import { serializeResult, validatePayload } from './payload.js';
import type { LeasedJob, Store } from './store.js';

export interface AttemptDependencies {
  store: Store;
  definitions: ReadonlyMap<string, JobDefinition<any, any>>;
  events: VouchEventEmitter;
  logger: Logger;
  clock: Clock;
  /** Called when an attempt scheduled its job's retry, with the job's queue and the time the retry is due. */
  retryScheduled?: (queue: string, retryAt: number) => void;
}

/** The end of an attempt, as the worker reports it. */
export type AttemptResult = 'completed' | 'retry' | 'failed' | 'released' | 'lease_lost';

/**
 * The callbacks through which runAttempt reports to its caller while an
 * attempt runs. One object serves every attempt of a worker, and `context`
 * identifies the attempt, so that an attempt makes no closures of its own.
 */
export interface AttemptHooks<C> {
  /**
   * Called once, when the handler (and verify) returned or threw and before
   * the outcome is written, so that the slot can take the next job.
   */
  performed(context: C): void;
  /** Called once, when the attempt is over, whether or not its outcome could be written. */
  ended(context: C): void;
}

/**
 * Runs one attempt through its steps: resume, perform, verify, commit, and on
 * error retry or fail. The lease step happened before, in the worker.
 *
 * `abort` is shared with the worker: it aborts it when a heartbeat finds the
 * lease lost or when shutdown runs out of grace. The promise never rejects:
 * it resolves with undefined when the outcome could not be written (the store
 * failed), which is logged and emitted as a worker:error here, and the job is
 * recovered when its lease expires. All of it runs in this one async
 * function, since each async frame an attempt keeps while its commit reaches
 * the disk is memory that the garbage collector copies.
 */
export async function runAttempt<C>(
  deps: AttemptDependencies,
  leased: LeasedJob,
  abort: AttemptAbort,
  ref: AttemptRef,
  hooks: AttemptHooks<C>,
  context: C,
): Promise<AttemptResult | undefined> {
  const { job, lease } = leased;
  let performed = false;
  const startedAt = deps.clock();
  let state: AttemptState | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    try {
      const definition = deps.definitions.get(job.name);
      if (!definition) {
        throw new UnknownJobError(
          `no job definition named "${job.name}" is registered with this worker; add it to the worker's jobs, or deploy workers that have it before enqueueing it`,
        );
      }
      let payload = validatePayload(definition.name, definition.payload, job.payload);
      if (payload instanceof Promise) payload = await payload;
      state = new AttemptState(deps, leased, ref, abort);
      const previousAttempt = describePrevious(leased);
      const ctx = jobContext(state, leased, payload, previousAttempt, abort);
      if (previousAttempt?.effectsInDoubt.length) {
        state.logger.warn({ previousAttempt }, 'resuming after an attempt that left effects in doubt');
      }

      if (definition.timeoutMs !== undefined) {
        const timeoutMs = definition.timeoutMs;
        timer = setTimeout(() => abort.abort(new AttemptTimeoutError(`attempt timed out after ${timeoutMs} ms`)), timeoutMs);
      }

      const result = await abort.race(definition.perform(ctx));
      let outcome: 'succeeded' | 'verified' = 'succeeded';
      if (definition.verify) {
        const confirmed = await abort.race(definition.verify(ctx, result));
        if (confirmed !== true) {
          throw new VerificationError(`verify did not confirm the outcome of job "${job.name}" (it returned ${String(confirmed)})`);
        }
        outcome = 'verified';
      }
      abort.throwIfAborted();
      clearTimeout(timer);
      performed = true;
      hooks.performed(context);

      const resultJson = serializeResult(job.name, 'result', result ?? null);
      // Failpoint: every effect is recorded done and the job is not committed yet.
      const paused = failpoint('after-ledger-before-commit');
      if (paused) await paused;
      const committed = await deps.store.commit(lease, { resultJson, outcome, writes: state.writes });
      if (!committed) {
        await reportLeaseLost(deps, ref, state.logger, 'commit changed no row: the lease expired or another attempt owns the job');
        return 'lease_lost';
      }
      const durationMs = deps.clock() - startedAt;
      // Debug, not info: one line per successful job is most of a busy worker's log volume (and a fifth of
      // its CPU at 20,000 jobs/s), while every failure logs at warn or error. The worker's logger gets the
      // attempt's fields here rather than a child logger made for one line.
      const madeLogger = state.loggerIfMade;
      if (madeLogger) madeLogger.debug({ durationMs, outcome }, 'job completed');
      else if (deps.logger.isLevelEnabled('debug')) {
        deps.logger.debug(
          { jobId: job.id, job: job.name, attempt: lease.attempt, leaseToken: lease.token, durationMs, outcome },
          'job completed',
        );
      }
      // Without a listener, the event object would be made for nothing once per job.
      if (deps.events.listenerCount('job:completed') > 0) deps.events.emit('job:completed', { ...ref, durationMs });
      return 'completed';
    } catch (thrown) {
      clearTimeout(timer);
      if (!performed) {
        performed = true;
        hooks.performed(context);
      }
      // An attempt that failed before its context existed (an unknown job, an invalid payload) has no logger yet.
      const logger = state?.logger ?? attemptLogger(deps.logger, ref);
      return await settleError(deps, leased, ref, logger, toError(thrown), abort);
    }
  } catch (thrown) {
    // The outcome could not be written. The lease will expire, and the sweep recovers the job.
    const error = toError(thrown);
    deps.logger.error(
      { error: errorForLog(error), jobId: ref.jobId, attempt: ref.attempt, leaseToken: ref.leaseToken },
      'could not record the outcome of an attempt; its job will be recovered when the lease expires',
    );
    deps.events.emit('worker:error', { loop: 'commit', error });
    return undefined;
  } finally {
    hooks.ended(context);
  }
}

/** Returns the fields that name an attempt in events, logs and spans. */
export function attemptRefOf(leased: LeasedJob): AttemptRef {
  const { job, lease } = leased;
  return { jobId: job.id, name: job.name, queue: job.queue, attempt: lease.attempt, leaseToken: lease.token };
}

async function settleError(
  deps: AttemptDependencies,
  leased: LeasedJob,
  ref: AttemptRef,
  logger: Logger,
  error: Error,
  abort: AttemptAbort,
): Promise<AttemptResult> {
  const { job, lease } = leased;
  const reason = abort.reason ?? error;

  if (reason instanceof LeaseLostError) {
    await reportLeaseLost(deps, ref, logger, reason.message);
    return 'lease_lost';
  }
  if (reason instanceof ShutdownError) {
    const released = await deps.store.release(lease, reason.message);
    if (!released) {
      await reportLeaseLost(deps, ref, logger, 'release after shutdown changed no row');
      return 'lease_lost';
    }
    logger.warn({ reason: reason.message }, 'job released on shutdown');
    deps.events.emit('job:released', { ...ref, reason: reason.message });
    return 'released';
  }

  const description = describeError(reason);
  const permanent = reason instanceof PermanentError || reason instanceof InvalidPayloadError || reason instanceof InvalidResultError;
  const maxAttempts = job.maxAttempts || DEFAULT_MAX_ATTEMPTS;
  const exhausted = lease.attempt >= maxAttempts;
  const definition = deps.definitions.get(job.name);

  if (permanent || exhausted) {
    const why = permanent ? description : `${description} (attempt ${lease.attempt} of ${maxAttempts}, no attempts left)`;
    const failed = await deps.store.fail(lease, { error: why, retryAt: null });
    if (!failed) {
      await reportLeaseLost(deps, ref, logger, 'failing the job changed no row');
      return 'lease_lost';
    }
    if (reason instanceof InvalidPayloadError) deps.events.emit('payload:rejected', { ...ref, error: why });
    // A permanent failure logs its cause, not the attempt limit, which a reader would take for the cause.
    logger.error(
      permanent
        ? { error: errorForLog(reason), because: permanentCause(reason) }
        : { error: errorForLog(reason), because: 'no attempts left', maxAttempts },
      'job failed',
    );
    deps.events.emit('job:failed', { ...ref, error: why });
    return 'failed';
  }

  const retryAt = deps.clock() + backoffDelayMs(lease.attempt, definition?.retry);
  const scheduled = await deps.store.fail(lease, { error: description, retryAt });
  if (!scheduled) {
    await reportLeaseLost(deps, ref, logger, 'scheduling the retry changed no row');
    return 'lease_lost';
  }
  logger.warn({ error: errorForLog(reason), retryAt, maxAttempts }, 'attempt errored; job will retry');
  deps.retryScheduled?.(job.queue, retryAt);
  deps.events.emit('job:retry', { ...ref, error: description, retryAt });
  return 'retry';
}

async function reportLeaseLost(deps: AttemptDependencies, ref: AttemptRef, logger: Logger, reason: string): Promise<void> {
  logger.error({ reason }, 'lease lost; this attempt reports nothing as done');
  deps.events.emit('lease:lost', { ...ref, reason });
  try {
    await deps.store.abandonLease({ jobId: ref.jobId, attempt: ref.attempt, token: ref.leaseToken }, reason);
  } catch (error) {
    // The sweep recovers the job anyway once its lease expires; this only makes recovery faster.
    logger.error({ error: errorForLog(error) }, 'could not close the attempt that lost its lease');
  }
}

function describePrevious(leased: LeasedJob): PreviousAttempt | null {
  const previous = leased.previousAttempt;
  if (!previous) return null;
  return {
    attempt: previous.attempt,
    outcome: previous.outcome,
    error: previous.error,
    effectsDone: leased.effects.filter((effect) => effect.state === 'done').map((effect) => effect.name),
    effectsInDoubt: leased.effects.filter((effect) => effect.state === 'intent').map((effect) => effect.name),
  };
}

/** Names why an error failed its job without a retry, for the `because` field of the log line. */
function permanentCause(reason: Error): string {
  if (reason instanceof InvalidPayloadError) return 'invalid payload';
  if (reason instanceof InvalidResultError) return 'invalid result';
  return 'permanent error';
}
