import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { VouchError } from '../../src/core/errors.js';
import type { Lease } from '../../src/core/store.js';
import { commitGroupStatement } from '../../src/stores/postgres/commit-group.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent, schemaNames } from '../../src/stores/postgres/sql.js';
import { newJob } from '../support/jobs.js';
import { capturingLogger, type LogLine } from '../support/logs.js';
import { POSTGRES_TEST_URL, postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { waitFor } from '../support/wait.js';
import { CommitCutter } from './commit-cutter.js';
import { PgBed, sideQuery } from './pg-bed.js';

/**
 * The connection drops while a commit is in flight. The store never guesses
 * the outcome: it reads the attempt back on a fresh connection and reports
 * true only when this lease's commit landed; when even that read fails, it
 * throws.
 */
describe.skipIf(!postgresAvailable())('postgres: a connection dropped during commit', () => {
  describe('terminated by the server in the middle of the commit transaction', () => {
    let bed: PgBed;
    beforeEach(async () => {
      bed = await PgBed.create(POSTGRES_TEST_URL, { leaseMs: 8000, sweepIntervalMs: 200, maxAttempts: 3 });
    });
    afterEach(() => bed.dispose());

    it('rolls back a terminated commit; a retry completes the job', async () => {
      const [jobId] = await bed.enqueue(1);
      // The first commit waits inside its transaction, after the ctx.transaction write, for the backend to be terminated.
      const worker = bed.spawnWorker('committer', { concurrency: 1 }, 'inside-commit=sleep:2500@1');
      await worker.waitFor('attempt 1', (message) => message.type === 'perform' && message.attempt === 1);

      const [victim] = await waitFor('the commit transaction to be open', async () => {
        const rows = await sideQuery<{ pid: number }>(
          POSTGRES_TEST_URL,
          `SELECT pid FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE '%' || $1 || '%'`,
          [`${quoteIdent(bed.schema)}.deliveries`],
        );
        return rows.length > 0 ? rows : null;
      });
      const [terminated] = await sideQuery<{ done: boolean }>(POSTGRES_TEST_URL, 'SELECT pg_terminate_backend($1) AS done', [victim!.pid]);
      expect(terminated?.done).toBe(true);

      const completed = await worker.waitFor('the job to complete', (message) => message.event === 'job:completed', 20_000);
      expect(completed).toMatchObject({ jobId, attempt: 2 });
      expect(worker.select('event', 'lease:lost')).toEqual([expect.objectContaining({ jobId, attempt: 1 })]);
      expect(worker.select('log').map((line) => line.msg)).toContain(
        'the connection dropped during commit; the commit did not land and its writes were rolled back',
      );

      const [readback] = await bed.expectEachCompletedOnce([jobId!]);
      expect(readback?.attempts.map((attempt) => attempt.outcome)).toEqual(['lease_lost', 'succeeded']);
      // The second attempt found the effect done in the ledger and did not send it again.
      expect(readback?.effects).toEqual([expect.objectContaining({ state: 'done', attempt: 1 })]);
    });
  });

  describe('cut by the network at COMMIT', () => {
    let harness: StoreHarness;
    let cutter: CommitCutter;
    let store: PostgresStore;
    let schema: string;
    let lines: LogLine[];

    beforeAll(async () => {
      harness = postgresHarness();
    });
    afterAll(() => harness.cleanup());

    beforeEach(async () => {
      const { store: direct } = await harness.open();
      schema = (direct as PostgresStore).schema;
      await (direct as PostgresStore).pool.query(`CREATE TABLE ${quoteIdent(schema)}.notes (job_id bigint NOT NULL, text text NOT NULL)`);
      const target = new URL(POSTGRES_TEST_URL);
      cutter = await CommitCutter.start({ host: target.hostname, port: Number(target.port || 5432) });
      const through = new URL(POSTGRES_TEST_URL);
      through.port = String(cutter.port);
      const captured = capturingLogger();
      lines = captured.lines;
      store = new PostgresStore({ connectionString: through.toString(), schema, migrate: false, listen: false, logger: captured.logger });
    });
    afterEach(async () => {
      await store.close();
      await cutter.close();
    });

    async function leaseOne(): Promise<Lease> {
      const [outcome] = await store.enqueue([newJob()]);
      const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'cut-worker' });
      expect(leased?.job.id).toBe(outcome?.job.id);
      return leased!.lease;
    }

    const note = (lease: Lease) => async (tx: pg.PoolClient) => {
      await tx.query(`INSERT INTO ${quoteIdent(schema)}.notes (job_id, text) VALUES ($1, $2)`, [lease.jobId, 'committed write']);
    };

    async function notes(): Promise<string[]> {
      const rows = await sideQuery<{ text: string }>(POSTGRES_TEST_URL, `SELECT text FROM ${quoteIdent(schema)}.notes`);
      return rows.map((row) => row.text);
    }

    it('returns true when only the COMMIT reply was lost', async () => {
      const lease = await leaseOne();
      cutter.arm('deliver-then-cut');
      const committed = await store.commit(lease, { resultJson: '{"sent":true}', outcome: 'succeeded', writes: [note(lease)] });
      expect(cutter.cuts).toBe(1);
      expect(committed).toBe(true);
      expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'completed', result: { sent: true } });
      expect(await notes()).toEqual(['committed write']);
      expect(lines.find((line) => line.msg.includes('dropped during commit'))).toMatchObject({
        committed: true,
        msg: 'the connection dropped during commit; the commit had landed',
      });
    });

    it('returns false when the COMMIT never arrived', async () => {
      const lease = await leaseOne();
      cutter.arm('cut-before');
      const committed = await store.commit(lease, { resultJson: '{"sent":true}', outcome: 'succeeded', writes: [note(lease)] });
      expect(cutter.cuts).toBe(1);
      expect(committed).toBe(false);
      expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'running', leaseToken: lease.token });
      expect(await notes()).toEqual([]);
      expect(lines.find((line) => line.msg.includes('dropped during commit'))).toMatchObject({ committed: false });
    });

    it('finds out a group commit without writes', async () => {
      const complete = commitGroupStatement(schemaNames(schema)).name;
      const landed = await leaseOne();
      cutter.arm('deliver-then-cut', complete);
      expect(await store.commit(landed, { resultJson: '1', outcome: 'succeeded', writes: [] })).toBe(true);
      expect(await store.getJob(landed.jobId)).toMatchObject({ state: 'completed', result: 1 });

      const lost = await leaseOne();
      cutter.arm('cut-before', complete);
      expect(await store.commit(lost, { resultJson: '2', outcome: 'succeeded', writes: [] })).toBe(false);
      expect(await store.getJob(lost.jobId)).toMatchObject({ state: 'running', leaseToken: lost.token });
      expect(cutter.cuts).toBe(2);
    });

    it('waits for a group commit that its backend still runs', async () => {
      // The statement outlives its connection: the server runs it to the end and commits, then finds
      // the client gone. The read-back must wait for that, not read the job row before it changed.
      const slowCompletion = `${quoteIdent(schema)}.slow_completion`;
      await sideQuery(
        POSTGRES_TEST_URL,
        `CREATE FUNCTION ${slowCompletion}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NEW; END $$`,
      );
      await sideQuery(
        POSTGRES_TEST_URL,
        `CREATE TRIGGER slow_completion BEFORE UPDATE ON ${quoteIdent(schema)}.jobs FOR EACH ROW
           WHEN (NEW.state = 'completed') EXECUTE FUNCTION ${slowCompletion}()`,
      );
      const lease = await leaseOne();
      cutter.arm('deliver-then-cut', commitGroupStatement(schemaNames(schema)).name);

      const startedAt = Date.now();
      expect(await store.commit(lease, { resultJson: '3', outcome: 'succeeded', writes: [] })).toBe(true);
      expect(cutter.cuts).toBe(1);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(900);
      expect(await store.getJob(lease.jobId)).toMatchObject({ state: 'completed', result: 3 });
      expect(lines.find((line) => line.msg.includes('dropped during a group commit'))).toMatchObject({ landed: [lease.jobId] });
    });

    it('throws when the outcome cannot be read', async () => {
      const lease = await leaseOne();
      cutter.arm('cut-before');
      // The database goes away with the connection: the read-back finds no connection, open or new.
      cutter.goAwayAtCut();
      const commit = store.commit(lease, { resultJson: 'null', outcome: 'succeeded', writes: [note(lease)] });
      await expect(commit).rejects.toThrow(VouchError);
      await expect(commit).rejects.toThrow(/outcome could not be read back/);
      expect(await notes()).toEqual([]);
    });
  });
});
