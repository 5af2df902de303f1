import { DEFAULT_MAX_ATTEMPTS } from './backoff.js';
import type { Clock } from './clock.js';
import { systemClock } from './clock.js';
import { ConfigurationError, InvalidPayloadError } from './errors.js';
import { assertName, DEFAULT_LEASE_MS, type JobDefinition } from './job-definition.js';
import { rejectUnknownOptions, shown } from './option-errors.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, serializeJson, validatePayload } from './payload.js';
import type { JobRecord, NewJob, Store } from './store.js';

/** How long a completed job keeps absorbing enqueues with its key: 24 hours. */
export const DEFAULT_DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000;

export interface ClientOptions {
  store: Store<any>;
  /** Largest payload accepted, in bytes of JSON. @defaultValue 1 MiB */
  maxPayloadBytes?: number;
  /** @defaultValue 24 hours */
  dedupWindowMs?: number;
  clock?: Clock;
}

export interface EnqueueOptions<Tx = unknown> {
  /** When the job becomes due, as a Date or milliseconds since the epoch. */
  runAt?: Date | number;
  /** Milliseconds from now until the job becomes due. Not with runAt. */
  delayMs?: number;
  /** Lower runs first. @defaultValue 0 */
  priority?: number;
  /** Overrides the definition's queue. */
  queue?: string;
  /** Overrides the key derived by the definition. */
  key?: string | null;
  /** Overrides the client's dedup window for this job, in milliseconds. */
  dedupWindowMs?: number;
  /** The application's own connection inside an open transaction. */
  tx?: Tx;
}

export interface EnqueuedJob {
  id: string;
  name: string;
  queue: string;
  key: string | null;
  state: JobRecord['state'];
  /** True when a pending or recently completed job with the same key was returned instead of a new one. */
  duplicate: boolean;
}

export interface BulkItem<Payload> extends Omit<EnqueueOptions, 'tx'> {
  payload: Payload;
}

/** Enqueues jobs. Validation happens here, so an invalid payload is never stored. */
export class Client {
  private readonly store: Store<any>;
  private readonly maxPayloadBytes: number;
  private readonly dedupWindowMs: number;
  private readonly clock: Clock;

  constructor(options: ClientOptions) {
    rejectUnknownOptions('Client', options, ['store', 'maxPayloadBytes', 'dedupWindowMs', 'clock']);
    if (!options?.store) throw new ConfigurationError('Client needs a store, for example new SqliteStore({ path: "vouch.db" }).');
    this.store = options.store;
    this.maxPayloadBytes = options.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.dedupWindowMs = options.dedupWindowMs ?? DEFAULT_DEDUP_WINDOW_MS;
    this.clock = options.clock ?? systemClock;
    assertNonNegative('Client option maxPayloadBytes', this.maxPayloadBytes);
    assertNonNegative('Client option dedupWindowMs', this.dedupWindowMs);
  }

  async enqueue<Input, Tx>(
    definition: JobDefinition<any, any, Input>,
    payload: Input,
    options: EnqueueOptions<Tx> = {},
  ): Promise<EnqueuedJob> {
    const job = await this.prepare(definition, payload, options, 'enqueue');
    const [outcome] = await this.store.enqueue([job], options.tx === undefined ? {} : { tx: options.tx });
    if (!outcome) throw new Error('store returned no outcome for an enqueued job');
    return toEnqueued(outcome.job, outcome.duplicate);
  }

  /**
   * Enqueues many jobs in one transaction. Every item is validated first; if
   * any is invalid nothing is stored and the error names the item's index.
   */
  async enqueueMany<Input, Tx>(
    definition: JobDefinition<any, any, Input>,
    items: readonly BulkItem<Input>[],
    options: { tx?: Tx } = {},
  ): Promise<EnqueuedJob[]> {
    if (!Array.isArray(items)) throw new ConfigurationError(`enqueueMany needs an array of { payload } items; got ${typeof items}.`);
    rejectUnknownOptions('enqueueMany', options, ['tx'], {
      otherwise: "A job's own options (runAt, delayMs, priority, queue, key, dedupWindowMs) go on its item, next to payload.",
    });
    const jobs: NewJob[] = [];
    for (const [index, item] of items.entries()) {
      try {
        jobs.push(await this.prepare(definition, item?.payload as Input, item ?? {}, 'item'));
      } catch (error) {
        const prefix = `item ${index} of ${items.length}: `;
        const suffix = ' Nothing was enqueued.';
        if (error instanceof InvalidPayloadError) {
          throw new InvalidPayloadError(`${prefix}${error.message}${suffix}`, error.jobName, error.issues, { cause: error });
        }
        if (error instanceof ConfigurationError) throw new ConfigurationError(`${prefix}${error.message}${suffix}`, { cause: error });
        throw error;
      }
    }
    if (jobs.length === 0) return [];
    const outcomes = await this.store.enqueue(jobs, options.tx === undefined ? {} : { tx: options.tx });
    return outcomes.map((outcome) => toEnqueued(outcome.job, outcome.duplicate));
  }

