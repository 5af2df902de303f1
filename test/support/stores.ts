import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Clock } from '../../src/core/clock.js';
import type { Store } from '../../src/core/store.js';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';

/** One store kind as the contract suite sees it: a way to open fresh, isolated stores. */
export interface StoreHarness {
  kind: 'sqlite' | 'postgres';
  /** False when the store's server is not reachable; the suite then skips it with a reason. */
  available: boolean;
  /** Opens a new, empty store. A second call with the same `shareWith` opens another connection to that same store. */
  open(options?: { clock?: Clock; shareWith?: string }): Promise<{ store: Store<any>; location: string }>;
  /** Removes everything the harness created. */
  cleanup(): Promise<void>;
}

export function sqliteHarness(): StoreHarness {
  const folder = mkdtempSync(join(tmpdir(), 'vouch-test-'));
  let counter = 0;
  const opened: Store<any>[] = [];
  return {
    kind: 'sqlite',
    available: true,
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
