import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigurationError, VouchError } from '../../src/core/errors.js';
import { openStore } from '../../src/stores/open-store.js';
import { SqliteStore } from '../../src/stores/sqlite/sqlite-store.js';
import { runCli } from '../support/cli.js';
import { enqueueOne } from '../support/jobs.js';
import { POSTGRES_TEST_URL } from '../support/postgres-harness.js';

const folder = mkdtempSync(join(tmpdir(), 'vouch-location-'));
afterAll(() => rmSync(folder, { recursive: true, force: true }));

describe('store locations', () => {
  it('rejects an empty schema parameter', async () => {
    const location = `${POSTGRES_TEST_URL}?schema=`;
    await expect(openStore(location)).rejects.toThrow(ConfigurationError);
    await expect(openStore(location)).rejects.toThrow(/empty schema parameter; name the schema \(\?schema=jobs\)/);
  });

  it('masks the password in location errors', async () => {
    const withPassword = 'postgres://postgres:secret-pw@127.0.0.1:5432/test?schema=';
    await expect(openStore(withPassword)).rejects.toThrow('"postgres://postgres:***@127.0.0.1:5432/test?schema="');
    await expect(openStore(withPassword)).rejects.not.toThrow(/secret-pw/);
    const otherScheme = 'mysql://root:secret-pw@127.0.0.1/jobs';
    await expect(openStore(otherScheme)).rejects.toThrow('"mysql://root:***@127.0.0.1/jobs" is a mysql:// URL');
    await expect(openStore(otherScheme)).rejects.not.toThrow(/secret-pw/);
  });

  it('rejects a URL of another scheme', async () => {
    const location = 'postgress://postgres@127.0.0.1:5432/test';
    await expect(openStore(location)).rejects.toThrow(ConfigurationError);
    await expect(openStore(location)).rejects.toThrow(
      /"postgress:\/\/postgres@127\.0\.0\.1:5432\/test" is a postgress:\/\/ URL; only postgres:\/\//,
    );
  });

  it('names a database file for a folder', async () => {
    await expect(openStore(folder)).rejects.toThrow(VouchError);
    await expect(openStore(folder)).rejects.toThrow(
      new RegExp(`It is a folder: name a database file in it, for example "${folder}/vouch\\.db"`),
    );
  });

  it('names the server that the CLI cannot reach', async () => {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    const result = await runCli(['audit', '--store', 'postgres://postgres@127.0.0.1:1/test']);
    expect(result.code).toBe(2);
    expect(result.output).toMatch(/vouch: could not reach PostgreSQL at 127\.0\.0\.1:1 \(ECONNREFUSED\): check that the server is running/);
  });

  it('prints the location error from the CLI', async () => {
    const result = await runCli(['migrate', '--store', `${POSTGRES_TEST_URL}?schema=`]);
    expect(result.code).toBe(2);
    expect(result.output).toMatch(/vouch: store URL .* has an empty schema parameter/);
  });

  it('creates a SQLite store from the CLI', async () => {
    const path = join(folder, 'created-by-cli.db');
    const result = await runCli(['migrate', '--store', path]);
    expect(result.code).toBe(0);
    expect(existsSync(path)).toBe(true);
    const audit = await runCli(['audit', '--store', path]);
    expect(audit.code).toBe(0);
  });

  it('rejects a schema of another version', async () => {
    const path = join(folder, 'versions.db');
    const store = new SqliteStore({ path });
    store.db.prepare('INSERT INTO vouch_migrations (version, description, applied_at) VALUES (99, ?, 0)').run('from a newer vouch');
    await store.close();
    expect(() => new SqliteStore({ path, migrate: false })).toThrow(
      /schema is at version 99, newer than the version 5 this vouch expects; upgrade vouch/,
    );
    const audit = await runCli(['audit', '--store', path]);
    expect(audit.code).toBe(2);
    expect(audit.output).toMatch(/schema is at version 99/);

    const older = new SqliteStore({ path: join(folder, 'older.db') });
    older.db.prepare('DELETE FROM vouch_migrations WHERE version = 5').run();
    await older.close();
    expect(() => new SqliteStore({ path: join(folder, 'older.db'), migrate: false })).toThrow(
      /schema is at version 4 and this vouch needs version 5; run `vouch migrate --store PATH` first/,
    );
  });

  it('rejects unknown SQLite options', () => {
    const path = join(folder, 'options.db');
    for (const synchronous of ['sometimes', 'NORMAL', 'off']) {
      expect(() => new SqliteStore({ path, synchronous: synchronous as 'full' })).toThrow(
        `SqliteStore option synchronous must be "full" or "normal"; got "${synchronous}".`,
      );
    }
    expect(() => new SqliteStore({ path, busyTimeoutMs: -5 })).toThrow(
      /busyTimeoutMs must be a whole number of milliseconds from 0 to 2147483647; got -5/,
    );
    expect(() => new SqliteStore({ path, busyTimeoutMs: Number.NaN })).toThrow(/got NaN\.$/);
    expect(() => new SqliteStore({ path, busyTimeoutMs: 2 ** 31 })).toThrow(ConfigurationError);
    expect(existsSync(path)).toBe(false);
  });

  it('exits 2 on a CLI usage mistake', async () => {
    const misspelled = await runCli(['audit', '--store', join(folder, 'any.db'), '--max-deadd', '5']);
    expect(misspelled.code).toBe(2);
    expect(misspelled.output).toMatch(/unknown option '--max-deadd'/);
    const missing = await runCli(['audit']);
    expect(missing.code).toBe(2);
    expect(missing.output).toMatch(/required option '--store <location>' not specified/);
  });

  it('keeps no files for an in-memory store', async () => {
    const cwd = process.cwd();
    const scratch = mkdtempSync(join(folder, 'memory-'));
    process.chdir(scratch);
    try {
      const store = new SqliteStore({ path: ':memory:' });
      const stop = store.onWake(() => {});
      await enqueueOne(store);
      stop();
      await store.close();
      expect(readdirSync(scratch)).toEqual([]);
    } finally {
      process.chdir(cwd);
    }
  });

  it('ends a wrapped SQLite message with one period', () => {
    const path = join(folder, 'versions.db');
    expect(() => new SqliteStore({ path })).toThrow(/upgrade vouch before running it against this database\.$/);
  });
});
