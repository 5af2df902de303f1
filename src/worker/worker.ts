import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type AttemptDependencies, type AttemptHooks, type AttemptResult, attemptRefOf, runAttempt } from '../core/attempt.js';
import { AttemptAbort } from '../core/attempt-abort.js';
import { type Clock, systemClock } from '../core/clock.js';
import { ConfigurationError, LeaseLostError, ShutdownError, toError } from '../core/errors.js';
import { VouchEventEmitter } from '../core/events.js';
import { failpoint } from '../core/failpoints.js';
import { DEFAULT_LEASE_MS, type JobDefinition } from '../core/job-definition.js';
import { errorForLog } from '../core/log-error.js';
import { createDefaultLogger } from '../core/logger.js';
import { rejectUnknownOptions, shown } from '../core/option-errors.js';
import type { LeasedJob, Store } from '../core/store.js';
import { traceAttempt, tracingRegistered } from '../core/tracing.js';
import { PrefetchSizer } from './prefetch-sizer.js';
import { WakeSignal } from './wake-signal.js';
import type { WorkerOptions } from './worker-options.js';

/** A lease this worker holds: waiting for a free slot, performing, or settling its outcome. */
interface HeldLease {
  leased: LeasedJob;
  queue: QueueState;
  leaseMs: number;
  /** Local time of the last successful renewal; the attempt steps down when this is older than its lease. */
  renewedAt: number;
  /** Local time the lease was taken, to find prefetched jobs that waited too long for a slot. */
  leasedAt: number;
  /** Abort handle, set when the attempt starts. A lease still waiting for a slot has none. */
  abort: AttemptAbort | undefined;
  /** The running attempt; it never rejects (see runAttempt). */
  done: Promise<AttemptResult | undefined> | undefined;
  /** True once the attempt's handler returned and its slot went to the next job. */
  slotFree: boolean;
}

interface QueueState {
  name: string;
  /** Handlers that may perform at once. */
  concurrency: number;
  /**
   * Jobs the queue may have ready or performing at once: the concurrency plus
   * the prefetch. Attempts that are settling (handler returned, outcome not
   * yet durable) do not count: they free up as fast as the store writes.
   */
  capacity: number;
  /** The sizer that resizes the prefetch from what the queue observes, or undefined when the options fixed the prefetch. */
  sizer: PrefetchSizer | undefined;
  /** Attempts started since the worker began, for the sizer's rate. */
  starts: number;
  /** True while startReady runs, so that a slot freed inside it does not start a second pass. */
  starting: boolean;
  signal: WakeSignal;
  /** Leased jobs waiting for a slot, in the order the store returned them. */
  ready: HeldLease[];
  performing: number;
  /** Attempts whose handler returned and whose outcome is not yet durable. */
  settling: number;
  /**
   * True after a lease came back short: the loop leases again on a wake from
   * the store or after the poll interval, not on every freed slot.
   */
  drained: boolean;
  /** Wakes from the store so far. A lease that saw none arrive while it ran may mark the queue drained. */
  wakes: number;
  /** Timer that reads when the queue's next waiting job comes due, once the queue stayed empty a moment (scheduleDueWake). */
  dueCheckTimer: NodeJS.Timeout | undefined;
  /** Flag set while that read runs. */
  dueCheck: boolean;
  /** Timer that wakes the queue when its next waiting job comes due, if that is sooner than the poll (wakeWhenDue). */
  dueTimer: NodeJS.Timeout | undefined;
  /** The time dueTimer fires, by performance.now(). */
  dueTimerAt: number;
}

/**
 * Leases jobs from a store and runs their attempts: one loop per queue, one
 * heartbeat timer renewing every held lease in one call, and one sweep timer
 * recovering the expired leases of workers that died.
 *
 * A queue leases ahead of its free slots (the prefetch), so that a batch of
 * leases and the commits of the attempts before them share one write to the
 * store. A slot frees when its handler returns, and the attempt keeps its lease,
 * and its heartbeat, until its outcome is durable.
 */
