/**
 * Workload 2: enqueue-to-start latency. One process enqueues single jobs at
 * a steady rate, each carrying the time its enqueue call began; a worker in
 * another process records, at each job's start, how long ago that was. A job
 * that had not started when the run ended counts as infinitely late, so a
 * system that cannot keep up shows "> run" instead of a flattering p99.
 */
import type { SystemSpec } from '../systems/catalog.js';
import { now, type SteadyTask } from '../systems/protocol.js';
import { guard, prepare, type Run, rotate, work } from './measure.js';
import { Child } from './process.js';
import { quantile } from './results.js';

export const LATENCY = 'enqueue-to-start latency';

export async function latencies(run: Run, systems: readonly SystemSpec[], repetition: number): Promise<void> {
  const { ratePerSecond, durationMs, concurrency, graceMs } = run.config.latency;
  for (const spec of rotate(systems, repetition))
    await guard(run, `${LATENCY} ${spec.label}`, async () => {
      await prepare(run, spec, 0);
      let sent = 0;
      const result = await work(
        run,
        spec,
        { concurrency, job: 'noop', until: { kind: 'parent' } },
        {
          onReady: async (worker) => {
            const task: SteadyTask = {
              name: spec.id,
              kind: spec.kind,
              mode: spec.mode,
              dir: run.dir,
              role: 'steady',
              ratePerSecond,
              durationMs,
            };
            const producer = new Child(spec.runtime, task, spec.id);
            try {
              const produced = await producer.next('result', durationMs + 120_000);
              sent = produced.sent as number;
            } finally {
              await producer.finish();
            }
            // After the producer stops, the worker gets graceMs to start the last jobs.
            const until = now() + graceMs;
            while (now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
            worker.send({ cmd: 'finish' });
          },
        },
      );
      const observed = result.latencies ?? [];
      const p50 = quantile(observed, 0.5, sent);
      const p99 = quantile(observed, 0.99, sent);
      const point = `${ratePerSecond}/s`;
      run.results.add({
        workload: LATENCY,
        system: spec.id,
        point,
        metric: 'p50',
        value: p50,
        ...(p50 === Infinity ? { bound: 'over' as const } : {}),
      });
      run.results.add({
        workload: LATENCY,
        system: spec.id,
        point,
        metric: 'p99',
        value: p99,
        ...(p99 === Infinity ? { bound: 'over' as const } : {}),
      });
      run.results.add({ workload: LATENCY, system: spec.id, point, metric: 'started', value: observed.length / Math.max(sent, 1) });
      run.log(`  ${LATENCY} ${spec.label}: p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, started ${observed.length} of ${sent}`);
    });
}
