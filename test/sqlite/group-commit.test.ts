import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/stores/sqlite/group-commit.js';

/** Group commit on a real SQLite file in WAL mode with synchronous = FULL, as the store opens it. */
describe('SQLite group commit', () => {
  let folder: string;
  let db: Database;
  let group: GroupCommit;

  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'vouch-group-'));
    db = new BetterSqlite3(join(folder, 'group.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL UNIQUE)');
    group = new GroupCommit(db, true);
  });
  afterEach(() => {
    db.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const insert = (body: string) => () => db.prepare('INSERT INTO notes (body) VALUES (?)').run(body).lastInsertRowid;
  const bodies = () => db.prepare('SELECT body FROM notes ORDER BY id').pluck().all() as string[];

  /** Frames in the WAL since the last truncating checkpoint: one per changed page per transaction. */
  const walFrames = () => (db.pragma('wal_checkpoint(PASSIVE)') as { log: number }[])[0]?.log;

  it('writes one turn in one transaction', async () => {
    db.pragma('wal_checkpoint(TRUNCATE)');
    const ids = await Promise.all([group.run(insert('a')), group.run(insert('b')), group.run(insert('c'))]);
    expect(ids).toEqual([1, 2, 3]);
    expect(bodies()).toEqual(['a', 'b', 'c']);
    const grouped = walFrames();

    // Requests in separate turns are separate transactions: the table and index pages are written again each time.
    db.pragma('wal_checkpoint(TRUNCATE)');
    for (const body of ['d', 'e', 'f']) await group.run(insert(body));
    const separate = walFrames();
    expect(grouped).toBeGreaterThan(0);
    expect(separate).toBe(3 * (grouped as number));
  });

  it('rolls back a throwing isolated write alone', async () => {
    const results = await Promise.allSettled([
      group.run(insert('kept-1')),
      group.run(
        () => {
          insert('rolled-back')();
          throw new Error('application write failed');
        },
        { isolated: true },
      ),
      group.run(insert('kept-2')),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'application write failed' });
    expect(bodies()).toEqual(['kept-1', 'kept-2']);
  });

  it('isolates a throwing shared write on retry', async () => {
    let runsOfFirst = 0;
    const results = await Promise.allSettled([
      group.run(() => {
        runsOfFirst += 1;
        return insert('first')();
      }),
      // A unique-key violation after a partial write: without a savepoint it would leave "half" behind.
      group.run(() => {
        insert('half')();
        return insert('first')();
      }),
      group.run(insert('last')),
    ]);
    expect(results.map((result) => result.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_UNIQUE' });
    expect(bodies()).toEqual(['first', 'last']);
    // The first pass was rolled back as a whole, so the first write ran twice and was written once.
    expect(runsOfFirst).toBe(2);
  });

  it('skips the fsync for unsynced groups only', async () => {
    const synchronous = () => db.pragma('synchronous', { simple: true });
    const [alone] = await Promise.all([group.run(synchronous, { unsynced: true })]);
    // 1 is NORMAL (no fsync at commit in WAL mode), 2 is FULL.
    expect(alone).toBe(1);
    const mixed = await Promise.all([group.run(synchronous, { unsynced: true }), group.run(synchronous)]);
    expect(mixed).toEqual([2, 2]);
    // The setting is restored after the unsynced group.
    expect(synchronous()).toBe(2);
  });

  it('rejects all writes when locked out', async () => {
    const other = new BetterSqlite3(join(folder, 'group.db'), { timeout: 0 });
    db.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE');
    try {
      const results = await Promise.allSettled([group.run(insert('x')), group.run(insert('y'))]);
      expect(results.map((result) => result.status)).toEqual(['rejected', 'rejected']);
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(bodies()).toEqual([]);
  });
});
