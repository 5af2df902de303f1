import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigurationError } from '../../src/core/errors.js';
import type { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { TestClock } from '../support/clock.js';
import { COMPLETION, countJobs, newJob } from '../support/jobs.js';
import { postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';

const DAY = 24 * 60 * 60 * 1000;

/**
 * Retention: prune deletes old finished jobs with their attempts and effect
 * ledger rows, in bounded batches, and keeps whatever is still pending,
 * recent, or absorbing enqueues through an open dedup window.
 */
describe.skipIf(!postgresAvailable())('postgres: retention with prune', () => {
  let harness: StoreHarness;
  let store: PostgresStore;
  let clock: TestClock;

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());
  beforeEach(async () => {
    clock = new TestClock();
    store = (await harness.open({ clock: clock.now })).store as PostgresStore;
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  /** Enqueues, leases and finishes jobs; each gets an attempt row and one effect row. */
  async function finish(count: number, how: 'completed' | 'failed', overrides: Parameters<typeof newJob>[0] = {}): Promise<string[]> {
    const outcomes = await store.enqueue(Array.from({ length: count }, () => newJob({ queue: 'retention', ...overrides })));
    const leased = await store.lease({ queue: 'retention', limit: count, workerId: 'w' });
    for (const { lease } of leased) {
      await store.recordEffectIntent(lease, { name: 'mail', idempotencyKey: `mail-${lease.jobId}` });
      await store.recordEffectDone(lease, { name: 'mail', resultJson: '"sent"', resolution: 'ran' });
      if (how === 'completed') expect(await store.commit(lease, COMPLETION)).toBe(true);
      else expect(await store.fail(lease, { error: 'gone', retryAt: null })).toBe(true);
    }
    return outcomes.map((outcome) => outcome.job.id);
  }

  it('deletes old completed jobs in batches', async () => {
    const old = await finish(25, 'completed');
    const failed = await finish(3, 'failed');
    const [pending] = await store.enqueue([newJob({ queue: 'elsewhere' })]);
    clock.advance(2 * DAY);
    const recent = await finish(4, 'completed');

    const queries = vi.spyOn(store.pool, 'query');
    expect(await store.prune({ olderThanMs: DAY, batchSize: 4 })).toBe(25);
    // 25 jobs at 4 per statement: six full batches and the one that finds the last job.
    expect(queries).toHaveBeenCalledTimes(7);

    for (const id of old) {
      expect(await store.getJob(id)).toBeNull();
      expect(await store.listAttempts(id)).toEqual([]);
      expect(await store.listEffects(id)).toEqual([]);
    }
    for (const id of [...failed, ...recent, pending!.job.id]) expect(await store.getJob(id)).not.toBeNull();
    expect(await store.listEffects(recent[0]!)).toHaveLength(1);
    expect(await countJobs(store)).toBe(3 + 4 + 1);
  });

  it('keeps jobs whose dedup window is open', async () => {
    const [kept] = await finish(1, 'completed', { key: 'welcome:42', dedupWindowMs: 7 * DAY });
    const [gone] = await finish(1, 'completed', { key: 'welcome:43', dedupWindowMs: DAY });
    clock.advance(3 * DAY);
    expect(await store.prune({ olderThanMs: DAY })).toBe(1);
    expect(await store.getJob(gone!)).toBeNull();
    const [again] = await store.enqueue([newJob({ queue: 'retention', key: 'welcome:42' })]);
    expect(again).toMatchObject({ duplicate: true, job: { id: kept } });
  });

  it('deletes failed and cancelled jobs on request', async () => {
    const failed = await finish(2, 'failed');
    const [cancelled] = await store.enqueue([newJob({ queue: 'retention' })]);
    expect(await store.cancel(cancelled!.job.id)).toBe(true);
    clock.advance(2 * DAY);
    expect(await store.prune({ olderThanMs: DAY })).toBe(0);
    expect(await store.prune({ olderThanMs: DAY, states: ['failed', 'cancelled'] })).toBe(3);
    for (const id of [...failed, cancelled!.job.id]) expect(await store.getJob(id)).toBeNull();
  });

  it('rejects invalid options', async () => {
    await finish(1, 'completed');
    clock.advance(2 * DAY);
    await expect(store.prune({ olderThanMs: -1 })).rejects.toThrow(ConfigurationError);
    await expect(store.prune({ olderThanMs: DAY, batchSize: 0 })).rejects.toThrow(ConfigurationError);
    await expect(store.prune({ olderThanMs: DAY, states: ['running' as 'failed'] })).rejects.toThrow(ConfigurationError);
    await expect(store.prune({ olderThanMs: DAY, batchsize: 10 } as never)).rejects.toThrow(
      'prune has no option "batchsize" (did you mean batchSize?). Its options are olderThanMs, batchSize, states.',
    );
    await expect(store.prune({ olderThanMs: '1d' } as never)).rejects.toThrow('got "1d".');
    expect(await countJobs(store)).toBe(1);
  });
});