export class Worker extends VouchEventEmitter {
  readonly workerId: string;
  private readonly store: Store<any>;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private readonly definitions = new Map<string, JobDefinition<any, any>>();
  private readonly queues = new Map<string, QueueState>();
  private readonly heldLeases = new Map<string, HeldLease>();
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
  /** The one set of hooks every attempt of this worker reports to, with its HeldLease as the context. */
  private readonly attemptHooks: AttemptHooks<HeldLease> = {
    performed: (held) => this.freeSlot(held),
    ended: (held) => this.attemptEnded(held),
  };
  private sweeping = false;
  private heartbeating = false;

  constructor(options: WorkerOptions) {
    super();
    rejectUnknownOptions('Worker', options, WORKER_OPTIONS);
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
    // `undefined` means "not set", while `null` is a value and is checked like any other.
    const concurrency = options.concurrency === undefined ? 10 : options.concurrency;
    if (options.concurrency !== undefined && (!Number.isInteger(concurrency) || concurrency < 1)) {
      throw new ConfigurationError(`Worker option concurrency must be an integer of at least 1; got ${shown(concurrency)}.`);
    }
    if (options.prefetch !== undefined && !validPrefetch(options.prefetch)) {
      throw new ConfigurationError(`Worker option prefetch must be an integer of at least 0, or "auto"; got ${shown(options.prefetch)}.`);
    }
    const queueOptions: Readonly<Record<string, { concurrency?: number; prefetch?: number | 'auto' }>> =
      options.queues ?? Object.fromEntries(options.jobs.map((definition) => [definition.queue, {}]));
    for (const [name, settings] of Object.entries(queueOptions)) {
      if (settings === null || typeof settings !== 'object') {
        throw new ConfigurationError(
          `queue "${name}" of Worker option queues must be an object such as { concurrency: 5 }; got ${shown(settings)}.`,
        );
      }
      rejectUnknownOptions(`queue "${name}" of Worker option queues`, settings, ['concurrency', 'prefetch']);
      const limit = settings.concurrency === undefined ? concurrency : settings.concurrency;
      if (!Number.isInteger(limit) || limit < 1) {
        throw new ConfigurationError(`concurrency of queue "${name}" must be an integer of at least 1; got ${shown(limit)}.`);
      }
      const prefetch = settings.prefetch !== undefined ? settings.prefetch : (options.prefetch ?? 'auto');
      if (!validPrefetch(prefetch)) {
        throw new ConfigurationError(`prefetch of queue "${name}" must be an integer of at least 0, or "auto"; got ${shown(prefetch)}.`);
      }
      const sizer = prefetch === 'auto' ? new PrefetchSizer(limit, Math.max(limit, AUTO_PREFETCH_CEILING)) : undefined;
      this.queues.set(name, {
        name,
        concurrency: limit,
        capacity: limit + (sizer ? sizer.value : (prefetch as number)),
        sizer,
        starts: 0,
        starting: false,
        signal: new WakeSignal(),
        ready: [],
        performing: 0,
        settling: 0,
        drained: false,
        wakes: 0,
        dueCheckTimer: undefined,
        dueCheck: false,
        dueTimer: undefined,
        dueTimerAt: 0,
      });
    }

    const shortestLeaseMs = Math.min(...options.jobs.map((definition) => definition.leaseMs ?? DEFAULT_LEASE_MS));
    this.pollIntervalMs = positive('pollIntervalMs', options.pollIntervalMs ?? 1000);
    this.sweepIntervalMs = positive('sweepIntervalMs', options.sweepIntervalMs ?? 2000);
    this.heartbeatIntervalMs = positive('heartbeatIntervalMs', options.heartbeatIntervalMs ?? Math.floor(shortestLeaseMs / 3));
    this.shutdownGraceMs = positive('shutdownGraceMs', options.shutdownGraceMs ?? 10_000, 0);
    this.attemptDependencies = {
      store: this.store,
      definitions: this.definitions,
      events: this,
      logger: this.logger,
      clock: this.clock,
      retryScheduled: (name, retryAt) => {
        const queue = this.queues.get(name);
        if (queue) this.wakeWhenDue(queue, retryAt - this.clock());
      },
    };
  }

  /** Number of leases this worker holds: attempts waiting for a slot, performing, or settling. */
  get activeCount(): number {
    return this.heldLeases.size;
  }

