import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../src/core/clock.js';
import type { Store } from '../../src/core/store.js';
import { SqliteStore, type SqliteTransaction } from '../../src/stores/sqlite/sqlite-store.js';

/** One store kind as the contract suite sees it: a way to open fresh, isolated stores. */
export interface StoreHarness {
  kind: 'sqlite' | 'postgres';
  /** False when the store's server is not reachable; the suite then skips it with a reason. */
  available: boolean;
  /** Why the store is unavailable, shown in the name of the skipped suite. */
  unavailableReason?: string;
  /**
   * Opens a new, empty store. A second call with the same `shareWith` opens another connection to that same store.
   * `location` is what `vouch audit --store` takes to open that store: a SQLite file path or a postgres:// URL.
   */
  open(options?: { clock?: Clock; shareWith?: string }): Promise<{ store: Store<any>; location: string }>;
  /**
   * Writes to the store's own database, for the ctx.transaction tests. Only
   * this helper knows the database; the suite passes it the `tx` that the
   * store hands to ctx.transaction callbacks. Without it those tests are skipped.
   */
  notes?: NoteTable<any>;
  /** Removes everything the harness created. */
  cleanup(): Promise<void>;
}

/** A table of notes in the store's own database, written through ctx.transaction. */
export interface NoteTable<Tx> {
  /** Creates the table in this store's database if it is missing. */
  create(store: Store<Tx>): Promise<void>;
  /** The body of a ctx.transaction callback: inserts one note through the commit transaction. */
  insert(tx: Tx, text: string): unknown;
  /** The notes committed so far, oldest first. */
  list(store: Store<Tx>): Promise<string[]>;
}

const sqliteNotes: NoteTable<SqliteTransaction> = {
  async create(store) {
    (store as SqliteStore).db.exec('CREATE TABLE IF NOT EXISTS test_notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)');
  },
  insert(tx, text) {
    tx.prepare('INSERT INTO test_notes (text) VALUES (?)').run(text);
  },
  async list(store) {
    const rows = (store as SqliteStore).db.prepare('SELECT text FROM test_notes ORDER BY id').all() as { text: string }[];
    return rows.map((row) => row.text);
  },
};

export function sqliteHarness(): StoreHarness {
  const folder = mkdtempSync(join(tmpdir(), 'vouch-test-'));
  let counter = 0;
  const opened: Store<any>[] = [];
  return {
    kind: 'sqlite',
    available: true,
    notes: sqliteNotes,
    async open(options = {}) {
      counter += 1;
      const location = options.shareWith ?? join(folder, `store-${counter}.db`);
      const store = new SqliteStore({ path: location, ...(options.clock ? { clock: options.clock } : {}) });
      opened.push(store);
      return { store, location };
    },
    async cleanup() {
      for (const store of opened) await store.close();
      rmSync(folder, { recursive: true, force: true });
    },
  };
}
