import { PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { Client, defineJob, type JobDefinition, type Store, Worker } from '../../dist/index.js';
import type { BenchPayload } from '../systems/adapter.js';
import { passThrough } from '../systems/vouch.js';

/** The profile's job definitions: the benchmark's payload, no result. */
export type ProfileJob = JobDefinition<BenchPayload, null, unknown>;

/** Defines a job whose perform returns at once, or calls ctx.effect once first. */
export function profileJob(withEffect: boolean): ProfileJob {
  return defineJob({
    name: 'profile',
    payload: passThrough,
    async perform(ctx) {
      if (withEffect) await ctx.effect('noop', () => 1);
      return null;
    },
  });
}

/** The logger for the profile's stores: their info lines (an ANALYZE, say) would only interleave with its output. */
export const quiet = pino({ level: 'silent' });

export async function enqueueJobs(store: Store<any>, job: ProfileJob, count: number): Promise<void> {
  const client = new Client({ store });
  for (let from = 0; from < count; from += 1000) {
    const size = Math.min(1000, count - from);
    await client.enqueueMany(
      job,
      Array.from({ length: size }, (_, index) => ({ payload: { i: from + index } })),
    );
  }
}

/** The figures of one drain. */
export interface Drain {
  /** Jobs per second from the first job's start until the store counts every job completed. */
  rate: number;
  milliseconds: number;
  /** CPU time of this process during the drain, in microseconds per job. */
  workerCpuPerJob: number;
  /** Share of the drain's time that garbage collection paused the event loop. */
  gcShare: number;
}

/**
 * Runs a Worker at `concurrency` until the store counts `count` jobs
 * completed, as the benchmark's drain does, and measures it from this
 * process. The worker is stopped before this returns.
 */
export async function drain(store: Store<any>, job: ProfileJob, count: number, concurrency: number): Promise<Drain> {
  let firstStart: number | undefined;
  const timed: ProfileJob = {
    ...job,
    perform(ctx) {
      firstStart ??= performance.now();
      return job.perform(ctx);
    },
  };
  const pauses: { start: number; duration: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) pauses.push({ start: entry.startTime, duration: entry.duration });
  });
  observer.observe({ entryTypes: ['gc'] });
  const worker = new Worker({ store, jobs: [timed], concurrency, logger: quiet });
  const cpuBefore = process.cpuUsage();
  await worker.start();
  while ((await store.countByState()).completed < count) await sleep(2);
  const end = performance.now();
  const cpu = process.cpuUsage(cpuBefore);
  observer.disconnect();
  await worker.stop();
  const start = firstStart ?? end;
  const milliseconds = end - start;
  const paused = pauses.filter((pause) => pause.start >= start && pause.start < end).reduce((sum, pause) => sum + pause.duration, 0);
  return {
    rate: (count / milliseconds) * 1000,
    milliseconds,
    workerCpuPerJob: (cpu.user + cpu.system) / count,
    gcShare: paused / milliseconds,
  };
}
