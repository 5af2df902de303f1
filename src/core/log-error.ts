/** An error reduced to the fields that are safe and useful in a log line. */
export interface LoggedError {
  type: string;
  message: string;
  code?: string;
  stack?: string;
  cause?: LoggedError;
}

/**
 * Reduces an error to its type, message, code, stack and cause before it is
 * logged, under the key `error` (pino's own serializer for `err` would
 * replace `type` with "Object"). Errors from drivers and HTTP clients carry their connection or
 * request as enumerable fields (the pg client with its statements, a request
 * with its headers), which would put secrets and kilobytes of state in every
 * log line.
 */
export function errorForLog(error: unknown, depth = 0): LoggedError {
  if (!(error instanceof Error)) return { type: typeof error, message: safeString(error) };
  const logged: LoggedError = { type: safeString(error.name), message: safeString(error.message) };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' || typeof code === 'number') logged.code = String(code);
  if (typeof error.stack === 'string') logged.stack = error.stack;
  if (error.cause !== undefined && depth < 3) logged.cause = errorForLog(error.cause, depth + 1);
  return logged;
}

function safeString(value: unknown): string {
  try {
    return String(value);
  } catch {
    return '(unprintable)';
  }
}
