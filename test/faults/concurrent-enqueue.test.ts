import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EnqueueKeysConfig } from '../fixtures/enqueue-keys.js';
import { FaultBed } from '../support/fault-bed.js';

const ENQUEUE_KEYS = fileURLToPath(new URL('../fixtures/enqueue-keys.ts', import.meta.url));

interface Outcome {
  n: number;
  id: string;
  duplicate: boolean;
}

/** F4 across processes: two processes enqueue the same keys at the same moment. */
describe('fault: dedup by key from two processes at once', () => {
  let bed: FaultBed;
  beforeEach(async () => {
    bed = await FaultBed.create({ leaseMs: 10_000, sweepIntervalMs: 100, maxAttempts: 3 });
  });
  afterEach(() => bed.dispose());

  it('stores one job per key, and every other enqueue of that key is a duplicate naming it', async () => {
    const COUNT = 60;
    // Process b's bulk overlaps a's single enqueues and a's bulk, so bulk and single writes race on the same keys.
    const configs: EnqueueKeysConfig[] = [
      { dbPath: bed.dbPath, count: COUNT, bulkFrom: COUNT, bulkCount: 30, order: 'ascending' },
      { dbPath: bed.dbPath, count: COUNT, bulkFrom: COUNT - 15, bulkCount: 30, order: 'descending' },
    ];
    const children = configs.map((config, index) => bed.processes.start(`enqueuer-${index}`, ENQUEUE_KEYS, [JSON.stringify(config)]));
    await Promise.all(children.map((child) => child.ready()));
    for (const child of children) child.send('go');

    const results = await Promise.all(
      children.map((child) => child.waitFor('its outcomes', (message) => message.type === 'result', 30_000)),
    );
    for (const child of children) expect((await child.exited).code, child.diagnostics()).toBe(0);

    const outcomes = results.flatMap((result) => [...(result.single as Outcome[]), ...(result.bulk as Outcome[])]);
    const keys = new Set(outcomes.map((outcome) => outcome.n));
    const rows = bed.store.db.prepare('SELECT key, count(*) AS jobs FROM vouch_jobs GROUP BY key').all() as { key: string; jobs: number }[];
    expect(rows).toHaveLength(keys.size);
    expect(rows.filter((row) => row.jobs !== 1)).toEqual([]);

    for (const n of keys) {
      const forKey = outcomes.filter((outcome) => outcome.n === n);
      const created = forKey.filter((outcome) => !outcome.duplicate);
      expect(created, `key deliver-${n}: exactly one enqueue created the job`).toHaveLength(1);
      expect(new Set(forKey.map((outcome) => outcome.id)), `key deliver-${n}: every outcome names the same job`).toEqual(
        new Set([created[0]!.id]),
      );
    }
    // The two processes really ran at once; SQLite's write lock is what kept them apart.
    const [a, b] = results as unknown as { startedAt: number; finishedAt: number }[];
    expect(a!.startedAt < b!.finishedAt && b!.startedAt < a!.finishedAt, 'the two enqueue runs overlapped in time').toBe(true);
  });
});
