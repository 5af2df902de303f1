/**
 * The measurements every workload is built from. Each one starts fresh
 * child processes: one that resets the store and enqueues, and one worker
 * process per system per measurement.
 */
import type { VouchVariant } from '../systems/adapter.js';
import type { SystemSpec } from '../systems/catalog.js';
import { now, type Task, type WorkTask } from '../systems/protocol.js';
import { Child } from './process.js';
import { waitForQuiet } from './quiet.js';
import type { Results } from './results.js';

/** Counts and time caps; --quick shrinks them. */
export interface Config {
  quick: boolean;
  backlog: boolean;
  repetitions: number;
  drain: { count: number; capMs: number; concurrencies: number[] };
  latency: { ratePerSecond: number; durationMs: number; concurrency: number; graceMs: number };
  io: { count: number; capMs: number; concurrency: number };
  effect: { count: number; capMs: number; concurrency: number };
  recovery: { capMs: number };
  reruns: { count: number; capMs: number; concurrency: number };
  backlogSizes: { small: number; large: number; window: number; concurrency: number };
}

export interface Run {
  config: Config;
  results: Results;
  dir: string;
  /** Settings each system reported, by system id, then by setting name. */
  settings: Map<string, Map<string, string>>;
  versions: Map<string, string>;
  /** Measurements that failed, with the reason; the run goes on without them. */
  failures: string[];
  /** How long each worker process waited for a quiet machine, in ms (see quiet.ts). */
  quietWaits: number[];
  log: (line: string) => void;
}

/** Runs one measurement; a failure is logged and listed in the results instead of ending the run. */
export async function guard(run: Run, what: string, measurement: () => Promise<void>): Promise<void> {
  try {
    await measurement();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    run.failures.push(`${what}: ${message.split('\n')[0]}`);
    run.log(`  FAILED ${what}: ${message}`);
  }
}

function base(run: Run, spec: SystemSpec, fastRecovery = false) {
  return { name: spec.id, kind: spec.kind, mode: spec.mode, dir: run.dir, ...(fastRecovery ? { fastRecovery } : {}) };
}

export function recordSettings(run: Run, spec: SystemSpec, settings: Record<string, unknown>, version: string): void {
  let entry = run.settings.get(spec.id);
  if (!entry) {
    entry = new Map();
    run.settings.set(spec.id, entry);
  }
  for (const [name, value] of Object.entries(settings)) entry.set(name, String(value));
  run.versions.set(spec.id, version);
}

/** Resets the system's store and enqueues `count` jobs; returns the enqueue rate in jobs/s. */
export async function prepare(
  run: Run,
  spec: SystemSpec,
  count: number,
  options: { reset?: boolean; chunk?: number; from?: number; fastRecovery?: boolean } = {},
): Promise<number> {
  const task: Task = {
    ...base(run, spec, options.fastRecovery),
    role: 'prepare',
    reset: options.reset ?? true,
    count,
    chunk: options.chunk ?? count,
    ...(options.from !== undefined ? { from: options.from } : {}),
  };
  const child = new Child(spec.runtime, task, spec.id);
  try {
    const result = await child.next('result', 600_000);
    return count === 0 ? 0 : count / ((result.enqueueMs as number) / 1000);
  } finally {
    await child.finish();
  }
}

export interface WorkerResult {
  started: number;
  completed: number;
  firstAt: number;
  endAt: number;
  capped: boolean;
  /** Jobs per second from the first job's start until the store recorded the last one completed. */
  rate: number;
  /** Peak RSS of the worker process in MiB, from /proc/PID/status VmHWM. */
  rssMiB: number;
  latencies?: number[];
}

/** The maximum wait for a quiet machine before a worker process starts anyway. */
const QUIET_CAP_MS = 5000;

/** Starts one worker process, once the machine is quiet, and waits for its result. */
export async function work(
  run: Run,
  spec: SystemSpec,
  options: Omit<WorkTask, 'role' | 'name' | 'kind' | 'mode' | 'dir'>,
  hooks: { onReady?: (child: Child) => Promise<void> } = {},
): Promise<WorkerResult> {
  const task: Task = { ...base(run, spec, options.fastRecovery), ...options, role: 'work' };
  const { waitedMs, quiet } = await waitForQuiet(QUIET_CAP_MS);
  run.quietWaits.push(waitedMs);
  if (!quiet) run.log(`  the machine stayed busy for ${QUIET_CAP_MS / 1000} s before a ${spec.label} worker; started anyway`);
  const child = new Child(spec.runtime, task, spec.id);
  let ok = false;
  try {
    const ready = await child.next('ready', 120_000);
    recordSettings(run, spec, ready.settings, ready.version);
    if (hooks.onReady) await hooks.onReady(child);
    const capMs = 'capMs' in options.until ? options.until.capMs : 0;
    const result = await child.next('result', capMs + 180_000);
    const rssKb = child.peakRssKb() ?? (result.maxRssKb as number);
    const firstAt = (result.firstAt as number | undefined) ?? now();
    const endAt = (result.endAt as number | undefined) ?? now();
    const started = result.started as number;
    const completed = (result.completed as number | undefined) ?? started;
    const elapsedS = Math.max(endAt - firstAt, 1) / 1000;
    ok = true;
    return {
      started,
      completed,
      firstAt,
      endAt,
      capped: result.capped === true,
      rate: completed / elapsedS,
      rssMiB: rssKb / 1024,
      ...(result.latencies ? { latencies: result.latencies as number[] } : {}),
    };
  } finally {
    await child.finish(!ok);
  }
}

export interface DrainResult extends WorkerResult {
  enqueueRate: number;
}

/** Enqueues `count` jobs in bulk into a fresh store, then drains them with one worker process. */
export async function drain(
  run: Run,
  spec: SystemSpec,
  options: { count: number; concurrency: number; job: 'noop' | 'io'; capMs: number; variant?: VouchVariant },
): Promise<DrainResult> {
  const enqueueRate = await prepare(run, spec, options.count);
  const result = await work(run, spec, {
    concurrency: options.concurrency,
    job: options.job,
    ...(options.variant ? { variant: options.variant } : {}),
    until: { kind: 'drained', count: options.count, capMs: options.capMs },
  });
  return { ...result, enqueueRate };
}

/** The systems in round-robin order for one repetition: each repetition starts one system later. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
}
