/** Turns the medians into the tables printed on stdout and written to bench/RESULTS.md. */
import type { SystemSpec } from '../systems/catalog.js';
import { BACKLOG } from './backlog.js';
import { LATENCY } from './latency.js';
import type { Run } from './measure.js';
import { RECOVERY } from './recovery.js';
import type { Results } from './results.js';
import { EFFECT, IO, NOOP } from './throughput.js';

export interface Environment {
  started: string;
  durationS: number;
  command: string;
  machine: string[];
  vouch: string;
  vouchPostgres: string;
  /** Version of each system's package. */
  libraries: Record<SystemSpec['kind'], string>;
}

type Unit = 'rate' | 'ms' | 'MiB' | 's' | 'count';

function format(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return '∞';
  switch (unit) {
    case 'rate':
      return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
    case 'ms':
      return value >= 100 ? Math.round(value).toLocaleString('en-US') : value.toFixed(1);
    case 'MiB':
      return value.toFixed(0);
    case 's':
      return value.toFixed(1);
    case 'count':
      return Math.round(value).toString();
  }
}

function ratio(value: number, reference: number | undefined): string {
  if (reference === undefined || !Number.isFinite(value) || !Number.isFinite(reference) || reference === 0) return '';
  const r = value / reference;
  return ` (${r >= 10 ? r.toFixed(0) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×)`;
}

class Tables {
  readonly lines: string[] = [];
  constructor(
    private readonly results: Results,
    private readonly systems: readonly SystemSpec[],
    /** Ratios are taken against vouch on SQLite under Node 22, the runtime the peers run on. */
    private readonly reference: string,
    /** PostgreSQL-backed rows also get a ratio to vouch on PostgreSQL, when it ran. */
    private readonly postgresReference: string | undefined,
    private readonly capNote: Map<string, string>,
  ) {}

  /** Adds one table, with a row per system and a column per (point, metric). */
  table(title: string, note: string, workload: string, columns: { point: string; metric: string; header: string; unit: Unit }[]): void {
    const rows = this.systems.filter((spec) => columns.some((c) => this.results.median(workload, spec.id, c.point, c.metric)));
    if (rows.length === 0) return;
    this.lines.push(`### ${title}`, '', note, '');
    this.lines.push(`| system | ${columns.map((c) => c.header).join(' | ')} |`, `|---|${columns.map(() => '---:').join('|')}|`);
    for (const spec of rows) {
      const cells = columns.map((column) => {
        const cell = this.results.median(workload, spec.id, column.point, column.metric);
        if (!cell) return '–';
        const reference = this.results.median(workload, this.reference, column.point, column.metric);
        const mark = cell.bound === 'capped' ? ' †' : '';
        const shown =
          cell.bound === 'over' && !Number.isFinite(cell.value)
            ? `> ${this.capNote.get(workload) ?? 'cap'}`
            : format(cell.value, column.unit);
        const postgres =
          this.postgresReference && spec.store === 'postgres' && !spec.vouch
            ? this.results.median(workload, this.postgresReference, column.point, column.metric)
            : undefined;
        const second = postgres ? ratio(cell.value, postgres.value).replace(' (', ' (PG ') : '';
        return `${shown}${mark}${spec.id === this.reference ? '' : ratio(cell.value, reference?.value)}${second}`;
      });
      this.lines.push(`| ${spec.label} | ${cells.join(' | ')} |`);
    }
    this.lines.push('');
  }
}

export interface Target {
  target: string;
  figure: string;
  met: boolean | undefined;
}

