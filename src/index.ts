export { type AuditReport, type AuditThresholds, formatAudit, runAudit } from './audit/audit.js';
export { type BackoffOptions, backoffDelayMs, type RetryPolicy } from './core/backoff.js';
export { Client, type ClientOptions, DEFAULT_DEDUP_WINDOW_MS, type EnqueuedJob, type EnqueueOptions } from './core/client.js';
export { type Clock, systemClock } from './core/clock.js';
export {
  AttemptTimeoutError,
  ConfigurationError,
  InvalidPayloadError,
  InvalidResultError,
  LeaseLostError,
  PermanentError,
  ShutdownError,
  UnknownJobError,
  VerificationError,
  VouchError,
} from './core/errors.js';
export type { AttemptRef, VouchEventName, VouchEvents } from './core/events.js';
export type { EffectCheck, EffectOptions, JobContext, PreviousAttempt } from './core/job-context.js';
export { defineJob, type JobDefinition, type JobDefinitionOptions } from './core/job-definition.js';
export { DEFAULT_MAX_PAYLOAD_BYTES } from './core/payload.js';
export type { AttemptOutcome, JobState } from './core/states.js';
export type * from './core/store.js';
export { type OpenStoreOptions, openStore } from './stores/open-store.js';
export { Worker } from './worker/worker.js';
export type { WorkerOptions } from './worker/worker-options.js';
