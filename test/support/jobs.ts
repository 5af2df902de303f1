import { expect } from 'vitest';
import type { Lease, LeasedJob, NewJob, Store } from '../../src/core/store.js';

/** A job as Client would hand it to Store.enqueue, for tests that talk to the store directly. */
export function newJob(overrides: Partial<NewJob> = {}): NewJob {
  return {
    name: 'contract-job',
    queue: 'default',
    key: null,
    payloadJson: '{}',
    priority: 0,
    maxAttempts: 3,
    leaseMs: 10_000,
    runAt: null,
    dedupWindowMs: 60_000,
    ...overrides,
  };
}

/** Enqueues one job directly and returns its id. */
export async function enqueueOne(store: Store<any>, overrides: Partial<NewJob> = {}): Promise<string> {
  const [outcome] = await store.enqueue([newJob(overrides)]);
  if (!outcome) throw new Error('store.enqueue returned no outcome');
  return outcome.job.id;
}

/** Leases exactly one job and fails the test if there is none. */
export async function leaseOne(store: Store<any>, options: { queue?: string; workerId?: string } = {}): Promise<LeasedJob> {
  const leased = await store.lease({ queue: options.queue ?? 'default', limit: 1, workerId: options.workerId ?? 'test-worker' });
  expect(leased, 'expected one due job to lease').toHaveLength(1);
  return leased[0]!;
}

/** A lease that was never handed out: the right job and attempt with a made-up token. */
export function forged(lease: Lease): Lease {
  return { ...lease, token: 'f0f0f0f0f0f0f0f0' };
}

export const COMPLETION = { resultJson: '{"ok":true}', outcome: 'succeeded', writes: [] } as const;

/** Total jobs in the store, whatever their state. */
export async function countJobs(store: Store<any>): Promise<number> {
  const counts = await store.countByState();
  return Object.values(counts).reduce((sum, count) => sum + count, 0);
}
