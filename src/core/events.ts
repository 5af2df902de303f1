import { EventEmitter } from 'node:events';
import type { JobState } from './states.js';

/** Identifies one attempt in every event. */
export interface AttemptRef {
  jobId: string;
  name: string;
  queue: string;
  attempt: number;
  leaseToken: string;
}

/**
 * Events a worker emits. Every failure has one, so application code can
 * alert on it: a retry, an abandoned attempt, a lost lease, an in-doubt
 * effect, a dead job, a rejected payload and an error in a background loop.
 */
export interface VouchEvents {
  'job:completed': [AttemptRef & { durationMs: number }];
  'job:retry': [AttemptRef & { error: string; retryAt: number }];
  'job:failed': [AttemptRef & { error: string }];
  'job:released': [AttemptRef & { reason: string }];
  'attempt:abandoned': [
    { jobId: string; name: string; queue: string; attempt: number; leaseToken: string; workerId: string; state: JobState },
  ];
  'lease:lost': [AttemptRef & { reason: string }];
  'effect:in-doubt': [AttemptRef & { effect: string; idempotencyKey: string; settledBy: 'verify' | 'rerun' }];
  'payload:rejected': [AttemptRef & { error: string }];
  'worker:error': [{ loop: 'lease' | 'heartbeat' | 'sweep' | 'commit' | 'release'; error: Error }];
}

export type VouchEventName = keyof VouchEvents;

/** A typed EventEmitter for VouchEvents. */
export class VouchEventEmitter extends EventEmitter<VouchEvents> {}
