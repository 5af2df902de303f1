import { describe, expect, it } from 'vitest';
import { CASES } from './cases.js';
import type { StoreKind } from './environment.js';
import { HOSTILE_CASES } from './hostile.js';
import { postgresAvailable } from './postgres-check.js';
import { runCase } from './run.js';

// The quick subset of the chaos matrix, as `npm run chaos -- --quick` runs it.
const postgresReason = await postgresAvailable();
if (postgresReason !== null && process.env.VOUCH_REQUIRE_POSTGRES === '1') {
  throw new Error(`PostgreSQL is required (VOUCH_REQUIRE_POSTGRES=1) but ${postgresReason}`);
}
const kinds: StoreKind[] = postgresReason === null ? ['sqlite', 'postgres'] : ['sqlite'];

describe.each(kinds)('chaos quick on %s', (kind) => {
  for (const hostile of HOSTILE_CASES) {
    it(hostile.name, async () => {
      const report = await hostile.run(kind);
      expect(report.violations).toEqual([]);
    });
  }
  for (const chaosCase of CASES.filter((entry) => entry.quick && entry.stores.includes(kind))) {
    it(chaosCase.name, { timeout: 120_000 }, async () => {
      const report = await runCase(chaosCase, kind, 1);
      expect(report.violations).toEqual([]);
      expect(report.jobs).toBeGreaterThan(0);
    });
  }
});
