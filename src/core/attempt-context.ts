import type { Logger } from 'pino';
import type { AttemptDependencies } from './attempt.js';
import type { AttemptAbort } from './attempt-abort.js';
import { EffectLedger } from './effect-ledger.js';
import type { AttemptRef } from './events.js';
import type { EffectOptions, JobContext, PreviousAttempt } from './job-context.js';
import type { LeasedJob } from './store.js';

const NO_WRITES: readonly ((tx: unknown) => unknown)[] = Object.freeze([]);

/**
 * The state one attempt keeps beside its handler's context: its logger and
 * its effect ledger, both made on first use, and the writes queued for the
 * commit. Methods on a class rather than closures made per attempt: the
 * closures were a large part of what a no-op job allocated (8.7 KB with them,
 * 6.9 KB without, by V8's sampling heap profiler on Node 20).
 */
export class AttemptState {
  private queuedWrites: ((tx: unknown) => unknown)[] | undefined;
  private attemptLogger: Logger | undefined;
  private ledger: EffectLedger | undefined;

  constructor(
    private readonly deps: AttemptDependencies,
    private readonly leased: LeasedJob,
    readonly ref: AttemptRef,
    private readonly abort: AttemptAbort,
  ) {}

  /** The ctx.transaction writes, in the order they were queued. */
  get writes(): readonly ((tx: unknown) => unknown)[] {
    return this.queuedWrites ?? NO_WRITES;
  }

  /** Made on first read: most attempts of a healthy job never log before their outcome. */
  get logger(): Logger {
    this.attemptLogger ??= attemptLogger(this.deps.logger, this.ref);
    return this.attemptLogger;
  }

  /** The logger if something already made it, so that a completion logs through the worker's logger instead. */
  get loggerIfMade(): Logger | undefined {
    return this.attemptLogger;
  }

  effect<T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T, options?: EffectOptions<T>): Promise<T> {
    return this.effects().run(name, fn, options);
  }

  idempotencyKey(name: string): string {
    return this.effects().idempotencyKey(name);
  }

  transaction(fn: (tx: unknown) => unknown): void {
    this.queuedWrites ??= [];
    this.queuedWrites.push(fn);
  }

  private effects(): EffectLedger {
    this.ledger ??= new EffectLedger(
      this.deps.store,
      this.leased.lease,
      this.ref,
      this.leased.job.key,
      this.leased.effects,
      this.abort,
      this.logger,
      this.deps.events,
    );
    return this.ledger;
  }
}

type Effect = JobContext<unknown>['effect'];
type IdempotencyKey = JobContext<unknown>['idempotencyKey'];
type Transaction = JobContext<unknown>['transaction'];

/** The two accessors every HandlerContext gets, with getters shared by all of them. Set in the class's static block. */
let SIGNAL: PropertyDescriptor;
let LOGGER: PropertyDescriptor;

/**
 * The context a handler receives. Its own enumerable properties are exactly
 * the JobContext members, in the order JobContext lists them, so
 * destructuring it, spreading it (`{ ...ctx, extra }`) and logging it show
 * those and nothing else, and a member taken off it still works.
 *
 * `signal` and `logger` are own accessors with getters that every context
 * shares, since both are made on first read (see AttemptAbort and
 * AttemptState). The three methods are closures over the attempt's state.
 * Measured on Node 22, building a context this way takes about 160 ns. With
 * all five as accessors it took 580 ns, since each Object.defineProperty
 * costs some 65 ns and a closure a few. An object literal with getters took
 * 500 ns, because V8 keeps it in its slow dictionary mode.
 */
class HandlerContext implements JobContext<unknown> {
  readonly jobId: string;
  readonly name: string;
  readonly queue: string;
  readonly key: string | null;
  readonly payload: unknown;
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly leaseToken: string;
  readonly previousAttempt: PreviousAttempt | null;
  // Declared, not initialized, so that they become own properties after signal and logger.
  declare readonly signal: AbortSignal;
  declare readonly logger: Logger;
  declare readonly effect: Effect;
  declare readonly idempotencyKey: IdempotencyKey;
  declare readonly transaction: Transaction;
  readonly #state: AttemptState;
  readonly #abort: AttemptAbort;

  constructor(state: AttemptState, leased: LeasedJob, payload: unknown, previousAttempt: PreviousAttempt | null, abort: AttemptAbort) {
    const { job, lease } = leased;
    this.jobId = job.id;
    this.name = job.name;
    this.queue = job.queue;
    this.key = job.key;
    this.payload = payload;
    this.attempt = lease.attempt;
    this.maxAttempts = job.maxAttempts;
    this.leaseToken = lease.token;
    this.previousAttempt = previousAttempt;
    this.#state = state;
    this.#abort = abort;
    Object.defineProperty(this, 'signal', SIGNAL);
    Object.defineProperty(this, 'logger', LOGGER);
    this.effect = <T>(name: string, fn: (idempotencyKey: string) => Promise<T> | T, options?: EffectOptions<T>) =>
      state.effect(name, fn, options);
    this.idempotencyKey = (name: string) => state.idempotencyKey(name);
    this.transaction = (fn) => state.transaction(fn as (tx: unknown) => unknown);
  }

  static {
    SIGNAL = {
      enumerable: true,
      get(this: HandlerContext) {
        return this.#abort.signal;
      },
    };
    LOGGER = {
      enumerable: true,
      get(this: HandlerContext) {
        return this.#state.logger;
      },
    };
  }
}

/** Builds the context a handler receives (see HandlerContext). */
export function jobContext(
  state: AttemptState,
  leased: LeasedJob,
  payload: unknown,
  previousAttempt: PreviousAttempt | null,
  abort: AttemptAbort,
): JobContext<unknown> {
  return new HandlerContext(state, leased, payload, previousAttempt, abort);
}

/** Makes a child of the worker's logger that names the attempt in every line. */
export function attemptLogger(logger: Logger, ref: AttemptRef): Logger {
  return logger.child({ jobId: ref.jobId, job: ref.name, attempt: ref.attempt, leaseToken: ref.leaseToken });
}
