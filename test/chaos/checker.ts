import type { History } from './history.js';

export type Invariant =
  | 'one-terminal-state'
  | 'completed-has-effect'
  | 'effect-has-job'
  | 'effect-at-most-once'
  | 'no-commit-after-lease-expiry'
  | 'bounded-recovery';

export interface Violation {
  invariant: Invariant;
  jobIds: string[];
  detail: string;
}

/** Slack for process start-up and scheduling on top of lease + sweep when judging recovery time, in milliseconds. */
export const RECOVERY_SLACK_MS = 2000;

const COMMITTED = new Set(['succeeded', 'verified']);

/** Checks a quiet history against every invariant and returns the violations, each naming its jobs. */
export function checkHistory(history: History): Violation[] {
  return [
    ...checkTerminalStates(history),
    ...checkCompletedEffects(history),
    ...checkEffectOwners(history),
    ...checkEffectsOnce(history),
    ...checkCommitFencing(history),
    ...checkRecovery(history),
  ];
}

/** Checks that every accepted job exists and is in exactly one terminal state. */
function checkTerminalStates(history: History): Violation[] {
  const states = new Map(history.jobs.map((job) => [job.id, job.state]));
  const missing = history.accepted.filter((job) => !states.has(job.jobId)).map((job) => job.jobId);
  const pending = history.accepted
    .filter((job) => {
      const state = states.get(job.jobId);
      return state !== undefined && state !== 'completed' && state !== 'failed' && state !== 'cancelled';
    })
    .map((job) => job.jobId);
  const violations: Violation[] = [];
  if (missing.length > 0)
    violations.push({ invariant: 'one-terminal-state', jobIds: missing, detail: 'accepted but missing from the store' });
  if (pending.length > 0)
    violations.push({ invariant: 'one-terminal-state', jobIds: pending, detail: 'not in a terminal state once quiet' });
  return violations;
}

/** No completed job without its effect at the sink. */
function checkCompletedEffects(history: History): Violation[] {
  const sink = sinkCounts(history);
  const states = new Map(history.jobs.map((job) => [job.id, job.state]));
  const unbacked = history.accepted
    .filter((job) => job.effectKey !== null && states.get(job.jobId) === 'completed' && (sink.get(job.effectKey) ?? 0) === 0)
    .map((job) => job.jobId);
  return unbacked.length > 0
    ? [{ invariant: 'completed-has-effect', jobIds: unbacked, detail: 'completed, but the sink never saw the effect' }]
    : [];
}

/** No effect at the sink without a job that is completed or visibly failed. */
function checkEffectOwners(history: History): Violation[] {
  const owners = new Map(history.accepted.filter((job) => job.effectKey !== null).map((job) => [job.effectKey as string, job.jobId]));
  const states = new Map(history.jobs.map((job) => [job.id, job.state]));
  const orphans: string[] = [];
  const orphanKeys: string[] = [];
  for (const entry of history.sink) {
    const owner = owners.get(entry.idempotencyKey);
    const state = owner === undefined ? undefined : states.get(owner);
    if (state === 'completed' || state === 'failed') continue;
    orphanKeys.push(entry.idempotencyKey);
    if (owner !== undefined) orphans.push(owner);
  }
  if (orphanKeys.length === 0) return [];
  return [
    {
      invariant: 'effect-has-job',
      jobIds: orphans,
      detail: `sink saw effects with no completed or failed job: ${orphanKeys.slice(0, 10).join(', ')}`,
    },
  ];
}

/** At most one effect per key where the provider deduplicates or a verify can check. */
function checkEffectsOnce(history: History): Violation[] {
  const sink = sinkCounts(history);
  const repeated = history.accepted
    .filter((job) => job.effectKey !== null && job.effectOnce && (sink.get(job.effectKey) ?? 0) > 1)
    .map((job) => job.jobId);
  return repeated.length > 0
    ? [{ invariant: 'effect-at-most-once', jobIds: repeated, detail: 'the sink saw the effect more than once' }]
    : [];
}

/**
 * Checks that no attempt committed after its lease expired. A lease expires
 * only to be recovered, after which a later attempt starts. So a committed
 * attempt that is not the job's last one, or a job with two committed
 * attempts, means a commit without a lease.
 */
function checkCommitFencing(history: History): Violation[] {
  const byJob = new Map<string, History['attempts']>();
  for (const attempt of history.attempts) {
    const list = byJob.get(attempt.jobId) ?? [];
    list.push(attempt);
    byJob.set(attempt.jobId, list);
  }
  const states = new Map(history.jobs.map((job) => [job.id, job.state]));
  const offenders: string[] = [];
  for (const [jobId, attempts] of byJob) {
    const committed = attempts.filter((attempt) => attempt.outcome !== null && COMMITTED.has(attempt.outcome));
    const last = Math.max(...attempts.map((attempt) => attempt.attempt));
    const stale = committed.some((attempt) => attempt.attempt !== last);
    const completedWithoutCommit = states.get(jobId) === 'completed' && committed.length === 0;
    if (committed.length > 1 || stale || completedWithoutCommit) offenders.push(jobId);
  }
  return offenders.length > 0
    ? [
        {
          invariant: 'no-commit-after-lease-expiry',
          jobIds: offenders,
          detail: 'committed by an attempt that did not hold the newest lease',
        },
      ]
    : [];
}

/**
 * Checks that an attempt abandoned by a killed worker is recovered (the sweep
 * closes it) within lease + sweep interval of the kill, plus slack. The next
 * attempt may start later when every worker is busy, which is throughput, not
 * recovery.
 */
function checkRecovery(history: History): Violation[] {
  const limit = history.leaseMs + history.sweepIntervalMs + RECOVERY_SLACK_MS;
  const killedAt = new Map(history.kills.map((kill) => [kill.workerId, kill.at]));
  const late: string[] = [];
  for (const attempt of history.attempts) {
    if (attempt.outcome !== 'abandoned') continue;
    const kill = killedAt.get(attempt.workerId);
    if (kill === undefined) continue;
    if (attempt.endedAt === null || attempt.endedAt - kill > limit) late.push(attempt.jobId);
  }
  return late.length > 0
    ? [
        {
          invariant: 'bounded-recovery',
          jobIds: late,
          detail: `an abandoned attempt was not recovered within ${limit} ms of its worker's death`,
        },
      ]
    : [];
}

function sinkCounts(history: History): Map<string, number> {
  return new Map(history.sink.map((entry) => [entry.idempotencyKey, entry.count]));
}
