import { describe, expect, it } from 'vitest';
import { checkHistory, RECOVERY_SLACK_MS } from './checker.js';
import type { History } from './history.js';

/** A clean history of two completed jobs, one retried after its worker was killed. */
function cleanHistory(): History {
  return {
    leaseMs: 2000,
    sweepIntervalMs: 250,
    accepted: [
      { jobId: '1', effectKey: 'job-1:email', effectOnce: true },
      { jobId: '2', effectKey: 'job-2:email', effectOnce: true },
    ],
    jobs: [
      { id: '1', state: 'completed', attempt: 1 },
      { id: '2', state: 'completed', attempt: 2 },
    ],
    attempts: [
      { jobId: '1', attempt: 1, leaseToken: 'a', workerId: 'w1', startedAt: 0, endedAt: 100, outcome: 'succeeded' },
      { jobId: '2', attempt: 1, leaseToken: 'b', workerId: 'w2', startedAt: 0, endedAt: 2100, outcome: 'abandoned' },
      { jobId: '2', attempt: 2, leaseToken: 'c', workerId: 'w1', startedAt: 2200, endedAt: 2300, outcome: 'verified' },
    ],
    effects: [
      { jobId: '1', name: 'email', idempotencyKey: 'job-1:email', state: 'done', resolution: 'ran' },
      { jobId: '2', name: 'email', idempotencyKey: 'job-2:email', state: 'done', resolution: 'verified' },
    ],
    sink: [
      { idempotencyKey: 'job-1:email', count: 1 },
      { idempotencyKey: 'job-2:email', count: 1 },
    ],
    kills: [{ workerId: 'w2', at: 50 }],
  };
}

function invariantsOf(history: History): string[] {
  return checkHistory(history).map((violation) => violation.invariant);
}

describe('history checker', () => {
  it('passes a clean history', () => {
    expect(checkHistory(cleanHistory())).toEqual([]);
  });

  it('catches a job left running', () => {
    const history = cleanHistory();
    history.jobs[0] = { id: '1', state: 'running', attempt: 1 };
    const violations = checkHistory(history);
    expect(violations.map((violation) => violation.invariant)).toContain('one-terminal-state');
    expect(violations.find((violation) => violation.invariant === 'one-terminal-state')?.jobIds).toEqual(['1']);
  });

  it('catches an accepted job missing from the store', () => {
    const history = cleanHistory();
    history.jobs = history.jobs.filter((job) => job.id !== '2');
    const violation = checkHistory(history).find((entry) => entry.invariant === 'one-terminal-state');
    expect(violation?.jobIds).toEqual(['2']);
    expect(violation?.detail).toMatch(/missing/);
  });

  it('catches completion without effect', () => {
    const history = cleanHistory();
    history.sink = history.sink.filter((entry) => entry.idempotencyKey !== 'job-1:email');
    const violation = checkHistory(history).find((entry) => entry.invariant === 'completed-has-effect');
    expect(violation?.jobIds).toEqual(['1']);
  });

  it('catches an effect without a finished job', () => {
    const history = cleanHistory();
    history.jobs[1] = { id: '2', state: 'retryable', attempt: 2 };
    history.sink.push({ idempotencyKey: 'unknown:email', count: 1 });
    const violation = checkHistory(history).find((entry) => entry.invariant === 'effect-has-job');
    expect(violation?.jobIds).toEqual(['2']);
    expect(violation?.detail).toContain('unknown:email');
  });

  it('catches a repeated effect', () => {
    const history = cleanHistory();
    history.sink[1] = { idempotencyKey: 'job-2:email', count: 2 };
    const violation = checkHistory(history).find((entry) => entry.invariant === 'effect-at-most-once');
    expect(violation?.jobIds).toEqual(['2']);
  });

  it('allows a repeat the effect cannot prevent', () => {
    const history = cleanHistory();
    history.sink[1] = { idempotencyKey: 'job-2:email', count: 2 };
    history.accepted[1] = { jobId: '2', effectKey: 'job-2:email', effectOnce: false };
    expect(invariantsOf(history)).not.toContain('effect-at-most-once');
  });

  it('catches a commit by a superseded attempt', () => {
    const history = cleanHistory();
    history.attempts[1] = { ...history.attempts[1]!, outcome: 'succeeded' };
    history.attempts[2] = { ...history.attempts[2]!, outcome: 'errored' };
    const violation = checkHistory(history).find((entry) => entry.invariant === 'no-commit-after-lease-expiry');
    expect(violation?.jobIds).toEqual(['2']);
  });

  it('catches two committed attempts', () => {
    const history = cleanHistory();
    history.attempts[1] = { ...history.attempts[1]!, outcome: 'verified' };
    expect(invariantsOf(history)).toContain('no-commit-after-lease-expiry');
  });

  it('catches slow recovery', () => {
    const history = cleanHistory();
    const late = 50 + history.leaseMs + history.sweepIntervalMs + RECOVERY_SLACK_MS + 1;
    history.attempts[1] = { ...history.attempts[1]!, endedAt: late };
    const violation = checkHistory(history).find((entry) => entry.invariant === 'bounded-recovery');
    expect(violation?.jobIds).toEqual(['2']);
  });

  it('catches an abandoned attempt never closed', () => {
    const history = cleanHistory();
    history.attempts[1] = { ...history.attempts[1]!, endedAt: null };
    expect(invariantsOf(history)).toContain('bounded-recovery');
  });
});