  async start(): Promise<void> {
    if (this.state !== 'idle') throw new ConfigurationError(`worker ${this.workerId} was already started.`);
    this.state = 'running';
    this.unsubscribe = this.store.onWake((queue) => this.wake(queue));
    this.timers.push(
      setInterval(() => {
        this.returnStaleReady();
        void this.renewLeases();
      }, this.heartbeatIntervalMs),
    );
    this.timers.push(setInterval(() => void this.sweepExpired(), this.sweepIntervalMs));
    await this.sweepExpired();
    for (const queue of this.queues.values()) this.loops.push(this.runQueue(queue));
    const queues = Object.fromEntries([...this.queues.values()].map((queue) => [queue.name, queue.concurrency]));
    this.logger.info({ queues }, 'worker started');
  }

  /**
   * Stops leasing, gives back the leases whose attempts have not started,
   * waits up to the grace period for running attempts, then aborts the rest
   * with ShutdownError so their jobs are released at once.
   */
  stop(options: { graceMs?: number } = {}): Promise<void> {
    // Checked before anything changes, so that a stop with valid options can follow.
    rejectUnknownOptions('Worker.stop', options, ['graceMs']);
    const graceMs = options?.graceMs;
    if (graceMs !== undefined && !(typeof graceMs === 'number' && graceMs >= 0)) {
      throw new ConfigurationError(`Worker.stop option graceMs must be a number of milliseconds, 0 or more; got ${shown(graceMs)}.`);
    }
    if (this.state === 'idle') this.state = 'stopped';
    this.stopping ??= this.state === 'stopped' ? Promise.resolve() : this.shutDown(graceMs ?? this.shutdownGraceMs);
    return this.stopping;
  }

  private async shutDown(graceMs: number): Promise<void> {
    this.state = 'stopping';
    this.logger.info({ leasesHeld: this.heldLeases.size, graceMs }, 'worker stopping');
    for (const queue of this.queues.values()) queue.signal.notify();
    await Promise.all(this.loops);
    await Promise.all([...this.queues.values()].flatMap((queue) => queue.ready.splice(0).map((held) => this.giveBack(held, STOPPED))));

    const running = () => [...this.heldLeases.values()].flatMap((held) => (held.done ? [held.done] : []));
    const settled = await waitAll(running(), graceMs);
    if (!settled) {
      for (const held of this.heldLeases.values()) {
        held.abort?.abort(new ShutdownError(`shutdown grace of ${graceMs} ms ran out`));
      }
      await Promise.all(running());
    }

    for (const timer of this.timers) clearInterval(timer);
    for (const queue of this.queues.values()) {
      clearTimeout(queue.dueCheckTimer);
      clearTimeout(queue.dueTimer);
    }
    this.unsubscribe?.();
    this.state = 'stopped';
    this.logger.info('worker stopped');
  }

  private wake(name: string | null): void {
    for (const queue of this.queues.values()) {
      if (name !== null && queue.name !== name) continue;
      queue.drained = false;
      queue.wakes += 1;
      queue.signal.notify();
    }
  }

