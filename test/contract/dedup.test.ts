import { expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob } from '../../src/core/job-definition.js';
import { describeEachStore } from '../support/contract.js';
import { COMPLETION, countJobs, leaseOne } from '../support/jobs.js';

const welcome = defineJob({
  name: 'welcome',
  payload: z.object({ userId: z.string(), variant: z.string().optional() }),
  key: (payload) => `welcome:${payload.userId}`,
  perform: () => null,
});

describeEachStore('dedup by key', (env) => {
  it('returns a pending job with the same key as a duplicate instead of storing a second one', async () => {
    const first = await env.client.enqueue(welcome, { userId: 'u1', variant: 'a' });
    const second = await env.client.enqueue(welcome, { userId: 'u1', variant: 'b' });

    expect(first).toMatchObject({ key: 'welcome:u1', duplicate: false });
    expect(second).toMatchObject({ id: first.id, key: 'welcome:u1', state: 'available', duplicate: true });
    expect(await countJobs(env.store)).toBe(1);
    // The duplicate did not overwrite the stored job.
    expect((await env.store.getJob(first.id))?.payload).toEqual({ userId: 'u1', variant: 'a' });
  });

  it('treats scheduled, running and retryable jobs as pending', async () => {
    const scheduled = await env.client.enqueue(welcome, { userId: 'later' }, { delayMs: 60_000 });
    expect(await env.client.enqueue(welcome, { userId: 'later' })).toMatchObject({ id: scheduled.id, state: 'scheduled', duplicate: true });

    const running = await env.client.enqueue(welcome, { userId: 'now' });
    const leased = await leaseOne(env.store);
    expect(await env.client.enqueue(welcome, { userId: 'now' })).toMatchObject({ id: running.id, state: 'running', duplicate: true });

    await env.store.fail(leased.lease, { error: 'try again', retryAt: env.clock.now() + 5000 });
    expect(await env.client.enqueue(welcome, { userId: 'now' })).toMatchObject({ id: running.id, state: 'retryable', duplicate: true });
    expect(await countJobs(env.store)).toBe(2);
  });

  it('deduplicates within one bulk enqueue', async () => {
    const jobs = await env.client.enqueueMany(welcome, [
      { payload: { userId: 'u1' } },
      { payload: { userId: 'u2' } },
      { payload: { userId: 'u1' } },
    ]);
    expect(jobs.map((job) => job.duplicate)).toEqual([false, false, true]);
    expect(jobs[2]?.id).toBe(jobs[0]?.id);
    expect(await countJobs(env.store)).toBe(2);
  });

  it('returns a job completed within the dedup window as a duplicate, and creates a new job after the window', async () => {
    const first = await env.client.enqueue(welcome, { userId: 'u1' }, { dedupWindowMs: 10_000 });
    const leased = await leaseOne(env.store);
    expect(await env.store.commit(leased.lease, COMPLETION)).toBe(true);

    env.clock.advance(9_999);
    expect(await env.client.enqueue(welcome, { userId: 'u1' })).toMatchObject({ id: first.id, state: 'completed', duplicate: true });

    env.clock.advance(1);
    const after = await env.client.enqueue(welcome, { userId: 'u1' });
    expect(after).toMatchObject({ state: 'available', duplicate: false });
    expect(after.id).not.toBe(first.id);
    expect(await countJobs(env.store)).toBe(2);
  });

  it('lets a new job through when the job with that key failed', async () => {
    const first = await env.client.enqueue(welcome, { userId: 'u1' });
    const leased = await leaseOne(env.store);
    expect(await env.store.fail(leased.lease, { error: 'PermanentError: no such user', retryAt: null })).toBe(true);
    expect((await env.store.getJob(first.id))?.state).toBe('failed');

    const second = await env.client.enqueue(welcome, { userId: 'u1' });
    expect(second).toMatchObject({ state: 'available', duplicate: false });
    expect(second.id).not.toBe(first.id);
  });

  it('lets a new job through when the job with that key was cancelled', async () => {
    const first = await env.client.enqueue(welcome, { userId: 'u1' });
    expect(await env.store.cancel(first.id)).toBe(true);

    const second = await env.client.enqueue(welcome, { userId: 'u1' });
    expect(second).toMatchObject({ state: 'available', duplicate: false });
    expect(second.id).not.toBe(first.id);
  });

  it('does not deduplicate jobs without a key', async () => {
    const keyless = defineJob({ name: 'keyless', payload: z.object({}), perform: () => null });
    const a = await env.client.enqueue(keyless, {});
    const b = await env.client.enqueue(keyless, {});
    expect(a.duplicate || b.duplicate).toBe(false);
    expect(a.id).not.toBe(b.id);
  });

  it('deduplicates across connections to the same store', async () => {
    const other = await env.openShared();
    const first = await env.client.enqueue(welcome, { userId: 'u1' });
    const second = await env.newClient({ store: other }).enqueue(welcome, { userId: 'u1' });
    expect(second).toMatchObject({ id: first.id, duplicate: true });
  });
});
