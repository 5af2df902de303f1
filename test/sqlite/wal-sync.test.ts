import { fdatasync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/stores/sqlite/group-commit.js';
import { type SyncFile, WalSync } from '../../src/stores/sqlite/wal-sync.js';
import { waitFor } from '../support/wait.js';

/**
 * Group commit with the WAL flushed off the event loop, on a real SQLite file.
 * The flush is the real fdatasync, wrapped so a test can hold it back and see
 * what resolved meanwhile. The failing flush is injected because this
 * machine's disk cannot be made to fail an fdatasync on request.
 */
describe('SQLite WAL flush off the event loop', () => {
  let folder: string;
  let db: Database;
  let disk: HeldDisk;
  let walSync: WalSync;
  let group: GroupCommit;

  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'vouch-wal-sync-'));
    const path = join(folder, 'sync.db');
    db = new BetterSqlite3(path);
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
    disk = new HeldDisk();
    walSync = new WalSync(`${path}-wal`, disk.sync);
    group = new GroupCommit(db, true, walSync);
  });
  afterEach(async () => {
    disk.releaseAll();
    await walSync.close();
    db.close();
    rmSync(folder, { recursive: true, force: true });
  });

  const insert = (body: string) => () => Number(db.prepare('INSERT INTO notes (body) VALUES (?)').run(body).lastInsertRowid);
  const bodies = () => db.prepare('SELECT body FROM notes ORDER BY id').pluck().all() as string[];

  it('resolves a write after its flush', async () => {
    disk.hold = true;
    const states = watch([group.run(insert('a')), group.run(insert('b'))]);
    await turns(3);
    // Committed, and visible on this connection, but the flush has not returned: no caller learns that it is durable.
    expect(bodies()).toEqual(['a', 'b']);
    expect(disk.started).toBe(1);
    expect(states()).toEqual(['pending', 'pending']);

    disk.release();
    await waitFor('both writes resolved', () => states().every((state) => state === 'resolved'));
  });

  it('resolves an unsynced write at commit', async () => {
    disk.hold = true;
    const states = watch([group.run(insert('lease'), { unsynced: true }), group.run(insert('commit'))]);
    await turns(3);
    expect(states()).toEqual(['resolved', 'pending']);
    disk.release();
    await waitFor('the synced write resolved', () => states()[1] === 'resolved');
  });

  it('shares the next flush among later writes', async () => {
    disk.hold = true;
    const first = watch([group.run(insert('first'))]);
    await turns(3);
    // Three more groups, in three turns, all while the first flush is out.
    const later: Promise<number>[] = [];
    for (const body of ['x', 'y', 'z']) {
      later.push(group.run(insert(body)));
      await turns(1);
    }
    const rest = watch(later);
    expect(disk.started).toBe(1);
    disk.release();
    // One more flush starts, for all three, once the first returns; it is held like the first.
    await waitFor('the second flush to start', () => disk.started === 2);
    expect(first()).toEqual(['resolved']);
    expect(rest()).toEqual(['pending', 'pending', 'pending']);
    disk.release();
    await waitFor('the three later writes resolved', () => rest().every((state) => state === 'resolved'));
    expect(disk.started).toBe(2);
  });

  it('rejects every write after a failed flush', async () => {
    disk.hold = true;
    const covered = group.run(insert('covered'));
    await turns(3);
    disk.fail(Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' }));
    await expect(covered).rejects.toThrow(/syncing the SQLite WAL file ".*sync\.db-wal" failed \(EIO: i\/o error, fdatasync\)/);
    await expect(covered).rejects.toThrow(/accepts no more writes: close it, check the disk, and open it again/);

    // The disk works again, but what it dropped is unknown: the store must not report anything durable from now on.
    disk.hold = false;
    await expect(group.run(insert('after'))).rejects.toThrow(/syncing the SQLite WAL file/);
    await expect(group.run(insert('lease after'), { unsynced: true })).rejects.toThrow(/syncing the SQLite WAL file/);
    expect(bodies()).toEqual(['covered']);
  });

  it('closes after the flush in progress', async () => {
    disk.hold = true;
    const states = watch([group.run(insert('last'))]);
    await turns(3);
    let closed = false;
    const closing = walSync.close().then(() => {
      closed = true;
    });
    await turns(3);
    expect(closed).toBe(false);
    disk.release();
    await closing;
    await waitFor('the last write resolved', () => states()[0] === 'resolved');
    await expect(walSync.durable()).rejects.toThrow(/closed before this write reached the disk/);
  });
});

/** The real fdatasync, which a test can hold back, release, or fail. */
class HeldDisk {
  hold = false;
  started = 0;
  private held: { fd: number; done: Parameters<SyncFile>[1] }[] = [];

  readonly sync: SyncFile = (fd, done) => {
    this.started += 1;
    if (this.hold) this.held.push({ fd, done });
    else fdatasync(fd, done);
  };

  release(): void {
    for (const { fd, done } of this.held.splice(0)) fdatasync(fd, done);
  }

  fail(error: NodeJS.ErrnoException): void {
    for (const { done } of this.held.splice(0)) done(error);
  }

  releaseAll(): void {
    this.hold = false;
    this.release();
  }
}

/** Reports, when called, whether each promise is still pending. */
function watch(promises: readonly Promise<unknown>[]): () => string[] {
  const states = promises.map(() => 'pending');
  promises.forEach((promise, index) => {
    promise.then(
      () => {
        states[index] = 'resolved';
      },
      () => {
        states[index] = 'rejected';
      },
    );
  });
  return () => [...states];
}

/** Waits for `count` short pauses: long enough for a group to commit, which takes one turn of the event loop. */
async function turns(count: number): Promise<void> {
  for (let turn = 0; turn < count; turn += 1) await new Promise((resolve) => setTimeout(resolve, 20));
}
