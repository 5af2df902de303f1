import { expect, it } from 'vitest';
import { z } from 'zod';
import { ShutdownError } from '../../src/core/errors.js';
import { defineJob } from '../../src/core/job-definition.js';
import type { JobState } from '../../src/core/states.js';
import { describeEachStore } from '../support/contract.js';
import { sleep, waitFor } from '../support/wait.js';

const task = z.object({ ms: z.number(), ignoresSignal: z.boolean().optional() });

describeEachStore('graceful shutdown', (env) => {
  const waitForState = (jobId: string, state: JobState) =>
    waitFor(`job ${jobId} to be ${state}`, async () => {
      const job = await env.store.getJob(jobId);
      return job?.state === state ? job : null;
    });

  /** A job that takes `ms` (or, past the first attempt, no time at all) and records how its signal fired. */
  function timedJob() {
    const started = new Set<string>();
    const aborts = new Map<string, unknown>();
    const definition = defineJob({
      name: 'timed',
      payload: task,
      retry: { maxAttempts: 1 },
      perform: (ctx) =>
        new Promise<string>((resolve) => {
          started.add(ctx.jobId);
          if (ctx.attempt > 1) return resolve('finished later');
          const timer = setTimeout(() => resolve('finished in time'), ctx.payload.ms);
          ctx.signal.addEventListener('abort', () => {
            aborts.set(ctx.jobId, ctx.signal.reason);
            if (!ctx.payload.ignoresSignal) {
              clearTimeout(timer);
              resolve('stopped early');
            }
          });
        }),
    });
    return { definition, started, aborts };
  }

  it('waits for short attempts, and aborts and releases long ones at once when the grace runs out', async () => {
    const { definition, started, aborts } = timedJob();
    const short = await env.client.enqueue(definition, { ms: 150 });
    const long = await env.client.enqueue(definition, { ms: 60_000 });
    const stubborn = await env.client.enqueue(definition, { ms: 60_000, ignoresSignal: true });
    const { worker, events } = await env.startWorker({ jobs: [definition], concurrency: 3 });
    await waitFor('all three attempts to start', () => started.size === 3);

    const stopping = Date.now();
    await worker.stop({ graceMs: 400 });
    const tookMs = Date.now() - stopping;
    expect(tookMs).toBeGreaterThanOrEqual(350);
    expect(tookMs).toBeLessThan(3000);

    expect(await env.store.getJob(short.id)).toMatchObject({ state: 'completed', result: 'finished in time' });
    for (const id of [long.id, stubborn.id]) {
      // Released without advancing the clock: nobody had to wait for the lease to expire.
      const job = await env.store.getJob(id);
      expect(job).toMatchObject({ state: 'available', leaseToken: null, workerId: expect.anything() });
      expect(job!.maxAttempts - job!.attempt).toBe(1);
      expect(await env.store.listAttempts(id)).toEqual([expect.objectContaining({ attempt: 1, outcome: 'released' })]);
      expect(aborts.get(id)).toBeInstanceOf(ShutdownError);
    }
    expect(aborts.has(short.id)).toBe(false);
    expect(
      events
        .of('job:released')
        .map((event) => event.jobId)
        .sort(),
    ).toEqual([long.id, stubborn.id].sort());
    expect(events.of('job:failed')).toEqual([]);
    expect(worker.activeCount).toBe(0);

    // The released jobs did not use up their only attempt: another worker completes them.
    await env.startWorker({ jobs: [definition] });
    await waitForState(long.id, 'completed');
    await waitForState(stubborn.id, 'completed');
  });

  it('stops leasing once stop() is called', async () => {
    const { definition } = timedJob();
    const { worker } = await env.startWorker({ jobs: [definition] });
    await worker.stop();

    const job = await env.client.enqueue(definition, { ms: 1 });
    await sleep(100);
    expect(await env.store.getJob(job.id)).toMatchObject({ state: 'available', attempt: 0 });
  });

  it('keeps renewing the leases of attempts that finish within the grace', async () => {
    const { definition, started } = timedJob();
    const job = await env.client.enqueue(definition, { ms: 300 });
    const { worker } = await env.startWorker({ jobs: [definition], heartbeatIntervalMs: 20 });
    await waitFor('the attempt to start', () => started.size === 1);

    // Move time on while stop() waits; without heartbeats the lease (10 s by default) would expire.
    const stopped = worker.stop({ graceMs: 5000 });
    for (let step = 0; step < 6; step += 1) {
      env.clock.advance(4000);
      await sleep(40);
    }
    await stopped;
    expect(await env.store.getJob(job.id)).toMatchObject({ state: 'completed', attempt: 1 });
  });
});
