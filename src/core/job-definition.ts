import type { StandardSchemaV1 } from '@standard-schema/spec';
import type { RetryPolicy } from './backoff.js';
import { ConfigurationError } from './errors.js';
import type { JobContext } from './job-context.js';
import { rejectUnknownOptions, shown } from './option-errors.js';

/**
 * `Payload` is what the schema outputs and the handler receives; `Input` is
 * what enqueue accepts, which differs when the schema fills in defaults or
 * transforms values.
 */
// Handlers are declared as methods so that a definition with a narrow Result (such as never) still fits where any definition is accepted.
export interface JobDefinitionOptions<Payload, Result, Input = Payload> {
  /** The job's kind, unique among the definitions a worker runs. */
  name: string;
  /** Any Standard Schema validator (zod 4, valibot, arktype and others). */
  payload: StandardSchemaV1<Input, Payload>;
  /** Derives the business key from the payload; jobs with the same key are deduplicated. */
  key?(payload: Payload): string | null | undefined;
  /** @defaultValue 'default' */
  queue?: string;
  retry?: RetryPolicy;
  /** How long a lease lasts without a heartbeat, in milliseconds. @defaultValue 10_000 */
  leaseMs?: number;
  /** Longest a single attempt may run before it is errored, in milliseconds. @defaultValue none */
  timeoutMs?: number;
  /** Does the work. Side effects belong in ctx.effect and database writes in ctx.transaction. */
  perform(ctx: JobContext<Payload>): Promise<Result> | Result;
  /**
   * Confirms the outcome of perform against the world before commit. Returning
   * false, or throwing, errors the attempt, and the job is retried.
   */
  verify?(ctx: JobContext<Payload>, result: Result): Promise<boolean> | boolean;
}

export interface JobDefinition<Payload = unknown, Result = unknown, Input = Payload> extends JobDefinitionOptions<Payload, Result, Input> {
  readonly queue: string;
}

export const DEFAULT_LEASE_MS = 10_000;
/** The names of JobDefinitionOptions and of RetryPolicy, for rejectUnknownOptions. */
const JOB_OPTIONS = ['name', 'payload', 'key', 'queue', 'retry', 'leaseMs', 'timeoutMs', 'perform', 'verify'] as const;
const RETRY_OPTIONS = ['maxAttempts', 'baseMs', 'maxMs', 'jitter'] as const;
const NAME_LIMIT = 200;

/** Checks a job definition and returns it with its defaults filled in. */
export function defineJob<Payload, Result, Input = Payload>(
  options: JobDefinitionOptions<Payload, Result, Input>,
): JobDefinition<Payload, Result, Input> {
  // Unknown names first: a misspelled `name` is then reported as such, not as a missing name.
  rejectUnknownOptions(typeof options?.name === 'string' ? `job "${options.name}"` : 'defineJob', options, JOB_OPTIONS);
  assertName('job name', options?.name);
  if (options.retry !== undefined && (options.retry === null || typeof options.retry !== 'object')) {
    throw new ConfigurationError(`job "${options.name}": retry must be an object such as { maxAttempts: 3 }; got ${shown(options.retry)}.`);
  }
  rejectUnknownOptions(`retry of job "${options.name}"`, options.retry, RETRY_OPTIONS);
  const queue = options.queue ?? 'default';
  assertName(`queue of job "${options.name}"`, queue);
  if (!options.payload || typeof options.payload !== 'object' || !('~standard' in options.payload)) {
    throw new ConfigurationError(
      `job "${options.name}": payload must be a Standard Schema validator (zod, valibot, arktype and others); got ${typeof options.payload}.`,
    );
  }
  if (typeof options.perform !== 'function') {
    throw new ConfigurationError(`job "${options.name}": perform must be a function.`);
  }
  assertPositive(options.name, 'leaseMs', options.leaseMs, 1000);
  assertPositive(options.name, 'timeoutMs', options.timeoutMs, 1);
  assertPositive(options.name, 'retry.maxAttempts', options.retry?.maxAttempts, 1);
  assertPositive(options.name, 'retry.baseMs', options.retry?.baseMs, 0);
  assertPositive(options.name, 'retry.maxMs', options.retry?.maxMs, 0);
  const jitter = options.retry?.jitter;
  if (jitter !== undefined && !(typeof jitter === 'number' && jitter >= 0 && jitter <= 1)) {
    throw new ConfigurationError(`job "${options.name}": retry.jitter must be a number from 0 to 1; got ${shown(jitter)}.`);
  }
  return { ...options, queue };
}

/**
 * Rejects names that are empty, longer than 200 characters, or contain
 * control characters, because names appear in logs, metrics and SQL indexes.
 */
export function assertName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) {
    throw new ConfigurationError(`${what} must be a non-empty string; got ${JSON.stringify(name)}.`);
  }
  if (name.length > NAME_LIMIT) {
    throw new ConfigurationError(`${what} is ${name.length} characters long; the limit is ${NAME_LIMIT}. Use a shorter name.`);
  }
  // biome-ignore lint/suspicious/noControlCharactersInRegex: the check is for control characters
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new ConfigurationError(`${what} ${JSON.stringify(name)} contains a control character. Use printable characters only.`);
  }
}

function assertPositive(jobName: string, field: string, value: number | undefined, minimum: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < minimum) {
    throw new ConfigurationError(`job "${jobName}": ${field} must be a number of at least ${minimum}; got ${shown(value)}.`);
  }
}