  private async runQueue(queue: QueueState): Promise<void> {
    let failures = 0;
    let observedAt = performance.now();
    let startsAtObservation = queue.starts;
    let previousFull = false;
    while (this.state === 'running') {
      this.startReady(queue);
      const busy = queue.ready.length + queue.performing;
      const room = roomOf(queue);
      // Below a quarter of the capacity, a busy queue waits for more room rather than leasing a job or two per call:
      // on PostgreSQL every lease is a round trip.
      const threshold = Math.max(1, Math.ceil(queue.capacity / 4));
      // Outcomes waiting past the capacity mean the store is behind: leasing more would only lengthen that wait.
      const storeBehind = queue.settling > queue.capacity;
      if (queue.drained || storeBehind || room <= 0 || (busy > 0 && room < threshold)) {
        const reason = await queue.signal.wait(this.pollIntervalMs);
        if (reason === 'timeout') queue.drained = false;
        continue;
      }
      let leased: LeasedJob[];
      const leaseSentAt = performance.now();
      const wakesAtSend = queue.wakes;
      try {
        leased = await this.store.lease({ queue: queue.name, limit: room, workerId: this.workerId, roomAtWrite: () => roomOf(queue) });
        failures = 0;
      } catch (thrown) {
        failures += 1;
        const error = toError(thrown);
        const retryInMs = Math.min(this.pollIntervalMs * 2 ** Math.min(failures - 1, 6), 30_000);
        this.logger.error({ error: errorForLog(error), queue: queue.name, failures, retryInMs }, 'leasing failed; retrying');
        this.emit('worker:error', { loop: 'lease', error });
        // A wake (a freed slot, a new job) does not cut the wait short: the retries keep the spacing the log
        // line gave. Shutdown does.
        const retryAt = performance.now() + retryInMs;
        for (let left = retryInMs; left > 0 && this.state === 'running'; left = retryAt - performance.now()) {
          await queue.signal.wait(left);
        }
        continue;
      }
      const renewedAt = this.clock();
      const returnedAt = performance.now();
      const full = leased.length >= room;
      if (!full) {
        // A job enqueued while the lease ran may have committed after the lease read the queue. Its wake
        // came before this point, so the queue is drained only if no wake came at all.
        queue.drained = queue.wakes === wakesAtSend;
        // The backlog that sized the prefetch is gone. The next one may hold long jobs, so it starts from the floor.
        resetPrefetch(queue);
        this.scheduleDueWake(queue);
      } else if (queue.sizer && previousFull) {
        // Two full leases in a row: the queue had a backlog all the while this one was away, so free slots
        // with nothing ready mean the prefetch was too shallow, not that the queue was empty.
        const starved = queue.ready.length === 0 && queue.performing < queue.concurrency;
        const elapsedMs = returnedAt - observedAt;
        const prefetch = queue.sizer.observe(queue.starts - startsAtObservation, elapsedMs, returnedAt - leaseSentAt, starved);
        queue.capacity = queue.concurrency + prefetch;
      }
      previousFull = full;
      observedAt = returnedAt;
      startsAtObservation = queue.starts;
      if (leased.length === 0) continue;
      for (const job of leased) {
        const held: HeldLease = {
          leased: job,
          queue,
          leaseMs: job.job.leaseMs,
          renewedAt,
          leasedAt: renewedAt,
          abort: undefined,
          done: undefined,
          slotFree: false,
        };
        this.heldLeases.set(job.job.id, held);
        queue.ready.push(held);
      }
      // Failpoint: the leases are written and no attempt has started.
      await failpoint('after-lease');
    }
  }

  /**
   * Reads from the store, once the queue has found nothing to lease for
   * DUE_CHECK_DELAY_MS, when its earliest scheduled or retrying job comes
   * due, and wakes the queue then (wakeWhenDue). A queue that keeps getting
   * jobs leases again within that time, so it never reads. The read runs
   * beside the loop's wait, so a wake from the store is not held up by it.
   */
  private scheduleDueWake(queue: QueueState): void {
    // One timer per queue, restarted on each empty lease rather than made again.
    if (queue.dueCheckTimer) queue.dueCheckTimer.refresh();
    else queue.dueCheckTimer = setTimeout(() => this.readNextDue(queue), DUE_CHECK_DELAY_MS);
  }

  private readNextDue(queue: QueueState): void {
    if (queue.dueCheck || this.state !== 'running') return;
    queue.dueCheck = true;
    this.store.nextDueInMs(queue.name).then(
      (inMs) => {
        queue.dueCheck = false;
        if (inMs !== null) this.wakeWhenDue(queue, inMs);
      },
      (error: unknown) => {
        queue.dueCheck = false;
        // Only the timing suffers: the poll leases the job when it is due.
        this.logger.warn(
          { error: errorForLog(toError(error)), queue: queue.name },
          'reading when the next waiting job is due failed; the poll will lease it when due',
        );
      },
    );
  }

