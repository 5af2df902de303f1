import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type AttemptDependencies, type AttemptResult, runAttempt } from '../core/attempt.js';
import { type Clock, systemClock } from '../core/clock.js';
import { ConfigurationError, LeaseLostError, ShutdownError, toError } from '../core/errors.js';
import { VouchEventEmitter } from '../core/events.js';
import { failpoint } from '../core/failpoints.js';
import { DEFAULT_LEASE_MS, type JobDefinition } from '../core/job-definition.js';
import { errorForLog } from '../core/log-error.js';
import { createDefaultLogger } from '../core/logger.js';
import type { Lease, LeasedJob, Store } from '../core/store.js';
import { traceAttempt } from '../core/tracing.js';
import { WakeSignal } from './wake-signal.js';
import type { WorkerOptions } from './worker-options.js';

interface ActiveAttempt {
  lease: Lease;
  queue: string;
  leaseMs: number;
  controller: AbortController;
  /** Local time of the last successful renewal; the attempt steps down when this is older than its lease. */
  renewedAt: number;
  done: Promise<AttemptResult | undefined>;
}

/**
 * Leases jobs from a store and runs their attempts: one loop per queue, one
 * heartbeat timer renewing every held lease in one call, and one sweep timer
 * recovering the expired leases of workers that died.
 */
export class Worker extends VouchEventEmitter {
  readonly workerId: string;
  private readonly store: Store<any>;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly definitions = new Map<string, JobDefinition<any, any>>();
  private readonly queues = new Map<string, number>();
  private readonly signals = new Map<string, WakeSignal>();
  private readonly active = new Map<string, ActiveAttempt>();
  private readonly pollIntervalMs: number;
  private readonly sweepIntervalMs: number;
  private readonly heartbeatIntervalMs: number;
  private readonly shutdownGraceMs: number;
  private state: 'idle' | 'running' | 'stopping' | 'stopped' = 'idle';
  private loops: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private readonly attemptDependencies: AttemptDependencies;
  private sweeping = false;
  private heartbeating = false;

  constructor(options: WorkerOptions) {
    super();
    if (!options?.store) throw new ConfigurationError('Worker needs a store, for example new SqliteStore({ path: "vouch.db" }).');
    if (!Array.isArray(options.jobs) || options.jobs.length === 0) {
      throw new ConfigurationError('Worker needs at least one job definition in jobs.');
    }
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.workerId = options.workerId ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.logger = (options.logger ?? createDefaultLogger()).child({ workerId: this.workerId });

    for (const definition of options.jobs) {
      if (this.definitions.has(definition.name)) {
        throw new ConfigurationError(`job "${definition.name}" is listed twice in the worker's jobs; each name may appear once.`);
      }
      this.definitions.set(definition.name, definition);
    }
    const concurrency = options.concurrency ?? 10;
    const queueOptions: Readonly<Record<string, { concurrency?: number }>> =
      options.queues ?? Object.fromEntries(options.jobs.map((definition) => [definition.queue, {}]));
    for (const [queue, settings] of Object.entries(queueOptions)) {
      const limit = settings.concurrency ?? concurrency;
      if (!Number.isInteger(limit) || limit < 1) {
        throw new ConfigurationError(`concurrency of queue "${queue}" must be an integer of at least 1; got ${limit}.`);
      }
      this.queues.set(queue, limit);
      this.signals.set(queue, new WakeSignal());
    }

    const shortestLeaseMs = Math.min(...options.jobs.map((definition) => definition.leaseMs ?? DEFAULT_LEASE_MS));
    this.pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.sweepIntervalMs = positive('sweepIntervalMs', options.sweepIntervalMs ?? 2000);
    this.heartbeatIntervalMs = positive('heartbeatIntervalMs', options.heartbeatIntervalMs ?? Math.floor(shortestLeaseMs / 3));
    this.shutdownGraceMs = positive('shutdownGraceMs', options.shutdownGraceMs ?? 10_000, 0);
    this.attemptDependencies = { store: this.store, definitions: this.definitions, events: this, logger: this.logger, clock: this.clock };
  }