export function targets(run: Run, systems: readonly SystemSpec[]): Target[] {
  const r = run.results;
  const value = (workload: string, id: string | undefined, point: string, metric: string) =>
    id === undefined ? undefined : r.median(workload, id, point, metric)?.value;
  const find = (predicate: (spec: SystemSpec) => boolean) => systems.find(predicate)?.id;
  const sqlite = find((s) => s.kind === 'vouch-sqlite' && s.runtime === 'node22');
  const postgres = find((s) => s.kind === 'vouch-postgres' && s.runtime === 'node22');
  const graphileBatched = find((s) => s.kind === 'graphile-worker' && s.mode === 'tuned');
  const graphileDefaults = find((s) => s.kind === 'graphile-worker' && s.mode === 'defaults');
  const bullmqRedis = find((s) => s.kind === 'bullmq-redis');
  const peers = systems.filter((s) => !s.vouch);
  const list: Target[] = [];
  const missing = (what: string): Target => ({ target: what, figure: 'not measured', met: undefined });

  for (const c of run.config.drain.concurrencies.filter((n) => n >= 10)) {
    const point = `c=${c}`;
    const mine = value(NOOP, sqlite, point, 'drain');
    const best = peers
      .map((s) => ({ s, v: value(NOOP, s.id, point, 'drain') }))
      .filter((x): x is { s: SystemSpec; v: number } => x.v !== undefined)
      .sort((a, b) => b.v - a.v)[0];
    const what = `vouch SQLite drains ≥ 2× the fastest peer at concurrency ${c}`;
    if (mine === undefined || !best) list.push(missing(what));
    else
      list.push({
        target: what,
        figure: `${format(mine, 'rate')} vs ${best.s.label} ${format(best.v, 'rate')} jobs/s = ${(mine / best.v).toFixed(2)}×`,
        met: mine >= 2 * best.v,
      });
  }
  for (const c of run.config.drain.concurrencies.filter((n) => n >= 10)) {
    const point = `c=${c}`;
    const what = `vouch PostgreSQL drains ≥ 1.2× graphile-worker (batched) at concurrency ${c}`;
    const mine = value(NOOP, postgres, point, 'drain');
    const theirs = value(NOOP, graphileBatched, point, 'drain');
    if (mine === undefined || theirs === undefined) list.push(missing(what));
    else
      list.push({
        target: what,
        figure: `${format(mine, 'rate')} vs ${format(theirs, 'rate')} jobs/s = ${(mine / theirs).toFixed(2)}×`,
        met: mine >= 1.2 * theirs,
      });
  }
  {
    const what = 'vouch PostgreSQL re-runs fewer jobs than graphile-worker (batched) after one SIGKILL';
    const mine = value(RECOVERY, postgres, 'after one SIGKILL', 'reruns');
    const theirs = value(RECOVERY, graphileBatched, 'after one SIGKILL', 'reruns');
    if (mine === undefined || theirs === undefined) list.push(missing(what));
    else list.push({ target: what, figure: `${mine} vs ${theirs}`, met: mine < theirs });
  }
  const point = `${run.config.latency.ratePerSecond}/s`;
  for (const [mine, theirs, label] of [
    [sqlite, bullmqRedis, 'vouch SQLite enqueue-to-start p99 ≤ BullMQ on Redis'],
    [postgres, graphileDefaults, 'vouch PostgreSQL enqueue-to-start p99 ≤ graphile-worker (defaults)'],
  ] as const) {
    const a = value(LATENCY, mine, point, 'p99');
    const b = value(LATENCY, theirs, point, 'p99');
    if (a === undefined || b === undefined) list.push(missing(label));
    else list.push({ target: label, figure: `${format(a, 'ms')} ms vs ${format(b, 'ms')} ms`, met: a <= b });
  }
  for (const id of [sqlite, postgres]) {
    const label = `${systems.find((s) => s.id === id)?.label ?? 'vouch PostgreSQL'}: drain rate with 1,000,000 waiting ≥ 90% of the rate with 10,000`;
    const small = value(BACKLOG, id, `${run.config.backlogSizes.small.toLocaleString('en-US')} waiting`, 'drain');
    const large = value(BACKLOG, id, `${run.config.backlogSizes.large.toLocaleString('en-US')} waiting`, 'drain');
    if (small === undefined || large === undefined) list.push(missing(label));
    else
      list.push({
        target: label,
        figure: `${format(large, 'rate')} vs ${format(small, 'rate')} jobs/s = ${((100 * large) / small).toFixed(0)}%`,
        met: large >= 0.9 * small,
      });
  }
  for (const id of [sqlite, postgres]) {
    const label = `${systems.find((s) => s.id === id)?.label ?? 'vouch PostgreSQL'}: one ctx.effect costs ≤ 20% of a plain job's throughput`;
    const plain = value(EFFECT, id, 'plain', 'drain');
    const effect = value(EFFECT, id, 'effect', 'drain');
    const verify = value(EFFECT, id, 'verify', 'drain');
    if (plain === undefined || effect === undefined) list.push(missing(label));
    else
      list.push({
        target: label,
        figure: `${format(effect, 'rate')} vs ${format(plain, 'rate')} jobs/s: costs ${(100 * (1 - effect / plain)).toFixed(0)}%${verify === undefined ? '' : ` (a verify costs ${(100 * (1 - verify / plain)).toFixed(0)}%)`}`,
        met: effect >= 0.8 * plain,
      });
  }
  for (const id of [sqlite, postgres]) {
    const label = `${systems.find((s) => s.id === id)?.label ?? 'vouch PostgreSQL'}: recovery after SIGKILL at defaults within 15 s`;
    const seconds = value(RECOVERY, id, 'defaults', 'seconds');
    if (seconds === undefined) list.push(missing(label));
    else list.push({ target: label, figure: `${format(seconds, 's')} s`, met: seconds <= 15 });
  }
  for (const c of run.config.drain.concurrencies) {
    const label = `vouch SQLite peak worker RSS ≤ BullMQ (Redis) at concurrency ${c}`;
    const mine = value(NOOP, sqlite, `c=${c}`, 'rss');
    const theirs = value(NOOP, bullmqRedis, `c=${c}`, 'rss');
    if (mine === undefined || theirs === undefined) list.push(missing(label));
    else list.push({ target: label, figure: `${format(mine, 'MiB')} MiB vs ${format(theirs, 'MiB')} MiB`, met: mine <= theirs });
  }
  return list;
}

