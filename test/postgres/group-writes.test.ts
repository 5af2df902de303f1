import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Lease, LeasedJob } from '../../src/core/store.js';
import type { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent } from '../../src/stores/postgres/sql.js';
import { COMPLETION, forged, newJob } from '../support/jobs.js';
import { postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';

/**
 * Commits without writes, fails and effect ledger writes made in the same
 * turn go to PostgreSQL as one statement per kind. Each job of such a group
 * keeps the fence of a single write, and each caller gets its own outcome.
 * These tests lose leases in the middle of a group in each way a lease can
 * be lost, and check what was written for every job.
 */
describe.skipIf(!postgresAvailable())('postgres: group writes', () => {
  let harness: StoreHarness;
  let store: PostgresStore;
  let schema: string;

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());
  beforeEach(async () => {
    store = (await harness.open()).store as unknown as PostgresStore;
    schema = quoteIdent(store.schema);
  });

  async function leaseMany(count: number, workerId = 'group-worker'): Promise<LeasedJob[]> {
    await store.enqueue(Array.from({ length: count }, () => newJob()));
    const leased = await store.lease({ queue: 'default', limit: count, workerId });
    expect(leased).toHaveLength(count);
    return leased;
  }

  /** Counts the connections checked out while `work` runs: one per statement the store sends. */
  async function checkouts<T>(work: () => Promise<T>): Promise<{ result: T; checkouts: number }> {
    let count = 0;
    const onAcquire = () => {
      count += 1;
    };
    store.pool.on('acquire', onAcquire);
    try {
      const result = await work();
      return { result, checkouts: count };
    } finally {
      store.pool.removeListener('acquire', onAcquire);
    }
  }

  /** Makes a lease expired by the database clock, without the sweep recovering it. */
  async function expire(lease: Lease): Promise<void> {
    await store.pool.query(`UPDATE ${schema}.jobs SET lease_expires_at = now() - interval '1 second' WHERE id = $1`, [lease.jobId]);
  }

  /** Expires a lease, lets the sweep recover the job and leases it again under another worker: the old token is then stale. */
  async function takeOver(lease: Lease): Promise<Lease> {
    await expire(lease);
    const recovered = await store.sweep();
    expect(recovered.map((job) => job.jobId)).toContain(lease.jobId);
    const [again] = await store.lease({ queue: 'default', limit: 1, workerId: 'other-worker' });
    expect(again?.job.id).toBe(lease.jobId);
    return again!.lease;
  }

  async function attemptOutcome(lease: Lease): Promise<string | null> {
    const attempts = await store.listAttempts(lease.jobId);
    return attempts.find((attempt) => attempt.attempt === lease.attempt && attempt.leaseToken === lease.token)?.outcome ?? null;
  }

  it('commit group: held leases only', async () => {
    const [held1, expired, taken, held2, forgedJob] = (await leaseMany(5)).map((job) => job.lease) as [Lease, Lease, Lease, Lease, Lease];
    // Taken over first: the sweep in takeOver would recover the merely expired one too.
    const successor = await takeOver(taken);
    await expire(expired);

    const { result, checkouts: statements } = await checkouts(() =>
      Promise.all(
        [held1, expired, taken, held2, forged(forgedJob)].map((lease, index) =>
          store.commit(lease, { resultJson: JSON.stringify({ index }), outcome: 'succeeded', writes: [] }),
        ),
      ),
    );
    expect(result).toEqual([true, false, false, true, false]);
    expect(statements).toBe(1);

    for (const [lease, index] of [
      [held1, 0],
      [held2, 3],
    ] as const) {
      expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'completed', result: { index }, leaseToken: null });
      expect(await attemptOutcome(lease)).toBe('succeeded');
    }
    // The expired lease: the job still runs under it, unswept, and nothing was closed.
    expect(await store.getJob(expired.jobId)).toMatchObject({ state: 'running', leaseToken: expired.token, result: null });
    expect(await attemptOutcome(expired)).toBeNull();
    // The stale token: the job runs under its successor, whose attempt stays open; the old attempt keeps the sweep's outcome.
    expect(await store.getJob(taken.jobId)).toMatchObject({ state: 'running', leaseToken: successor.token, result: null });
    expect(await attemptOutcome(taken)).toBe('abandoned');
    expect(await attemptOutcome(successor)).toBeNull();
    // The forged token matched nothing, and the real lease of that job is still held.
    expect(await store.getJob(forgedJob.jobId)).toMatchObject({ state: 'running', leaseToken: forgedJob.token });
    expect(await attemptOutcome(forgedJob)).toBeNull();
  });

  it('commit group: stale and current lease of one job', async () => {
    const [job] = await leaseMany(1);
    const stale = job!.lease;
    const current = await takeOver(stale);
    const outcomes = await Promise.all([store.commit(stale, COMPLETION), store.commit(current, COMPLETION)]);
    expect(outcomes).toEqual([false, true]);
    expect(await attemptOutcome(current)).toBe('succeeded');
    expect(await attemptOutcome(stale)).toBe('abandoned');
  });

  it('commit group: commits with writes stay separate', async () => {
    await store.pool.query(`CREATE TABLE ${schema}.notes (job_id bigint NOT NULL, text text NOT NULL)`);
    const note = (lease: Lease) => async (tx: pg.PoolClient) => {
      await tx.query(`INSERT INTO ${schema}.notes (job_id, text) VALUES ($1, 'written')`, [lease.jobId]);
    };
    const [plain, written, lostPlain, lostWritten] = (await leaseMany(4)).map((job) => job.lease) as [Lease, Lease, Lease, Lease];
    await expire(lostPlain);
    await expire(lostWritten);

    const outcomes = await Promise.all([
      store.commit(plain, COMPLETION),
      store.commit(written, { ...COMPLETION, writes: [note(written)] }),
      store.commit(lostPlain, COMPLETION),
      store.commit(lostWritten, { ...COMPLETION, writes: [note(lostWritten)] }),
    ]);
    expect(outcomes).toEqual([true, true, false, false]);
    const { rows } = await store.pool.query(`SELECT job_id::text AS job_id FROM ${schema}.notes`);
    expect(rows.map((row: { job_id: string }) => row.job_id)).toEqual([written.jobId]);
    for (const lease of [plain, written]) expect((await store.getJob(lease.jobId))?.state).toBe('completed');
    for (const lease of [lostPlain, lostWritten]) {
      expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'running', leaseToken: lease.token });
    }
  });

  it('commit group: one invalid item fails alone', async () => {
    const [good1, bad, good2] = (await leaseMany(3)).map((job) => job.lease) as [Lease, Lease, Lease];
    const outcomes = await Promise.allSettled([
      store.commit(good1, COMPLETION),
      store.commit(bad, { ...COMPLETION, resultJson: '{not json' }),
      store.commit(good2, COMPLETION),
    ]);
    expect(outcomes.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes[0]).toMatchObject({ value: true });
    expect(outcomes[2]).toMatchObject({ value: true });
    expect(await store.getJob(bad.jobId)).toMatchObject({ state: 'running', leaseToken: bad.token });
    expect(await attemptOutcome(bad)).toBeNull();
  });

  it('fail group: retries, dead jobs, lost leases', async () => {
    const [retry, now, dead, lost, taken] = (await leaseMany(5)).map((job) => job.lease) as [Lease, Lease, Lease, Lease, Lease];
    const successor = await takeOver(taken);
    await expire(lost);

    const { result, checkouts: statements } = await checkouts(() =>
      Promise.all([
        store.fail(retry, { error: 'try later', retryAt: Date.now() + 60_000 }),
        store.fail(now, { error: 'try now', retryAt: Date.now() - 1000 }),
        store.fail(dead, { error: 'for good', retryAt: null }),
        store.fail(lost, { error: 'too late', retryAt: null }),
        store.fail(taken, { error: 'stale', retryAt: null }),
      ]),
    );
    expect(result).toEqual([true, true, true, false, false]);
    expect(statements).toBe(1);

    const retried = await store.getJob(retry.jobId);
    expect(retried).toMatchObject({ state: 'retryable', lastError: 'try later', leaseToken: null, finishedAt: null });
    expect(retried!.runAt).toBeGreaterThan(Date.now() + 50_000);
    expect(await store.getJob(now.jobId)).toMatchObject({ state: 'available', lastError: 'try now' });
    const failed = await store.getJob(dead.jobId);
    expect(failed).toMatchObject({ state: 'failed', lastError: 'for good' });
    expect(failed!.finishedAt).not.toBeNull();
    for (const lease of [retry, now, dead]) expect(await attemptOutcome(lease)).toBe('errored');

    expect(await store.getJob(lost.jobId)).toMatchObject({ state: 'running', leaseToken: lost.token, lastError: null });
    expect(await attemptOutcome(lost)).toBeNull();
    expect(await store.getJob(taken.jobId)).toMatchObject({ state: 'running', leaseToken: successor.token });
    expect(await attemptOutcome(successor)).toBeNull();
  });

  it('intent group: held leases and done effects', async () => {
    const [fresh, finished, lost, twoEffects] = (await leaseMany(4)).map((job) => job.lease) as [Lease, Lease, Lease, Lease];
    // An effect done before the group: its intent must come back as done with the stored result.
    expect(await store.recordEffectIntent(finished, { name: 'mail', idempotencyKey: 'k-finished' })).toEqual({ status: 'recorded' });
    await store.recordEffectDone(finished, { name: 'mail', resultJson: '{"messageId":"m-1"}', resolution: 'ran' });
    await expire(lost);

    const { result, checkouts: statements } = await checkouts(() =>
      Promise.all([
        store.recordEffectIntent(fresh, { name: 'mail', idempotencyKey: 'k-fresh' }),
        store.recordEffectIntent(finished, { name: 'mail', idempotencyKey: 'k-finished' }),
        store.recordEffectIntent(lost, { name: 'mail', idempotencyKey: 'k-lost' }),
        store.recordEffectIntent(twoEffects, { name: 'mail', idempotencyKey: 'k-two-mail' }),
        store.recordEffectIntent(twoEffects, { name: 'charge', idempotencyKey: 'k-two-charge' }),
      ]),
    );
    expect(result).toEqual([
      { status: 'recorded' },
      { status: 'done', result: { messageId: 'm-1' } },
      { status: 'lease_lost' },
      { status: 'recorded' },
      { status: 'recorded' },
    ]);
    expect(statements).toBe(1);

    expect(await store.listEffects(fresh.jobId)).toEqual([
      expect.objectContaining({ name: 'mail', idempotencyKey: 'k-fresh', state: 'intent', attempt: 1 }),
    ]);
    expect(await store.listEffects(finished.jobId)).toEqual([
      expect.objectContaining({ name: 'mail', state: 'done', result: { messageId: 'm-1' }, resolution: 'ran' }),
    ]);
    expect(await store.listEffects(lost.jobId)).toEqual([]);
    expect((await store.listEffects(twoEffects.jobId)).map((effect) => [effect.name, effect.state]).sort()).toEqual([
      ['charge', 'intent'],
      ['mail', 'intent'],
    ]);
  });

  it('done group: lost leases and done records', async () => {
    const [held, lost, twice] = (await leaseMany(3)).map((job) => job.lease) as [Lease, Lease, Lease];
    for (const lease of [held, lost, twice]) {
      expect(await store.recordEffectIntent(lease, { name: 'mail', idempotencyKey: `k-${lease.jobId}` })).toEqual({ status: 'recorded' });
    }
    await store.recordEffectDone(twice, { name: 'mail', resultJson: '"first"', resolution: 'ran' });
    await takeOver(lost);

    const { checkouts: statements } = await checkouts(() =>
      Promise.all([
        store.recordEffectDone(held, { name: 'mail', resultJson: '"held"', resolution: 'ran' }),
        store.recordEffectDone(lost, { name: 'mail', resultJson: '"after loss"', resolution: 'ran' }),
        store.recordEffectDone(twice, { name: 'mail', resultJson: '"second"', resolution: 'rerun' }),
      ]),
    );
    expect(statements).toBe(1);
    expect(await store.listEffects(held.jobId)).toEqual([expect.objectContaining({ state: 'done', result: 'held' })]);
    expect(await store.listEffects(lost.jobId)).toEqual([expect.objectContaining({ state: 'done', result: 'after loss' })]);
    expect(await store.listEffects(twice.jobId)).toEqual([expect.objectContaining({ state: 'done', result: 'first', resolution: 'ran' })]);
  });

  it('commit group: early write at 32', async () => {
    const leases = (await leaseMany(40)).map((job) => job.lease);
    // All in one turn: the 32nd call sends the group at once, and the last 8 wait for it as a second group.
    // Written only at the end of the turn, the 40 would be one group.
    const { result, checkouts: statements } = await checkouts(() => Promise.all(leases.map((lease) => store.commit(lease, COMPLETION))));
    expect(result.every(Boolean)).toBe(true);
    expect(statements).toBe(2);
  });

  it('calls during a flight: one next group', async () => {
    const leases = (await leaseMany(40)).map((job) => job.lease);
    const { result, checkouts: statements } = await checkouts(async () => {
      const first = store.commit(leases[0]!, COMPLETION);
      // The first group is in flight once its turn ends; these arrive over the next turns.
      await new Promise((resolve) => setImmediate(resolve));
      const rest: Promise<boolean>[] = [];
      for (const lease of leases.slice(1)) {
        rest.push(store.commit(lease, COMPLETION));
        await Promise.resolve();
      }
      return Promise.all([first, ...rest]);
    });
    expect(result.every(Boolean)).toBe(true);
    expect(statements).toBeLessThanOrEqual(3);
  });
});

