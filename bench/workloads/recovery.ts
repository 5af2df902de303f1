/**
 * Workload 6: what a SIGKILL costs.
 *
 * Recovery time, each system at its defaults: worker A starts a job that never
 * returns; worker B is started and ready; A is killed with SIGKILL; the time
 * until B starts the same job is measured, up to a cap (a system whose
 * default recovery takes longer shows "> cap").
 *
 * Re-runs, each system and mode: N jobs of 5 ms at concurrency 50; A is
 * killed when half of them have started; B then drains the rest. Every
 * execution appends the job id to a file with a write(2), which a SIGKILL
 * cannot undo; ids that appear twice ran twice. So that B finishes within
 * the run, each system's own recovery is shortened (vouch needs nothing: its
 * default lease is 10 s); this changes when the re-runs happen, not how many.
 * Systems with separate storage run at the same time, since the measure is a
 * count and a wait, not a rate.
 */
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { SystemSpec } from '../systems/catalog.js';
import { now, type Task } from '../systems/protocol.js';
import { guard, prepare, type Run, work } from './measure.js';
import { Child } from './process.js';

export const RECOVERY = 'recovery after SIGKILL';

/** Systems that share a store (the modes of one peer) cannot run at the same time. */
function waves(systems: readonly SystemSpec[]): SystemSpec[][] {
  const result: SystemSpec[][] = [];
  for (const spec of systems) {
    const wave = result.find((candidate) => candidate.every((other) => storageOf(other) !== storageOf(spec)));
    if (wave) wave.push(spec);
    else result.push([spec]);
  }
  return result;
}

function storageOf(spec: SystemSpec): string {
  return spec.kind === 'vouch-sqlite' ? spec.id : spec.kind;
}

function workTask(
  run: Run,
  spec: SystemSpec,
  fields: Omit<Extract<Task, { role: 'work' }>, 'role' | 'name' | 'kind' | 'mode' | 'dir'>,
): Task {
  return { name: spec.id, kind: spec.kind, mode: spec.mode, dir: run.dir, role: 'work', ...fields };
}

/** Seconds from A's SIGKILL until B starts the job, or Infinity past the cap. */
async function recoveryOnce(run: Run, spec: SystemSpec): Promise<number> {
  await prepare(run, spec, 0);
  const a = new Child(spec.runtime, workTask(run, spec, { concurrency: 1, job: 'hang', hang: true, until: { kind: 'parent' } }), spec.id);
  let b: Child | undefined;
  try {
    await a.next('ready', 120_000);
    await prepare(run, spec, 1, { reset: false });
    await a.next('job-start', 60_000);
    b = new Child(spec.runtime, workTask(run, spec, { concurrency: 1, job: 'hang', hang: false, until: { kind: 'parent' } }), spec.id);
    await b.next('ready', 120_000);
    const killedAt = now();
    a.kill();
    try {
      const started = await b.next('job-start', run.config.recovery.capMs);
      return (started.at - killedAt) / 1000;
    } catch {
      return Number.POSITIVE_INFINITY;
    }
  } finally {
    a.kill();
    await a.exited;
    b?.kill();
    await b?.exited;
    await a.finish();
    await b?.finish();
  }
}

/** How many jobs ran more than once after one SIGKILL in the middle of a drain. */
async function rerunsOnce(
  run: Run,
  spec: SystemSpec,
  repetition: number,
): Promise<{ reruns: number; finished: boolean; executions: number }> {
  const { count, capMs, concurrency } = run.config.reruns;
  const execLog = join(run.dir, `executions-${spec.id}-${repetition}.log`);
  rmSync(execLog, { force: true });
  await prepare(run, spec, count, { fastRecovery: true });
  const a = new Child(
    spec.runtime,
    workTask(run, spec, {
      concurrency,
      job: 'io',
      until: { kind: 'parent' },
      execLog,
      progressAt: Math.floor(count / 2),
      fastRecovery: true,
    }),
    spec.id,
  );
  try {
    await a.next('ready', 120_000);
    await a.next('progress', 300_000);
    a.kill();
    await a.exited;
  } finally {
    a.kill();
    await a.finish();
  }
  const b = await work(run, spec, {
    concurrency,
    job: 'io',
    until: { kind: 'empty', capMs },
    execLog,
    recoverFirst: true,
    fastRecovery: true,
  });
  const runs = new Map<string, number>();
  for (const id of readFileSync(execLog, 'utf8').split('\n')) if (id) runs.set(id, (runs.get(id) ?? 0) + 1);
  const reruns = [...runs.values()].filter((n) => n > 1).length;
  return { reruns, finished: !b.capped && runs.size === count, executions: [...runs.values()].reduce((a2, n) => a2 + n, 0) };
}

export async function recoveries(run: Run, atDefaults: readonly SystemSpec[], everyMode: readonly SystemSpec[]): Promise<void> {
  // Recovery time: all systems at once; a system that did not recover within the cap in the first
  // repetition will not in the next ones either (its documented default is longer), so it runs once.
  let pending = [...atDefaults];
  for (let repetition = 0; repetition < run.config.repetitions && pending.length > 0; repetition += 1) {
    const outcomes = await Promise.all(
      pending.map(async (spec) => {
        let seconds = Number.NaN;
        await guard(run, `recovery ${spec.label}`, async () => {
          seconds = await recoveryOnce(run, spec);
        });
        if (Number.isNaN(seconds)) return { spec, over: true };
        const over = seconds === Number.POSITIVE_INFINITY;
        run.results.add({
          workload: RECOVERY,
          system: spec.id,
          point: 'defaults',
          metric: 'seconds',
          value: seconds,
          ...(over ? { bound: 'over' as const } : {}),
        });
        run.log(`  recovery ${spec.label}: ${over ? `> ${run.config.recovery.capMs / 1000} s` : `${seconds.toFixed(1)} s`}`);
        return { spec, over };
      }),
    );
    pending = outcomes.filter((outcome) => !outcome.over).map((outcome) => outcome.spec);
  }
  for (let repetition = 0; repetition < run.config.repetitions; repetition += 1) {
    for (const wave of waves(everyMode)) {
      await Promise.all(
        wave.map((spec) =>
          guard(run, `re-runs ${spec.label}`, async () => {
            const outcome = await rerunsOnce(run, spec, repetition);
            run.results.add({
              workload: RECOVERY,
              system: spec.id,
              point: 'after one SIGKILL',
              metric: 'reruns',
              value: outcome.reruns,
              ...(outcome.finished ? {} : { bound: 'capped' as const }),
            });
            run.log(
              `  re-runs ${spec.label}: ${outcome.reruns}${outcome.finished ? '' : ' (the drain after the kill did not finish within the cap)'}`,
            );
          }),
        ),
      );
    }
  }
}