export function render(run: Run, systems: readonly SystemSpec[], environment: Environment): string {
  const reference = systems.find((s) => s.kind === 'vouch-sqlite' && s.runtime === 'node22')?.id ?? '';
  const { config } = run;
  const caps = new Map([
    [LATENCY, 'run'],
    [RECOVERY, `${config.recovery.capMs / 1000} s`],
  ]);
  const postgresReference = systems.find((s) => s.kind === 'vouch-postgres' && s.runtime === 'node22')?.id;
  const t = new Tables(run.results, systems, reference, postgresReference, caps);
  const out = t.lines;
  out.push(
    '# vouch benchmark results',
    '',
    `Written by \`${environment.command}\` on ${environment.started}, in ${(environment.durationS / 60).toFixed(1)} minutes.`,
    `${config.quick ? 'Quick run: small counts and one repetition; figures are indicative only.' : `Median of ${config.repetitions} repetitions; systems interleaved round-robin in each repetition.`}`,
    'Every figure in parentheses is its ratio to vouch on SQLite under Node 22, the runtime every peer runs on; rows of PostgreSQL peers add their ratio to vouch on PostgreSQL (PG).',
    '† the drain did not finish within its time cap; the rate is over the jobs completed by then.',
    quietLine(run),
    '',
    '## Machine',
    '',
    ...environment.machine.map((line) => `- ${line}`),
    `- vouch: ${environment.vouch}`,
    `- vouch PostgreSQL store: ${environment.vouchPostgres}`,
    '',
    '## Systems and settings',
    '',
    '| system | version | runtime | settings |',
    '|---|---|---|---|',
  );
  for (const spec of systems) {
    const settings = [...(run.settings.get(spec.id) ?? new Map()).entries()]
      .filter(([name]) => name !== 'job')
      .map(([name, v]) => `${name}: ${v}`)
      .join('; ')
      .replace(/concurrency \d+|localConcurrency \d+|"concurrentJobs":\d+,"maxPoolSize":\d+/g, (m) =>
        m.replace(/\d+/g, 'C').replace('"maxPoolSize":C', '"maxPoolSize":C+n'),
      );
    out.push(
      `| ${spec.label} | ${environment.libraries[spec.kind]} | Node ${run.versions.get(spec.id) ?? spec.runtime} | ${settings || '–'} |`,
    );
  }
  out.push(
    '',
    'C is the concurrency of the measurement. For graphile-worker, maxPoolSize is max(10, C + 2) at defaults and C + 1 batched.',
    '',
    '## Results',
    '',
  );

  const concurrencies = config.drain.concurrencies;
  t.table(
    `1. No-op jobs: ${config.drain.count.toLocaleString('en-US')} enqueued in bulk, then drained by one worker process`,
    `Jobs/s. Enqueue: one bulk call into a fresh store, the median over the drains at every concurrency. Drain: from the first job's start until the store records the last completed, capped at ${config.drain.capMs / 1000} s.`,
    NOOP,
    [
      { point: 'bulk', metric: 'enqueue', header: 'enqueue', unit: 'rate' as const },
      ...concurrencies.map((c) => ({ point: `c=${c}`, metric: 'drain', header: `drain c=${c}`, unit: 'rate' as const })),
    ],
  );
  t.table(
    `2. Enqueue-to-start latency at a steady ${config.latency.ratePerSecond} jobs/s for ${config.latency.durationMs / 1000} s`,
    `Milliseconds, enqueue in one process and a worker at concurrency ${config.latency.concurrency} in another. A job not started by the end counts as infinitely late.`,
    LATENCY,
    [
      { point: `${config.latency.ratePerSecond}/s`, metric: 'p50', header: 'p50 ms', unit: 'ms' },
      { point: `${config.latency.ratePerSecond}/s`, metric: 'p99', header: 'p99 ms', unit: 'ms' },
    ],
  );
  t.table(
    `3. I/O-bound jobs (each awaits 5 ms) at concurrency ${config.io.concurrency}`,
    `Jobs/s over ${config.io.count.toLocaleString('en-US')} jobs, capped at ${config.io.capMs / 1000} s.`,
    IO,
    [{ point: `c=${config.io.concurrency}`, metric: 'drain', header: 'drain', unit: 'rate' }],
  );
  const small = `${config.backlogSizes.small.toLocaleString('en-US')} waiting`;
  const large = `${config.backlogSizes.large.toLocaleString('en-US')} waiting`;
  t.table(
    '4. Backlog: drain rate with 1,000,000 jobs waiting against 10,000',
    `Jobs/s over the first ${config.backlogSizes.window.toLocaleString('en-US')} job starts, concurrency ${config.backlogSizes.concurrency}.`,
    BACKLOG,
    [
      { point: small, metric: 'drain', header: small, unit: 'rate' },
      { point: large, metric: 'drain', header: large, unit: 'rate' },
      { point: large, metric: 'enqueue', header: 'enqueue of 1,000,000 (jobs/s)', unit: 'rate' },
    ],
  );
  t.table(
    '5. vouch only: the cost of one ctx.effect and of a job verify',
    `Jobs/s over ${config.effect.count.toLocaleString('en-US')} no-op jobs at concurrency ${config.effect.concurrency}.`,
    EFFECT,
    [
      { point: 'plain', metric: 'drain', header: 'plain job', unit: 'rate' },
      { point: 'effect', metric: 'drain', header: 'one ctx.effect', unit: 'rate' },
      { point: 'verify', metric: 'drain', header: 'with verify', unit: 'rate' },
    ],
  );
  t.table(
    '6. Recovery after SIGKILL',
    `Seconds from SIGKILL of the worker running a job until a second, already running worker starts it again, each system at its defaults (cap ${config.recovery.capMs / 1000} s; a system that missed the cap in the first repetition runs once). Re-runs: jobs that ran twice after one SIGKILL of a worker once half of ${config.reruns.count.toLocaleString('en-US')} jobs of 5 ms (concurrency ${config.reruns.concurrency}) had started.`,
    RECOVERY,
    [
      { point: 'defaults', metric: 'seconds', header: 'recovery s', unit: 's' },
      { point: 'after one SIGKILL', metric: 'reruns', header: 're-runs', unit: 'count' },
    ],
  );
  t.table('7. Peak RSS of the worker process (MiB)', 'VmHWM from /proc/PID/status, read by the parent before the worker exits.', NOOP, [
    ...concurrencies.map((c) => ({ point: `c=${c}`, metric: 'rss', header: `no-op c=${c}`, unit: 'MiB' as const })),
  ]);
  t.table('7b. Peak RSS, I/O-bound drain (MiB)', '', IO, [
    { point: `c=${config.io.concurrency}`, metric: 'rss', header: `I/O c=${config.io.concurrency}`, unit: 'MiB' },
  ]);

  out.push('## Targets', '', '| target | figure | met |', '|---|---|---|');
  for (const target of targets(run, systems)) {
    out.push(`| ${target.target} | ${target.figure} | ${target.met === undefined ? '–' : target.met ? 'yes' : '**no**'} |`);
  }
  out.push('');
  if (run.failures.length > 0) {
    out.push('## Failed measurements', '', ...run.failures.map((failure) => `- ${failure}`), '');
  }
  out.push('How each figure is taken: [bench/README.md](README.md).', '');
  return out.join('\n');
}

/** Describes how long the worker processes waited for a quiet machine before they started (see quiet.ts). */
function quietLine(run: Run): string {
  const waits = [...run.quietWaits].sort((a, b) => a - b);
  if (waits.length === 0) return 'No worker process waited for a quiet machine.';
  const median = waits[Math.floor(waits.length / 2)] as number;
  const longest = waits[waits.length - 1] as number;
  return `Each worker process started once a 100 ms sample showed under 10% of the CPU busy, waiting at most 5 s: ${waits.length} waits, median ${median.toFixed(0)} ms, longest ${longest.toFixed(0)} ms.`;
}
