#!/usr/bin/env node
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { formatAudit, runAudit } from '../audit/audit.js';
import { openStore } from '../stores/open-store.js';

function milliseconds(value: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError(`"${value}" is not a duration; use a number with ms, s, m or h, such as 90s.`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(match[2] ?? 'ms') as 'ms' | 's' | 'm' | 'h'];
  return Number(match[1]) * unit;
}

function count(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0) throw new InvalidArgumentError(`"${value}" is not a whole number of 0 or more.`);
  return parsed;
}

/** Connection errors that mean the database server could not be reached at all. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Rewrites a failure of `work` to reach the database into an error that names the server and what to check. */
async function explainUnreachable<T>(location: string, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code !== 'string' || !UNREACHABLE.has(code) || !URL.canParse(location)) throw error;
    const url = new URL(location);
    const where = `${url.hostname || 'localhost'}:${url.port || '5432'}`;
    throw new Error(
      `could not reach PostgreSQL at ${where} (${code}): check that the server is running there and that --store names its host, port and database.`,
      { cause: error },
    );
  }
}

// exitOverride: a usage mistake must not exit 1, which `vouch audit` keeps for findings over a threshold.
const program = new Command('vouch').description('Inspect and maintain a vouch job store.').exitOverride();

program
  .command('audit')
  .description('List overdue jobs, in-doubt effects, recovered attempts and dead jobs; exit 1 when any category is over its threshold.')
  .requiredOption('--store <location>', 'SQLite file path or postgres:// URL')
  .option('--overdue-after <duration>', 'a due job waiting longer than this is overdue', milliseconds, 60_000)
  .option('--in-doubt-after <duration>', 'an effect intent older than this is in doubt', milliseconds, 60_000)
  .option('--window <duration>', 'how far back recovered and dead jobs are counted', milliseconds, 86_400_000)
  .option('--max-overdue <count>', 'overdue jobs tolerated', count, 0)
  .option('--max-in-doubt <count>', 'in-doubt effects tolerated', count, 0)
  .option('--max-dead <count>', 'dead jobs tolerated within the window', count, 0)
  .option('--max-recovered <count>', 'recovered attempts tolerated within the window (default: no limit)', count)
  .option('--list <count>', 'rows listed per category; the counts and thresholds do not depend on it', count, 100)
  .option('--json', 'print the report as JSON')
  .action(async (options) => {
    const store = await openStore(options.store, { migrate: false });
    try {
      const report = await explainUnreachable(
        options.store,
        runAudit(store, {
          overdueAfterMs: options.overdueAfter,
          inDoubtAfterMs: options.inDoubtAfter,
          windowMs: options.window,
          maxOverdue: options.maxOverdue,
          maxInDoubt: options.maxInDoubt,
          maxDead: options.maxDead,
          maxRecovered: options.maxRecovered,
          limit: options.list,
        }),
      );
      console.log(options.json ? JSON.stringify(report, null, 2) : formatAudit(report));
      process.exitCode = report.passed ? 0 : 1;
    } finally {
      await store.close();
    }
  });

program
  .command('migrate')
  .description('Create or upgrade the vouch schema in a store.')
  .requiredOption('--store <location>', 'SQLite file path or postgres:// URL')
  .action(async (options) => {
    // Opened to migrate: a SQLite file that does not exist yet is created here.
    const store = await openStore(options.store, { migrate: true });
    try {
      await explainUnreachable(options.store, store.migrate());
      console.log('the vouch schema is created or upgraded to the newest version');
    } finally {
      await store.close();
    }
  });

program.parseAsync().catch((error: unknown) => {
  if (error instanceof CommanderError) {
    // Commander has printed the message already; help and version end with exit code 0.
    process.exitCode = error.exitCode === 0 ? 0 : 2;
    return;
  }
  console.error(`vouch: ${(error as Error).message}`);
  process.exitCode = 2;
});
