/**
 * Runs K worker processes and kills them at random until the caller says the
 * work is finished, then stops the workers with SIGTERM and waits for them.
 *
 * Each worker, from the moment it reports ready, gets a random lifetime from
 * an exponential distribution with mean K * killIntervalMs, drawn from a
 * seeded generator. When it runs out the worker is SIGKILLed and a
 * replacement starts. With all K workers up, that is a Poisson stream of
 * kills with one every killIntervalMs on average, each at a random worker.
 *
 * One worker is down at a time: a lifetime that runs out while another
 * worker is still starting ends when that worker reports ready. Workers run
 * as precompiled JavaScript (see compile-worker.ts), but on a busy machine a
 * start can still take longer than a worker's mean life. Without this rule
 * most workers would be starting at any moment, the restarts would use most
 * of the CPU, and the few live workers would be killed before finishing
 * anything. With the rule, at least K - 1 workers run jobs at all times, and
 * the kill rate drops to what the machine can absorb. The demo prints the
 * rate it reached.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import type { ReadyMessage } from './worker-process.js';

export interface SupervisorOptions {
  /** Label used in worker ids and messages, such as "vouch". */
  label: string;
  /** The worker's compiled JavaScript entry file, run with plain node. */
  workerFile: string;
  /** Arguments for a worker, given its id. */
  workerArgs: (workerId: string) => string[];
  workers: number;
  /** Mean time between kills while all workers are up, in milliseconds: each worker lives workers * killIntervalMs on average. */
  killIntervalMs: number;
  /** Uniform random numbers in [0, 1), from a seeded generator. */
  random: () => number;
  /** Receives the workers' stdout and stderr. */
  logFile: string;
  /** Whether every job is terminal. Polled every `checkIntervalMs`. */
  isFinished: () => Promise<boolean>;
  /** Gives up after this long and reports the run as unfinished. */
  deadlineMs: number;
  checkIntervalMs?: number;
}

export interface SupervisorReport {
  /** SIGKILLs sent and confirmed by the worker's exit. */
  kills: number;
  /** Milliseconds from spawn to the worker's ready message, one per worker that got there. */
  startupMs: number[];
  /** CPU milliseconds each of those workers used to get ready. */
  startupCpuMs: number[];
  /** Time from the first spawn until isFinished returned true, or until the deadline. */
  durationMs: number;
  finished: boolean;
}

interface Tracked {
  child: ChildProcess;
  ready: boolean;
  killed: boolean;
  killTimer: NodeJS.Timeout | undefined;
  /** When its lifetime ran out; it is killed as soon as no other worker is down. */
  dueAt: number | undefined;
  exited: Promise<void>;
}

const STOP_TIMEOUT_MS = 10_000;

export async function superviseWorkers(options: SupervisorOptions): Promise<SupervisorReport> {
  const logFd = openSync(options.logFile, 'a');
  const live = new Map<string, Tracked>();
  const startupMs: number[] = [];
  const startupCpuMs: number[] = [];
  let kills = 0;
  let spawned = 0;
  let stopping = false;
  let failure: Error | undefined;
  let wakeMain: () => void = () => {};

  const start = (): void => {
    spawned += 1;
    const id = `${options.label}-${spawned}`;
    const spawnedAt = performance.now();
    const child = spawn(process.execPath, [options.workerFile, ...options.workerArgs(id)], {
      stdio: ['ignore', logFd, logFd, 'ipc'],
    });
    const tracked: Tracked = {
      child,
      ready: false,
      killed: false,
      killTimer: undefined,
      dueAt: undefined,
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    live.set(id, tracked);
    child.on('message', (message: ReadyMessage) => {
      if (message?.type !== 'ready' || tracked.ready) return;
      tracked.ready = true;
      startupMs.push(performance.now() - spawnedAt);
      startupCpuMs.push(message.cpuMs);
      if (stopping) return;
      const lifetimeMs = -Math.log(1 - options.random()) * options.killIntervalMs * options.workers;
      tracked.killTimer = setTimeout(() => {
        tracked.dueAt = performance.now();
        killDue();
      }, lifetimeMs);
      // A worker that just came up may be what a due kill was waiting for.
      killDue();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(tracked.killTimer);
      live.delete(id);
      if (tracked.killed && signal === 'SIGKILL') {
        kills += 1;
        if (!stopping) start();
        return;
      }
      if (!stopping) {
        failure ??= new Error(
          `${options.label} worker ${id} exited by itself (${signal ? `signal ${signal}` : `exit code ${code}`}) while the run was going on; its output is in ${options.logFile}`,
        );
        wakeMain();
      }
    });
  };

  /** Kills the worker whose lifetime ran out first, unless a worker is down (killed, or still starting). */
  const killDue = (): void => {
    if (stopping) return;
    const workers = [...live.values()];
    if (workers.some((worker) => worker.killed || !worker.ready)) return;
    const due = workers.filter((worker) => worker.dueAt !== undefined).sort((a, b) => (a.dueAt ?? 0) - (b.dueAt ?? 0))[0];
    if (!due) return;
    due.killed = true;
    due.child.kill('SIGKILL');
  };

  const startedAt = performance.now();
  for (let index = 0; index < options.workers; index += 1) start();

  let finished = false;
  let checkError: unknown;
  try {
    while (!failure) {
      if (await options.isFinished()) {
        finished = true;
        break;
      }
      if (performance.now() - startedAt > options.deadlineMs) break;
      await new Promise<void>((resolve) => {
        wakeMain = resolve;
        setTimeout(resolve, options.checkIntervalMs ?? 100);
      });
    }
  } catch (error) {
    checkError = error;
  }
  const durationMs = performance.now() - startedAt;
  stopping = true;
  for (const tracked of live.values()) clearTimeout(tracked.killTimer);
  await stopAll([...live.values()]);
  closeSync(logFd);
  if (checkError) throw checkError;
  if (failure) throw failure;
  return { kills, startupMs, startupCpuMs, durationMs, finished };
}

/** SIGTERM, then SIGKILL for any worker still alive after the timeout. */
async function stopAll(workers: Tracked[]): Promise<void> {
  for (const worker of workers) worker.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    for (const worker of workers) if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGKILL');
  }, STOP_TIMEOUT_MS);
  await Promise.all(workers.map((worker) => worker.exited));
  clearTimeout(timer);
}

/** mulberry32: a small, fast, seeded generator of uniform numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
