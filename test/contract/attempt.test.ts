import { expect, it } from 'vitest';
import { z } from 'zod';
import { AttemptTimeoutError, PermanentError } from '../../src/core/errors.js';
import { defineJob } from '../../src/core/job-definition.js';
import type { JobState } from '../../src/core/states.js';
import { describeEachStore } from '../support/contract.js';
import { capturingLogger, LEVEL } from '../support/logs.js';
import { withFailingOutcomeWrites } from '../support/store-hooks.js';
import { sleep, waitFor } from '../support/wait.js';

const empty = z.object({});

describeEachStore('the attempt', (env) => {
  // The store can show the new state a moment before the worker has emitted the attempt's events, so the wait
  // also lasts until the worker holds no lease.
  const waitForState = (jobId: string, state: JobState, attempt?: number) =>
    waitFor(`job ${jobId} to be ${state}${attempt ? ` after attempt ${attempt}` : ''}`, async () => {
      const job = await env.store.getJob(jobId);
      return job?.state === state && (attempt === undefined || job.attempt === attempt) && env.workersIdle ? job : null;
    });

  it('completes a job whose perform returns, storing its result and closing the attempt as succeeded', async () => {
    const add = defineJob({
      name: 'add',
      payload: z.object({ a: z.number(), b: z.number() }),
      perform: (ctx) => ctx.payload.a + ctx.payload.b,
    });
    const job = await env.client.enqueue(add, { a: 2, b: 3 });
    const { events } = await env.startWorker({ jobs: [add] });

    const done = await waitForState(job.id, 'completed');
    expect(done).toMatchObject({ result: 5, attempt: 1, finishedAt: env.clock.now(), leaseToken: null, lastError: null });
    expect(await env.store.listAttempts(job.id)).toEqual([expect.objectContaining({ attempt: 1, outcome: 'succeeded', error: null })]);
    expect(events.of('job:completed')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 1 })]);
  });

  it('retries with exponential backoff: retryAt doubles, the job is not leased early, and the last attempt fails it', async () => {
    const flaky = defineJob({
      name: 'flaky',
      payload: empty,
      retry: { maxAttempts: 3, baseMs: 1000, jitter: 0 },
      perform: (): void => {
        throw new Error('smtp down');
      },
    });
    const job = await env.client.enqueue(flaky, {});
    const { logger, lines } = capturingLogger();
    const { events } = await env.startWorker({ jobs: [flaky], logger });

    const first = await waitForState(job.id, 'retryable', 1);
    expect(first.runAt).toBe(env.clock.now() + 1000);
    expect(first.lastError).toBe('Error: smtp down');

    env.clock.advance(999);
    await sleep(100);
    expect(await env.store.getJob(job.id)).toMatchObject({ state: 'retryable', attempt: 1 });

    env.clock.advance(1);
    const second = await waitForState(job.id, 'retryable', 2);
    expect(second.runAt).toBe(env.clock.now() + 2000);

    env.clock.advance(2000);
    const failed = await waitForState(job.id, 'failed', 3);
    expect(failed.lastError).toMatch(/smtp down/);
    expect(failed.lastError).toMatch(/attempt 3 of 3/);
    expect(failed.finishedAt).toBe(env.clock.now());

    expect((await env.store.listAttempts(job.id)).map((attempt) => attempt.outcome)).toEqual(['errored', 'errored', 'errored']);
    expect(events.of('job:retry').map((event) => [event.attempt, event.retryAt - first.runAt])).toEqual([
      [1, 0],
      [2, second.runAt - first.runAt],
    ]);
    expect(events.of('job:failed')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 3 })]);
    const failureLines = lines.filter((line) => line.msg === 'job failed');
    expect(failureLines).toEqual([expect.objectContaining({ jobId: job.id, attempt: 3, because: 'no attempts left', maxAttempts: 3 })]);
  });

  it('fails a job at once on PermanentError', async () => {
    const charge = defineJob({
      name: 'charge',
      payload: empty,
      retry: { maxAttempts: 5 },
      perform: (): void => {
        throw new PermanentError('card declined');
      },
    });
    const job = await env.client.enqueue(charge, {});
    const { logger, lines } = capturingLogger();
    const { events } = await env.startWorker({ jobs: [charge], logger });

    const failed = await waitForState(job.id, 'failed');
    expect(failed).toMatchObject({ attempt: 1, lastError: 'PermanentError: card declined' });
    expect(events.of('job:retry')).toEqual([]);
    expect(events.of('job:failed')).toEqual([expect.objectContaining({ jobId: job.id, error: 'PermanentError: card declined' })]);
    // The log line gives the cause, not the attempt limit of 5 that was never reached.
    const failureLines = lines.filter((line) => line.msg === 'job failed');
    expect(failureLines).toEqual([expect.objectContaining({ jobId: job.id, attempt: 1, because: 'permanent error' })]);
    expect(failureLines[0]).not.toHaveProperty('maxAttempts');
  });

  it.each([
    ['null', () => null, /non-Error value: null/],
    ['a string', () => 'disk full', /non-Error value: "disk full"/],
    ['an object with a throwing getter', () => objectWithThrowingGetter(), /non-Error value: an unprintable object/],
    ['an Error whose message getter throws', () => errorWithThrowingMessage(), /could not be read/],
    ['undefined', () => undefined, /non-Error value: undefined/],
  ])('leaves a readable lastError when the handler throws %s', async (_label, make, expected) => {
    const thrower = defineJob({
      name: 'thrower',
      payload: empty,
      retry: { maxAttempts: 1 },
      perform: (): void => {
        throw make();
      },
    });
    const job = await env.client.enqueue(thrower, {});
    await env.startWorker({ jobs: [thrower] });

    const failed = await waitForState(job.id, 'failed');
    expect(failed.lastError).toMatch(expected);
    expect(failed.lastError).not.toMatch(/\[object Object\]/);
    expect((await env.store.listAttempts(job.id))[0]?.error).toMatch(expected);
  });

  it('errors an attempt that runs past timeoutMs with "timed out" and aborts its signal', async () => {
    const reasons: unknown[] = [];
    const slow = defineJob({
      name: 'slow',
      payload: empty,
      timeoutMs: 50,
      retry: { maxAttempts: 2, baseMs: 1000, jitter: 0 },
      perform: (ctx) =>
        new Promise<void>((resolve) => {
          ctx.signal.addEventListener('abort', () => reasons.push(ctx.signal.reason));
          if (ctx.attempt === 2) resolve();
        }),
    });
    const job = await env.client.enqueue(slow, {});
    await env.startWorker({ jobs: [slow] });

    const retryable = await waitForState(job.id, 'retryable', 1);
    expect(retryable.lastError).toMatch(/timed out after 50 ms/);
    expect((await env.store.listAttempts(job.id))[0]).toMatchObject({ outcome: 'errored', error: expect.stringMatching(/timed out/) });
    expect(reasons).toEqual([expect.any(AttemptTimeoutError)]);

    env.clock.advance(1000);
    await waitForState(job.id, 'completed', 2);
  });

  it('frees the slot of a handler that never settles, and gives its job a clear state', async () => {
    const hang = defineJob({
      name: 'hang',
      payload: empty,
      timeoutMs: 50,
      retry: { maxAttempts: 1 },
      perform: () => new Promise(() => {}),
    });
    const quick = defineJob({ name: 'quick', payload: empty, perform: () => 'ok' });
    const hung = await env.client.enqueue(hang, {});
    const next = await env.client.enqueue(quick, {});
    const { worker } = await env.startWorker({ jobs: [hang, quick], concurrency: 1 });

    const failed = await waitForState(hung.id, 'failed');
    expect(failed.lastError).toMatch(/timed out/);
    await waitForState(next.id, 'completed');
    expect(worker.activeCount).toBe(0);
  });

  it('fails a job whose name no worker knows after its attempts, with a reason naming the job', async () => {
    const ghost = defineJob({ name: 'ghost-job', payload: empty, retry: { maxAttempts: 2 }, perform: () => null });
    const known = defineJob({ name: 'known-job', payload: empty, perform: () => null });
    const job = await env.client.enqueue(ghost, {});
    const { events } = await env.startWorker({ jobs: [known] });

    const retryable = await waitForState(job.id, 'retryable', 1);
    expect(retryable.lastError).toMatch(/"ghost-job"/);
    env.clock.advance(retryable.runAt - env.clock.now());

    const failed = await waitForState(job.id, 'failed', 2);
    expect(failed.lastError).toMatch(/no job definition named "ghost-job"/);
    expect(failed.lastError).toMatch(/attempt 2 of 2/);
    expect(events.of('job:failed')).toEqual([expect.objectContaining({ jobId: job.id, name: 'ghost-job' })]);
  });

  it('retries, and never commits, an attempt whose verify returns false', async () => {
    let performs = 0;
    const unverified = defineJob({
      name: 'unverified',
      payload: empty,
      retry: { maxAttempts: 2, baseMs: 100, jitter: 0 },
      perform: () => {
        performs += 1;
        return { sent: true };
      },
      verify: () => false,
    });
    const job = await env.client.enqueue(unverified, {});
    const { events } = await env.startWorker({ jobs: [unverified] });

    const retryable = await waitForState(job.id, 'retryable', 1);
    expect(retryable.lastError).toMatch(/verify did not confirm/);
    expect(retryable.result).toBeNull();
    env.clock.advance(100);

    const failed = await waitForState(job.id, 'failed', 2);
    expect(failed.result).toBeNull();
    expect(failed.finishedAt).not.toBeNull();
    expect(performs).toBe(2);
    expect((await env.store.listAttempts(job.id)).map((attempt) => attempt.outcome)).toEqual(['errored', 'errored']);
    expect(events.of('job:completed')).toEqual([]);
  });

  it('commits as verified once verify confirms on a later attempt', async () => {
    const checks: boolean[] = [];
    const eventual = defineJob({
      name: 'eventual',
      payload: empty,
      retry: { maxAttempts: 3, baseMs: 100, jitter: 0 },
      perform: (ctx) => ({ attempt: ctx.attempt }),
      verify: (_ctx, result) => {
        const confirmed = result.attempt >= 2;
        checks.push(confirmed);
        return confirmed;
      },
    });
    const job = await env.client.enqueue(eventual, {});
    await env.startWorker({ jobs: [eventual] });

    await waitForState(job.id, 'retryable', 1);
    env.clock.advance(100);
    const done = await waitForState(job.id, 'completed', 2);
    expect(done.result).toEqual({ attempt: 2 });
    expect(checks).toEqual([false, true]);
    expect((await env.store.listAttempts(job.id)).map((attempt) => attempt.outcome)).toEqual(['errored', 'verified']);
  });

  it('fails at once a stored payload that the job schema now rejects', async () => {
    const v1 = defineJob({ name: 'evolving', payload: z.object({ id: z.number() }), retry: { maxAttempts: 5 }, perform: () => null });
    const v2 = defineJob({ name: 'evolving', payload: z.object({ id: z.string() }), retry: { maxAttempts: 5 }, perform: () => null });
    const job = await env.client.enqueue(v1, { id: 7 });
    const { logger, lines } = capturingLogger();
    const { events } = await env.startWorker({ jobs: [v2], logger });

    const failed = await waitForState(job.id, 'failed', 1);
    expect(failed.lastError).toMatch(/invalid payload for job "evolving": id/);
    expect(events.of('payload:rejected')).toEqual([expect.objectContaining({ jobId: job.id })]);
    const failureLines = lines.filter((line) => line.msg === 'job failed');
    expect(failureLines).toEqual([expect.objectContaining({ jobId: job.id, because: 'invalid payload' })]);
  });

  it('fails at once a Date result', async () => {
    const stamp = defineJob({ name: 'stamp', payload: empty, retry: { maxAttempts: 5 }, perform: () => ({ at: new Date(0) }) });
    const job = await env.client.enqueue(stamp, {});
    const { logger, lines } = capturingLogger();
    await env.startWorker({ jobs: [stamp], logger });

    const failed = await waitForState(job.id, 'failed', 1);
    expect(failed.lastError).toMatch(/at is a Date/);
    // The caller reads a job's result, so the advice names the caller, not the handler.
    expect(failed.lastError).toMatch(/parse it in the code that reads the job's result/);
    const failureLines = lines.filter((line) => line.msg === 'job failed');
    expect(failureLines).toEqual([expect.objectContaining({ jobId: job.id, because: 'invalid result' })]);
  });

  it('reports an unwritten outcome loudly', async () => {
    // A hook stands for the failing store: neither real store can be made to fail its writes on cue
    // while its reads go on working.
    const storeError = new Error('disk I/O error');
    const performed: number[] = [];
    const job = defineJob({
      name: 'unrecorded',
      payload: z.object({ n: z.number() }),
      perform: (ctx) => {
        performed.push(ctx.payload.n);
        return null;
      },
    });
    const first = await env.client.enqueue(job, { n: 1 });
    await env.client.enqueue(job, { n: 2 });
    const { logger, lines } = capturingLogger();
    const { worker, events } = await env.startWorker({
      jobs: [job],
      concurrency: 1,
      store: withFailingOutcomeWrites(env.store, storeError),
      logger,
    });

    // With one slot, the second job runs only if the first attempt gave its slot back.
    await waitFor('both jobs to be performed and their leases dropped', async () => performed.length === 2 && worker.activeCount === 0);
    expect(performed).toEqual([1, 2]);

    const errors = events.of('worker:error');
    expect(errors.map((event) => event.loop)).toEqual(['commit', 'commit']);
    expect(errors[0]?.error).toBe(storeError);
    const logged = lines.filter((line) => line.level === LEVEL.error && line.jobId === first.id);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ attempt: 1, msg: expect.stringContaining('could not record the outcome') });
    expect(logged[0]?.leaseToken).toEqual(expect.any(String));
    expect(events.of('job:completed')).toEqual([]);

    // Nothing was written: the job stays running until its lease expires and the sweep recovers it.
    expect((await env.store.getJob(first.id))?.state).toBe('running');
  });
});

function objectWithThrowingGetter(): object {
  return {
    get detail(): string {
      throw new Error('getter exploded');
    },
  };
}

function errorWithThrowingMessage(): Error {
  const error = new Error('hidden');
  Object.defineProperty(error, 'message', {
    get() {
      throw new Error('message getter exploded');
    },
  });
  return error;
}
