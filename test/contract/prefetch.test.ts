import { expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob, type JobDefinition } from '../../src/core/job-definition.js';
import { describeEachStore } from '../support/contract.js';
import { withCommitHook, withLeaseHook } from '../support/store-hooks.js';
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
    // The sweep may close the attempt as abandoned first; the worker's own record then replaces it.
    const [attempt] = await waitFor('the waiting job to be closed as lease_lost', async () => {
      const attempts = await env.store.listAttempts(ids[1]!);
      return attempts[0]?.outcome === 'lease_lost' ? attempts : null;
    });

    expect(gated.started).toEqual([ids[0]]);
    expect(events.of('lease:lost').map((event) => event.jobId)).toContain(ids[1]);
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
    // The sweep may close the waiting job's attempt as abandoned first; the worker's own record then replaces it.
    const attempts = await waitFor('the waiting job to be closed as lease_lost', async () => {
      const closed = await env.store.listAttempts(ids[1]!);
      return closed[0]?.outcome === 'lease_lost' ? closed : null;
    });

    expect(gated.started).toEqual([ids[0]]);
    expect(events.of('lease:lost').find((event) => event.jobId === ids[1])).toMatchObject({
      reason: expect.stringMatching(/expired before a slot freed/),
    });
    expect(attempts).toEqual([expect.objectContaining({ attempt: 1, outcome: 'lease_lost' })]);
  });

  /** Wraps the test's store to record its lease requests and, once `hold` is called, hold them until `letGo`. */
  function watchedStore() {
    const limits: number[] = [];
    let gate: Promise<void> | undefined;
    let letGo: () => void = () => {};
    const store = withLeaseHook(env.store, async (request, next) => {
      limits.push(request.limit);
      if (gate) await gate;
      return next(request);
    });
    return {
      store,
      limits,
      hold: () => {
        gate = new Promise<void>((resolve) => {
          letGo = resolve;
        });
      },
      letGo: () => letGo(),
    };
  }

  type CountingDefinition = ReturnType<typeof countingJob>['definition'];

  function countingJob(name: string, performMs: number) {
    const completed: string[] = [];
    const definition = defineJob({
      name,
      payload: z.object({ n: z.number() }),
      async perform(ctx) {
        if (performMs > 0) await new Promise((resolve) => setTimeout(resolve, performMs));
        completed.push(ctx.jobId);
        return null;
      },
    });
    return { definition, completed };
  }

  it('starts ready jobs during a lease', async () => {
    const { definition, completed } = countingJob('quick', 0);
    await env.client.enqueueMany(
      definition,
      Array.from({ length: 8 }, (_, n) => ({ payload: { n } })),
    );
    const watched = watchedStore();
    // The first lease takes four jobs, and every later lease waits until the test lets it go.
    let leases = 0;
    const store = withLeaseHook(watched.store, (request, next) => {
      leases += 1;
      if (leases === 2) watched.hold();
      return next(request);
    });
    const { worker } = await env.startWorker({ store, jobs: [definition], concurrency: 1, prefetch: 3 });

    try {
      await waitFor('the first four jobs to complete', () => completed.length === 4);
      // Three of them started after the worker sent its second lease, which has not returned.
      expect(leases).toBe(2);
      expect(worker.activeCount).toBe(0);
    } finally {
      watched.letGo();
    }
    await waitFor('every job to complete', async () => (await env.store.countByState()).completed === 8);
  });

  it('pauses leasing while commits lag', async () => {
    const { definition, completed } = countingJob('quick', 0);
    const ids = await env.client.enqueueMany(
      definition,
      Array.from({ length: 20 }, (_, n) => ({ payload: { n } })),
    );
    // Every commit waits until the test lets it go, as it would behind a slow disk or database.
    let letGo: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      letGo = resolve;
    });
    let commits = 0;
    const store = withCommitHook(env.store, async (_lease, _completion, next) => {
      commits += 1;
      await released;
      return next();
    });
    await env.startWorker({ store, jobs: [definition], concurrency: 1, prefetch: 1 });

    try {
      await waitFor('the first commits to wait', () => commits >= 3);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // The capacity is 2. Once more than 2 outcomes wait for the store the worker stops leasing, so only
      // the jobs leased before that point (at most 6) are running.
      const leased = (await runningIds(ids.map((job) => job.id))).length;
      expect(leased).toBeLessThanOrEqual(6);
      expect(commits).toBe(leased);
    } finally {
      letGo();
    }
    await waitFor('every job to complete', async () => (await env.store.countByState()).completed === 20);
    expect(completed).toHaveLength(20);
    expect(commits).toBe(20);
  });

  /** Enqueues `count` jobs of `definition`, runs a worker at concurrency 2 on a watched store, and waits until they complete. */
  async function drainWatched(definition: CountingDefinition, count: number, jobs: JobDefinition<any, any>[] = [definition]) {
    await env.client.enqueueMany(
      definition,
      Array.from({ length: count }, (_, n) => ({ payload: { n } })),
    );
    const watched = watchedStore();
    await env.startWorker({ store: watched.store, jobs, concurrency: 2 });
    await waitFor(`${count} jobs to complete`, async () => (await env.store.countByState()).completed === count, { timeoutMs: 30_000 });
    return watched;
  }

  it('deepens for short jobs', async () => {
    const watched = await drainWatched(countingJob('short', 0).definition, 3000);

    // The first lease requests the concurrency plus an equal prefetch, and later ones request many more.
    expect(watched.limits[0]).toBe(4);
    expect(Math.max(...watched.limits)).toBeGreaterThanOrEqual(32);
    expect(Math.max(...watched.limits)).toBeLessThanOrEqual(502);
  });

  it('starts over once the queue drains', async () => {
    const quick = countingJob('short', 0);
    const gated = gatedJob();
    const watched = await drainWatched(quick.definition, 3000, [quick.definition, gated.definition]);
    expect(Math.max(...watched.limits)).toBeGreaterThanOrEqual(32);

    // Long jobs after the backlog is gone: the worker takes its concurrency plus an equal prefetch, not the deep one.
    const afterDrain = watched.limits.length;
    const ids = await enqueue(gated.definition, 50);
    await waitFor('two long jobs to start', () => gated.started.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(Math.max(...watched.limits.slice(afterDrain))).toBe(4);
    expect(await runningIds(ids)).toHaveLength(4);
    gated.open();
  });

  it('stays shallow for long jobs', async () => {
    const watched = await drainWatched(countingJob('long', 40).definition, 30);

    expect(watched.limits.length).toBeGreaterThan(3);
    expect(Math.max(...watched.limits)).toBe(4);
  });

  it('rejects an invalid prefetch', async () => {
    const { definition } = countingJob('refused', 0);
    const [waiting] = await env.client.enqueueMany(definition, [{ payload: { n: 1 } }]);
    const cases: [unknown, string][] = [
      ['deep', '"deep"'],
      [-1, '-1'],
      [1.5, '1.5'],
      [null, 'null'],
      [{ size: 3 }, '{"size":3}'],
    ];
    for (const [value, shownAs] of cases) {
      expect(() => env.worker({ jobs: [definition], prefetch: value as never })).toThrow(
        `Worker option prefetch must be an integer of at least 0, or "auto"; got ${shownAs}.`,
      );
      expect(() => env.worker({ jobs: [definition], queues: { default: { prefetch: value as never } } })).toThrow(
        `prefetch of queue "default" must be an integer of at least 0, or "auto"; got ${shownAs}.`,
      );
    }
    expect(() => env.worker({ jobs: [definition], concurrency: null as never })).toThrow(
      'Worker option concurrency must be an integer of at least 1; got null.',
    );
    // A string where milliseconds belong is quoted, so that it does not read as an accepted value.
    expect(() => env.worker({ jobs: [definition], pollIntervalMs: '1s' as never })).toThrow(
      'Worker option pollIntervalMs must be a number of milliseconds, at least 1; got "1s".',
    );
    // The rejected options touched no job.
    expect(await env.store.getJob(waiting!.id)).toMatchObject({ state: 'available', attempt: 0 });
  });

  it('gives back stale prefetched jobs', async () => {
    let open: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    const mixed = defineJob({
      name: 'mixed',
      payload: z.object({ slow: z.boolean() }),
      leaseMs: LEASE_MS,
      async perform(ctx) {
        if (ctx.payload.slow) await gate;
        return null;
      },
    });
    // Short jobs deepen the prefetch; the slow one then occupies the only slot with many jobs waiting behind it.
    await env.client.enqueueMany(
      mixed,
      Array.from({ length: 3000 }, () => ({ payload: { slow: false } })),
    );
    const [slow] = await env.client.enqueueMany(mixed, [{ payload: { slow: true } }]);
    const after = await env.client.enqueueMany(
      mixed,
      Array.from({ length: 1000 }, () => ({ payload: { slow: false } })),
    );
    const { worker, events } = await env.startWorker({ jobs: [mixed], concurrency: 1, heartbeatIntervalMs: 50 });
    await waitFor('the slow job to hold the slot', async () => (await env.store.getJob(slow!.id))?.state === 'running');
    await waitFor('the prefetch to stop growing', async () => {
      const before = worker.activeCount;
      await new Promise((resolve) => setTimeout(resolve, 30));
      return worker.activeCount === before;
    });
    const waiting = worker.activeCount - 1;
    expect(waiting).toBeGreaterThan(8);

    // Waiting past one heartbeat interval by the worker's clock gives back all but one waiting job.
    env.clock.advance(60);
    await waitFor('the surplus to be given back', () => events.of('job:released').length === waiting - 1);
    expect(worker.activeCount).toBe(2);
    const released = new Set(events.of('job:released').map((event) => event.jobId));
    const states = await Promise.all([...released].map((id) => env.store.getJob(id)));
    expect(states.every((job) => job?.state === 'available' && job.leaseToken === null)).toBe(true);
    expect(events.of('job:released')[0]).toMatchObject({ reason: expect.stringMatching(/waited a heartbeat interval/) });
    expect([...released].every((id) => after.some((job) => job.id === id))).toBe(true);

    open();
    await waitFor('every job to complete', async () => (await env.store.countByState()).completed === 4001, { timeoutMs: 30_000 });
  });
});
