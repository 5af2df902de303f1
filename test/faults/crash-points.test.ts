import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FailpointName } from '../../src/core/failpoints.js';
import { deliveryEffectKey, FaultBed, type JobReadback } from '../support/fault-bed.js';

/**
 * F1 at every step boundary: a worker process is SIGKILLed at a failpoint,
 * a replacement worker (already loaded, started right after the kill) takes
 * over, and every job must end completed exactly once with exactly one
 * request per effect key at the sink.
 */
const LEASE_MS = 1000;
const SWEEP_MS = 100;
/** Scheduling slack between two processes on a loaded 2-core machine. */
const SLACK_MS = 400;

type Point = Exclude<FailpointName, 'heartbeat'>;

/** What must be true at the moment of the kill for the fault to have landed where the test says. */
const landed: Record<Point, (interrupted: JobReadback[], sent: (effectKey: string) => number) => boolean> = {
  // A job was leased and no attempt of it had started: no effect, no write.
  'after-lease': (jobs) => jobs.some((entry) => entry.effects.length === 0),
  // An intent was recorded and the effect never reached the sink.
  'before-effect': (jobs, sent) =>
    jobs.some((entry) => entry.effects.some((effect) => effect.state === 'intent' && sent(effect.idempotencyKey) === 0)),
  // The effect reached the sink and the ledger still says intent: the in-doubt window.
  'after-effect-before-ledger': (jobs, sent) =>
    jobs.some((entry) => entry.effects.some((effect) => effect.state === 'intent' && sent(effect.idempotencyKey) === 1)),
  // The effect is recorded done and the job is not committed.
  'after-ledger-before-commit': (jobs) => jobs.some((entry) => entry.effects.some((effect) => effect.state === 'done')),
  // The commit transaction was open when the process died: the effect is done and the write rolled back.
  'inside-commit': (jobs) => jobs.some((entry) => entry.effects.some((effect) => effect.state === 'done') && entry.notes.length === 0),
};

describe('fault: a worker SIGKILLed at each step boundary', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, maxAttempts: 5 });
  });
  afterEach(() => bed.dispose());

  it.each(Object.keys(landed) as Point[])('killed at %s: the replacement completes every job once, one effect per key', async (point) => {
    const jobIds = await bed.enqueue(6, { sleepMs: 30 });
    const replacement = bed.spawnWorker('replacement', { waitForGo: true });
    // Six jobs at concurrency 2 may arrive in two lease batches (four, then two), so the victim dies at
    // the second lease. Every other point is reached once per job, and the victim dies at the third job.
    const hit = point === 'after-lease' ? 2 : 3;
    const victim = bed.spawnWorker('victim', {}, `${point}=kill@${hit}`);
    await replacement.ready();

    const kill = await victim.exitWithin(20_000, `its failpoint ${point} should have killed it at hit ${hit}`);
    expect(kill.signal, `the victim should die by its failpoint${victim.diagnostics()}`).toBe('SIGKILL');

    // The moment of the kill, as the store and the sink recorded it.
    const atKill = await bed.readAll(jobIds);
    const interrupted = atKill.filter((entry) => entry.job.state === 'running');
    expect(interrupted.length).toBeGreaterThan(0);
    for (const { job } of interrupted) expect(job.workerId).toBe('victim');
    expect(
      landed[point](interrupted, (key) => bed.sink.count(key)),
      `the kill should land ${point}`,
    ).toBe(true);
    const inDoubt = atKill.flatMap((entry) =>
      entry.effects
        .filter((effect) => effect.state === 'intent')
        .map((effect) => ({ jobId: entry.job.id, key: effect.idempotencyKey, sentBeforeKill: bed.sink.count(effect.idempotencyKey) })),
    );

    replacement.send('go');
    await bed.waitForTerminal(jobIds, 15_000, [replacement]);
    const after = await bed.expectEachCompletedOnce(jobIds);

    for (const { job } of interrupted) {
      const { attempts } = after.find((entry) => entry.job.id === job.id)!;
      const killed = attempts.find((attempt) => attempt.attempt === job.attempt);
      expect(killed, `job ${job.id}: the killed attempt`).toMatchObject({ workerId: 'victim', outcome: 'abandoned' });
      const recoveredAfterMs = killed!.endedAt! - kill.at;
      expect(recoveredAfterMs, `job ${job.id}: recovered ${recoveredAfterMs} ms after the kill`).toBeLessThanOrEqual(
        LEASE_MS + SWEEP_MS + SLACK_MS,
      );
      expect(attempts.at(-1)).toMatchObject({ workerId: 'replacement', outcome: 'succeeded' });
    }

    // Each effect in doubt at the kill was settled by its verify: found at the sink means not sent again.
    for (const doubt of inDoubt) {
      const { effects } = after.find((entry) => entry.job.id === doubt.jobId)!;
      expect(effects).toEqual([expect.objectContaining({ state: 'done', resolution: doubt.sentBeforeKill ? 'verified' : 'rerun' })]);
      expect(bed.sink.count(doubt.key)).toBe(1);
      const settled = replacement.select('event', 'effect:in-doubt').filter((event) => event.jobId === doubt.jobId);
      expect(settled).toEqual([
        expect.objectContaining({ idempotencyKey: doubt.key, settledBy: doubt.sentBeforeKill ? 'verify' : 'rerun' }),
      ]);
    }
    if (point === 'after-effect-before-ledger') expect(inDoubt.some((doubt) => doubt.sentBeforeKill)).toBe(true);
    for (const entry of after) expect(deliveryEffectKey(entry.job)).toBe(entry.effects[0]?.idempotencyKey);
  });
});