describe.skipIf(!postgresAvailable())('postgres: group writes and heartbeats on the same rows', () => {
  let harness: StoreHarness;
  beforeAll(() => {
    harness = postgresHarness({ poolSize: 6 });
  });
  afterAll(() => harness.cleanup());

  it('heartbeat and commit group: no deadlock', async () => {
    const store = (await harness.open()).store as unknown as PostgresStore;
    for (let round = 0; round < 15; round += 1) {
      await store.enqueue(Array.from({ length: 60 }, () => newJob()));
      const leases = (await store.lease({ queue: 'default', limit: 60, workerId: 'order-worker' })).map((job) => job.lease);
      expect(leases).toHaveLength(60);
      // Ascending commits against descending heartbeats: without one lock order these lock the same rows in opposite orders.
      const descending = [...leases].reverse();
      const [renewed, committed, renewedAgain] = await Promise.all([
        store.heartbeat(descending),
        Promise.all(leases.map((lease) => store.commit(lease, COMPLETION))),
        store.heartbeat(descending.slice(0, 30)),
      ]);
      expect(committed.every(Boolean)).toBe(true);
      // A heartbeat either renewed a lease before its commit or found it completed; it never failed.
      expect(renewed.size).toBeLessThanOrEqual(60);
      expect(renewedAgain.size).toBeLessThanOrEqual(30);
    }
  }, 60_000);
});
