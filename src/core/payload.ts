import type { StandardSchemaV1 } from '@standard-schema/spec';
import { describeError, InvalidPayloadError, InvalidResultError, toError } from './errors.js';

/** Largest serialised payload accepted by default: 1 MiB. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;

/**
 * Validates `value` with the job's Standard Schema and returns the parsed
 * output. Throws (or rejects with) InvalidPayloadError naming the job and
 * each failing field. Synchronous when the schema is, so that a worker
 * makes no promise per job for it.
 */
export function validatePayload<Output>(
  jobName: string,
  schema: StandardSchemaV1<unknown, Output>,
  value: unknown,
): Output | Promise<Output> {
  let result: StandardSchemaV1.Result<Output> | Promise<StandardSchemaV1.Result<Output>>;
  try {
    result = schema['~standard'].validate(value);
  } catch (error) {
    throw schemaThrew(jobName, error);
  }
  if (result instanceof Promise) {
    return result.then(
      (settled) => payloadOf(jobName, settled),
      (error: unknown) => {
        throw schemaThrew(jobName, error);
      },
    );
  }
  return payloadOf(jobName, result);
}

/** Wraps what a throwing schema threw, so that the error names the job as a reported issue would. */
function schemaThrew(jobName: string, error: unknown): InvalidPayloadError {
  return new InvalidPayloadError(`payload schema of job "${jobName}" threw: ${describeError(toError(error))}`, jobName);
}

function payloadOf<Output>(jobName: string, result: StandardSchemaV1.Result<Output>): Output {
  if (!result.issues) return result.value;
  const issues = result.issues.map((issue) => ({ path: formatIssuePath(issue.path), message: issue.message }));
  const summary = issues.map((issue) => `${issue.path || '(root)'}: ${issue.message}`).join('; ');
  throw new InvalidPayloadError(
    `invalid payload for job "${jobName}": ${summary}. Fix the payload to match the job's schema.`,
    jobName,
    issues,
  );
}

function formatIssuePath(path: StandardSchemaV1.Issue['path']): string {
  if (!path) return '';
  return path
    .map((segment) => {
      const key = typeof segment === 'object' && segment !== null ? segment.key : segment;
      return typeof key === 'number' ? `[${key}]` : `.${String(key)}`;
    })
    .join('')
    .replace(/^\./, '');
}

/**
 * Serialises a payload or result to JSON, rejecting what JSON.stringify would
 * silently change or drop: BigInt, functions, symbols, undefined inside
 * arrays, non-finite numbers, cycles, and objects that are not plain (Date,
 * Map, Set, Buffer, class instances). `what` names the value in errors.
 */
export function serializeJson(jobName: string, what: string, value: unknown, maxBytes = Number.POSITIVE_INFINITY): string {
  assertJsonSafe(jobName, what, value, '', new Set());
  return stringifyWithin(jobName, what, value, maxBytes);
}

/** Serialises a job or effect result, throwing InvalidResultError for what JSON cannot store. */
export function serializeResult(jobName: string, what: string, value: unknown): string {
  try {
    assertJsonSafe(jobName, what, value, '', new Set());
  } catch (error) {
    throw new InvalidResultError((error as Error).message, { cause: error });
  }
  return stringifyWithin(jobName, what, value, Number.POSITIVE_INFINITY);
}

function stringifyWithin(jobName: string, what: string, value: unknown, maxBytes: number): string {
  const text = JSON.stringify(value) ?? 'null';
  const bytes = Buffer.byteLength(text, 'utf8');
  if (bytes > maxBytes) {
    throw new InvalidPayloadError(
      `${what} of job "${jobName}" is ${bytes} bytes as JSON, over the limit of ${maxBytes} bytes. ` +
        'Store large data elsewhere and pass a reference, or raise maxPayloadBytes.',
      jobName,
    );
  }
  return text;
}

function assertJsonSafe(jobName: string, what: string, value: unknown, path: string, ancestors: Set<object>): void {
  const where = path || '(root)';
  const reject = (problem: string, fix = 'Convert it to a string, number, boolean, null, array or plain object.'): never => {
    throw new InvalidPayloadError(`${what} of job "${jobName}" cannot be stored as JSON: ${where} ${problem}. ${fix}`, jobName, [
      { path, message: problem },
    ]);
  };

  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) reject(`is ${value}`, 'JSON has no NaN or Infinity: pass null, or a string that the handler parses.');
      return;
    case 'bigint':
      reject('is a BigInt', 'Pass it as a string, such as value.toString(), and parse it with BigInt() in the handler.');
      return;
    case 'function':
      reject('is a function');
      return;
    case 'symbol':
      reject('is a symbol');
      return;
    case 'undefined':
      reject('is undefined');
      return;
  }
  if (value === null) return;

  const object = value as object;
  if (ancestors.has(object))
    reject('refers back to itself (a cycle)', 'Pass a copy without the back reference, for example an id in its place.');
  // A Date, Map, Set, Buffer or class instance comes back from JSON as a string or a plain object.
  // The handler or a retry would then see another type than the caller passed, so these are rejected.
  const prototype = Object.getPrototypeOf(object);
  if (!Array.isArray(object) && prototype !== Object.prototype && prototype !== null) {
    const type = prototype?.constructor?.name || 'an object with a custom prototype';
    if (object instanceof Date) reject('is a Date, which JSON stores as a string', 'Pass date.toISOString() and parse it in the handler.');
    reject(`is a ${type}, which JSON does not store as one`, 'Convert it to a plain object or array.');
  }
  ancestors.add(object);
  if (Array.isArray(object)) {
    for (const [index, item] of object.entries()) assertJsonSafe(jobName, what, item, `${path}[${index}]`, ancestors);
  } else {
    for (const [key, item] of Object.entries(object)) {
      // JSON.stringify drops undefined object fields; that is the usual meaning of an absent field, so it is allowed.
      if (item === undefined) continue;
      assertJsonSafe(jobName, what, item, path ? `${path}.${key}` : key, ancestors);
    }
  }
  ancestors.delete(object);
}