  /**
   * Wakes the queue in `inMs`, if that is sooner than the next poll and than
   * a wake already set. No store announces the moment a scheduled job or a
   * retry comes due, so without this a retry with a 50 ms backoff would wait
   * for the poll interval.
   */
  private wakeWhenDue(queue: QueueState, inMs: number): void {
    if (inMs >= this.pollIntervalMs || this.state !== 'running') return;
    // A job already due that the last lease missed (another worker had it locked) is tried again
    // after a short pause, not in a tight loop.
    const delayMs = Math.max(MIN_DUE_WAKE_MS, Math.ceil(inMs));
    const at = performance.now() + delayMs;
    if (queue.dueTimer && queue.dueTimerAt <= at) return;
    clearTimeout(queue.dueTimer);
    queue.dueTimerAt = at;
    queue.dueTimer = setTimeout(() => {
      queue.dueTimer = undefined;
      queue.drained = false;
      queue.signal.notify();
    }, delayMs);
  }

  /**
   * Starts ready attempts while the queue has free slots. Called by the loop
   * and by every slot that frees, so that ready jobs start while a lease is
   * still on its way to the store.
   */
  private startReady(queue: QueueState): void {
    if (queue.starting) return;
    queue.starting = true;
    try {
      while (queue.performing < queue.concurrency && queue.ready.length > 0 && this.state === 'running') {
        const held = queue.ready[0] as HeldLease;
        // A lease not renewed within its duration may belong to another attempt by now: never start on it.
        if (this.clock() - held.renewedAt >= held.leaseMs) {
          this.stepDown(held, 'the lease expired before a slot freed for its attempt');
          continue;
        }
        queue.ready.shift();
        this.startAttempt(held);
      }
    } finally {
      queue.starting = false;
    }
  }

  private startAttempt(held: HeldLease): void {
    const { leased, queue } = held;
    const abort = new AttemptAbort();
    held.abort = abort;
    queue.performing += 1;
    queue.starts += 1;
    const ref = attemptRefOf(leased);
    // Without a tracer provider, the attempt runs without the closure and the span's async frame.
    held.done = tracingRegistered()
      ? traceAttempt(ref, () => runAttempt(this.attemptDependencies, leased, abort, ref, this.attemptHooks, held))
      : runAttempt(this.attemptDependencies, leased, abort, ref, this.attemptHooks, held);
  }

  /** Gives the attempt's slot to the next ready job. Called once its handler returned, and again, doing nothing, when it ends. */
  private freeSlot(held: HeldLease): void {
    if (held.slotFree) return;
    held.slotFree = true;
    const { queue } = held;
    queue.performing -= 1;
    queue.settling += 1;
    this.startReady(queue);
    queue.signal.notify();
  }

  /** However the attempt ended, frees its slot and drops its lease from heldLeases. */
  private attemptEnded(held: HeldLease): void {
    this.freeSlot(held);
    const { queue } = held;
    queue.settling -= 1;
    this.forget(held);
    if (queue.settling === queue.capacity) queue.signal.notify();
  }

  private forget(held: HeldLease): void {
    if (this.heldLeases.get(held.leased.job.id) !== held) return;
    this.heldLeases.delete(held.leased.job.id);
  }

  /**
   * Gives back the prefetched jobs of an automatically sized queue once the
   * oldest has waited a whole heartbeat interval for a slot: the slots turned
   * slower than the start rate that sized the prefetch, and other workers may
   * be idle. The queue keeps as many waiting jobs as it has slots, and its
   * prefetch starts over from the concurrency.
   */
  private returnStaleReady(): void {
    const now = this.clock();
    for (const queue of this.queues.values()) {
      const oldest = queue.ready[0];
      if (!queue.sizer || queue.ready.length <= queue.concurrency || !oldest) continue;
      if (now - oldest.leasedAt < this.heartbeatIntervalMs) continue;
      const surplus = queue.ready.splice(queue.concurrency);
      resetPrefetch(queue);
      const jobIds = surplus.map((held) => held.leased.job.id);
      this.logger.info({ queue: queue.name, jobIds, waitedMs: now - oldest.leasedAt }, 'prefetched jobs given back to the store');
      for (const held of surplus) void this.giveBack(held, WAITED);
    }
  }

  /** Releases a lease whose attempt never started, so the job is available again at once and keeps its attempts. */
  private async giveBack(held: HeldLease, reason: string): Promise<void> {
    const { job, lease } = held.leased;
    try {
      const released = await this.store.release(lease, reason);
      if (released) {
        this.emit('job:released', { ...attemptRefOf(held.leased), reason });
      }
    } catch (thrown) {
      const error = toError(thrown);
      this.logger.error(
        { error: errorForLog(error), jobId: job.id, attempt: lease.attempt, leaseToken: lease.token },
        'could not release a lease whose attempt never started; its job will be recovered when the lease expires',
      );
      this.emit('worker:error', { loop: 'release', error });
    } finally {
      this.forget(held);
    }
  }

