import { beforeEach, expect, it } from 'vitest';
import { z } from 'zod';
import { defineJob } from '../../src/core/job-definition.js';
import type { JobState } from '../../src/core/states.js';
import { describeEachStore } from '../support/contract.js';
import { enqueueOne, leaseOne } from '../support/jobs.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 5000;
const empty = z.object({});

describeEachStore('ctx.transaction', (env) => {
  // The notes table lives in the store's own database; only the harness knows how to reach it.
  const notes = () => {
    if (!env.harness.notes) throw new Error(`the ${env.harness.kind} harness has no notes helper`);
    return env.harness.notes;
  };
  const skip = !env.harness.notes;
  beforeEach(async () => {
    if (!skip) await notes().create(env.store);
  });
  const waitForState = (jobId: string, state: JobState) =>
    waitFor(`job ${jobId} to be ${state}`, async () => {
      const job = await env.store.getJob(jobId);
      return job?.state === state ? job : null;
    });

  it.skipIf(skip)('commits the writes with the job', async () => {
    const record = defineJob({
      name: 'record',
      payload: z.object({ text: z.string() }),
      perform: (ctx) => {
        ctx.transaction((tx) => notes().insert(tx, ctx.payload.text));
        ctx.transaction((tx) => notes().insert(tx, `${ctx.payload.text} again`));
        return 'recorded';
      },
    });
    const job = await env.client.enqueue(record, { text: 'hello' });
    await env.startWorker({ jobs: [record] });

    await waitForState(job.id, 'completed');
    expect(await notes().list(env.store)).toEqual(['hello', 'hello again']);
  });

  it.skipIf(skip)('runs a destructured context', async () => {
    const seen: unknown[] = [];
    const record = defineJob({
      name: 'record-destructured',
      payload: z.object({ text: z.string() }),
      perform: async ({ jobId, payload, attempt, leaseToken, previousAttempt, effect, idempotencyKey, transaction, logger, signal }) => {
        const sent = await effect('send', (key) => `sent with ${key}`);
        transaction((tx) => notes().insert(tx, payload.text));
        logger.info('destructured');
        seen.push(jobId, attempt, typeof leaseToken, previousAttempt, sent, idempotencyKey('send'), signal.aborted);
        return sent;
      },
    });
    const job = await env.client.enqueue(record, { text: 'taken apart' }, { key: 'welcome:7' });
    await env.startWorker({ jobs: [record] });

    const done = await waitForState(job.id, 'completed');
    expect(done.result).toBe('sent with welcome:7:send');
    expect(seen).toEqual([job.id, 1, 'string', null, 'sent with welcome:7:send', 'welcome:7:send', false]);
    expect(await notes().list(env.store)).toEqual(['taken apart']);
  });

  it.skipIf(skip)('spreads a context into a copy', async () => {
    const keys: string[][] = [];
    const record = defineJob({
      name: 'record-spread',
      payload: z.object({ text: z.string() }),
      perform: async (ctx) => {
        keys.push(Object.keys(ctx));
        // A handler may pass a copy with extra fields to its helpers: every member must come along.
        const copy = { ...ctx, extra: true };
        keys.push(Object.keys(copy));
        copy.transaction((tx) => notes().insert(tx, copy.payload.text));
        copy.logger.info('from the copy');
        return copy.effect('send', (key) => `${key} ${copy.signal.aborted}`);
      },
    });
    const job = await env.client.enqueue(record, { text: 'copied' });
    await env.startWorker({ jobs: [record] });

    const done = await waitForState(job.id, 'completed');
    const members = ['jobId', 'name', 'queue', 'key', 'payload', 'attempt', 'maxAttempts', 'leaseToken', 'previousAttempt'];
    const methods = ['signal', 'logger', 'effect', 'idempotencyKey', 'transaction'];
    expect(done.result).toBe(`job-${job.id}:send false`);
    expect(keys[0]).toEqual([...members, ...methods]);
    expect(keys[1]).toEqual([...members, ...methods, 'extra']);
    expect(await notes().list(env.store)).toEqual(['copied']);
  });

  it.skipIf(skip)('writes nothing when the store refuses the commit of an expired lease', async () => {
    const jobId = await enqueueOne(env.store, { leaseMs: LEASE_MS });
    const leased = await leaseOne(env.store);
    env.clock.advance(LEASE_MS + 1);

    const committed = await env.store.commit(leased.lease, {
      resultJson: 'null',
      outcome: 'succeeded',
      writes: [(tx) => notes().insert(tx, 'from the expired attempt')],
    });
    expect(committed).toBe(false);
    expect(await notes().list(env.store)).toEqual([]);
    expect((await env.store.getJob(jobId))?.state).toBe('running');
  });

  it.skipIf(skip)('rolls back the writes of an attempt that lost its lease, and commits those of the attempt that completes', async () => {
    const record = defineJob({
      name: 'record-late',
      payload: empty,
      leaseMs: LEASE_MS,
      perform: (ctx) => {
        ctx.transaction((tx) => notes().insert(tx, `attempt ${ctx.attempt}`));
        // The first attempt stalls past its lease after queuing its write, as a paused process would.
        if (ctx.attempt === 1) env.clock.advance(LEASE_MS + 1);
        return ctx.attempt;
      },
    });
    const job = await env.client.enqueue(record, {});
    const { events } = await env.startWorker({ jobs: [record] });

    const done = await waitForState(job.id, 'completed');
    expect(done).toMatchObject({ attempt: 2, result: 2 });
    expect(await notes().list(env.store)).toEqual(['attempt 2']);
    expect(events.of('lease:lost')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 1 })]);
    expect(events.of('job:completed')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 2 })]);
  });

  it.skipIf(skip)('rolls back every write and does not complete the job when one write throws', async () => {
    const broken = defineJob({
      name: 'broken-write',
      payload: empty,
      retry: { maxAttempts: 2, baseMs: 100, jitter: 0 },
      perform: (ctx) => {
        ctx.transaction((tx) => notes().insert(tx, `first write of attempt ${ctx.attempt}`));
        ctx.transaction(() => {
          if (ctx.attempt === 1) throw new Error('constraint violated');
        });
      },
    });
    const job = await env.client.enqueue(broken, {});
    await env.startWorker({ jobs: [broken] });

    const retryable = await waitForState(job.id, 'retryable');
    expect(retryable.lastError).toMatch(/constraint violated/);
    expect(await notes().list(env.store)).toEqual([]);

    env.clock.advance(100);
    await waitForState(job.id, 'completed');
    expect(await notes().list(env.store)).toEqual(['first write of attempt 2']);
  });

  it.skipIf(skip)('does not commit the writes of an attempt that errors after queuing them', async () => {
    const failing = defineJob({
      name: 'failing-after-write',
      payload: empty,
      retry: { maxAttempts: 1 },
      perform: (ctx): void => {
        ctx.transaction((tx) => notes().insert(tx, 'should not exist'));
        throw new Error('perform failed after queuing a write');
      },
    });
    const job = await env.client.enqueue(failing, {});
    await env.startWorker({ jobs: [failing] });

    await waitForState(job.id, 'failed');
    expect(await notes().list(env.store)).toEqual([]);
  });

  it.skipIf(skip)('does not commit the writes of an attempt whose verify does not confirm', async () => {
    const unverified = defineJob({
      name: 'unverified-write',
      payload: empty,
      retry: { maxAttempts: 1 },
      perform: (ctx) => {
        ctx.transaction((tx) => notes().insert(tx, 'unverified'));
      },
      verify: () => false,
    });
    const job = await env.client.enqueue(unverified, {});
    await env.startWorker({ jobs: [unverified] });

    await waitForState(job.id, 'failed');
    expect(await notes().list(env.store)).toEqual([]);
  });
});
