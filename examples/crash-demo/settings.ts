/**
 * The timings every process of the demo shares. They are short on purpose so
 * that a killed worker's jobs come back within about two seconds; a
 * production deployment would use the library's defaults (10 s leases).
 */
export const DEMO_SETTINGS = {
  /** How long a lease lasts without a heartbeat. Heartbeats run every third of it. */
  leaseMs: 2000,
  /** How often each worker recovers the expired leases of dead workers. */
  sweepIntervalMs: 250,
  /** Longest an idle worker waits before looking for jobs again. */
  pollIntervalMs: 50,
  /** Attempts run at once by one worker process. */
  concurrency: 20,
  /** Attempts per job before it fails; high, because every kill can cost a job one. */
  maxAttempts: 25,
  /** How long a stopping worker waits for its running attempts. */
  shutdownGraceMs: 3000,
} as const;

export const SENDER = 'notifications@crash-demo.vouch';

/** The header that ties each email to its job, so the sink's messages can be counted per job whatever their Message-ID. */
export const JOB_HEADER = 'X-Demo-Job';
