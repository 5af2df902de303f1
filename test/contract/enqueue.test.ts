import * as v from 'valibot';
import { expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigurationError, InvalidPayloadError } from '../../src/core/errors.js';
import { defineJob } from '../../src/core/job-definition.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../../src/core/payload.js';
import { describeEachStore } from '../support/contract.js';
import { countJobs, leaseOne } from '../support/jobs.js';
import { waitFor } from '../support/wait.js';

const welcome = defineJob({
  name: 'welcome-email',
  payload: z.object({ user: z.object({ email: z.email(), name: z.string().trim().min(1) }) }),
  perform: () => 'sent',
});

const receipt = defineJob({
  name: 'receipt-email',
  payload: v.object({ order: v.object({ id: v.pipe(v.string(), v.trim(), v.minLength(3)), total: v.number() }) }),
  perform: () => 'sent',
});

const anything = defineJob({ name: 'anything', payload: z.any(), perform: () => null });

describeEachStore('enqueue', (env) => {
  it('stores one job as available, due now, with its validated payload and definition settings', async () => {
    const job = await env.client.enqueue(welcome, { user: { email: 'ada@example.com', name: '  Ada ' } });

    expect(job).toMatchObject({ name: 'welcome-email', queue: 'default', key: null, state: 'available', duplicate: false });
    const stored = await env.store.getJob(job.id);
    expect(stored).toMatchObject({
      id: job.id,
      name: 'welcome-email',
      queue: 'default',
      state: 'available',
      attempt: 0,
      runAt: env.clock.now(),
      createdAt: env.clock.now(),
      // The schema's output (here trimmed) is what is stored.
      payload: { user: { email: 'ada@example.com', name: 'Ada' } },
      result: null,
      lastError: null,
      leaseToken: null,
    });
  });

  it('stores a bulk enqueue in order and returns one outcome per item', async () => {
    const jobs = await env.client.enqueueMany(welcome, [
      { payload: { user: { email: 'a@example.com', name: 'A' } } },
      { payload: { user: { email: 'b@example.com', name: 'B' } }, priority: 3 },
      { payload: { user: { email: 'c@example.com', name: 'C' } }, queue: 'bulk' },
    ]);

    expect(jobs.map((job) => job.duplicate)).toEqual([false, false, false]);
    const stored = await Promise.all(jobs.map((job) => env.store.getJob(job.id)));
    expect(stored.map((job) => (job!.payload as { user: { name: string } }).user.name)).toEqual(['A', 'B', 'C']);
    expect(stored.map((job) => [job?.priority, job?.queue])).toEqual([
      [0, 'default'],
      [3, 'default'],
      [0, 'bulk'],
    ]);
  });

  it('stores nothing from a bulk enqueue with one invalid item, and the error names its index', async () => {
    const items = [
      { payload: { user: { email: 'a@example.com', name: 'A' } } },
      { payload: { user: { email: 'b@example.com', name: 'B' } } },
      { payload: { user: { email: 'not-an-address', name: 'C' } } },
      { payload: { user: { email: 'd@example.com', name: 'D' } } },
    ];
    const error = await env.client.enqueueMany(welcome, items).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as Error).message).toMatch(/item 2 of 4/);
    expect((error as Error).message).toMatch(/user\.email/);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('stores nothing from a bulk enqueue whose last item cannot be stored as JSON', async () => {
    const error = await env.client
      .enqueueMany(anything, [{ payload: { n: 1 } }, { payload: { n: 2 } }, { payload: { n: 10n } }])
      .catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as Error).message).toMatch(/item 2 of 3/);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('schedules a job with delayMs and does not lease it before it is due', async () => {
    const job = await env.client.enqueue(welcome, { user: { email: 'a@example.com', name: 'A' } }, { delayMs: 60_000 });
    expect(job.state).toBe('scheduled');
    expect((await env.store.getJob(job.id))?.runAt).toBe(env.clock.now() + 60_000);

    env.clock.advance(59_999);
    expect(await env.store.lease({ queue: 'default', limit: 10, workerId: 'w' })).toEqual([]);
    env.clock.advance(1);
    const leased = await leaseOne(env.store);
    expect(leased.job.id).toBe(job.id);
  });

  it('schedules a job with runAt as a Date or as epoch milliseconds, and runs a past runAt at once', async () => {
    const inFive = await env.client.enqueue(
      welcome,
      { user: { email: 'a@example.com', name: 'A' } },
      { runAt: new Date(env.clock.now() + 5000) },
    );
    const inTen = await env.client.enqueue(welcome, { user: { email: 'b@example.com', name: 'B' } }, { runAt: env.clock.now() + 10_000 });
    const past = await env.client.enqueue(welcome, { user: { email: 'c@example.com', name: 'C' } }, { runAt: env.clock.now() - 1000 });
    expect([inFive.state, inTen.state, past.state]).toEqual(['scheduled', 'scheduled', 'available']);

    expect((await leaseOne(env.store)).job.id).toBe(past.id);
    expect(await env.store.lease({ queue: 'default', limit: 10, workerId: 'w' })).toEqual([]);
    env.clock.advance(5000);
    expect((await leaseOne(env.store)).job.id).toBe(inFive.id);
    env.clock.advance(5000);
    expect((await leaseOne(env.store)).job.id).toBe(inTen.id);
  });

  it('rejects runAt together with delayMs, and a runAt that is not a time', async () => {
    const payload = { user: { email: 'a@example.com', name: 'A' } };
    await expect(env.client.enqueue(welcome, payload, { runAt: env.clock.now(), delayMs: 5 })).rejects.toThrow(ConfigurationError);
    await expect(env.client.enqueue(welcome, payload, { runAt: new Date('not a date') })).rejects.toThrow(/runAt/);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('leases by priority, lower first, then in enqueue order', async () => {
    const payload = (name: string) => ({ user: { email: `${name}@example.com`, name } });
    const b = await env.client.enqueue(welcome, payload('b'), { priority: 5 });
    const a1 = await env.client.enqueue(welcome, payload('a1'), { priority: 0 });
    const c = await env.client.enqueue(welcome, payload('c'), { priority: 10 });
    const a2 = await env.client.enqueue(welcome, payload('a2'), { priority: 0 });
    const urgent = await env.client.enqueue(welcome, payload('urgent'), { priority: -1 });

    const firstBatch = await env.store.lease({ queue: 'default', limit: 3, workerId: 'w' });
    expect(firstBatch.map((leased) => leased.job.id)).toEqual([urgent.id, a1.id, a2.id]);
    const rest = [(await leaseOne(env.store)).job.id, (await leaseOne(env.store)).job.id];
    expect(rest).toEqual([b.id, c.id]);
  });

  it('keeps queues apart: a lease on one queue never returns another queue’s job', async () => {
    const payload = { user: { email: 'a@example.com', name: 'A' } };
    const email = await env.client.enqueue(welcome, payload, { queue: 'emails' });
    const report = await env.client.enqueue(welcome, payload, { queue: 'reports' });

    expect(await env.store.lease({ queue: 'default', limit: 10, workerId: 'w' })).toEqual([]);
    const leased = await env.store.lease({ queue: 'reports', limit: 10, workerId: 'w' });
    expect(leased.map((entry) => entry.job.id)).toEqual([report.id]);
    expect((await env.store.getJob(email.id))?.state).toBe('available');
  });

  it('keeps queues apart for workers: a worker runs only the queues it was given', async () => {
    const ran: string[] = [];
    const emails = defineJob({ name: 'emails-job', queue: 'emails', payload: z.object({}), perform: (ctx) => void ran.push(ctx.jobId) });
    const reports = defineJob({ name: 'reports-job', queue: 'reports', payload: z.object({}), perform: (ctx) => void ran.push(ctx.jobId) });
    const report = await env.client.enqueue(reports, {});
    const email = await env.client.enqueue(emails, {});

    await env.startWorker({ jobs: [emails] });
    await waitFor('the emails job to complete', async () => (await env.store.getJob(email.id))?.state === 'completed');
    expect(ran).toEqual([email.id]);
    expect((await env.store.getJob(report.id))?.state).toBe('available');
  });

  it('validates payloads with a zod schema: an invalid payload names the job and the field, and nothing is stored', async () => {
    const error = await env.client.enqueue(welcome, { user: { email: 'nope', name: 'A' } }).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as InvalidPayloadError).jobName).toBe('welcome-email');
    expect((error as Error).message).toMatch(/"welcome-email"/);
    expect((error as Error).message).toMatch(/user\.email/);
    expect((error as InvalidPayloadError).issues.map((issue) => issue.path)).toEqual(['user.email']);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('names the job of a throwing schema', async () => {
    const exploding = defineJob({
      name: 'exploding-schema',
      payload: {
        '~standard': {
          version: 1,
          vendor: 'test',
          validate: (): never => {
            throw new Error('schema exploded');
          },
        },
      },
      perform: () => null,
    });

    const error = await env.client.enqueue(exploding, {}).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as InvalidPayloadError).jobName).toBe('exploding-schema');
    expect((error as Error).message).toBe('payload schema of job "exploding-schema" threw: Error: schema exploded');
    expect(await countJobs(env.store)).toBe(0);
  });

  it('validates payloads with a valibot schema: the parsed output is stored, an invalid payload names the job and field', async () => {
    const job = await env.client.enqueue(receipt, { order: { id: ' ord-1 ', total: 12.5 } });
    expect((await env.store.getJob(job.id))?.payload).toEqual({ order: { id: 'ord-1', total: 12.5 } });

    const error = await env.client.enqueue(receipt, { order: { id: 'x', total: 1 } }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as Error).message).toMatch(/"receipt-email"/);
    expect((error as Error).message).toMatch(/order\.id/);

    const missing = await env.client.enqueue(receipt, { order: { id: 'ord-2' } } as never).catch((thrown: unknown) => thrown);
    expect((missing as Error).message).toMatch(/order\.total/);
    expect(await countJobs(env.store)).toBe(1);
  });

  it.each([
    ['a BigInt', { amount: 10n }, /amount is a BigInt/, /as a string.*BigInt\(\)/],
    ['a cycle', cyclic(), /self.*refers back to itself/, /without the back reference/],
    ['a function', { callback: () => 1 }, /callback is a function/, /Convert it to/],
    ['undefined inside an array', { list: [1, undefined, 3] }, /list\[1\] is undefined/, /Convert it to/],
    ['a non-finite number', { ratio: Number.NaN }, /ratio is NaN/, /pass null/],
  ])('rejects a payload with %s, naming where, and stores nothing', async (_label, payload, where, fix) => {
    const error = await env.client.enqueue(anything, payload).catch((thrown: unknown) => thrown);

    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as Error).message).toMatch(/"anything"/);
    expect((error as Error).message).toMatch(where);
    expect((error as Error).message).toMatch(fix);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('rejects a job name in place of a definition', async () => {
    const error = await env.client.enqueue('anything' as never, {}).catch((thrown: unknown) => thrown);

    expect((error as Error).message).toMatch(/got the string "anything"/);
    expect((error as Error).message).toMatch(/not its name/);
    expect(await countJobs(env.store)).toBe(0);
  });

  it('rejects a payload over maxPayloadBytes with an error naming the limit, and stores nothing', async () => {
    const small = env.newClient({ maxPayloadBytes: 1024 });
    const error = await small.enqueue(anything, { text: 'x'.repeat(2000) }).catch((thrown: unknown) => thrown);
    expect(error).toBeInstanceOf(InvalidPayloadError);
    expect((error as Error).message).toMatch(/over the limit of 1024 bytes/);

    const huge = await env.client.enqueue(anything, { text: 'x'.repeat(2 * 1024 * 1024) }).catch((thrown: unknown) => thrown);
    expect((huge as Error).message).toMatch(new RegExp(`over the limit of ${DEFAULT_MAX_PAYLOAD_BYTES} bytes`));
    expect(await countJobs(env.store)).toBe(0);

    // Right at the limit is accepted.
    const exact = JSON.stringify({ text: '' }).length;
    await small.enqueue(anything, { text: 'y'.repeat(1024 - exact) });
    expect(await countJobs(env.store)).toBe(1);
  });

  it('client cancels waiting jobs only', async () => {
    const later = await env.client.enqueue(anything, { n: 1 }, { delayMs: 60_000 });
    const running = await env.client.enqueue(anything, { n: 2 });
    const available = await env.client.enqueue(anything, { n: 3 });
    // The lease takes the first due job, which is then running and cannot be cancelled.
    const leased = await leaseOne(env.store);
    expect(leased.job.id).toBe(running.id);

    expect(await env.client.cancel(later.id)).toBe(true);
    expect(await env.client.cancel(available.id)).toBe(true);
    expect(await env.client.cancel(running.id)).toBe(false);
    expect(await env.client.cancel(later.id)).toBe(false);
    expect(await env.client.cancel('987654321')).toBe(false);

    expect((await env.store.getJob(later.id))?.state).toBe('cancelled');
    expect((await env.store.getJob(available.id))?.state).toBe('cancelled');
    expect((await env.store.getJob(running.id))?.state).toBe('running');
    await expect(env.client.cancel(42 as never)).rejects.toThrow(
      "cancel needs the id of a job as a string, such as enqueue's job.id; got 42.",
    );
    await expect(env.client.cancel('')).rejects.toThrow(ConfigurationError);
  });
});

function cyclic(): unknown {
  const node: { name: string; self?: unknown } = { name: 'loop' };
  node.self = node;
  return node;
}
