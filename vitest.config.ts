import { defineConfig } from 'vitest/config';

// Runs on another Node major (scripts/test-node.sh) need a better-sqlite3 compiled for that major;
// VOUCH_BETTER_SQLITE3 names its package folder.
const betterSqlite3 = process.env.VOUCH_BETTER_SQLITE3;

export default defineConfig({
  ...(betterSqlite3 ? { resolve: { alias: { 'better-sqlite3': betterSqlite3 } } } : {}),
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Fault tests spawn worker processes and kill them; running files one at a time keeps their timing honest on 2 cores.
    fileParallelism: false,
  },
});
