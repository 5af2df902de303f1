import { CamelCasePlugin, Kysely, PostgresDialect, sql } from 'kysely';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Client } from '../../src/core/client.js';
import { ConfigurationError } from '../../src/core/errors.js';
import { defineJob } from '../../src/core/job-definition.js';
import type { PostgresStore, PostgresTransaction } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent } from '../../src/stores/postgres/sql.js';
import { newJob } from '../support/jobs.js';
import { POSTGRES_TEST_URL, postgresAvailable, postgresHarness } from '../support/postgres-harness.js';
import type { StoreHarness } from '../support/stores.js';
import { sleep, waitFor } from '../support/wait.js';

/**
 * The outbox pattern on PostgreSQL: a job enqueued inside the application's
 * own transaction, through `pg` directly or through Kysely, exists if and only
 * if that transaction commits. And the other direction: rows written through
 * ctx.transaction commit with the job's completion, or not at all.
 */
const welcome = defineJob({
  name: 'welcome',
  payload: z.object({ userId: z.number() }),
  key: (payload) => `welcome:${payload.userId}`,
  perform: () => 'sent',
});

interface Database {
  users: { id: number; email: string };
}

describe.skipIf(!postgresAvailable())('postgres: transactional enqueue and ctx.transaction', () => {
  let harness: StoreHarness;
  let store: PostgresStore;
  let client: Client;
  let pool: pg.Pool;
  let users: string;

  beforeAll(() => {
    harness = postgresHarness();
  });
  afterAll(() => harness.cleanup());
  beforeEach(async () => {
    store = (await harness.open()).store as PostgresStore;
    client = new Client({ store });
    users = `${quoteIdent(store.schema)}.users`;
    await store.pool.query(`CREATE TABLE ${users} (id integer PRIMARY KEY, email text NOT NULL)`);
    pool = new pg.Pool({ connectionString: POSTGRES_TEST_URL, options: `-c search_path=${store.schema}`, max: 4 });
  });
  afterEach(async () => {
    await pool.end();
  });

  async function userCount(): Promise<number> {
    const { rows } = await store.pool.query(`SELECT count(*)::int AS count FROM ${users}`);
    return rows[0].count;
  }

  describe('with pg', () => {
    async function signUp(id: number, outcome: 'COMMIT' | 'ROLLBACK') {
      const tx = await pool.connect();
      try {
        await tx.query('BEGIN');
        await tx.query(`INSERT INTO ${users} (id, email) VALUES ($1, $2)`, [id, `user${id}@example.com`]);
        const job = await client.enqueue(welcome, { userId: id }, { tx });
        await tx.query(outcome);
        return job;
      } finally {
        tx.release();
      }
    }

    it('stores the job on commit', async () => {
      const job = await signUp(1, 'COMMIT');
      expect(await store.getJob(job.id)).toMatchObject({ state: 'available', key: 'welcome:1' });
      expect(await userCount()).toBe(1);
    });

    it('leaves no job on rollback', async () => {
      const job = await signUp(2, 'ROLLBACK');
      expect(await store.getJob(job.id)).toBeNull();
      expect(await userCount()).toBe(0);
      expect((await store.countByState()).available).toBe(0);
      // The key is free again: nothing absorbed it.
      expect((await client.enqueue(welcome, { userId: 2 })).duplicate).toBe(false);
    });

    it('serialises a concurrent enqueue of one key', async () => {
      const first = await pool.connect();
      const second = await pool.connect();
      try {
        await first.query('BEGIN');
        const mine = await client.enqueue(welcome, { userId: 3 }, { tx: first });
        await second.query('BEGIN');
        let settled = false;
        const racing = client.enqueue(welcome, { userId: 3 }, { tx: second }).finally(() => {
          settled = true;
        });
        await sleep(300);
        expect(settled, 'the second enqueue waits on the key while the first transaction is open').toBe(false);
        await first.query('COMMIT');
        const theirs = await racing;
        await second.query('COMMIT');
        expect(theirs).toMatchObject({ id: mine.id, duplicate: true });
      } finally {
        first.release();
        second.release();
      }
      expect((await store.countByState()).available).toBe(1);
    });

    it('frees the key when the holder rolls back', async () => {
      const first = await pool.connect();
      try {
        await first.query('BEGIN');
        const rolledBack = await client.enqueue(welcome, { userId: 4 }, { tx: first });
        const racing = client.enqueue(welcome, { userId: 4 });
        await sleep(200);
        await first.query('ROLLBACK');
        const inserted = await racing;
        expect(inserted.duplicate).toBe(false);
        expect(inserted.id).not.toBe(rolledBack.id);
        expect(await store.getJob(rolledBack.id)).toBeNull();
      } finally {
        first.release();
      }
    });

    it('wakes other processes at commit only', async () => {
      const listening = (await harness.open({ shareWith: locationOf(store) })).store;
      const woken: (string | null)[] = [];
      const stop = listening.onWake((queue) => woken.push(queue));
      try {
        await sleep(300); // the listening connection is up
        const tx = await pool.connect();
        try {
          await tx.query('BEGIN');
          await client.enqueueMany(
            welcome,
            Array.from({ length: 25 }, (_, index) => ({ payload: { userId: 100 + index } })),
            { tx },
          );
          for (let index = 0; index < 25; index += 1) await client.enqueue(welcome, { userId: 200 + index }, { tx });
          await sleep(300);
          expect(woken, 'no wake-up before the commit').toEqual([]);
          await tx.query('COMMIT');
        } finally {
          tx.release();
        }
        await waitFor('the wake-up', () => woken.length > 0);
        await sleep(300);
        // Twenty-six enqueue statements in one transaction: one notification for the queue.
        expect(woken).toEqual(['default']);
      } finally {
        stop();
      }
    });

    it('rejects a pool as tx', async () => {
      await expect(client.enqueue(welcome, { userId: 5 }, { tx: pool })).rejects.toThrow(ConfigurationError);
    });
  });

  describe('with Kysely', () => {
    let db: Kysely<Database>;
    beforeEach(() => {
      // CamelCasePlugin rewrites result rows; the store must read its own rows unchanged anyway.
      db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }), plugins: [new CamelCasePlugin()] });
    });

    it('stores the job on Kysely commit', async () => {
      const job = await db.transaction().execute(async (trx) => {
        await trx.insertInto('users').values({ id: 10, email: 'ten@example.com' }).execute();
        return client.enqueue(welcome, { userId: 10 }, { tx: trx });
      });
      expect(await store.getJob(job.id)).toMatchObject({ state: 'available', key: 'welcome:10', payload: { userId: 10 } });
      expect(await userCount()).toBe(1);
    });

    it('leaves no job when Kysely rolls back', async () => {
      let enqueuedId: string | undefined;
      await expect(
        db.transaction().execute(async (trx) => {
          await trx.insertInto('users').values({ id: 11, email: 'eleven@example.com' }).execute();
          enqueuedId = (await client.enqueue(welcome, { userId: 11 }, { tx: trx })).id;
          throw new Error('payment declined');
        }),
      ).rejects.toThrow('payment declined');
      expect(enqueuedId).toBeDefined();
      expect(await store.getJob(enqueuedId as string)).toBeNull();
      expect(await userCount()).toBe(0);
    });

    it('deduplicates inside a Kysely transaction', async () => {
      const [first, second] = await db
        .transaction()
        .execute(async (trx) => [
          await client.enqueue(welcome, { userId: 12 }, { tx: trx }),
          await client.enqueue(welcome, { userId: 12 }, { tx: trx }),
        ]);
      expect(second).toMatchObject({ id: first?.id, duplicate: true });
    });

    it('rejects a Kysely instance as tx', async () => {
      await expect(client.enqueue(welcome, { userId: 13 }, { tx: db })).rejects.toThrow(/not a transaction|outside a transaction/);
      // The check runs before anything is written.
      const { rows } = await sql<{ count: number }>`SELECT count(*)::int AS count FROM ${sql.table(`${store.schema}.jobs`)}`.execute(db);
      expect(rows[0]?.count).toBe(0);
    });
  });

  describe('ctx.transaction', () => {
    const notesOf = async () => {
      const { rows } = await store.pool.query(`SELECT email FROM ${users} ORDER BY id`);
      return rows.map((row: { email: string }) => row.email);
    };
    const writeUser = (id: number) => async (tx: PostgresTransaction) => {
      // Several awaits inside one write: the commit transaction waits for each.
      await tx.query(`INSERT INTO ${users} (id, email) VALUES ($1, $2)`, [id, 'pending']);
      await sleep(20);
      await tx.query(`UPDATE ${users} SET email = $2 WHERE id = $1`, [id, `user${id}@example.com`]);
    };

    it('commits async writes with the job', async () => {
      await store.enqueue([newJob()]);
      const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'w' });
      expect(await store.commit(leased!.lease, { resultJson: '1', outcome: 'succeeded', writes: [writeUser(20), writeUser(21)] })).toBe(
        true,
      );
      expect(await notesOf()).toEqual(['user20@example.com', 'user21@example.com']);
      expect((await store.getJob(leased!.job.id))?.state).toBe('completed');
    });

    it('writes only the rows of the current owner', async () => {
      await store.enqueue([newJob({ leaseMs: 300 })]);
      const [stale] = await store.lease({ queue: 'default', limit: 1, workerId: 'stale' });
      await sleep(400); // the lease expires by the database clock
      expect(await store.sweep()).toHaveLength(1);
      const [owner] = await store.lease({ queue: 'default', limit: 1, workerId: 'owner' });

      expect(await store.commit(stale!.lease, { resultJson: '1', outcome: 'succeeded', writes: [writeUser(30)] })).toBe(false);
      expect(await notesOf()).toEqual([]);
      expect(await store.commit(owner!.lease, { resultJson: '2', outcome: 'succeeded', writes: [writeUser(31)] })).toBe(true);
      expect(await notesOf()).toEqual(['user31@example.com']);
      expect(await store.getJob(owner!.job.id)).toMatchObject({ state: 'completed', attempt: 2, result: 2 });
    });

    it('rolls back all writes when one throws', async () => {
      await store.enqueue([newJob()]);
      const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'w' });
      const failing = async (tx: PostgresTransaction) => {
        await tx.query(`INSERT INTO ${users} (id, email) VALUES (40, 'duplicate')`);
      };
      await expect(
        store.commit(leased!.lease, { resultJson: '1', outcome: 'succeeded', writes: [writeUser(40), failing] }),
      ).rejects.toThrow(/duplicate key/);
      expect(await notesOf()).toEqual([]);
      expect(await store.getJob(leased!.job.id)).toMatchObject({ state: 'running', leaseToken: leased!.lease.token });
      // The connection went back to the pool clean: the next commit works.
      expect(await store.commit(leased!.lease, { resultJson: '1', outcome: 'succeeded', writes: [writeUser(41)] })).toBe(true);
    });
  });
});

function locationOf(store: PostgresStore): string {
  const url = new URL(POSTGRES_TEST_URL);
  url.searchParams.set('schema', store.schema);
  return url.toString();
}
