import { expect, it } from 'vitest';
import { z } from 'zod';
import type { EffectCheck, PreviousAttempt } from '../../src/core/job-context.js';
import { idempotencyKeyFor } from '../../src/core/job-context.js';
import { defineJob, type JobDefinition } from '../../src/core/job-definition.js';
import type { JobState } from '../../src/core/states.js';
import { describeEachStore, type StoreEnv } from '../support/contract.js';
import { leaseOne } from '../support/jobs.js';
import { waitFor } from '../support/wait.js';

const order = z.object({ orderId: z.string() });
const LEASE_MS = 5000;

interface Charge {
  chargeId: string;
}

/** A charge job whose effect records every call, with an optional effect verify. */
function chargeJob(options: { verify?: (key: string) => EffectCheck<Charge>; failFirstAttempt?: boolean } = {}) {
  const calls: { key: string; attempt: number }[] = [];
  const previous: (PreviousAttempt | null)[] = [];
  const definition = defineJob({
    name: 'charge-order',
    payload: order,
    key: (payload) => `order:${payload.orderId}`,
    leaseMs: LEASE_MS,
    retry: { maxAttempts: 3, baseMs: 100, jitter: 0 },
    perform: async (ctx) => {
      previous.push(ctx.previousAttempt);
      const charge = await ctx.effect<Charge>(
        'charge',
        (key) => {
          calls.push({ key, attempt: ctx.attempt });
          return { chargeId: `ch_${calls.length}` };
        },
        options.verify ? { verify: options.verify } : {},
      );
      if (options.failFirstAttempt && ctx.attempt === 1) throw new Error('crashed after the charge');
      return charge;
    },
  });
  return { definition, calls, previous };
}

/**
 * Leaves the job with an in-doubt effect, as a worker that died between
 * starting the effect and recording it would: a lease, an intent, no done
 * record, and the lease left to expire.
 */
async function leaveInDoubt(env: StoreEnv, definition: JobDefinition<any, any>, payload: unknown, effect: string) {
  const job = await env.client.enqueue(definition, payload);
  const dead = await leaseOne(env.store, { workerId: 'dead-worker' });
  const idempotencyKey = idempotencyKeyFor(job.key, job.id, effect);
  expect(await env.store.recordEffectIntent(dead.lease, { name: effect, idempotencyKey })).toEqual({ status: 'recorded' });
  expect(await env.store.listEffects(job.id)).toEqual([
    expect.objectContaining({ name: effect, idempotencyKey, state: 'intent', attempt: 1, resolution: null }),
  ]);
  env.clock.advance(LEASE_MS + 1);
  return { jobId: job.id, idempotencyKey };
}

