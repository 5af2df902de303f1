import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { seededRandom } from '../../examples/crash-demo/supervisor.js';
import type { AttemptRecord } from '../../src/core/store.js';
import { FaultBed } from '../support/fault-bed.js';
import type { FixtureProcess, ProcessExit } from '../support/processes.js';
import { sleep } from '../support/wait.js';

/**
 * F1 under load: several worker processes share one SQLite file while a
 * seeded schedule SIGKILLs one of them every few hundred milliseconds and
 * starts a new one in its place. Afterwards no job is lost, none completed
 * twice, and the sink contains exactly one request per effect key.
 */
const JOBS = 200;
const WORKERS = 3;
const LEASE_MS = 1000;
const SWEEP_MS = 100;
const SEED = 20_260_801;
/** Slack for timers and a recovery measured across processes on 2 busy cores, where new workers are starting up. */
const SLACK_MS = 500;

describe('fault: random SIGKILLs of several workers under load', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: LEASE_MS, sweepIntervalMs: SWEEP_MS, maxAttempts: 25 });
  });
  afterEach(() => bed.dispose());

  it(`loses no job and repeats no effect across ${JOBS} jobs, ${WORKERS} workers and a kill every ~300 ms`, async () => {
    const jobIds = await bed.enqueue(JOBS, { sleepMs: 150 });
    const random = seededRandom(SEED);
    const everyone: FixtureProcess[] = [];
    const spawn = () => {
      const worker = bed.spawnWorker(`worker-${everyone.length + 1}`, { concurrency: 4 });
      everyone.push(worker);
      return worker;
    };
    const slots: FixtureProcess[] = Array.from({ length: WORKERS }, spawn);
    const kills = new Map<string, ProcessExit>();

    // Kill until the work is nearly done, so that the kills land on workers with jobs in flight.
    while (kills.size < 20) {
      await sleep(200 + Math.floor(random() * 200));
      const counts = await bed.store.countByState();
      if (counts.completed >= JOBS * 0.9) break;
      const slot = Math.floor(random() * WORKERS);
      const victim = slots[slot]!;
      if (!victim.select('started').length) continue;
      victim.kill('SIGKILL');
      kills.set(victim.label, await victim.exited);
      slots[slot] = spawn();
    }
    expect(kills.size, 'kills that landed').toBeGreaterThanOrEqual(5);

    await bed.waitForTerminal(jobIds, 30_000, slots);
    const all = await bed.expectEachCompletedOnce(jobIds);

    // An attempt that did not commit lost its lease (killed, or a live worker starved past its 1 s lease); none errored.
    const lifetimes = everyone
      .filter((worker) => worker.select('started').length > 0)
      .map((worker) => ({ started: worker.select('started')[0]!.at, ended: kills.get(worker.label)?.at ?? Number.POSITIVE_INFINITY }));
    const attempts = all.flatMap((entry) => entry.attempts);
    const notCommitted = attempts.filter((attempt) => attempt.outcome !== 'succeeded');
    const described = (attempt: AttemptRecord) =>
      `job ${attempt.jobId} attempt ${attempt.attempt} on ${attempt.workerId}: ${attempt.outcome} (${attempt.error})`;
    expect(notCommitted.filter((attempt) => attempt.outcome !== 'abandoned' && attempt.outcome !== 'lease_lost').map(described)).toEqual(
      [],
    );

    // Every attempt still open when its worker was killed was recovered as abandoned once its lease ran out, at the next sweep of a live worker.
    const cutShort = notCommitted.filter((attempt) => kills.has(attempt.workerId) && attempt.endedAt! >= kills.get(attempt.workerId)!.at);
    expect(cutShort.length, 'attempts interrupted by the kills').toBeGreaterThan(0);
    for (const attempt of cutShort) {
      expect(attempt.outcome, described(attempt)).toBe('abandoned');
      const deadline = recoveryDeadline(kills.get(attempt.workerId)!.at + LEASE_MS, lifetimes);
      expect(attempt.endedAt!, `${described(attempt)}: recovered ${attempt.endedAt! - deadline} ms after the deadline`).toBeLessThanOrEqual(
        deadline,
      );
    }
  });
});

/**
 * The latest time a lease that expired at `expiry` may be recovered: the
 * first moment from then on at which some started worker stays alive for a
 * sweep interval plus slack, plus that long. When every worker was just
 * replaced, that is when the first replacement started, not expiry plus one
 * interval; a worker killed before its next sweep could run does not count.
 */
function recoveryDeadline(expiry: number, lifetimes: readonly { started: number; ended: number }[]): number {
  const window = SWEEP_MS + SLACK_MS;
  const starts = lifetimes
    .map((lifetime) => ({ from: Math.max(expiry, lifetime.started), ended: lifetime.ended }))
    .filter((candidate) => candidate.from + window <= candidate.ended)
    .map((candidate) => candidate.from);
  return Math.min(...starts) + window;
}
