import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { COMPLETION, enqueueOne, leaseOne } from '../support/jobs.js';

describe('SQLite wake file', () => {
  let folder: string;
  let path: string;
  const stores: SqliteStore[] = [];
  beforeEach(() => {
    folder = mkdtempSync(join(tmpdir(), 'vouch-wake-'));
    path = join(folder, 'store.db');
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    rmSync(folder, { recursive: true, force: true });
  });
  const open = () => {
    const store = new SqliteStore({ path });
    stores.push(store);
    return store;
  };

  it('changes after the enqueue is visible', async () => {
    const client = open();
    const reader = open();
    await enqueueOne(client);
    const seen: number[] = [];
    const watcher = watch(`${path}-wake`, () => {
      // Read through another connection at the moment of the event: the new job must already be there.
      seen.push(reader.db.prepare('SELECT count(*) FROM vouch_jobs').pluck().get() as number);
    });
    try {
      for (let count = 2; count <= 4; count += 1) {
        await enqueueOne(client);
        await new Promise((resolve) => setTimeout(resolve, 50));
        expect(seen.at(-1)).toBe(count);
      }
    } finally {
      watcher.close();
    }
    expect(statSync(`${path}-wake`).size).toBe(1);
  });

  it('wakes another connection before its poll', async () => {
    const worker = new SqliteStore({ path, wakePollMs: 60_000 });
    stores.push(worker);
    const client = open();
    const woken: number[] = [];
    worker.onWake(() => woken.push(Date.now()));
    const enqueuedAt = Date.now();
    await enqueueOne(client);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(woken.length).toBeGreaterThan(0);
    expect(woken[0]! - enqueuedAt).toBeLessThan(50);
  });

  it('lives beside the real file of a link', async () => {
    // SQLite follows the link and keeps its WAL beside the target: the store must flush that WAL, not a missing one.
    const links = join(folder, 'links');
    mkdirSync(links);
    await new SqliteStore({ path }).close();
    const linked = join(links, 'store.db');
    symlinkSync(path, linked);
    const viaLink = new SqliteStore({ path: linked });
    stores.push(viaLink);

    await enqueueOne(viaLink);
    const leased = await leaseOne(viaLink);
    expect(await viaLink.commit(leased.lease, COMPLETION)).toBe(true);

    expect(existsSync(`${path}-wal`)).toBe(true);
    expect(existsSync(`${path}-wake`)).toBe(true);
    expect(existsSync(`${linked}-wal`)).toBe(false);
    expect(existsSync(`${linked}-wake`)).toBe(false);
  });
});