describeEachStore('effect ledger', (env) => {
  const waitForState = (jobId: string, state: JobState) =>
    waitFor(`job ${jobId} to be ${state}`, async () => {
      const job = await env.store.getJob(jobId);
      return job?.state === state ? job : null;
    });

  it('does not run a done effect again on retry, and returns its recorded result', async () => {
    const { definition, calls, previous } = chargeJob({ failFirstAttempt: true });
    const job = await env.client.enqueue(definition, { orderId: '42' });
    await env.startWorker({ jobs: [definition] });

    await waitForState(job.id, 'retryable');
    env.clock.advance(100);
    const done = await waitForState(job.id, 'completed');

    expect(calls).toEqual([{ key: 'order:42:charge', attempt: 1 }]);
    expect(done).toMatchObject({ attempt: 2, result: { chargeId: 'ch_1' } });
    expect(previous[1]).toMatchObject({ attempt: 1, outcome: 'errored', effectsDone: ['charge'], effectsInDoubt: [] });
    expect(await env.store.listEffects(job.id)).toEqual([
      expect.objectContaining({ name: 'charge', state: 'done', result: { chargeId: 'ch_1' }, attempt: 1, resolution: 'ran' }),
    ]);
  });

  it('settles an in-doubt effect that its verify finds: recorded done as verified, not run again', async () => {
    const lookups: string[] = [];
    const { definition, calls, previous } = chargeJob({
      verify: (key) => {
        lookups.push(key);
        return { found: true, result: { chargeId: 'ch_found_at_provider' } };
      },
    });
    const { jobId, idempotencyKey } = await leaveInDoubt(env, definition, { orderId: '7' }, 'charge');
    const { events } = await env.startWorker({ jobs: [definition] });

    const done = await waitForState(jobId, 'completed');
    expect(calls).toEqual([]);
    expect(lookups).toEqual([idempotencyKey]);
    expect(done.result).toEqual({ chargeId: 'ch_found_at_provider' });
    expect(previous[0]).toMatchObject({ attempt: 1, outcome: 'abandoned', effectsInDoubt: ['charge'] });
    expect(await env.store.listEffects(jobId)).toEqual([
      expect.objectContaining({ state: 'done', resolution: 'verified', result: { chargeId: 'ch_found_at_provider' }, idempotencyKey }),
    ]);
    expect(events.of('effect:in-doubt')).toEqual([
      expect.objectContaining({ jobId, effect: 'charge', idempotencyKey, settledBy: 'verify' }),
    ]);
  });

  it('runs an in-doubt effect that its verify does not find again, with the same idempotency key', async () => {
    const { definition, calls } = chargeJob({ verify: () => ({ found: false }) });
    const { jobId, idempotencyKey } = await leaveInDoubt(env, definition, { orderId: '8' }, 'charge');
    const { events } = await env.startWorker({ jobs: [definition] });

    const done = await waitForState(jobId, 'completed');
    expect(calls).toEqual([{ key: idempotencyKey, attempt: 2 }]);
    expect(done.result).toEqual({ chargeId: 'ch_1' });
    expect(await env.store.listEffects(jobId)).toEqual([expect.objectContaining({ state: 'done', resolution: 'rerun', attempt: 2 })]);
    expect(events.of('effect:in-doubt')).toEqual([expect.objectContaining({ jobId, idempotencyKey, settledBy: 'rerun' })]);
  });

  it('runs an in-doubt effect without a verify again with the same key, and says so with an event', async () => {
    const { definition, calls } = chargeJob();
    const { jobId, idempotencyKey } = await leaveInDoubt(env, definition, { orderId: '9' }, 'charge');
    const { events } = await env.startWorker({ jobs: [definition] });

    await waitForState(jobId, 'completed');
    expect(calls).toEqual([{ key: idempotencyKey, attempt: 2 }]);
    expect(await env.store.listEffects(jobId)).toEqual([expect.objectContaining({ state: 'done', resolution: 'rerun' })]);
    expect(events.of('effect:in-doubt')).toEqual([
      expect.objectContaining({ jobId, effect: 'charge', idempotencyKey, settledBy: 'rerun' }),
    ]);
  });

  it('keeps idempotency keys stable across attempts, and distinct per job and per effect', async () => {
    const seen: { attempt: number; jobId: string; fromContext: string; fromEffect: string; other: string }[] = [];
    const notify = defineJob({
      name: 'notify',
      payload: z.object({ n: z.number() }),
      retry: { maxAttempts: 2, baseMs: 100, jitter: 0 },
      perform: async (ctx) => {
        const fromEffect = await ctx.effect(`send:${ctx.attempt}`, (key) => key);
        seen.push({
          attempt: ctx.attempt,
          jobId: ctx.jobId,
          fromContext: ctx.idempotencyKey('send'),
          fromEffect,
          other: ctx.idempotencyKey('log'),
        });
        if (ctx.attempt === 1) throw new Error('retry me');
      },
    });
    const keyless = await env.client.enqueue(notify, { n: 1 });
    const keyed = await env.client.enqueue(notify, { n: 2 }, { key: 'notify:user-5' });
    await env.startWorker({ jobs: [notify] });

    await waitFor('both jobs to be retryable', async () => seen.length === 2);
    env.clock.advance(100);
    await waitForState(keyless.id, 'completed');
    await waitForState(keyed.id, 'completed');

    const byJob = (jobId: string) => seen.filter((entry) => entry.jobId === jobId);
    for (const jobId of [keyless.id, keyed.id]) {
      const [first, second] = byJob(jobId);
      expect(first?.fromContext).toBe(second?.fromContext);
      expect(first?.other).not.toBe(first?.fromContext);
    }
    expect(byJob(keyless.id)[0]?.fromContext).not.toBe(byJob(keyed.id)[0]?.fromContext);
    expect(byJob(keyed.id)[0]?.fromContext).toBe('notify:user-5:send');
    // The key an effect receives is the one ctx.idempotencyKey gives and the one the ledger stores.
    expect(byJob(keyed.id)[1]?.fromEffect).toBe('notify:user-5:send:2');
    const stored = await env.store.listEffects(keyed.id);
    expect(stored.map((effect) => effect.idempotencyKey).sort()).toEqual(['notify:user-5:send:1', 'notify:user-5:send:2']);
  });

  it('rejects a second use of one effect name in the same attempt, without running it', async () => {
    let runs = 0;
    const twice = defineJob({
      name: 'twice',
      payload: empty(),
      retry: { maxAttempts: 1 },
      perform: async (ctx) => {
        await ctx.effect('email', () => ++runs);
        await ctx.effect('email', () => ++runs);
      },
    });
    const job = await env.client.enqueue(twice, {});
    await env.startWorker({ jobs: [twice] });

    const failed = await waitForState(job.id, 'failed');
    expect(failed.lastError).toMatch(/effect "email" was already used in this attempt/);
    expect(runs).toBe(1);
  });

  it('does not start an effect once the attempt lost its lease', async () => {
    const runs: number[] = [];
    const late = defineJob({
      name: 'late-effect',
      payload: empty(),
      leaseMs: LEASE_MS,
      perform: async (ctx) => {
        // The first attempt stalls past its lease before its effect, as a paused process would.
        if (ctx.attempt === 1) env.clock.advance(LEASE_MS + 1);
        await ctx.effect('email', () => runs.push(ctx.attempt));
      },
    });
    const job = await env.client.enqueue(late, {});
    const { events } = await env.startWorker({ jobs: [late] });

    await waitForState(job.id, 'completed');
    expect(runs).toEqual([2]);
    expect(events.of('lease:lost')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 1 })]);
    const [first, second] = await env.store.listAttempts(job.id);
    expect(['lease_lost', 'abandoned']).toContain(first?.outcome);
    expect(second?.outcome).toBe('succeeded');
  });
});

function empty() {
  return z.object({});
}
