import { expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob } from '../../src/core/job-definition.js';
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
});
