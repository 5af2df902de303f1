import { expect, it } from 'vitest';
import { z } from 'zod';
import { Client } from '../../src/core/client.js';
import { defineJob } from '../../src/core/job-definition.js';
import { TestClock } from '../support/clock.js';
import { describeEachStore } from '../support/contract.js';
import { withLeaseHook } from '../support/store-hooks.js';
import { waitFor } from '../support/wait.js';

describeEachStore('worker wake-ups', (env) => {
  it('leases again after a mid-lease wake', async () => {
    const started: number[] = [];
    const job = defineJob({
      name: 'prompt',
      payload: z.object({ n: z.number() }),
      async perform(ctx) {
        started.push(ctx.payload.n);
        return null;
      },
    });

    // Every lease reads the queue at once, but the second one returns only when the test lets it,
    // as a lease whose response is slow to arrive would.
    let leases = 0;
    let reachedSecond: () => void = () => {};
    const second = new Promise<void>((resolve) => {
      reachedSecond = resolve;
    });
    let letGo: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    const store = withLeaseHook(env.store, async (request, next) => {
      leases += 1;
      const leased = await next(request);
      if (leases === 2) {
        reachedSecond();
        await gate;
      }
      return leased;
    });

    await env.client.enqueue(job, { n: 1 });
    // A poll interval far beyond the test's wait: only a lease prompted by a wake can start job 3 in time.
    await env.startWorker({ store, jobs: [job], concurrency: 2, pollIntervalMs: 600_000 });
    await waitFor('job 1 to start', () => started.length === 1);
    // Job 2's wake sends the second lease, which reads job 2 and is then held open.
    await env.client.enqueue(job, { n: 2 });
    await second;
    try {
      // Job 3 commits after the second lease read the queue, and its wake arrives before that lease returns.
      await env.client.enqueue(job, { n: 3 });
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      letGo();
    }
    await waitFor('jobs 2 and 3 to start', () => started.length === 3);
    expect(started.sort()).toEqual([1, 2, 3]);
  });

  it('starts a retry when its backoff ends', async () => {
    // The wake is a real timer, so the store runs on the system clock. The poll interval is far
    // beyond the test's wait: only the wake at the retry's due time can start it in time.
    const clock = new TestClock({ follow: true });
    const { store } = await env.harness.open({ clock: clock.now });
    const startedAt: number[] = [];
    const job = defineJob({
      name: 'flaky',
      payload: z.object({}),
      retry: { maxAttempts: 2, baseMs: 300, jitter: 0 },
      async perform() {
        startedAt.push(Date.now());
        if (startedAt.length === 1) throw new Error('the first attempt fails');
        return null;
      },
    });

    await new Client({ store, clock: clock.now }).enqueue(job, {});
    await env.startWorker({ store, clock: clock.now, jobs: [job], pollIntervalMs: 600_000 });
    await waitFor('the retry to start', () => startedAt.length === 2);
    const waitedMs = (startedAt[1] as number) - (startedAt[0] as number);
    expect(waitedMs).toBeGreaterThanOrEqual(300);
    expect(waitedMs).toBeLessThan(1500);
  });

  it('starts a job enqueued for later when it comes due', async () => {
    const clock = new TestClock({ follow: true });
    const { store, location } = await env.harness.open({ clock: clock.now });
    const startedAt: number[] = [];
    const job = defineJob({
      name: 'later',
      payload: z.object({}),
      async perform() {
        startedAt.push(Date.now());
        return null;
      },
    });

    await env.startWorker({ store, clock: clock.now, jobs: [job], pollIntervalMs: 600_000 });
    // By then the worker found the queue empty and has read that nothing waits in it, so only the
    // wake that the enqueue sends can tell it about the job.
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Another connection enqueues it, as another process would, while the worker waits on an empty queue.
    const producer = (await env.harness.open({ clock: clock.now, shareWith: location })).store;
    const enqueuedAt = Date.now();
    await new Client({ store: producer, clock: clock.now }).enqueue(job, {}, { delayMs: 400 });
    await waitFor('the job to start', () => startedAt.length === 1);
    const waitedMs = (startedAt[0] as number) - enqueuedAt;
    expect(waitedMs).toBeGreaterThanOrEqual(400);
    expect(waitedMs).toBeLessThan(1500);
  });

  it('keeps lease retries apart through wakes', async () => {
    const job = defineJob({ name: 'spaced', payload: z.object({ n: z.number() }), perform: () => null });
    const failedAt: number[] = [];
    const store = withLeaseHook(env.store, async (request, next) => {
      if (failedAt.length < 3) {
        failedAt.push(performance.now());
        throw new Error('lease refused');
      }
      return next(request);
    });
    // The lease keeps failing while enqueues wake the worker every few milliseconds.
    let sent = 0;
    const waking = setInterval(() => void env.client.enqueue(job, { n: sent++ }), 3);
    try {
      await env.startWorker({ jobs: [job], store, pollIntervalMs: 40 });
      await waitFor(
        'a lease after three refused ones',
        async () => failedAt.length === 3 && (await env.store.countByState()).completed > 0,
      );
    } finally {
      clearInterval(waking);
    }

    // The retries wait the poll interval doubled per failure: 40 ms, then 80 ms (2 ms for timer slack).
    const [first = 0, second = 0, third = 0] = failedAt;
    expect(second - first).toBeGreaterThanOrEqual(38);
    expect(third - second).toBeGreaterThanOrEqual(78);
  });
});
