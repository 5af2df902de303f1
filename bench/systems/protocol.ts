/**
 * The messages between bench/run.ts and its children (bench/systems/child.ts).
 * A child gets one task in the BENCH_TASK environment variable, reports over
 * the IPC channel, and exits when the parent sends `exit`, so that the parent
 * can read the child's peak RSS from /proc while the child still exists.
 */
import type { VouchVariant } from './adapter.js';
import type { Mode, SystemKind } from './catalog.js';

export interface TaskBase {
  /** The system's id (SystemSpec.id). */
  name: string;
  kind: SystemKind;
  mode: Mode;
  /** Folder of this run: SQLite files and execution logs. */
  dir: string;
  /** Only for counting re-runs after a SIGKILL; see WorkerSettings.fastRecovery. */
  fastRecovery?: boolean;
}

/** Optionally resets the store, then enqueues `count` jobs in chunks with the bulk call, timed. */
export interface PrepareTask extends TaskBase {
  role: 'prepare';
  reset: boolean;
  count: number;
  /** Index of the first job. */
  from?: number;
  chunk: number;
}

/** Enqueues one job at a time at a steady rate, each carrying the time its enqueue call began. */
export interface SteadyTask extends TaskBase {
  role: 'steady';
  ratePerSecond: number;
  durationMs: number;
}

export interface WorkTask extends TaskBase {
  role: 'work';
  concurrency: number;
  /** noop returns at once; io awaits 5 ms; hang never returns when `hang` is set, and reports each start. */
  job: 'noop' | 'io' | 'hang';
  hang?: boolean;
  variant?: VouchVariant;
  /**
   * drained: report once `count` jobs are completed in the store, or at `capMs` after the first start.
   * started: report when the `count`-th job starts (rates under a large backlog, which never drains).
   * empty: report once the store has no job left that is not completed, or at `capMs` after the worker started.
   * parent: report when the parent sends `finish`.
   */
  until: { kind: 'drained' | 'started'; count: number; capMs: number } | { kind: 'empty'; capMs: number } | { kind: 'parent' };
  /** Appends each started job's id to this file (one line per execution), to count re-runs. */
  execLog?: string;
  /** Sends `progress` when this many jobs have started. */
  progressAt?: number;
  /** Recover a killed worker's jobs by the system's explicit call before starting (graphile-worker). */
  recoverFirst?: boolean;
}

export type Task = PrepareTask | SteadyTask | WorkTask;

export type ChildMessage =
  | { type: 'ready'; settings: Record<string, unknown>; version: string }
  | { type: 'progress'; started: number; at: number }
  | { type: 'job-start'; at: number; id: string }
  | { type: 'error'; message: string }
  | ({ type: 'result' } & Record<string, unknown>);

export type ParentMessage = { cmd: 'finish' } | { cmd: 'exit' };

/** Wall-clock milliseconds with a fraction, comparable between processes on one machine. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}
