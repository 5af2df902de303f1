import { expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob } from '../../src/core/job-definition.js';
import { describeEachStore } from '../support/contract.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 5000;

describeEachStore('prefetch', (env) => {
  /** Builds a job that waits until the test opens its gate, and counts how many run at once. */
  function gatedJob() {
    const started: string[] = [];
    let performing = 0;
    let maxAtOnce = 0;
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const definition = defineJob({
      name: 'gated',
      payload: z.object({ n: z.number() }),
      leaseMs: LEASE_MS,
      retry: { maxAttempts: 1 },
      async perform(ctx) {
        started.push(ctx.jobId);
        performing += 1;
        maxAtOnce = Math.max(maxAtOnce, performing);
        await gate;
        performing -= 1;
        return ctx.payload.n;
      },
    });
    return { definition, started, open: () => open(), maxAtOnce: () => maxAtOnce };
  }

  async function enqueue(definition: ReturnType<typeof gatedJob>['definition'], count: number): Promise<string[]> {
    const jobs = await env.client.enqueueMany(
      definition,
      Array.from({ length: count }, (_, n) => ({ payload: { n } })),
    );
    return jobs.map((job) => job.id);
  }

  async function runningIds(ids: readonly string[]): Promise<string[]> {
    const jobs = await Promise.all(ids.map((id) => env.store.getJob(id)));
    return jobs.filter((job) => job?.state === 'running').map((job) => job!.id);
  }

  it('leases ahead, performs within concurrency', async () => {
    const gated = gatedJob();
    const ids = await enqueue(gated.definition, 6);
    const { worker } = await env.startWorker({ jobs: [gated.definition], concurrency: 1, prefetch: 2 });
    await waitFor('three leases', async () => (await runningIds(ids)).length === 3);

    expect(gated.started).toEqual([ids[0]]);
    expect(await runningIds(ids)).toEqual(ids.slice(0, 3));
    expect(worker.activeCount).toBe(3);

    gated.open();
    await waitFor('every job to complete', async () => (await env.store.countByState()).completed === 6);
    expect(gated.maxAtOnce()).toBe(1);
    // The prefetched jobs ran in the order they were leased.
    expect(gated.started).toEqual(ids);
  });

  it('releases prefetched jobs on stop', async () => {
    const gated = gatedJob();
    const ids = await enqueue(gated.definition, 3);
    const { worker, events } = await env.startWorker({ jobs: [gated.definition], concurrency: 1, prefetch: 2 });
    await waitFor('three leases', async () => (await runningIds(ids)).length === 3);

    const stopping = worker.stop({ graceMs: 5000 });
    await waitFor('the prefetched jobs to be given back', async () => (await runningIds(ids)).length === 1);
    gated.open();
    await stopping;

    expect(await env.store.getJob(ids[0]!)).toMatchObject({ state: 'completed' });
    for (const id of ids.slice(1)) {
      const job = await env.store.getJob(id);
      expect(job).toMatchObject({ state: 'available', leaseToken: null });
      // Each of these jobs allows one attempt, and the give-back did not consume it.
      expect(job!.maxAttempts - job!.attempt).toBe(1);
      expect(await env.store.listAttempts(id)).toEqual([expect.objectContaining({ attempt: 1, outcome: 'released' })]);
    }
    expect(gated.started).toEqual([ids[0]]);
    expect(
      events
        .of('job:released')
        .map((event) => event.jobId)
        .sort(),
    ).toEqual(ids.slice(1).sort());
  });

  it('skips a prefetched job whose lease expired', async () => {
    const gated = gatedJob();
    const ids = await enqueue(gated.definition, 2);
    const { events } = await env.startWorker({
      jobs: [gated.definition],
      concurrency: 1,
      prefetch: 1,
      heartbeatIntervalMs: 50,
    });
    await waitFor('two leases', async () => (await runningIds(ids)).length === 2);

    // Both leases expire by the store's clock: the next heartbeat finds neither held.
    env.clock.advance(LEASE_MS + 1);
    await waitFor('both leases reported lost', () => events.of('lease:lost').length === 2);
    gated.open();
    await waitFor('the waiting job to be closed', async () => (await env.store.getJob(ids[1]!))?.state !== 'running');

    expect(gated.started).toEqual([ids[0]]);
    expect(events.of('lease:lost').map((event) => event.jobId)).toContain(ids[1]);
    const [attempt] = await env.store.listAttempts(ids[1]!);
    expect(attempt).toMatchObject({ attempt: 1, outcome: 'lease_lost' });
    // Its only attempt is used: that attempt's lease was lost, as it would be for a started one.
    expect(await env.store.getJob(ids[1]!)).toMatchObject({ state: 'failed', leaseToken: null });
    expect(events.of('job:completed')).toEqual([]);
  });

  it('skips a stale lease without a heartbeat', async () => {
    const gated = gatedJob();
    const ids = await enqueue(gated.definition, 2);
    // No heartbeat runs during the test: only the worker's own record of its last renewal can stop it.
    const { events } = await env.startWorker({ jobs: [gated.definition], concurrency: 1, prefetch: 1, heartbeatIntervalMs: 600_000 });
    await waitFor('two leases', async () => (await runningIds(ids)).length === 2);

    env.clock.advance(LEASE_MS + 1);
    gated.open();
    await waitFor('both jobs to leave running', async () => (await runningIds(ids)).length === 0);

    expect(gated.started).toEqual([ids[0]]);
    expect(events.of('lease:lost').find((event) => event.jobId === ids[1])).toMatchObject({
      reason: expect.stringMatching(/expired before a slot freed/),
    });
    expect(await env.store.listAttempts(ids[1]!)).toEqual([expect.objectContaining({ attempt: 1, outcome: 'lease_lost' })]);
  });
});
