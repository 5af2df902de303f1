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
  assertJsonSafe(jobName, what, value, '');
  return stringifyWithin(jobName, what, value, maxBytes);
}

/** Serialises a job or effect result, throwing InvalidResultError for what JSON cannot store. */
export function serializeResult(jobName: string, what: string, value: unknown): string {
  try {
    assertJsonSafe(jobName, what, value, '');
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

/** Throws the error for a value that JSON cannot store, at `path` within the payload or result. */
function unsafeJson(
  jobName: string,
  what: string,
  path: string,
  problem: string,
  fix = 'Convert it to a string, number, boolean, null, array or plain object.',
): never {
  throw new InvalidPayloadError(`${what} of job "${jobName}" cannot be stored as JSON: ${path || '(root)'} ${problem}. ${fix}`, jobName, [
    { path, message: problem },
  ]);
}

/**
 * Checks a value, and everything in it, for what JSON would change or drop.
 * `ancestors` are the objects on the path to it, kept to find cycles. The Set
 * is made at the first object, so a primitive (a null result, the usual one)
 * costs none.
 */
function assertJsonSafe(jobName: string, what: string, value: unknown, path: string, ancestors?: Set<object>): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value))
        unsafeJson(
          jobName,
          what,
          path,
          `is ${value}`,
          `JSON has no NaN or Infinity: pass null, or a string that ${readerOf(what)} parses.`,
        );
      return;
    case 'bigint':
      unsafeJson(
        jobName,
        what,
        path,
        'is a BigInt',
        `Pass it as a string, such as value.toString(), and parse it with BigInt() in ${readerOf(what)}.`,
      );
      return;
    case 'function':
      unsafeJson(jobName, what, path, 'is a function');
      return;
    case 'symbol':
      unsafeJson(jobName, what, path, 'is a symbol');
      return;
    case 'undefined':
      unsafeJson(jobName, what, path, 'is undefined');
      return;
  }
  if (value === null) return;

  const object = value as object;
  ancestors ??= new Set();
  if (ancestors.has(object))
    unsafeJson(
      jobName,
      what,
      path,
      'refers back to itself (a cycle)',
      'Pass a copy without the back reference, for example an id in its place.',
    );
  // A Date, Map, Set, Buffer or class instance comes back from JSON as a string or a plain object.
  // The handler or a retry would then see another type than the caller passed, so these are rejected.
  const prototype = Object.getPrototypeOf(object);
  if (!Array.isArray(object) && prototype !== Object.prototype && prototype !== null) {
    const type = prototype?.constructor?.name || 'an object with a custom prototype';
    if (object instanceof Date)
      unsafeJson(
        jobName,
        what,
        path,
        'is a Date, which JSON stores as a string',
        `Pass date.toISOString() and parse it in ${readerOf(what)}.`,
      );
    unsafeJson(jobName, what, path, `is a ${type}, which JSON does not store as one`, 'Convert it to a plain object or array.');
  }
  ancestors.add(object);
  if (Array.isArray(object)) {
    for (let index = 0; index < object.length; index += 1) assertJsonSafe(jobName, what, object[index], `${path}[${index}]`, ancestors);
  } else {
    for (const key of Object.keys(object)) {
      const item = (object as Record<string, unknown>)[key];
      // JSON.stringify drops undefined object fields; that is the usual meaning of an absent field, so it is allowed.
      if (item === undefined) continue;
      assertJsonSafe(jobName, what, item, path ? `${path}.${key}` : key, ancestors);
    }
  }
  ancestors.delete(object);
}

/** Names the code that reads a stored value back: the caller reads a job's result, the handler a payload or an effect's result. */
function readerOf(what: string): string {
  return what === 'result' ? "the code that reads the job's result" : 'the handler';
}
