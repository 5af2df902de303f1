import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runAudit } from '../../src/audit/audit.js';
import { deliveryEffectKey, FaultBed } from '../support/fault-bed.js';

/**
 * F7 (a): a job whose attempt kills its worker process every time. It must
 * not cycle forever: each kill uses up an attempt, and the sweep after the
 * last one fails the job with a reason, loudly.
 */
describe('fault: a job that kills its worker on every attempt', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: 1000, sweepIntervalMs: 100, maxAttempts: 2 });
  });
  afterEach(() => bed.dispose());

  it('ends failed after its attempts, with a reason, an event and a dead job in the audit', async () => {
    const [jobId] = await bed.enqueue(1);
    for (const workerId of ['first', 'second']) {
      const worker = bed.spawnWorker(workerId, {}, 'before-effect=kill');
      expect((await worker.exited).signal, `${workerId} should be killed by the job${worker.diagnostics()}`).toBe('SIGKILL');
    }
    const survivor = bed.spawnWorker('survivor');
    await survivor.waitFor('the job to fail', (message) => message.event === 'job:failed', 10_000);
    survivor.kill('SIGTERM');
    expect((await survivor.exited).code).toBe(0);

    const { job, attempts, effects } = await bed.read(jobId!);
    expect(job.state).toBe('failed');
    expect(job.lastError).toMatch(/abandoned.*no attempts left/);
    expect(attempts.map((attempt) => [attempt.workerId, attempt.outcome])).toEqual([
      ['first', 'abandoned'],
      ['second', 'abandoned'],
    ]);
    // Each attempt died after writing the intent and before sending: nothing reached the sink.
    expect(effects).toEqual([expect.objectContaining({ state: 'intent', attempt: 2 })]);
    expect(bed.sink.count(deliveryEffectKey(job))).toBe(0);
    expect(survivor.select('event', 'attempt:abandoned')).toEqual([
      expect.objectContaining({ jobId, workerId: 'second', state: 'failed' }),
    ]);

    const report = await runAudit(bed.store);
    expect(report.passed).toBe(false);
    expect(report.findings.dead).toEqual([expect.objectContaining({ jobId, attempt: 2 })]);
  });
});
