import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigurationError, VouchError } from '../../src/core/errors.js';
import { openStore } from '../../src/stores/open-store.js';
import { runCli } from '../support/cli.js';
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
});
