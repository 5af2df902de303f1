import { expect, it } from 'vitest';
import { z } from 'zod';
import { formatAudit, runAudit } from '../../src/audit/audit.js';
import { idempotencyKeyFor } from '../../src/core/job-context.js';
import { defineJob } from '../../src/core/job-definition.js';
import type { JobState } from '../../src/core/states.js';
import { runCli } from '../support/cli.js';
import { describeEachStore } from '../support/contract.js';
import { COMPLETION, enqueueOne, leaseOne } from '../support/jobs.js';
import { capturingLogger, LEVEL, type LogLine } from '../support/logs.js';
import { waitFor } from '../support/wait.js';

const LEASE_MS = 5000;
const empty = z.object({});

describeEachStore('events and logs', (env) => {
  const waitForState = (jobId: string, state: JobState) =>
    waitFor(`job ${jobId} to be ${state}`, async () => {
      const job = await env.store.getJob(jobId);
      return job?.state === state ? job : null;
    });
  const logsFor = (lines: LogLine[], jobId: string, msg: RegExp) => lines.filter((line) => line.jobId === jobId && msg.test(line.msg));

  it('emits and logs every retry and the dead job at the end', async () => {
    const failing = defineJob({
      name: 'failing',
      payload: empty,
      retry: { maxAttempts: 2, baseMs: 100, jitter: 0 },
      perform: (): void => {
        throw new Error('upstream 503');
      },
    });
    const { logger, lines } = capturingLogger();
    const job = await env.client.enqueue(failing, {});
    const { events } = await env.startWorker({ jobs: [failing], logger });

    await waitForState(job.id, 'retryable');
    env.clock.advance(100);
    await waitForState(job.id, 'failed');
    // Other connections read an outcome before it is flushed, and its event fires after the flush. Outcomes are
    // flushed in order, so once the failure's event fired, the retry's has too.
    await waitFor('the job:failed event', () => events.of('job:failed').length > 0 || null);

    expect(events.of('job:retry')).toEqual([
      expect.objectContaining({ jobId: job.id, name: 'failing', attempt: 1, error: 'Error: upstream 503', retryAt: expect.any(Number) }),
    ]);
    expect(events.of('job:failed')).toEqual([
      expect.objectContaining({ jobId: job.id, attempt: 2, error: expect.stringMatching(/upstream 503.*attempt 2 of 2/) }),
    ]);
    expect(logsFor(lines, job.id, /will retry/)).toEqual([expect.objectContaining({ level: LEVEL.warn, attempt: 1 })]);
    expect(logsFor(lines, job.id, /^job failed/)).toEqual([expect.objectContaining({ level: LEVEL.error, attempt: 2 })]);
  });

  it('emits and logs an abandoned attempt, and a dead job when the abandoned attempt was the last', async () => {
    const jobs = [await enqueueOne(env.store, { leaseMs: LEASE_MS }), await enqueueOne(env.store, { leaseMs: LEASE_MS, maxAttempts: 1 })];
    await env.store.lease({ queue: 'default', limit: 2, workerId: 'dead-worker' });
    env.clock.advance(LEASE_MS);
    const { logger, lines } = capturingLogger();
    const { events } = await env.startWorker({ jobs: [defineJob({ name: 'other', payload: empty, perform: () => null })], logger });

    await waitFor('both abandoned attempts to be reported', () => events.of('attempt:abandoned').length === 2);
    expect(events.of('attempt:abandoned')).toEqual([
      expect.objectContaining({ jobId: jobs[0], workerId: 'dead-worker', attempt: 1, state: 'available' }),
      expect.objectContaining({ jobId: jobs[1], workerId: 'dead-worker', attempt: 1, state: 'failed' }),
    ]);
    expect(events.of('job:failed')).toEqual([expect.objectContaining({ jobId: jobs[1], error: 'abandoned on its last attempt' })]);
    for (const jobId of jobs) {
      expect(logsFor(lines, jobId, /attempt abandoned/)).toEqual([
        expect.objectContaining({ level: LEVEL.warn, abandonedBy: 'dead-worker' }),
      ]);
    }
    expect(logsFor(lines, jobs[1]!, /job failed/)).toEqual([expect.objectContaining({ level: LEVEL.error })]);
  });

  it('emits and logs a lost lease', async () => {
    const stalling = defineJob({
      name: 'stalling',
      payload: empty,
      leaseMs: LEASE_MS,
      perform: (ctx) => {
        if (ctx.attempt === 1) env.clock.advance(LEASE_MS + 1);
      },
    });
    const { logger, lines } = capturingLogger();
    const job = await env.client.enqueue(stalling, {});
    const { events } = await env.startWorker({ jobs: [stalling], logger });

    await waitForState(job.id, 'completed');
    expect(events.of('lease:lost')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 1, reason: expect.any(String) })]);
    expect(logsFor(lines, job.id, /lease lost/)).toEqual([expect.objectContaining({ level: LEVEL.error, attempt: 1 })]);
    expect(events.of('job:completed')).toEqual([expect.objectContaining({ jobId: job.id, attempt: 2 })]);
  });

  it('emits and logs an in-doubt effect', async () => {
    const send = defineJob({
      name: 'send',
      payload: empty,
      leaseMs: LEASE_MS,
      perform: async (ctx) => ctx.effect('email', () => 'sent'),
    });
    const job = await env.client.enqueue(send, {});
    const dead = await leaseOne(env.store, { workerId: 'dead-worker' });
    await env.store.recordEffectIntent(dead.lease, { name: 'email', idempotencyKey: idempotencyKeyFor(null, job.id, 'email') });
    env.clock.advance(LEASE_MS);
    const { logger, lines } = capturingLogger();
    const { events } = await env.startWorker({ jobs: [send], logger });

    await waitForState(job.id, 'completed');
    expect(events.of('effect:in-doubt')).toEqual([expect.objectContaining({ jobId: job.id, effect: 'email', settledBy: 'rerun' })]);
    expect(logsFor(lines, job.id, /in-doubt effect/)).toEqual([expect.objectContaining({ level: LEVEL.warn, effect: 'email' })]);
  });
});

