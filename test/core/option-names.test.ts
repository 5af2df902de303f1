import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { rejectUnknownOptions } from '../../src/core/option-errors.js';
import { Client, defineJob, openStore, runAudit, Worker } from '../../src/index.js';
import { PostgresStore } from '../../src/postgres.js';
import { SqliteStore } from '../../src/sqlite.js';
import { silentLogger } from '../support/logs.js';

const greet = defineJob({ name: 'greet', payload: z.object({ who: z.string() }), perform: () => null });

describe('rejectUnknownOptions', () => {
  const known = ['concurrency', 'prefetch', 'pollIntervalMs'];

  it('suggests the option one typo away', () => {
    expect(() => rejectUnknownOptions('Worker', { concurency: 5 }, known)).toThrow(
      'Worker has no option "concurency" (did you mean concurrency?). Its options are concurrency, prefetch, pollIntervalMs.',
    );
  });

  it('suggests a differently cased option', () => {
    expect(() => rejectUnknownOptions('Worker', { pollIntervalMS: 5 }, known)).toThrow('(did you mean pollIntervalMs?)');
  });

  it('lists options when none is close', () => {
    expect(() => rejectUnknownOptions('Worker', { threads: 4 }, known)).toThrow(
      'Worker has no option "threads". Its options are concurrency, prefetch, pollIntervalMs.',
    );
  });

  it('reports every unknown name', () => {
    expect(() => rejectUnknownOptions('Worker', { concurency: 5, threads: 4 }, known)).toThrow(
      'Worker has no options "concurency" (did you mean concurrency?) and "threads". Its options are',
    );
  });

  it('suggests a same-start option', () => {
    expect(() => rejectUnknownOptions('defineJob', { retries: 3 }, ['retry', 'leaseMs'])).toThrow('"retries" (did you mean retry?)');
    expect(() => rejectUnknownOptions('Worker', { concurrencyLimit: 3 }, known)).toThrow('(did you mean concurrency?)');
  });

  it('suggests nothing for short, distant names', () => {
    // "id" is two edits from "tx", but a short name that far off is more likely another option entirely.
    expect(() => rejectUnknownOptions('enqueue', { id: 1 }, ['tx', 'key'])).toThrow('enqueue has no option "id". Its options are tx, key.');
  });

  it('adds placement and closing advice', () => {
    const advice = { placed: { tx: 'it goes in the third argument' }, otherwise: 'See the README.' };
    expect(() => rejectUnknownOptions('an item', { tx: {} }, ['payload'], advice)).toThrow(
      'an item has no option "tx" (it goes in the third argument). Its options are payload. See the README.',
    );
  });

  it('accepts known names and ignores non-objects', () => {
    expect(() => rejectUnknownOptions('Worker', { concurrency: undefined, prefetch: 2 }, known)).not.toThrow();
    expect(() => rejectUnknownOptions('Worker', undefined, known)).not.toThrow();
    expect(() => rejectUnknownOptions('Worker', 'fast', known)).not.toThrow();
  });
});