  /**
   * Cancels a job that is still waiting (scheduled, available or retryable)
   * and returns true. Returns false for a job that is running, finished or
   * unknown: a running attempt is never interrupted, and its job ends as its
   * attempt decides.
   */
  async cancel(jobId: string): Promise<boolean> {
    if (typeof jobId !== 'string' || jobId.length === 0) {
      throw new ConfigurationError(
        `cancel needs the id of a job as a string, such as enqueue's job.id; got ${JSON.stringify(jobId) ?? String(jobId)}.`,
      );
    }
    return this.store.cancel(jobId);
  }

  private async prepare<Input>(
    definition: JobDefinition<any, any, Input>,
    payload: Input,
    options: EnqueueOptions<unknown>,
    /** Whether `options` are the options of enqueue or an item of enqueueMany, which differ in payload and tx. */
    caller: 'enqueue' | 'item',
  ): Promise<NewJob> {
    if (!definition || typeof definition.name !== 'string' || !definition.payload) {
      throw new ConfigurationError(`enqueue needs a job definition made by defineJob(); ${notADefinition(definition)}`);
    }
    if (caller === 'enqueue') {
      rejectUnknownOptions(`enqueue of job "${definition.name}"`, options, ENQUEUE_OPTIONS);
    } else {
      rejectUnknownOptions(`an item of enqueueMany for job "${definition.name}"`, options, BULK_ITEM_OPTIONS, {
        placed: { tx: "it goes in enqueueMany's third argument, { tx }, for all the items at once" },
      });
    }
    if (options.dedupWindowMs !== undefined) assertNonNegative(`job "${definition.name}": dedupWindowMs`, options.dedupWindowMs);
    const parsed = await validatePayload(definition.name, definition.payload, payload);
    const payloadJson = serializeJson(definition.name, 'payload', parsed, this.maxPayloadBytes);
    const queue = options.queue ?? definition.queue;
    assertName(`queue of job "${definition.name}"`, queue);

    let key = options.key === undefined ? (definition.key?.(parsed) ?? null) : options.key;
    if (key !== null && (typeof key !== 'string' || key.length === 0 || key.length > 1000)) {
      throw new ConfigurationError(
        `key of job "${definition.name}" must be a string of 1 to 1000 characters or null; got ${JSON.stringify(key)}.`,
      );
    }
    key ??= null;

    return {
      name: definition.name,
      queue,
      key,
      payloadJson,
      priority: checkedInteger(definition.name, 'priority', options.priority ?? 0),
      maxAttempts: definition.retry?.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
      leaseMs: definition.leaseMs ?? DEFAULT_LEASE_MS,
      runAt: this.resolveRunAt(definition.name, options),
      dedupWindowMs: options.dedupWindowMs ?? this.dedupWindowMs,
    };
  }

  private resolveRunAt(jobName: string, options: EnqueueOptions<unknown>): number | null {
    if (options.runAt !== undefined && options.delayMs !== undefined) {
      throw new ConfigurationError(`job "${jobName}": pass runAt or delayMs, not both.`);
    }
    if (options.delayMs !== undefined) {
      if (!Number.isFinite(options.delayMs) || options.delayMs < 0) {
        throw new ConfigurationError(
          `job "${jobName}": delayMs must be a number of milliseconds, 0 or more; got ${shown(options.delayMs)}.`,
        );
      }
      return options.delayMs === 0 ? null : this.clock() + options.delayMs;
    }
    if (options.runAt !== undefined) {
      const time = options.runAt instanceof Date ? options.runAt.getTime() : options.runAt;
      if (!Number.isFinite(time)) {
        throw new ConfigurationError(
          `job "${jobName}": runAt must be a valid Date or milliseconds since the epoch; got ${shown(options.runAt)}.`,
        );
      }
      return time;
    }
    return null;
  }
}

/** The names of EnqueueOptions, and of a BulkItem of enqueueMany, for rejectUnknownOptions. */
const ENQUEUE_OPTIONS = ['runAt', 'delayMs', 'priority', 'queue', 'key', 'dedupWindowMs', 'tx'] as const;
const BULK_ITEM_OPTIONS = ['payload', 'runAt', 'delayMs', 'priority', 'queue', 'key', 'dedupWindowMs'] as const;

function toEnqueued(job: JobRecord, duplicate: boolean): EnqueuedJob {
  return { id: job.id, name: job.name, queue: job.queue, key: job.key, state: job.state, duplicate };
}

function checkedInteger(jobName: string, field: string, value: number): number {
  if (!Number.isSafeInteger(value)) {
    throw new ConfigurationError(`job "${jobName}": ${field} must be an integer; got ${shown(value)}.`);
  }
  return value;
}

/** Throws unless `value` is a finite number of 0 or more; `subject` names it in the message. */
function assertNonNegative(subject: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) {
    throw new ConfigurationError(`${subject} must be a number, 0 or more; got ${shown(value)}.`);
  }
}

/** Names what was passed in place of a job definition, and the fix. */
function notADefinition(received: unknown): string {
  if (typeof received === 'string') {
    return `got the string ${JSON.stringify(received)}. Pass the definition that defineJob() returned, not its name.`;
  }
  const kind = received === null ? 'null' : typeof received;
  return `got ${kind}. Pass the value that defineJob() returned.`;
}
