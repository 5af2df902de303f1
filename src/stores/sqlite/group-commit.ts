import type { Database, Statement } from 'better-sqlite3';

interface PendingWrite {
  work: () => unknown;
  resolve: (value: any) => void;
  reject: (error: unknown) => void;
}

/**
 * Runs the writes that attempts request in the same turn of the event loop
 * in one immediate transaction, so that many commits share one fsync. Each
 * write runs in its own savepoint: one that throws is rolled back alone and
 * rejects alone, while the others commit. No write resolves before the
 * transaction holding it has committed, so a caller that sees its promise
 * resolve may rely on the write being durable (for an effect's intent, before
 * the effect runs).
 */
export class GroupCommit {
  private pending: PendingWrite[] = [];
  private scheduled = false;
  private readonly savepoint: Statement;
  private readonly release: Statement;
  private readonly rollback: Statement;

  constructor(private readonly db: Database) {
    // Prepared once: wrapping every write in db.transaction() cost about 5% of a no-op job's CPU.
    this.savepoint = db.prepare('SAVEPOINT vouch_write');
    this.release = db.prepare('RELEASE vouch_write');
    this.rollback = db.prepare('ROLLBACK TO vouch_write');
  }

  /** Queues `work` for the next group transaction and resolves with its return value once that transaction committed. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve, reject });
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

    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    try {
      this.db
        .transaction(() => {
          for (const write of batch) {
            this.savepoint.run();
            try {
              outcomes.push({ ok: true, value: write.work() });
              this.release.run();
            } catch (error) {
              this.rollback.run();
              this.release.run();
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      // The group transaction itself failed (for example, the database stayed locked past the busy timeout): nothing in it was written.
      for (const write of batch) write.reject(error);
      return;
    }
    for (const [index, write] of batch.entries()) {
      const outcome = outcomes[index];
      if (outcome?.ok) write.resolve(outcome.value);
      else write.reject(outcome?.error);
    }
  }
}
