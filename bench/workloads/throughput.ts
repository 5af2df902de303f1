/**
 * Workloads 1, 3 and 5: bulk enqueue, then drain by one worker process.
 *
 * A drain rate is the number of jobs completed in the store, divided by the
 * time from the first job's start until the store recorded the last one
 * completed. A drain still running at its time cap ends there, and its rate
 * is marked as capped. Peak RSS of the worker process is recorded with every drain.
 */
import type { VouchVariant } from '../systems/adapter.js';
import type { SystemSpec } from '../systems/catalog.js';
import { drain, guard, type Run, rotate } from './measure.js';

export const NOOP = 'no-op drain';
export const IO = 'I/O-bound drain';
export const EFFECT = 'ctx.effect and verify cost';

/** Workload 1: 20,000 no-op jobs enqueued in bulk, drained at each concurrency. */
export async function noopDrains(run: Run, systems: readonly SystemSpec[], repetition: number): Promise<void> {
  const { count, capMs, concurrencies } = run.config.drain;
  for (const concurrency of concurrencies) {
    for (const spec of rotate(systems, repetition))
      await guard(run, `${NOOP} c=${concurrency} ${spec.label}`, async () => {
        const result = await drain(run, spec, { count, concurrency, job: 'noop', capMs });
        const point = `c=${concurrency}`;
        // Every drain starts with the same bulk enqueue, so its rate is one figure over all concurrencies.
        run.results.add({ workload: NOOP, system: spec.id, point: 'bulk', metric: 'enqueue', value: result.enqueueRate });
        run.results.add({
          workload: NOOP,
          system: spec.id,
          point,
          metric: 'drain',
          value: result.rate,
          ...(result.capped ? { bound: 'capped' as const } : {}),
        });
        run.results.add({ workload: NOOP, system: spec.id, point, metric: 'rss', value: result.rssMiB });
        run.log(
          `  ${NOOP} ${point} ${spec.label}: enqueue ${fmt(result.enqueueRate)}/s, drain ${fmt(result.rate)}/s${result.capped ? ` (capped: ${result.completed} of ${count})` : ''}, RSS ${result.rssMiB.toFixed(0)} MiB`,
        );
      });
  }
}

/** Workload 3: jobs that each await 5 ms, at concurrency 50. */
export async function ioDrains(run: Run, systems: readonly SystemSpec[], repetition: number): Promise<void> {
  const { count, capMs, concurrency } = run.config.io;
  for (const spec of rotate(systems, repetition))
    await guard(run, `${IO} ${spec.label}`, async () => {
      const result = await drain(run, spec, { count, concurrency, job: 'io', capMs });
      const point = `c=${concurrency}`;
      run.results.add({
        workload: IO,
        system: spec.id,
        point,
        metric: 'drain',
        value: result.rate,
        ...(result.capped ? { bound: 'capped' as const } : {}),
      });
      run.results.add({ workload: IO, system: spec.id, point, metric: 'rss', value: result.rssMiB });
      run.log(
        `  ${IO} ${spec.label}: ${fmt(result.rate)}/s${result.capped ? ` (capped: ${result.completed} of ${count})` : ''}, RSS ${result.rssMiB.toFixed(0)} MiB`,
      );
    });
}

/** Workload 5, vouch only: a plain job against one calling ctx.effect once, and one with a verify. */
export async function effectCost(run: Run, systems: readonly SystemSpec[], repetition: number): Promise<void> {
  const { count, capMs, concurrency } = run.config.effect;
  const variants: VouchVariant[] = ['plain', 'effect', 'verify'];
  for (const variant of rotate(variants, repetition)) {
    for (const spec of rotate(systems, repetition))
      await guard(run, `${EFFECT} ${variant} ${spec.label}`, async () => {
        const result = await drain(run, spec, { count, concurrency, job: 'noop', capMs, variant });
        run.results.add({
          workload: EFFECT,
          system: spec.id,
          point: variant,
          metric: 'drain',
          value: result.rate,
          ...(result.capped ? { bound: 'capped' as const } : {}),
        });
        run.log(`  ${EFFECT} ${variant} ${spec.label}: ${fmt(result.rate)}/s`);
      });
  }
}

export function fmt(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}
