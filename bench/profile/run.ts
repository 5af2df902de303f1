/**
 * Profiles for the two targets of the benchmark that vouch misses. They print
 * the figures that "Where the time goes" in bench/README.md quotes.
 *
 * - `npm run bench:profile` runs every part, in about ten seconds.
 * - `-- --statements` runs only the server's work per job in the lease and group commit statements.
 * - `-- --drain` runs only the PostgreSQL drain, with the CPU of the worker and of the server.
 * - `-- --effect` runs only the SQLite effect workload, with the WAL it appends and the flushes it waits for.
 *
 * Like `npm run bench`, it compiles src/ into dist/ first. It uses the
 * bench's PostgreSQL server (schema bench_profile, dropped at the end) and a
 * temporary folder that it removes.
 */
import { execFileSync } from 'node:child_process';
import { REPO } from '../workloads/process.js';
import { profilePostgresDrain } from './postgres-drain.js';
import { profileSqliteEffect } from './sqlite-effect.js';
import { profileStatements } from './statements.js';

const PARTS = ['--statements', '--drain', '--effect'] as const;

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const unknown = args.filter((arg) => !(PARTS as readonly string[]).includes(arg));
  if (unknown.length > 0) {
    console.error(
      `bench:profile: unknown argument ${JSON.stringify(unknown[0])}; give any of ${PARTS.join(', ')}, or none for every part.`,
    );
    process.exit(2);
  }
  const selected = (part: (typeof PARTS)[number]) => args.length === 0 || args.includes(part);
  execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  if (selected('--statements')) await profileStatements();
  if (selected('--drain')) await profilePostgresDrain();
  if (selected('--effect')) await profileSqliteEffect();
}

await main();