describe('misspelled options', () => {
  let dir: string;
  let store: SqliteStore;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'vouch-options-'));
    store = new SqliteStore({ path: join(dir, 'jobs.db') });
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('rejects them in defineJob', () => {
    const base = { name: 'charge', payload: z.object({}), perform: () => null };
    expect(() => defineJob({ ...base, leaseMS: 60_000 } as never)).toThrow('job "charge" has no option "leaseMS" (did you mean leaseMs?)');
    expect(() => defineJob({ ...base, retry: { maxAttempt: 2 } } as never)).toThrow(
      'retry of job "charge" has no option "maxAttempt" (did you mean maxAttempts?)',
    );
    // A misspelled name is reported as such, not as a missing name.
    const { name: _name, ...unnamed } = base;
    expect(() => defineJob({ ...unnamed, nmae: 'charge' } as never)).toThrow('defineJob has no option "nmae" (did you mean name?)');
    expect(() => defineJob({ ...base, retry: 5 } as never)).toThrow(
      'job "charge": retry must be an object such as { maxAttempts: 3 }; got 5.',
    );
  });

  it('checks retry values', () => {
    const base = { name: 'charge', payload: z.object({}), perform: () => null };
    expect(() => defineJob({ ...base, retry: { maxAttempts: '3' } } as never)).toThrow(
      'job "charge": retry.maxAttempts must be a number of at least 1; got "3".',
    );
    // Unchecked, a string baseMs leaves a failed attempt's job unable to record its retry.
    expect(() => defineJob({ ...base, retry: { baseMs: '1s' } } as never)).toThrow(
      'retry.baseMs must be a number of at least 0; got "1s".',
    );
    expect(() => defineJob({ ...base, retry: { maxMs: '1m' } } as never)).toThrow('retry.maxMs must be a number of at least 0; got "1m".');
    expect(() => defineJob({ ...base, retry: { jitter: true } } as never)).toThrow('retry.jitter must be a number from 0 to 1; got true.');
    expect(() => defineJob({ ...base, retry: { jitter: 1.5 } })).toThrow('retry.jitter must be a number from 0 to 1; got 1.5.');
  });

  it('rejects them in Worker options', async () => {
    expect(() => new Worker({ store, jobs: [greet], concurency: 5 } as never)).toThrow(
      'Worker has no option "concurency" (did you mean concurrency?)',
    );
    expect(() => new Worker({ store, jobs: [greet], queues: { default: { concurrenc: 2 } } } as never)).toThrow(
      'queue "default" of Worker option queues has no option "concurrenc" (did you mean concurrency?)',
    );
    expect(() => new Worker({ store, jobs: [greet], queues: { default: 4 } } as never)).toThrow(
      'queue "default" of Worker option queues must be an object such as { concurrency: 5 }; got 4.',
    );
    // A correct Worker still starts from the same options.
    const worker = new Worker({ store, jobs: [greet], concurrency: 5, logger: silentLogger() });
    await worker.start();
    expect(() => worker.stop({ grace: 0 } as never)).toThrow('Worker.stop has no option "grace"');
    expect(() => worker.stop({ graceMs: '5s' } as never)).toThrow(
      'Worker.stop option graceMs must be a number of milliseconds, 0 or more; got "5s".',
    );
    // The rejected stops changed nothing, so a valid one still stops the worker.
    await worker.stop({ graceMs: 0 });
  });

  it('rejects them in enqueue calls', async () => {
    expect(() => new Client({ store, dedupWindow: 1000 } as never)).toThrow(
      'Client has no option "dedupWindow" (did you mean dedupWindowMs?)',
    );
    const client = new Client({ store });
    await expect(client.enqueue(greet, { who: 'ada' }, { delay: 5000 } as never)).rejects.toThrow(
      'enqueue of job "greet" has no option "delay" (did you mean delayMs?)',
    );
    await expect(client.enqueue(greet, { who: 'ada' }, { delayMs: '5s' } as never)).rejects.toThrow(
      'delayMs must be a number of milliseconds, 0 or more; got "5s".',
    );
    await expect(
      client.enqueueMany(greet, [{ payload: { who: 'ada' } }, { payload: { who: 'bob' }, priorty: 2 } as never]),
    ).rejects.toThrow('item 1 of 2: an item of enqueueMany for job "greet" has no option "priorty" (did you mean priority?)');
    await expect(client.enqueueMany(greet, [{ payload: { who: 'ada' }, tx: {} } as never])).rejects.toThrow(
      `has no option "tx" (it goes in enqueueMany's third argument, { tx }, for all the items at once)`,
    );
    await expect(client.enqueueMany(greet, [{ payload: { who: 'ada' } }], { delayMs: 10 } as never)).rejects.toThrow(
      'enqueueMany has no option "delayMs". Its options are tx. A job\'s own options (runAt, delayMs, priority, queue, key, dedupWindowMs) go on its item, next to payload.',
    );
    await expect(client.enqueue(greet, { who: 'ada' }, { dedupWindowMs: '1d' } as never)).rejects.toThrow(
      'job "greet": dedupWindowMs must be a number, 0 or more; got "1d".',
    );
    await expect(client.enqueue(greet, { who: 'ada' }, { runAt: '2030-01-01' } as never)).rejects.toThrow('got "2030-01-01".');
    await expect(client.enqueue(greet, { who: 'ada' }, { runAt: new Date('never') })).rejects.toThrow('got an invalid Date.');
    expect((await store.countByState()).available).toBe(0);
  });

  it('rejects them in stores and audit', async () => {
    expect(() => new SqliteStore({ path: join(dir, 'other.db'), busyTimeout: 100 } as never)).toThrow(
      'SqliteStore has no option "busyTimeout" (did you mean busyTimeoutMs?)',
    );
    expect(() => new SqliteStore({ path: join(dir, 'other.db'), busyTimeoutMs: '1s' } as never)).toThrow('got "1s".');
    expect(() => new SqliteStore({ path: join(dir, 'other.db'), wakePollMs: '25' } as never)).toThrow(
      'SqliteStore option wakePollMs must be a whole number of milliseconds from 0 to 2147483647; got "25".',
    );
    expect(() => new PostgresStore({ connectionString: 'postgres://127.0.0.1:1/none', connectTimeoutMs: '10s' } as never)).toThrow(
      'PostgresStore option connectTimeoutMs must be a whole number of milliseconds, 0 or more (0: no limit); got "10s".',
    );
    expect(() => new PostgresStore({ connectionString: 'postgres://127.0.0.1:1/none', ssl: true } as never)).toThrow(
      'Other node-postgres settings, such as ssl or max, go on a pg.Pool passed as pool.',
    );
    await expect(openStore(join(dir, 'other.db'), { migrations: false } as never)).rejects.toThrow(
      'openStore has no option "migrations" (did you mean migrate?)',
    );
    await expect(runAudit(store, { maxDeadJobs: 0 } as never)).rejects.toThrow('runAudit has no option "maxDeadJobs"');
    // The check runs before any connection is made, so no server is needed.
    expect(() => new PostgresStore({ conectionString: 'postgres://127.0.0.1:1/none' } as never)).toThrow(
      'PostgresStore has no option "conectionString" (did you mean connectionString?)',
    );
  });
});
