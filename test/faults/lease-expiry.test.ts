import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DeliverPayload } from '../fixtures/deliver-job.js';
import { deliveryEffectKey, FaultBed } from '../support/fault-bed.js';
import type { FixtureProcess } from '../support/processes.js';

/**
 * F2: a worker process that stops running JavaScript for longer than its
 * lease (a blocked event loop, as a long GC pause or a stopped process
 * would) while a second worker takes the job over. The stalled attempt must
 * not complete the job, fail it, or repeat its effect.
 */
const LEASE_MS = 1000;
const STALL_MS = 2500;

describe('fault: a stalled worker outlives its lease', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: LEASE_MS, sweepIntervalMs: 100, maxAttempts: 3 });
  });
  afterEach(() => bed.dispose());

  async function runStall(payload: Omit<DeliverPayload, 'n'>, failpoints = '') {
    const [jobId] = await bed.enqueue(1, payload);
    const takeover = bed.spawnWorker('takeover', { waitForGo: true, concurrency: 1 });
    const stalled = bed.spawnWorker('stalled', { concurrency: 1 }, failpoints);
    await takeover.ready();
    await stalled.waitFor('attempt 1 to start', (message) => message.type === 'perform' && message.attempt === 1);
    takeover.send('go');

    await takeover.waitFor('its completion', (message) => message.event === 'job:completed', 15_000);
    const lost = await stalled.waitFor('its lost lease', (message) => message.event === 'lease:lost', 15_000);
    await stopGracefully(stalled);
    await stopGracefully(takeover);
    return { jobId: jobId!, stalled, takeover, lost, readback: await bed.read(jobId!) };
  }

  /** The end state of F2: one completion by the takeover, the stalled attempt closed as lost, one effect. */
  async function expectOneCompletion(run: Awaited<ReturnType<typeof runStall>>) {
    const { readback, stalled, takeover } = run;
    await bed.expectEachCompletedOnce([run.jobId]);
    expect(readback.job).toMatchObject({ state: 'completed', attempt: 2, workerId: 'takeover' });
    const [first, second] = readback.attempts;
    expect(first).toMatchObject({ attempt: 1, workerId: 'stalled' });
    expect(['lease_lost', 'abandoned']).toContain(first?.outcome);
    expect(second).toMatchObject({ attempt: 2, workerId: 'takeover', outcome: 'succeeded' });
    expect(readback.attempts).toHaveLength(2);
    for (const worker of [stalled, takeover]) {
      expect(worker.select('event', 'job:failed')).toEqual([]);
      expect(worker.select('event', 'job:retry')).toEqual([]);
    }
    expect(stalled.select('event', 'job:completed')).toEqual([]);
    expect(takeover.select('event', 'attempt:abandoned')).toEqual([expect.objectContaining({ jobId: run.jobId, workerId: 'stalled' })]);
  }

  it('refuses the commit of a handler that blocked after its effect; the effect is not repeated', async () => {
    const run = await runStall({ blockMs: STALL_MS, blockAt: 'after-effect' });
    await expectOneCompletion(run);
    expect(run.lost).toMatchObject({ attempt: 1, reason: expect.stringMatching(/commit changed no row|heartbeat/) });
    // The stalled attempt's effect was recorded done before the stall; the takeover reused it.
    expect(run.readback.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 1, resolution: 'ran' })]);
    expect(bed.sink.receipt(deliveryEffectKey(run.readback.job))?.body).toEqual({ jobId: run.jobId, attempt: 1 });
  });

  it('refuses the effect of a handler that blocked before it; only the takeover performs it', async () => {
    const run = await runStall({ blockMs: STALL_MS, blockAt: 'before-effect' });
    await expectOneCompletion(run);
    expect(run.readback.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 2, resolution: 'ran' })]);
    expect(bed.sink.receipt(deliveryEffectKey(run.readback.job))?.body).toEqual({ jobId: run.jobId, attempt: 2 });
  });

  it('refuses the late heartbeat of a worker whose heartbeat stalled past the lease', async () => {
    const run = await runStall({ sleepMs: 600 }, `heartbeat=block:${STALL_MS}@1`);
    await expectOneCompletion(run);
    expect(run.lost).toMatchObject({ attempt: 1, reason: expect.stringMatching(/heartbeat found the lease expired/) });
    expect(run.readback.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 2, resolution: 'ran' })]);
  });
});

async function stopGracefully(worker: FixtureProcess): Promise<void> {
  worker.kill('SIGTERM');
  const exit = await worker.exited;
  expect(exit.code, `${worker.label} should stop cleanly${worker.diagnostics()}`).toBe(0);
}
