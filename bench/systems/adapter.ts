/**
 * What the benchmark needs from a job system, implemented once per system in
 * this folder. An adapter runs inside a child process (bench/systems/child.ts),
 * under the Node version the system is measured on.
 */

/** The payload of every benchmark job: its index, and when it was enqueued (for latency). */
export interface BenchPayload {
  i: number;
  /** Wall-clock milliseconds (with fraction) when enqueue was called; only in the latency workload. */
  t?: number;
}

/** What a job does, the same for every system. */
export type JobBody = (jobId: string, payload: BenchPayload) => Promise<void> | void;

/** vouch only: the job shape used by the ctx.effect and verify workload. */
export type VouchVariant = 'plain' | 'effect' | 'verify';

export interface WorkerSettings {
  /** Jobs running at once in this worker process. */
  concurrency: number;
  body: JobBody;
  variant?: VouchVariant;
  /**
   * Only for counting re-runs after a SIGKILL: shortens the time after which
   * the system itself recovers a dead worker's jobs, so that the count can be
   * taken within the run. It changes when the re-runs happen, not how many.
   */
  fastRecovery?: boolean;
}

export interface Adapter {
  /** Drops and recreates this system's storage (its schema, key prefix or file). */
  reset(): Promise<void>;
  /** Opens connections and warms them, so that the timed calls that follow measure the work. */
  open(): Promise<void>;
  /** Enqueues jobs in bulk, with the system's own bulk call. */
  enqueueMany(payloads: readonly BenchPayload[]): Promise<void>;
  /** Enqueues one job with the system's single-job call. */
  enqueueOne(payload: BenchPayload): Promise<void>;
  /** Starts consuming with the given settings; returns every setting it applied, for the results. */
  startWorker(settings: WorkerSettings): Promise<Record<string, unknown>>;
  /** Jobs not yet recorded as completed in the store. */
  pendingCount(): Promise<number>;
  /**
   * Only after a SIGKILL, only for systems that recover a dead worker's jobs
   * by an explicit call rather than by a timeout: makes them available again.
   */
  recoverAfterKill?(): Promise<void>;
}

/** Everything an adapter's constructor gets. */
export interface AdapterContext {
  /** Folder for files of this run (SQLite databases). */
  dir: string;
  /** The system's id; names its SQLite file, so that two systems never share one. */
  name: string;
  mode: 'defaults' | 'tuned';
}