describeEachStore('audit', (env) => {
  /** One job of each kind the audit lists: overdue, in doubt, recovered (swept and lost) and dead, beside a completed one. */
  async function seedFindings() {
    const completed = await enqueueOne(env.store);
    await env.store.commit((await leaseOne(env.store)).lease, COMPLETION);
    const dead = await enqueueOne(env.store, { name: 'dead-job' });
    await env.store.fail((await leaseOne(env.store)).lease, { error: 'PermanentError: rejected', retryAt: null });
    const inDoubt = await enqueueOne(env.store, { name: 'in-doubt-job', leaseMs: LEASE_MS });
    const dying = await leaseOne(env.store, { workerId: 'dead-worker' });
    await env.store.recordEffectIntent(dying.lease, { name: 'charge', idempotencyKey: 'in-doubt-job:charge' });
    const lost = await enqueueOne(env.store, { name: 'lost-job', leaseMs: LEASE_MS });
    await env.store.abandonLease((await leaseOne(env.store, { workerId: 'stalled-worker' })).lease, 'heartbeat refused');
    const overdue = await enqueueOne(env.store, { name: 'overdue-job' });

    env.clock.advance(2 * 60_000);
    await env.store.sweep();
    return { completed, dead, inDoubt, lost, overdue };
  }

  it('passes on a store where everything completed', async () => {
    await enqueueOne(env.store);
    await env.store.commit((await leaseOne(env.store)).lease, COMPLETION);
    const report = await runAudit(env.store);
    const none = { count: 0, more: false };
    expect(report).toEqual({
      findings: { overdue: [], inDoubt: [], recovered: [], dead: [] },
      totals: { overdue: none, inDoubt: none, recovered: none, dead: none },
      breaches: [],
      passed: true,
    });
  });

  it('rejects thresholds that are not counts', async () => {
    await expect(runAudit(env.store, { maxDead: Number.NaN })).rejects.toThrow(
      'audit option maxDead must be a whole number of 0 or more; got NaN.',
    );
    await expect(runAudit(env.store, { limit: 2.5 })).rejects.toThrow(/option limit .* got 2\.5/);
    await expect(runAudit(env.store, { windowMs: -1 })).rejects.toThrow(
      /option windowMs must be a number of milliseconds, 0 or more; got -1/,
    );
  });

  it('counts past its listing limit', async () => {
    for (let index = 0; index < 5; index += 1) {
      await enqueueOne(env.store, { name: 'dead-job' });
      await env.store.fail((await leaseOne(env.store)).lease, { error: 'PermanentError: rejected', retryAt: null });
    }

    // Five dead jobs, two listed: the count and the threshold still see all five.
    const within = await runAudit(env.store, { limit: 2, maxDead: 5 });
    expect(within.findings.dead).toHaveLength(2);
    expect(within.totals.dead).toEqual({ count: 5, more: false });
    expect(within.passed).toBe(true);
    expect(formatAudit(within)).toContain('dead:      5 (2 listed)');

    // A threshold below the total reads only enough rows to be exceeded, and the count is marked as a lower bound.
    const over = await runAudit(env.store, { limit: 2, maxDead: 3 });
    expect(over.totals.dead).toEqual({ count: 4, more: true });
    expect(over.breaches).toEqual(['dead: over 4 > 3']);
    expect(formatAudit(over)).toContain('dead:      over 4 (2 listed)');

    const strict = await runAudit(env.store, { limit: 2, maxDead: 1 });
    expect(strict.totals.dead).toEqual({ count: 2, more: true });
    expect(strict.breaches).toEqual(['dead: over 2 > 1']);
  });

  it('lists overdue, in-doubt, recovered and dead jobs, and fails past its thresholds', async () => {
    const ids = await seedFindings();
    const report = await runAudit(env.store, { overdueAfterMs: 60_000, inDoubtAfterMs: 60_000, maxRecovered: 0 });

    expect(report.findings.overdue.map((row) => row.jobId)).toContain(ids.overdue);
    expect(report.findings.overdue.find((row) => row.jobId === ids.overdue)).toMatchObject({ name: 'overdue-job', state: 'available' });
    expect(report.findings.inDoubt).toEqual([
      expect.objectContaining({ jobId: ids.inDoubt, name: 'in-doubt-job', effect: 'charge', idempotencyKey: 'in-doubt-job:charge' }),
    ]);
    // Newest first: the sweep recovered the in-doubt job after the stalled worker reported its lease lost.
    expect(report.findings.recovered).toEqual([
      expect.objectContaining({ jobId: ids.inDoubt, attempt: 1, workerId: 'dead-worker', outcome: 'abandoned' }),
      expect.objectContaining({ jobId: ids.lost, attempt: 1, workerId: 'stalled-worker', outcome: 'lease_lost' }),
    ]);
    expect(report.findings.dead).toEqual([
      expect.objectContaining({ jobId: ids.dead, name: 'dead-job', attempt: 1, lastError: 'PermanentError: rejected' }),
    ]);
    const everything = Object.values(report.findings).flatMap((rows: { jobId: string }[]) => rows.map((row) => row.jobId));
    expect(everything).not.toContain(ids.completed);

    expect(report.passed).toBe(false);
    expect(report.breaches).toEqual([expect.stringMatching(/^overdue: \d+ > 0$/), 'inDoubt: 1 > 0', 'dead: 1 > 0', 'recovered: 2 > 0']);
    const text = formatAudit(report);
    expect(text).toContain(`job ${ids.inDoubt} in-doubt-job attempt 1 abandoned, worker dead-worker`);
    expect(text).toContain(`job ${ids.lost} lost-job attempt 1 lost its lease, worker stalled-worker`);
    expect(text).toContain(`job ${ids.dead} dead-job after 1 attempt: PermanentError: rejected`);

    const tolerant = await runAudit(env.store, { maxOverdue: 10, maxInDoubt: 1, maxDead: 1 });
    expect(tolerant).toMatchObject({ breaches: [], passed: true });
    const strictWindow = await runAudit(env.store, { overdueAfterMs: 10 * 60_000, inDoubtAfterMs: 10 * 60_000, maxDead: 1 });
    expect(strictWindow.findings.overdue).toEqual([]);
    expect(strictWindow.findings.inDoubt).toEqual([]);
  });

  it('`vouch audit` exits non-zero when a dead job exists, and 0 on a clean store', async () => {
    // The CLI reads the system clock; the test clock started at the real time, so these jobs are recent to it.
    const deadJob = await enqueueOne(env.store, { name: 'dead-job' });
    await env.store.fail((await leaseOne(env.store)).lease, { error: 'PermanentError: rejected', retryAt: null });
    const failing = await runCli(['audit', '--store', env.location]);
    expect(failing.code, failing.output).toBe(1);
    expect(failing.output).toMatch(/dead:\s+1/);
    expect(failing.output).toMatch(new RegExp(`job ${deadJob} dead-job`));
    expect(failing.output).toMatch(/audit FAILED: dead: 1 > 0/);

    const clean = await env.harness.open({ clock: env.clock.now });
    await enqueueOne(clean.store);
    await clean.store.commit((await leaseOne(clean.store)).lease, COMPLETION);
    const passing = await runCli(['audit', '--store', clean.location]);
    expect(passing.code, passing.output).toBe(0);
    expect(passing.output).toMatch(/audit passed/);

    const json = await runCli(['audit', '--store', env.location, '--max-dead', '1', '--json']);
    expect(json.code, json.output).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ passed: true, findings: { dead: [expect.objectContaining({ jobId: deadJob })] } });
  });
});