  private async renewLeases(): Promise<void> {
    if (this.heartbeating || this.heldLeases.size === 0) return;
    this.heartbeating = true;
    const leases = [...this.heldLeases.values()];
    const startedAt = this.clock();
    try {
      // Failpoint: a block or sleep here stalls every lease renewal of this worker.
      await failpoint('heartbeat');
      const renewed = await this.store.heartbeat(leases.map((held) => held.leased.lease));
      for (const held of leases) {
        if (renewed.has(held.leased.job.id)) held.renewedAt = startedAt;
        else this.stepDown(held, 'heartbeat found the lease expired or owned by another attempt');
      }
    } catch (thrown) {
      const error = toError(thrown);
      this.logger.error({ error: errorForLog(error), leases: leases.length }, 'heartbeat failed');
      this.emit('worker:error', { loop: 'heartbeat', error });
      // Without a renewal the store will expire these leases; stop trusting them at the same moment.
      for (const held of leases) {
        if (this.clock() - held.renewedAt >= held.leaseMs) this.stepDown(held, 'no heartbeat succeeded within the lease duration');
      }
    } finally {
      this.heartbeating = false;
    }
  }

  private stepDown(held: HeldLease, reason: string): void {
    if (held.abort) {
      held.abort.abort(new LeaseLostError(reason));
      return;
    }
    // Not started yet: nothing to abort, so close the attempt here as the attempt runner would.
    const index = held.queue.ready.indexOf(held);
    if (index === -1) return;
    held.queue.ready.splice(index, 1);
    const { lease } = held.leased;
    const ref = attemptRefOf(held.leased);
    this.logger.error({ ...ref, reason }, 'lease lost before the attempt started');
    this.emit('lease:lost', { ...ref, reason });
    this.store
      .abandonLease(lease, reason)
      .catch((error: unknown) => {
        // The sweep recovers the job anyway once its lease expires, so this only makes recovery faster.
        this.logger.error({ ...ref, error: errorForLog(error) }, 'could not close the attempt that lost its lease');
      })
      .finally(() => this.forget(held));
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

/** Returns an automatically sized prefetch to its floor, the queue's concurrency. */
function resetPrefetch(queue: QueueState): void {
  if (!queue.sizer) return;
  queue.sizer.reset();
  queue.capacity = queue.concurrency + queue.sizer.value;
}

/** Jobs the queue may lease now: its capacity less the jobs ready or performing. */
function roomOf(queue: QueueState): number {
  return queue.capacity - queue.ready.length - queue.performing;
}

const STOPPED = 'the worker stopped before the attempt started';
const WAITED = 'the prefetched job waited a heartbeat interval for a slot; given back for other workers';

/** How long a queue finds nothing to lease before the worker reads when its next waiting job comes due. */
const DUE_CHECK_DELAY_MS = 50;

/** The shortest wait before a lease for a job that came due (wakeWhenDue). */
const MIN_DUE_WAKE_MS = 5;

/** The names of WorkerOptions, for rejectUnknownOptions. */
const WORKER_OPTIONS = [
  'store',
  'jobs',
  'queues',
  'concurrency',
  'prefetch',
  'workerId',
  'pollIntervalMs',
  'sweepIntervalMs',
  'heartbeatIntervalMs',
  'shutdownGraceMs',
  'logger',
  'clock',
] as const;

/** The deepest prefetch "auto" grows to, unless the concurrency is higher still. */
const AUTO_PREFETCH_CEILING = 500;

function validPrefetch(value: unknown): value is number | 'auto' {
  return value === 'auto' || (typeof value === 'number' && Number.isInteger(value) && value >= 0);
}

function positive(field: string, value: number, minimum = 1): number {
  if (!Number.isFinite(value) || value < minimum) {
    throw new ConfigurationError(`Worker option ${field} must be a number of milliseconds, at least ${minimum}; got ${shown(value)}.`);
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
