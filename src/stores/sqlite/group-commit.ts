import type { Database, Statement } from 'better-sqlite3';
import type { WalSync } from './wal-sync.js';

interface PendingWrite {
  work: () => unknown;
  /** Runs in its own savepoint, so that a throw rolls back this write alone. */
  isolated: boolean;
  /** Needs no fsync of its own (see run). */
  unsynced: boolean;
  resolve: (value: any) => void;
  reject: (error: unknown) => void;
  /**
   * The write's own outcome, set when its group transaction ran. Kept on the
   * write rather than in an array of outcome objects: one object fewer per job.
   */
  failed: boolean;
  value: unknown;
  error: unknown;
}

/**
 * Runs the writes that attempts request in the same turn of the event loop
 * in one immediate transaction, so that many leases and commits share one
 * disk flush. No write resolves before its transaction has committed and,
 * unless it is marked unsynced, reached the disk. A caller that sees its
 * promise resolve may therefore rely on the write being durable (for an
 * effect's intent, before the effect runs).
 *
 * With a WalSync, the transaction commits without syncing and the flush runs
 * off the event loop (see WalSync), so the slots keep running jobs while the
 * disk works. Without one, SQLite syncs inside COMMIT, as its `synchronous`
 * setting requires.
 *
 * A write that may throw for its own reasons (it runs application code) is
 * isolated in a savepoint: it is rolled back and rejects alone while the
 * others commit. The other writes are vouch's own statements, which throw
 * only when the database itself fails, and a savepoint each would cost a tenth
 * of a no-op job. If one of them throws anyway, the whole group is rolled
 * back and run once more with every write isolated, so that only the
 * failing write rejects.
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private readonly savepoint: Statement;
  private readonly release: Statement;
  private readonly rollback: Statement;
  private readonly syncEachCommit: boolean;

  /**
   * `syncEachCommit`: the store runs with synchronous = FULL, so a group that
   * needs no fsync may skip it. `walSync`, given only with `syncEachCommit`,
   * takes every flush off the event loop.
   */
  constructor(
    private readonly db: Database,
    syncEachCommit: boolean,
    private readonly walSync: WalSync | null = null,
  ) {
    this.syncEachCommit = syncEachCommit;
    this.savepoint = db.prepare('SAVEPOINT vouch_write');
    this.release = db.prepare('RELEASE vouch_write');
    this.rollback = db.prepare('ROLLBACK TO vouch_write');
  }

  /**
   * Queues `work` for the next group transaction and resolves with its
   * return value once that transaction committed.
   *
   * `unsynced` marks a write that need not wait for the disk: it resolves
   * when its transaction commits, and a group made only of such writes
   * commits without an fsync. It suits a write whose loss in a power cut is
   * harmless or is caught later. A lease: if the power fails, the job is
   * simply available again, and every write that depends on the lease (an
   * effect's intent, the commit) syncs the WAL, and with it every frame
   * written before, the lease included. An effect's done record: lost, it
   * leaves the effect in doubt, which the next attempt settles.
   */
  run<T>(work: () => T, options: { isolated?: boolean; unsynced?: boolean } = {}): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({
        work,
        isolated: options.isolated === true,
        unsynced: options.unsynced === true,
        resolve,
        reject,
        failed: false,
        value: undefined,
        error: undefined,
      });
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending;
    this.pending = [];
    if (!this.db.open) {
      for (const write of batch) write.reject(new Error('the SQLite store was closed before this write ran'));
      return;
    }
    const diskFailure = this.walSync?.failed;
    if (diskFailure) {
      for (const write of batch) write.reject(diskFailure);
      return;
    }

    // Through exec, not a prepared statement: SQLite applies this pragma when it compiles it, not when it runs.
    const skipSync = this.syncEachCommit && (this.walSync !== null || batch.every((write) => write.unsynced));
    if (skipSync) this.db.exec('PRAGMA synchronous = NORMAL');
    try {
      this.write(batch, false);
    } catch (error) {
      if (!(error instanceof SharedWriteFailed)) {
        // The group transaction itself failed (for example, the database stayed locked past the busy timeout): nothing in it was written.
        for (const write of batch) write.reject(error);
        return;
      }
      try {
        this.write(batch, true);
      } catch (retryError) {
        for (const write of batch) write.reject(retryError);
        return;
      }
    } finally {
      if (skipSync) this.db.exec('PRAGMA synchronous = FULL');
    }
    const awaitingDisk: PendingWrite[] = [];
    for (let index = 0; index < batch.length; index += 1) {
      const write = batch[index] as PendingWrite;
      if (write.failed) write.reject(write.error);
      else if (this.walSync && !write.unsynced) awaitingDisk.push(write);
      else write.resolve(write.value);
    }
    if (this.walSync && awaitingDisk.length > 0) {
      this.walSync.durable().then(
        () => {
          for (const write of awaitingDisk) write.resolve(write.value);
        },
        (error) => {
          for (const write of awaitingDisk) write.reject(error);
        },
      );
    }
  }

  /**
   * Writes the batch in one immediate transaction and sets each write's
   * outcome. Throws SharedWriteFailed, with nothing written, when a write
   * outside a savepoint threw.
   */
  private write(batch: readonly PendingWrite[], isolateAll: boolean): void {
    this.db
      .transaction(() => {
        for (const write of batch) {
          write.failed = false;
          if (!write.isolated && !isolateAll) {
            try {
              write.value = write.work();
            } catch (error) {
              throw new SharedWriteFailed(error);
            }
            continue;
          }
          this.savepoint.run();
          try {
            write.value = write.work();
            this.release.run();
          } catch (error) {
            this.rollback.run();
            this.release.run();
            write.failed = true;
            write.error = error;
          }
        }
      })
      .immediate();
  }
}

/** A write outside a savepoint threw, so the group transaction must roll back as a whole. */
class SharedWriteFailed extends Error {
  constructor(readonly original: unknown) {
    super('a write in a group transaction failed', { cause: original });
  }
}
