export interface BackoffOptions {
  /** Delay before the second attempt, in milliseconds. @defaultValue 1000 */
  baseMs?: number;
  /** Upper bound of any delay, in milliseconds. @defaultValue 3_600_000 (one hour) */
  maxMs?: number;
  /**
   * Share of the delay that is random, from 0 to 1, so that jobs that failed
   * together do not all come back at the same instant. @defaultValue 0.25
   */
  jitter?: number;
}

export interface RetryPolicy extends BackoffOptions {
  /** Attempts in all, including the first. @defaultValue 5 */
  maxAttempts?: number;
}

export const DEFAULT_MAX_ATTEMPTS = 5;

/**
 * Returns the delay before the attempt after `attempt` (1-based): base * 2^(attempt-1),
 * capped at maxMs, with the jittered share drawn uniformly below it.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const baseMs = options.baseMs ?? 1000;
  const maxMs = options.maxMs ?? 3_600_000;
  const jitter = options.jitter ?? 0.25;
  const exponent = Math.min(Math.max(attempt - 1, 0), 40);
  const delay = Math.min(baseMs * 2 ** exponent, maxMs);
  return Math.round(delay * (1 - jitter) + delay * jitter * random());
}
