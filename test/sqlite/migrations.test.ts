import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS } from '../../src/stores/sqlite/migrations.js';
import { DUE_JOBS_SQL, SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { enqueueOne } from '../support/jobs.js';

describe('SQLite migrations', () => {
  let folder: string;
  let path: string;
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'vouch-migrate-'));
    path = join(folder, 'store.db');
  });
  afterEach(() => rmSync(folder, { recursive: true, force: true }));

  const indexes = (db: BetterSqlite3.Database) =>
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'vouch_attempts' ORDER BY name").pluck().all();

  it('upgrades version 1 to a partial index', async () => {
    // A store as version 1 left it, with one attempt of each kind the audit must tell apart.
    const old = new BetterSqlite3(path);
    old.exec('CREATE TABLE vouch_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    old.exec(MIGRATIONS[0]!.sql);
    old.prepare('INSERT INTO vouch_migrations VALUES (1, ?, 0)').run(MIGRATIONS[0]!.description);
    old.exec(`INSERT INTO vouch_jobs (id, name, queue, payload, state, max_attempts, lease_ms, run_at, created_at, dedup_window_ms)
              VALUES (1, 'mail', 'default', '{}', 'available', 3, 1000, 0, 0, 0)`);
    old.exec(
      `INSERT INTO vouch_attempts VALUES (1, 1, 'w', 't1', 0, 10, 'abandoned', 'gone'), (1, 2, 'w', 't2', 20, 30, 'succeeded', NULL)`,
    );
    expect(indexes(old)).toContain('vouch_attempts_ended');
    old.close();

    const store = new SqliteStore({ path });
    try {
      expect(indexes(store.db)).toEqual(['vouch_attempts_recovered']);
      expect(store.db.prepare('SELECT max(version) FROM vouch_migrations').pluck().get()).toBe(MIGRATIONS.at(-1)!.version);
      const plan = store.db
        .prepare(`EXPLAIN QUERY PLAN SELECT job_id FROM vouch_attempts WHERE outcome IN ('abandoned', 'lease_lost') AND ended_at > ?`)
        .all(0) as { detail: string }[];
      expect(plan.map((step) => step.detail).join('\n')).toMatch(/vouch_attempts_recovered/);
      const findings = await store.audit({ overdueAfterMs: 1e12, inDoubtAfterMs: 1e12, windowMs: 1e15, limit: 10 });
      expect(findings.recovered).toEqual([expect.objectContaining({ jobId: '1', attempt: 1 })]);
    } finally {
      await store.close();
    }
  });

  it('sweeps an attempt that version 2 opened and its worker left', async () => {
    // Versions 1 and 2 wrote an open attempt row at lease time; version 3 writes the row when the attempt ends.
    // The lease belongs to a worker of the old version, which closes the row itself unless it died: then the sweep does.
    const old = new BetterSqlite3(path);
    old.exec('CREATE TABLE vouch_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    for (const migration of MIGRATIONS.slice(0, 2)) {
      old.exec(migration.sql);
      old.prepare('INSERT INTO vouch_migrations VALUES (?, ?, 0)').run(migration.version, migration.description);
    }
    const expired = Date.now() - 1000;
    old.exec(`INSERT INTO vouch_jobs (id, name, queue, payload, state, attempt, max_attempts, lease_ms, run_at, created_at, dedup_window_ms,
                                      lease_token, lease_expires_at, worker_id)
              VALUES (7, 'mail', 'default', '{}', 'running', 1, 3, 30000, 0, 0, 0, 'old-token', ${expired}, 'old-worker')`);
    old.exec(
      `INSERT INTO vouch_attempts (job_id, attempt, worker_id, lease_token, started_at) VALUES (7, 1, 'old-worker', 'old-token', 1234)`,
    );
    old.close();

    const store = new SqliteStore({ path });
    try {
      expect(await store.listAttempts('7')).toEqual([expect.objectContaining({ attempt: 1, outcome: null, startedAt: 1234 })]);
      expect(await store.sweep()).toEqual([expect.objectContaining({ jobId: '7', attempt: 1, leaseToken: 'old-token' })]);
      expect(await store.listAttempts('7')).toEqual([
        expect.objectContaining({ attempt: 1, workerId: 'old-worker', leaseToken: 'old-token', outcome: 'abandoned', startedAt: 1234 }),
      ]);
      expect(await store.getJob('7')).toMatchObject({ state: 'available', leaseToken: null });
    } finally {
      await store.close();
    }
  });

  it('rebuilds the version 4 jobs table', async () => {
    const old = new BetterSqlite3(path);
    old.exec('CREATE TABLE vouch_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    for (const migration of MIGRATIONS.filter((migration) => migration.version <= 4)) {
      old.exec(migration.sql);
      old.prepare('INSERT INTO vouch_migrations VALUES (?, ?, 0)').run(migration.version, migration.description);
    }
    const insert = old.prepare(
      `INSERT INTO vouch_jobs (id, name, queue, key, payload, state, attempt, max_attempts, lease_ms, run_at, created_at, finished_at,
                               dedup_window_ms, result, last_error, lease_token, lease_expires_at, worker_id, attempt_started_at)
       VALUES (?, 'mail', 'default', ?, '{"to":"a@example.com"}', ?, 1, 3, 30000, ?, 5, ?, 0, ?, ?, ?, ?, ?, ?)`,
    );
    // Ids with gaps, as deletes leave them, and one job in each state a worker meets.
    insert.run(3, 'k-3', 'available', 10, null, null, null, null, null, null, null);
    insert.run(8, null, 'running', 10, null, null, null, 'token-8', 99_000, 'w-1', 40);
    insert.run(21, null, 'completed', 10, 50, '{"sent":true}', null, 'token-21', null, 'w-1', 45);
    insert.run(22, null, 'failed', 10, 60, null, 'refused', null, null, null, null);
    insert.run(30, null, 'scheduled', 9_000_000_000_000, null, null, null, null, null, null, null);
    const before = old.prepare('SELECT * FROM vouch_jobs ORDER BY id').all();
    old.close();

    const store = new SqliteStore({ path });
    try {
      expect(store.db.prepare('SELECT * FROM vouch_jobs ORDER BY id').all()).toEqual(before);
      const ddl = store.db.prepare("SELECT sql FROM sqlite_master WHERE name = 'vouch_jobs'").pluck().get() as string;
      expect(ddl).not.toMatch(/state IN/);
      expect(() => store.db.prepare(`UPDATE vouch_jobs SET state = 'finished' WHERE id = 3`).run()).toThrow(/CHECK constraint failed/);
      // The lease finds its jobs through the partial index, not by scanning the table and sorting it.
      const plan = store.db.prepare(`EXPLAIN QUERY PLAN ${DUE_JOBS_SQL}`).all('default', 0, 10) as { detail: string }[];
      expect(plan.map((step) => step.detail).join('\n')).toMatch(/USING INDEX vouch_jobs_due/);
      const leased = await store.lease({ queue: 'default', limit: 10, workerId: 'w-2' });
      expect(leased.map((job) => job.job.id)).toEqual(['3']);
      // A new job takes an id above every kept one.
      const outcome = await enqueueOne(store);
      expect(outcome).toBe('31');
    } finally {
      await store.close();
    }
  });
});
