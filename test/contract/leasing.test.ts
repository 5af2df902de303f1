import { expect, it } from 'vitest';
import { describeEachStore } from '../support/contract.js';
import { COMPLETION, enqueueOne, forged, leaseOne } from '../support/jobs.js';

const LEASE_MS = 10_000;

describeEachStore('leasing and fencing', (env) => {
  it('leases a due job with a token, starts attempt 1 and gives it to no one else', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const leased = await leaseOne(env.store, { workerId: 'worker-a' });

    expect(leased.lease).toMatchObject({ jobId, attempt: 1 });
    expect(leased.lease.token).toMatch(/\S{8,}/);
    expect(leased.previousAttempt).toBeNull();
    expect(leased.effects).toEqual([]);
    expect(leased.job).toMatchObject({ id: jobId, state: 'running', attempt: 1, workerId: 'worker-a', leaseToken: leased.lease.token });
    expect(leased.job.leaseExpiresAt).toBe(env.clock.now() + LEASE_MS);
    expect(await env.store.lease({ queue: 'default', limit: 10, workerId: 'worker-b' })).toEqual([]);

    const attempts = await env.store.listAttempts(jobId);
    expect(attempts).toEqual([
      expect.objectContaining({ attempt: 1, workerId: 'worker-a', leaseToken: leased.lease.token, outcome: null, endedAt: null }),
    ]);
  });

  it('leases at most `limit` jobs in one call', async () => {
    for (let index = 0; index < 5; index += 1) await enqueueOne(env.store);
    expect(await env.store.lease({ queue: 'default', limit: 3, workerId: 'w' })).toHaveLength(3);
    expect(await env.store.lease({ queue: 'default', limit: 3, workerId: 'w' })).toHaveLength(2);
  });

  it('never hands one job to two connections leasing at the same time', async () => {
    const other = await env.openShared();
    const total = 30;
    for (let index = 0; index < total; index += 1) await enqueueOne(env.store);

    const seen: string[] = [];
    const drain = async (store: typeof env.store, workerId: string) => {
      for (;;) {
        const leased = await store.lease({ queue: 'default', limit: 4, workerId });
        if (leased.length === 0) return;
        seen.push(...leased.map((entry) => entry.job.id));
      }
    };
    await Promise.all([drain(env.store, 'a'), drain(other, 'b'), drain(env.store, 'c'), drain(other, 'd')]);
    expect(seen).toHaveLength(total);
    expect(new Set(seen).size).toBe(total);
  });

  it('refuses a commit with a forged token and writes nothing', async () => {
    const jobId = await enqueueOne(env.store);
    const leased = await leaseOne(env.store);

    expect(await env.store.commit(forged(leased.lease), COMPLETION)).toBe(false);
    expect(await env.store.fail(forged(leased.lease), { error: 'x', retryAt: null })).toBe(false);
    expect(await env.store.release(forged(leased.lease), 'x')).toBe(false);
    expect(await env.store.heartbeat([forged(leased.lease)])).toEqual(new Set());
    expect(await env.store.recordEffectIntent(forged(leased.lease), { name: 'send', idempotencyKey: 'k' })).toEqual({
      status: 'lease_lost',
    });

    expect(await env.store.getJob(jobId)).toMatchObject({
      state: 'running',
      result: null,
      lastError: null,
      leaseToken: leased.lease.token,
    });
    expect(await env.store.listEffects(jobId)).toEqual([]);
    expect((await env.store.listAttempts(jobId))[0]).toMatchObject({ outcome: null, endedAt: null });
    // The real token still works.
    expect(await env.store.commit(leased.lease, COMPLETION)).toBe(true);
  });

  it('refuses every write from a stale lease once another attempt owns the job', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const first = await leaseOne(env.store, { workerId: 'slow' });
    env.clock.advance(LEASE_MS + 1);
    await env.store.sweep();
    const second = await leaseOne(env.store, { workerId: 'fast' });
    expect(second.lease.attempt).toBe(2);

    expect(await env.store.commit(first.lease, COMPLETION)).toBe(false);
    expect(await env.store.fail(first.lease, { error: 'late failure', retryAt: null })).toBe(false);
    expect(await env.store.release(first.lease, 'late release')).toBe(false);
    expect(await env.store.heartbeat([first.lease])).toEqual(new Set());
    expect(await env.store.recordEffectIntent(first.lease, { name: 'send', idempotencyKey: 'k' })).toEqual({ status: 'lease_lost' });
    await env.store.abandonLease(first.lease, 'late abandon');
    const job = await env.store.getJob(jobId);
    expect(job).toMatchObject({ state: 'running', attempt: 2, leaseToken: second.lease.token });
    expect(job?.lastError ?? '').not.toMatch(/late/);
    // The late abandon relabels the swept attempt and leaves the running one alone.
    expect(await env.store.listAttempts(jobId)).toEqual([
      expect.objectContaining({ attempt: 1, workerId: 'slow', outcome: 'lease_lost', error: 'late abandon' }),
      expect.objectContaining({ attempt: 2, workerId: 'fast', leaseToken: second.lease.token, outcome: null }),
    ]);

    expect(await env.store.commit(second.lease, COMPLETION)).toBe(true);
    expect(await env.store.getJob(jobId)).toMatchObject({ state: 'completed', attempt: 2, result: { ok: true } });
  });

  it('tells when the next waiting job comes due', async () => {
    expect(await env.store.nextDueInMs('default')).toBeNull();
    // Available and running jobs wait for nothing, and other queues do not count.
    await enqueueOne(env.store);
    await enqueueOne(env.store, { queue: 'other', runAt: env.clock.now() + 100 });
    await leaseOne(env.store);
    expect(await env.store.nextDueInMs('default')).toBeNull();

    await enqueueOne(env.store, { runAt: env.clock.now() + 5000 });
    const retried = await enqueueOne(env.store);
    await env.store.fail((await leaseOne(env.store)).lease, { error: 'later', retryAt: env.clock.now() + 2000 });
    expect(await env.store.getJob(retried)).toMatchObject({ state: 'retryable' });
    expect(await env.store.nextDueInMs('default')).toBe(2000);
    expect(await env.store.nextDueInMs('other')).toBe(100);

    env.clock.advance(2500);
    expect(await env.store.nextDueInMs('default')).toBe(-500);
  });

  it('keeps a completed attempt through a late abandon', async () => {
    for (const outcome of ['succeeded', 'verified'] as const) {
      const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
      const leasedAt = env.clock.now();
      const leased = await leaseOne(env.store, { workerId: `worker-${outcome}` });
      env.clock.advance(7);
      expect(await env.store.commit(leased.lease, { ...COMPLETION, outcome })).toBe(true);
      const record = expect.objectContaining({
        attempt: 1,
        workerId: `worker-${outcome}`,
        leaseToken: leased.lease.token,
        startedAt: leasedAt,
        endedAt: env.clock.now(),
        outcome,
        error: null,
      });
      expect(await env.store.listAttempts(jobId)).toEqual([record]);
      // The job holds no lease once completed, whatever the store keeps as the attempt's record.
      expect(await env.store.getJob(jobId)).toMatchObject({ state: 'completed', leaseToken: null, leaseExpiresAt: null });

      // A worker that believes its lease lost after the commit landed (a late heartbeat reply, say).
      env.clock.advance(LEASE_MS + 1);
      await env.store.abandonLease(leased.lease, 'late abandon');
      expect(await env.store.listAttempts(jobId)).toEqual([record]);
      expect(await env.store.getJob(jobId)).toMatchObject({ state: 'completed', result: { ok: true }, lastError: null });
    }
  });

  it('records a lost lease before the sweep', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const leasedAt = env.clock.now();
    const leased = await leaseOne(env.store, { workerId: 'stalled' });
    env.clock.advance(LEASE_MS + 1);

    await env.store.abandonLease(leased.lease, 'heartbeat refused');
    expect(await env.store.listAttempts(jobId)).toEqual([
      expect.objectContaining({
        attempt: 1,
        workerId: 'stalled',
        leaseToken: leased.lease.token,
        startedAt: leasedAt,
        endedAt: env.clock.now(),
        outcome: 'lease_lost',
        error: 'heartbeat refused',
      }),
    ]);
    expect(await env.store.getJob(jobId)).toMatchObject({ state: 'available', leaseToken: null });
    expect(await env.store.sweep()).toEqual([]);
    expect(await env.store.listAttempts(jobId)).toHaveLength(1);
  });

  it('refuses commit, fail, heartbeat and effect intent once the lease expired, even before a sweep', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const leased = await leaseOne(env.store);

    env.clock.advance(LEASE_MS - 1);
    expect(await env.store.heartbeat([leased.lease])).toEqual(new Set([jobId]));
    env.clock.advance(LEASE_MS + 1);

    expect(await env.store.commit(leased.lease, COMPLETION)).toBe(false);
    expect(await env.store.fail(leased.lease, { error: 'late', retryAt: env.clock.now() + 1000 })).toBe(false);
    expect(await env.store.heartbeat([leased.lease])).toEqual(new Set());
    expect(await env.store.recordEffectIntent(leased.lease, { name: 'send', idempotencyKey: 'k' })).toEqual({ status: 'lease_lost' });

    expect(await env.store.getJob(jobId)).toMatchObject({ state: 'running', result: null, lastError: null });
    expect(await env.store.listEffects(jobId)).toEqual([]);
  });

  it('renews a held lease on heartbeat, so the attempt can commit after its first expiry time', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const leased = await leaseOne(env.store);

    env.clock.advance(LEASE_MS * 0.6);
    expect(await env.store.heartbeat([leased.lease, forged({ ...leased.lease, jobId: '999999' })])).toEqual(new Set([jobId]));
    expect((await env.store.getJob(jobId))?.leaseExpiresAt).toBe(env.clock.now() + LEASE_MS);
    env.clock.advance(LEASE_MS * 0.6);

    expect(await env.store.sweep()).toEqual([]);
    expect(await env.store.commit(leased.lease, COMPLETION)).toBe(true);
    expect((await env.store.listAttempts(jobId))[0]).toMatchObject({ outcome: 'succeeded' });
  });

  it('sweeps an expired lease: the attempt becomes abandoned and the job available to the next attempt', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const dead = await leaseOne(env.store, { workerId: 'dead-worker' });
    const heldId = await enqueueOne(env.store, { leaseMs: LEASE_MS * 10 });
    const other = await leaseOne(env.store, { workerId: 'live-worker' });
    expect(other.job.id).toBe(heldId);

    env.clock.advance(LEASE_MS - 1);
    expect(await env.store.sweep()).toEqual([]);
    env.clock.advance(1);
    const recovered = await env.store.sweep();

    expect(recovered).toEqual([
      {
        jobId,
        name: 'contract-job',
        queue: 'default',
        attempt: 1,
        leaseToken: dead.lease.token,
        workerId: 'dead-worker',
        state: 'available',
      },
    ]);
    expect(await env.store.getJob(jobId)).toMatchObject({ state: 'available', leaseToken: null, attempt: 1 });
    // The recovered job keeps its run_at, so it goes ahead of jobs that became due after it.
    expect((await env.store.getJob(jobId))?.runAt).toBe(dead.job.runAt);
    expect((await env.store.listAttempts(jobId))[0]).toMatchObject({
      outcome: 'abandoned',
      workerId: 'dead-worker',
      leaseToken: dead.lease.token,
      startedAt: dead.job.runAt,
      endedAt: env.clock.now(),
    });
    expect((await env.store.getJob(other.job.id))?.state).toBe('running');
    expect(await env.store.sweep()).toEqual([]);

    const next = await leaseOne(env.store, { workerId: 'live-worker' });
    expect(next.lease.attempt).toBe(2);
    expect(next.previousAttempt).toMatchObject({ attempt: 1, outcome: 'abandoned', workerId: 'dead-worker' });
  });

  it('sweeps an expired lease on the last attempt to failed, with a reason', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS, maxAttempts: 1 });
    await leaseOne(env.store, { workerId: 'dead-worker' });
    env.clock.advance(LEASE_MS);

    const [recovered] = await env.store.sweep();
    expect(recovered).toMatchObject({ jobId, state: 'failed' });
    const job = await env.store.getJob(jobId);
    expect(job).toMatchObject({ state: 'failed', finishedAt: env.clock.now(), leaseToken: null });
    expect(job?.lastError).toMatch(/abandoned/);
    expect(job?.lastError).toMatch(/no attempts left/);
    expect((await env.store.listAttempts(jobId))[0]).toMatchObject({ outcome: 'abandoned' });
  });

  it('fails an attempt into retryable at retryAt, or into failed without one', async () => {
    const retried = await enqueueOne(env.store);
    const first = await leaseOne(env.store);
    expect(await env.store.fail(first.lease, { error: 'Error: smtp down', retryAt: env.clock.now() + 4000 })).toBe(true);
    expect(await env.store.getJob(retried)).toMatchObject({
      state: 'retryable',
      runAt: env.clock.now() + 4000,
      lastError: 'Error: smtp down',
      leaseToken: null,
      finishedAt: null,
    });
    expect((await env.store.listAttempts(retried))[0]).toMatchObject({ outcome: 'errored', error: 'Error: smtp down' });
    expect(await env.store.lease({ queue: 'default', limit: 1, workerId: 'w' })).toEqual([]);
    env.clock.advance(4000);
    const second = await leaseOne(env.store);
    expect(second.lease.attempt).toBe(2);

    expect(await env.store.fail(second.lease, { error: 'PermanentError: gone', retryAt: null })).toBe(true);
    expect(await env.store.getJob(retried)).toMatchObject({
      state: 'failed',
      finishedAt: env.clock.now(),
      lastError: 'PermanentError: gone',
    });
  });

  it('releases a lease at once without using up an attempt', async () => {
    const jobId = await enqueueOne(env.store, { maxAttempts: 1 });
    const leased = await leaseOne(env.store);
    expect(await env.store.release(leased.lease, 'shutting down')).toBe(true);

    const job = await env.store.getJob(jobId);
    expect(job).toMatchObject({ state: 'available', leaseToken: null });
    expect(job!.maxAttempts - job!.attempt).toBe(1);
    expect((await env.store.listAttempts(jobId))[0]).toMatchObject({ outcome: 'released' });
    const again = await leaseOne(env.store);
    expect(await env.store.commit(again.lease, COMPLETION)).toBe(true);
  });

  it('cancels a waiting job but not a running or finished one', async () => {
    const waiting = await enqueueOne(env.store, { runAt: env.clock.now() + 1000 });
    const running = await enqueueOne(env.store);
    const leased = await leaseOne(env.store);
    expect(leased.job.id).toBe(running);

    expect(await env.store.cancel(waiting)).toBe(true);
    expect(await env.store.cancel(running)).toBe(false);
    expect(await env.store.commit(leased.lease, COMPLETION)).toBe(true);
    expect(await env.store.cancel(running)).toBe(false);
    expect((await env.store.getJob(waiting))?.state).toBe('cancelled');
    expect(await env.store.cancel('123456789')).toBe(false);
  });

  it('counts the jobs in each state', async () => {
    const ids: Record<string, string[]> = {};
    const put = (state: string, id: string) => {
      ids[state] = [...(ids[state] ?? []), id];
    };
    for (let index = 0; index < 6; index += 1) await enqueueOne(env.store);
    const leased = await env.store.lease({ queue: 'default', limit: 6, workerId: 'w' });
    const states = ['completed', 'completed', 'failed', 'retryable', 'running', 'running'];
    expect(leased).toHaveLength(states.length);
    for (const [index, { lease }] of leased.entries()) {
      const state = states[index] as string;
      if (state === 'completed') expect(await env.store.commit(lease, COMPLETION)).toBe(true);
      if (state === 'failed') expect(await env.store.fail(lease, { error: 'boom', retryAt: null })).toBe(true);
      if (state === 'retryable') expect(await env.store.fail(lease, { error: 'boom', retryAt: env.clock.now() + 60_000 })).toBe(true);
      put(state, lease.jobId);
    }
    put('scheduled', await enqueueOne(env.store, { runAt: env.clock.now() + 60_000 }));
    for (let index = 0; index < 3; index += 1) put('available', await enqueueOne(env.store));
    const cancelled = await enqueueOne(env.store, { runAt: env.clock.now() + 60_000 });
    expect(await env.store.cancel(cancelled)).toBe(true);
    put('cancelled', cancelled);

    for (const [state, jobIds] of Object.entries(ids)) {
      for (const id of jobIds) expect((await env.store.getJob(id))?.state, `job ${id}`).toBe(state);
    }
    expect(await env.store.countByState()).toEqual({
      scheduled: 1,
      available: 3,
      running: 2,
      retryable: 1,
      completed: 2,
      failed: 1,
      cancelled: 1,
    });
  });
});
