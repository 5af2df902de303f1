/**
 * The chaos matrix: every case on every store, each followed by the history
 * checker. `--quick` runs the subset that `npm test` also runs.
 *
 *   npm run chaos [-- --quick] [--json] [--store sqlite|postgres|all] [--case TEXT] [--seed N]
 */
import { Command, InvalidArgumentError } from 'commander';
import { seededRandom } from '../../examples/crash-demo/supervisor.js';
import { PgCluster } from '../support/pg-cluster.js';
import { CASES, type ChaosCase } from './cases.js';
import { checkHistory, type Violation } from './checker.js';
import { ChaosEnvironment, POSTGRES_URL, type StoreKind } from './environment.js';
import { HOSTILE_CASES } from './hostile.js';
import { postgresAvailable } from './postgres-check.js';

export interface CaseReport {
  case: string;
  store: StoreKind;
  jobs: number;
  faults: number;
  violations: { invariant: string; jobIds: string[]; detail: string }[];
  durationMs: number;
}

/** Runs one case on one store and checks its history. */
export async function runCase(chaosCase: ChaosCase, kind: StoreKind, seed: number): Promise<CaseReport> {
  const startedAt = Date.now();
  const cluster = chaosCase.needsCluster ? await PgCluster.create() : null;
  const env = await ChaosEnvironment.create(kind, chaosCase.settings, cluster?.url() ?? POSTGRES_URL).catch(async (error: unknown) => {
    await cluster?.destroy();
    throw error;
  });
  env.cluster = cluster;
  try {
    const outcome = await chaosCase.run(env, seededRandom(seed));
    await env.waitQuiet(chaosCase.quietTimeoutMs ?? 60_000);
    const violations: Violation[] = [...checkHistory(await env.history()), ...outcome.expectations];
    return {
      case: chaosCase.name,
      store: kind,
      jobs: env.accepted.length,
      faults: outcome.faults,
      violations,
      durationMs: Date.now() - startedAt,
    };
  } finally {
    // A restarted cluster may still be coming up; the store's connections can fail to close cleanly then.
    await env.close().catch((error: unknown) => console.error(`closing the chaos environment failed: ${(error as Error).message}`));
    await cluster?.destroy();
  }
}

async function main(): Promise<void> {
  const program = new Command('chaos')
    .description('Run the chaos matrix and check every history for violated invariants.')
    .option('--quick', 'run only the quick subset')
    .option('--json', 'print the results as one JSON object')
    .option('--store <kind>', 'sqlite, postgres or all', 'all')
    .option('--case <text>', 'run only cases whose name contains this text')
    .option(
      '--seed <number>',
      'seed of the random kill schedules',
      (value) => {
        const parsed = Number(value);
        if (!Number.isInteger(parsed)) throw new InvalidArgumentError(`"${value}" is not an integer.`);
        return parsed;
      },
      1,
    )
    .parse();
  const options = program.opts<{ quick?: boolean; json?: boolean; store: string; case?: string; seed: number }>();
  if (!['sqlite', 'postgres', 'all'].includes(options.store)) {
    throw new InvalidArgumentError(`--store "${options.store}" is not a store kind; use sqlite, postgres or all.`);
  }

  let kinds: StoreKind[] = options.store === 'all' ? ['sqlite', 'postgres'] : [options.store as StoreKind];
  if (kinds.includes('postgres')) {
    const reason = await postgresAvailable();
    if (reason !== null) {
      if (process.env.VOUCH_REQUIRE_POSTGRES === '1') throw new Error(`PostgreSQL is required (VOUCH_REQUIRE_POSTGRES=1) but ${reason}`);
      console.error(`skipping PostgreSQL cases: ${reason}`);
      kinds = kinds.filter((kind) => kind !== 'postgres');
    }
  }

  const reports: CaseReport[] = [];
  for (const hostile of HOSTILE_CASES) {
    if (options.case && !hostile.name.includes(options.case)) continue;
    for (const kind of kinds) {
      const report = await hostile.run(kind);
      reports.push(report);
      console.error(progressLine(report));
    }
  }
  for (const chaosCase of CASES) {
    if (options.quick && !chaosCase.quick) continue;
    if (options.case && !chaosCase.name.includes(options.case)) continue;
    for (const kind of kinds.filter((kind) => chaosCase.stores.includes(kind))) {
      const report = await runCase(chaosCase, kind, options.seed);
      reports.push(report);
      console.error(progressLine(report));
    }
  }

  if (options.json) {
    const cases = reports.map(({ case: name, store, jobs, faults, violations }) => ({
      case: name,
      store,
      jobs,
      faults,
      violations: violations.map(({ invariant, jobIds }) => ({ invariant, jobIds })),
    }));
    console.log(JSON.stringify({ cases }, null, 2));
  } else {
    console.log(formatTable(reports));
  }
  process.exitCode = reports.some((report) => report.violations.length > 0) ? 1 : 0;
}

function progressLine(report: CaseReport): string {
  const verdict =
    report.violations.length === 0
      ? 'ok'
      : `${report.violations.length} VIOLATIONS: ${report.violations.map((violation) => `${violation.invariant} (${violation.detail})`).join('; ')}`;
  return `[${report.store}] ${report.case}: ${report.jobs} jobs, ${report.faults} faults, ${verdict} in ${(report.durationMs / 1000).toFixed(1)} s`;
}

export function formatTable(reports: readonly CaseReport[]): string {
  const rows = [
    ['case', 'store', 'jobs', 'faults', 'violations'],
    ...reports.map((report) => [report.case, report.store, String(report.jobs), String(report.faults), String(report.violations.length)]),
  ];
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const lines = rows.map((row) =>
    row.map((cell, column) => (column >= 2 ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!))).join('  '),
  );
  lines.splice(1, 0, widths.map((width) => '-'.repeat(width)).join('  '));
  const total = reports.reduce((sum, report) => sum + report.violations.length, 0);
  lines.push('', `${reports.length} cases, ${total} violations`);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((error: unknown) => {
    console.error(`chaos: ${(error as Error).message}`);
    process.exitCode = 2;
  });
}
