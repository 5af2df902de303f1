import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { rejectUnknownOptions } from '../../src/core/option-errors.js';
import { Client, defineJob, Worker } from '../../src/index.js';
import { PostgresStore } from '../../src/postgres.js';
import { SqliteStore } from '../../src/sqlite.js';
import { silentLogger } from '../support/logs.js';

const greet = defineJob({ name: 'greet', payload: z.object({ who: z.string() }), perform: () => null });

describe('rejectUnknownOptions', () => {
  const known = ['concurrency', 'prefetch', 'pollIntervalMs'];

  it('suggests the option one typo away', () => {
    expect(() => rejectUnknownOptions('Worker', { concurency: 5 }, known)).toThrow(
      'Worker has no option "concurency". Did you mean concurrency? Its options are concurrency, prefetch, pollIntervalMs.',
    );
  });

  it('suggests a differently cased option', () => {
    expect(() => rejectUnknownOptions('Worker', { pollIntervalMS: 5 }, known)).toThrow('Did you mean pollIntervalMs?');
  });

  it('lists options when none is close', () => {
    expect(() => rejectUnknownOptions('Worker', { threads: 4 }, known)).toThrow(
      'Worker has no option "threads". Its options are concurrency, prefetch, pollIntervalMs.',
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
    expect(() => defineJob({ ...base, leaseMS: 60_000 } as never)).toThrow('job "charge" has no option "leaseMS". Did you mean leaseMs?');
    expect(() => defineJob({ ...base, retry: { maxAttempt: 2 } } as never)).toThrow(
      'retry of job "charge" has no option "maxAttempt". Did you mean maxAttempts?',
    );
  });

  it('quotes a string number', () => {
    const base = { name: 'charge', payload: z.object({}), perform: () => null };
    expect(() => defineJob({ ...base, retry: { maxAttempts: '3' } } as never)).toThrow(
      'job "charge": retry.maxAttempts must be a number of at least 1; got "3".',
    );
  });

  it('rejects them in Worker options', () => {
    expect(() => new Worker({ store, jobs: [greet], concurency: 5 } as never)).toThrow(
      'Worker has no option "concurency". Did you mean concurrency?',
    );
    expect(() => new Worker({ store, jobs: [greet], queues: { default: { concurrenc: 2 } } } as never)).toThrow(
      'queue "default" of Worker option queues has no option "concurrenc". Did you mean concurrency?',
    );
    expect(() => new Worker({ store, jobs: [greet], queues: { default: 4 } } as never)).toThrow(
      'queue "default" of Worker option queues must be an object such as { concurrency: 5 }; got 4.',
    );
    // A correct Worker still starts from the same options.
    expect(() => new Worker({ store, jobs: [greet], concurrency: 5, logger: silentLogger() })).not.toThrow();
  });

  it('rejects them in enqueue calls', async () => {
    expect(() => new Client({ store, dedupWindow: 1000 } as never)).toThrow(
      'Client has no option "dedupWindow". Did you mean dedupWindowMs?',
    );
    const client = new Client({ store });
    await expect(client.enqueue(greet, { who: 'ada' }, { delay: 5000 } as never)).rejects.toThrow(
      'enqueue of job "greet" has no option "delay". Did you mean delayMs?',
    );
    await expect(client.enqueue(greet, { who: 'ada' }, { delayMs: '5s' } as never)).rejects.toThrow(
      'delayMs must be a number of milliseconds, 0 or more; got "5s".',
    );
    await expect(
      client.enqueueMany(greet, [{ payload: { who: 'ada' } }, { payload: { who: 'bob' }, priorty: 2 } as never]),
    ).rejects.toThrow('item 1 of 2: enqueue of job "greet" has no option "priorty". Did you mean priority?');
    await expect(client.enqueueMany(greet, [{ payload: { who: 'ada' } }], { transaction: {} } as never)).rejects.toThrow(
      'enqueueMany has no option "transaction".',
    );
    expect((await store.countByState()).available).toBe(0);
  });

  it('rejects them in the stores', () => {
    expect(() => new SqliteStore({ path: join(dir, 'other.db'), busyTimeout: 100 } as never)).toThrow(
      'SqliteStore has no option "busyTimeout". Did you mean busyTimeoutMs?',
    );
    expect(() => new SqliteStore({ path: join(dir, 'other.db'), busyTimeoutMs: '1s' } as never)).toThrow('got "1s".');
    // The check runs before any connection is made, so no server is needed.
    expect(() => new PostgresStore({ conectionString: 'postgres://127.0.0.1:1/none' } as never)).toThrow(
      'PostgresStore has no option "conectionString". Did you mean connectionString?',
    );
  });
});
