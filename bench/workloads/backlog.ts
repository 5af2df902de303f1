/**
 * Workload 4 (--backlog): the drain rate with 1,000,000 jobs waiting against
 * the rate with 10,000, for vouch on each store and the fastest PostgreSQL
 * peer of the no-op drain at concurrency 50. The rate is taken over the first
 * 5,000 job starts of a worker at concurrency 50 (a backlog of a million never
 * drains within the run); the large backlog is enqueued once per system and
 * each repetition takes the next 5,000 jobs from it.
 */
import type { SystemSpec } from '../systems/catalog.js';
import { guard, prepare, type Run, rotate, work } from './measure.js';
import { fmt } from './throughput.js';

export const BACKLOG = 'backlog';

export async function backlogs(run: Run, systems: readonly SystemSpec[]): Promise<void> {
  const { small, large, window, concurrency } = run.config.backlogSizes;
  const smallPoint = `${fmt(small)} waiting`;
  const largePoint = `${fmt(large)} waiting`;
  const measure = (spec: SystemSpec, point: string) =>
    guard(run, `${BACKLOG} ${point} ${spec.label}`, async () => {
      const result = await work(run, spec, { concurrency, job: 'noop', until: { kind: 'started', count: window, capMs: 300_000 } });
      run.results.add({
        workload: BACKLOG,
        system: spec.id,
        point,
        metric: 'drain',
        value: result.rate,
        ...(result.capped ? { bound: 'capped' as const } : {}),
      });
      run.results.add({ workload: BACKLOG, system: spec.id, point, metric: 'rss', value: result.rssMiB });
      run.log(`  ${BACKLOG} ${point} ${spec.label}: ${fmt(result.rate)}/s`);
    });

  for (let repetition = 0; repetition < run.config.repetitions; repetition += 1) {
    for (const spec of rotate(systems, repetition)) {
      await guard(run, `${BACKLOG} enqueue ${smallPoint} ${spec.label}`, async () => {
        await prepare(run, spec, small, { chunk: 10_000 });
      });
      await measure(spec, smallPoint);
    }
  }
  for (const spec of systems) {
    run.log(`  ${BACKLOG}: enqueueing ${fmt(large)} jobs for ${spec.label}...`);
    await guard(run, `${BACKLOG} enqueue ${largePoint} ${spec.label}`, async () => {
      const rate = await prepare(run, spec, large, { chunk: 10_000 });
      run.results.add({ workload: BACKLOG, system: spec.id, point: largePoint, metric: 'enqueue', value: rate });
    });
  }
  for (let repetition = 0; repetition < run.config.repetitions; repetition += 1) {
    for (const spec of rotate(systems, repetition)) await measure(spec, largePoint);
  }
}
