/** Base class of every error vouch raises itself. */
export class VouchError extends Error {
  override name = 'VouchError';
}

/**
 * Thrown by a handler to fail its job at once, without further attempts: a
 * rejected card, an address that does not exist.
 */
export class PermanentError extends VouchError {
  override name = 'PermanentError';
}

/** A payload that its job's schema rejected, or that cannot be stored as JSON. */
export class InvalidPayloadError extends VouchError {
  override name = 'InvalidPayloadError';
  constructor(
    message: string,
    readonly jobName: string,
    readonly issues: readonly { path: string; message: string }[] = [],
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

/**
 * A job or effect result that cannot be stored as JSON. Retrying would
 * produce the same value, so the job fails at once.
 */
export class InvalidResultError extends VouchError {
  override name = 'InvalidResultError';
}

/**
 * The attempt no longer holds its lease: it expired, or another attempt owns
 * the job now. Nothing the attempt does after this is recorded as done.
 */
export class LeaseLostError extends VouchError {
  override name = 'LeaseLostError';
}

/** The job's verify did not confirm the outcome of perform. */
export class VerificationError extends VouchError {
  override name = 'VerificationError';
}

/** The handler did not settle within the job's timeoutMs. */
export class AttemptTimeoutError extends VouchError {
  override name = 'AttemptTimeoutError';
}

/** A stored job names a job definition that this worker does not have. */
export class UnknownJobError extends VouchError {
  override name = 'UnknownJobError';
}

/** An option or argument with a value vouch cannot use. */
export class ConfigurationError extends VouchError {
  override name = 'ConfigurationError';
}

/**
 * Turns any thrown value into an Error with a readable message, so that a
 * handler throwing `null`, a string or an object with a throwing getter still
 * leaves a clear reason on its job.
 */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  let description: string;
  try {
    if (thrown === null) description = 'null';
    else if (thrown === undefined) description = 'undefined';
    else if (typeof thrown === 'string') description = JSON.stringify(thrown);
    else if (typeof thrown === 'object') description = JSON.stringify(thrown) ?? String(thrown);
    else description = String(thrown);
  } catch {
    description = `an unprintable ${typeof thrown}`;
  }
  return new VouchError(`handler threw a non-Error value: ${description}`);
}

/** Formats an error for the job's stored `lastError`, guarding against throwing getters. */
export function describeError(error: Error): string {
  try {
    const name = error.name || 'Error';
    const message = String(error.message ?? '');
    return message ? `${name}: ${message}` : name;
  } catch {
    return 'an error whose message could not be read';
  }
}

/** Graceful shutdown ran out of grace before the attempt finished; its job is released. */
export class ShutdownError extends VouchError {
  override name = 'ShutdownError';
}
