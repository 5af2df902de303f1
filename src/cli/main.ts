#!/usr/bin/env node
import { Command, InvalidArgumentError } from 'commander';
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

const program = new Command('vouch').description('Inspect and maintain a vouch job store.');

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
  .option('--json', 'print the report as JSON')
  .action(async (options) => {
    const store = await openStore(options.store, { migrate: false });
    try {
      const report = await runAudit(store, {
        overdueAfterMs: options.overdueAfter,
        inDoubtAfterMs: options.inDoubtAfter,
        windowMs: options.window,
        maxOverdue: options.maxOverdue,
        maxInDoubt: options.maxInDoubt,
        maxDead: options.maxDead,
        maxRecovered: options.maxRecovered,
      });
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
    const store = await openStore(options.store, { migrate: false });
    try {
      await store.migrate();
      console.log('the vouch schema is created or upgraded to the newest version');
    } finally {
      await store.close();
    }
  });

program.parseAsync().catch((error: unknown) => {
  console.error(`vouch: ${(error as Error).message}`);
  process.exitCode = 2;
});