  /** Number of attempts running now. */
  get activeCount(): number {
    return this.active.size;
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new ConfigurationError(`worker ${this.workerId} was already started.`);
    this.state = 'running';
    this.unsubscribe = this.store.onWake((queue) => this.wake(queue));
    this.timers.push(setInterval(() => void this.renewLeases(), this.heartbeatIntervalMs));
    this.timers.push(setInterval(() => void this.sweepExpired(), this.sweepIntervalMs));
    await this.sweepExpired();
    for (const [queue, concurrency] of this.queues) this.loops.push(this.runQueue(queue, concurrency));
    this.logger.info({ queues: Object.fromEntries(this.queues) }, 'worker started');
  }

  /**
   * Stops leasing, waits up to the grace period for running attempts, then
   * aborts the rest with ShutdownError so their jobs are released at once.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.state === 'idle') this.state = 'stopped';
    this.stopping ??= this.state === 'stopped' ? Promise.resolve() : this.shutDown(options.graceMs ?? this.shutdownGraceMs);
    return this.stopping;
  }

  private async shutDown(graceMs: number): Promise<void> {
    this.state = 'stopping';
    this.logger.info({ running: this.active.size, graceMs }, 'worker stopping');
    for (const signal of this.signals.values()) signal.notify();
    await Promise.all(this.loops);

    const settled = await waitAll(
      [...this.active.values()].map((attempt) => attempt.done),
      graceMs,
    );
    if (!settled) {
      for (const attempt of this.active.values()) {
        attempt.controller.abort(new ShutdownError(`shutdown grace of ${graceMs} ms ran out`));
      }
      await Promise.all([...this.active.values()].map((attempt) => attempt.done));
    }

    for (const timer of this.timers) clearInterval(timer);
    this.unsubscribe?.();
    this.state = 'stopped';
    this.logger.info('worker stopped');
  }

  private wake(queue: string | null): void {
    if (queue === null) {
      for (const signal of this.signals.values()) signal.notify();
    } else {
      this.signals.get(queue)?.notify();
    }
  }

  private async runQueue(queue: string, concurrency: number): Promise<void> {
    const signal = this.signals.get(queue) as WakeSignal;
    let failures = 0;
    // While attempts run, wait until a quarter of the slots are free and lease them together: one lease
    // transaction per job would cost one write (and on SQLite one fsync) per job.
    const batchSize = Math.max(1, Math.ceil(concurrency / 4));
    while (this.state === 'running') {
      const active = this.countActive(queue);
      const free = concurrency - active;
      if (free <= 0 || (active > 0 && free < batchSize)) {
        await signal.wait(this.pollIntervalMs);
        continue;
      }
      signal.clear();
      let leased: LeasedJob[];
      try {
        leased = await this.store.lease({ queue, limit: free, workerId: this.workerId });
        failures = 0;
      } catch (thrown) {
        failures += 1;
        const error = toError(thrown);
        const retryInMs = Math.min(this.pollIntervalMs * 2 ** Math.min(failures - 1, 6), 30_000);
        this.logger.error({ error: errorForLog(error), queue, failures, retryInMs }, 'leasing failed; retrying');
        this.emit('worker:error', { loop: 'lease', error });
        await signal.wait(retryInMs);
        continue;
      }
      // Failpoint: the leases are written and no attempt has started.
      if (leased.length > 0) await failpoint('after-lease');
      for (const job of leased) this.startAttempt(job);
      if (leased.length < free) await signal.wait(this.pollIntervalMs);
    }
  }

  private countActive(queue: string): number {
    let count = 0;
    for (const attempt of this.active.values()) if (attempt.queue === queue) count += 1;
    return count;
  }

  private startAttempt(leased: LeasedJob): void {
    const controller = new AbortController();
    const deps = this.attemptDependencies;
    const jobId = leased.job.id;
    const ref = { jobId, name: leased.job.name, queue: leased.job.queue, attempt: leased.lease.attempt, leaseToken: leased.lease.token };
    const done = traceAttempt(ref, () => runAttempt(deps, leased, controller))
      .catch((thrown: unknown): undefined => {
        // The outcome could not be written; the lease will expire and the sweep recovers the job.
        const error = toError(thrown);
        this.logger.error(
          { error: errorForLog(error), jobId, attempt: leased.lease.attempt, leaseToken: leased.lease.token },
          'could not record the outcome of an attempt; its job will be recovered when the lease expires',
        );
        this.emit('worker:error', { loop: 'commit', error });
        return undefined;
      })
      .finally(() => {
        this.active.delete(jobId);
        this.signals.get(leased.job.queue)?.notify();
      });
    this.active.set(jobId, {
      lease: leased.lease,
      queue: leased.job.queue,
      leaseMs: leased.job.leaseMs,
      controller,
      renewedAt: this.clock(),
      done,
    });
  }

  private async renewLeases(): Promise<void> {
    if (this.heartbeating || this.active.size === 0) return;
    this.heartbeating = true;
    const attempts = [...this.active.values()];
    const startedAt = this.clock();
    try {
      // Failpoint: a block or sleep here stalls every lease renewal of this worker.
      await failpoint('heartbeat');
      const held = await this.store.heartbeat(attempts.map((attempt) => attempt.lease));
      for (const attempt of attempts) {
        if (held.has(attempt.lease.jobId)) attempt.renewedAt = startedAt;
        else this.stepDown(attempt, 'heartbeat found the lease expired or owned by another attempt');
      }
    } catch (thrown) {
      const error = toError(thrown);
      this.logger.error({ error: errorForLog(error), leases: attempts.length }, 'heartbeat failed');
      this.emit('worker:error', { loop: 'heartbeat', error });
      // Without a renewal the store will expire these leases; stop trusting them at the same moment.
      for (const attempt of attempts) {
        if (this.clock() - attempt.renewedAt >= attempt.leaseMs) this.stepDown(attempt, 'no heartbeat succeeded within the lease duration');
      }
    } finally {
      this.heartbeating = false;
    }
  }

  private stepDown(attempt: ActiveAttempt, reason: string): void {
    if (attempt.controller.signal.aborted) return;
    attempt.controller.abort(new LeaseLostError(reason));
  }

  private async sweepExpired(): Promise<void> {
    if (this.sweeping) return;
    this.sweeping = true;
    try {
      const recovered = await this.store.sweep();
      for (const job of recovered) {
        const fields = { jobId: job.jobId, job: job.name, attempt: job.attempt, leaseToken: job.leaseToken, abandonedBy: job.workerId };
        this.logger.warn({ ...fields, state: job.state }, 'attempt abandoned; job recovered');
        this.emit('attempt:abandoned', { ...job });
        if (job.state === 'failed') {
          this.logger.error(fields, 'job failed: its last attempt was abandoned');
          this.emit('job:failed', {
            jobId: job.jobId,
            name: job.name,
            queue: job.queue,
            attempt: job.attempt,
            leaseToken: job.leaseToken,
            error: 'abandoned on its last attempt',
          });
        }
      }
      if (recovered.length > 0) this.wake(null);
    } catch (thrown) {
      const error = toError(thrown);
      this.logger.error({ error: errorForLog(error) }, 'sweep failed');
      this.emit('worker:error', { loop: 'sweep', error });
    } finally {
      this.sweeping = false;
    }
  }
}

function positive(field: string, value: number, minimum = 1): number {
  if (!Number.isFinite(value) || value < minimum) {
    throw new ConfigurationError(`Worker option ${field} must be a number of milliseconds, at least ${minimum}; got ${value}.`);
  }
  return value;
}

/** Resolves true when every promise settled within timeoutMs, false otherwise. */
async function waitAll(promises: Promise<unknown>[], timeoutMs: number): Promise<boolean> {
  if (promises.length === 0) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  const all = Promise.allSettled(promises).then(() => true as const);
  const result = await Promise.race([all, timeout]);
  clearTimeout(timer);
  return result;
}
