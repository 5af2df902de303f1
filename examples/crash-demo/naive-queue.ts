/**
 * The pattern vouch replaces, written out by hand: a queue that acknowledges
 * a job when a worker receives it. Taking a job and marking it done are one
 * write; the work happens afterwards, outside any record. A worker that dies
 * after that write and before its email went out leaves a job that says
 * `done` and an email that was never sent, and nothing notices.
 *
 * No leases, no attempts, no effect ledger, no verify: that is the point.
 */
import BetterSqlite3, { type Database } from 'better-sqlite3';
import type { NotificationPayload } from './notification-job.js';

export interface NaiveJob {
  id: number;
  payload: NotificationPayload;
}

export class NaiveQueue {
  private readonly db: Database;

  constructor(path: string) {
    this.db = new BetterSqlite3(path, { timeout: 5000 });
    // The same durability settings as vouch's SQLite store, so the two runs pay the same for each write.
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS naive_jobs (
        id INTEGER PRIMARY KEY,
        payload TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'done')),
        taken_by TEXT,
        taken_at INTEGER
      );
      CREATE TABLE IF NOT EXISTS notifications (
        job_id TEXT NOT NULL UNIQUE,
        message_id TEXT NOT NULL,
        created_at INTEGER NOT NULL
      );
    `);
  }

  enqueue(payloads: readonly NotificationPayload[]): void {
    const insert = this.db.prepare(`INSERT INTO naive_jobs (payload, state) VALUES (?, 'pending')`);
    this.db.transaction(() => {
      for (const payload of payloads) insert.run(JSON.stringify(payload));
    })();
  }

  /** Takes up to `limit` pending jobs and marks them done in the same write: acknowledge on receive. */
  take(limit: number, workerId: string): NaiveJob[] {
    const rows = this.db
      .prepare(
        `UPDATE naive_jobs SET state = 'done', taken_by = ?, taken_at = ?
          WHERE id IN (SELECT id FROM naive_jobs WHERE state = 'pending' ORDER BY id LIMIT ?)
          RETURNING id, payload`,
      )
      .all(workerId, Date.now(), limit) as { id: number; payload: string }[];
    return rows.map((row) => ({ id: row.id, payload: JSON.parse(row.payload) as NotificationPayload }));
  }

  recordNotification(jobId: number, messageId: string): void {
    this.db
      .prepare('INSERT INTO notifications (job_id, message_id, created_at) VALUES (?, ?, ?)')
      .run(String(jobId), messageId, Date.now());
  }

  pendingCount(): number {
    return this.db.prepare(`SELECT count(*) FROM naive_jobs WHERE state = 'pending'`).pluck().get() as number;
  }

  /** Every job with its number and state, for the demo's figures. */
  jobs(): { id: number; n: number; state: 'pending' | 'done' }[] {
    const rows = this.db.prepare('SELECT id, payload, state FROM naive_jobs ORDER BY id').all() as {
      id: number;
      payload: string;
      state: 'pending' | 'done';
    }[];
    return rows.map((row) => ({ id: row.id, n: (JSON.parse(row.payload) as NotificationPayload).n, state: row.state }));
  }

  close(): void {
    this.db.close();
  }
}
