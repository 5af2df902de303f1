import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { VouchError } from '../../src/core/errors.js';
import { LATEST_VERSION, MIGRATIONS } from '../../src/stores/postgres/migrations.js';
import { PostgresStore } from '../../src/stores/postgres/postgres-store.js';
import { quoteIdent, schemaNames } from '../../src/stores/postgres/sql.js';
import { COMPLETION, newJob } from '../support/jobs.js';
import { silentLogger } from '../support/logs.js';
import { POSTGRES_TEST_URL, postgresAvailable } from '../support/postgres-harness.js';
import { sideQuery } from './pg-bed.js';

const run = promisify(execFile);

/**
 * Versioned migrations: applied once however many processes start together,
 * never destructive to stored jobs, refused when the schema is newer than
 * this vouch, and reachable from the CLI for any schema name.
 */
describe.skipIf(!postgresAvailable())('postgres: migrations', () => {
  const schemas: string[] = [];
  const stores: PostgresStore[] = [];
  function freshSchema(name = `vouch_migrate_${randomBytes(4).toString('hex')}`): string {
    schemas.push(name);
    return name;
  }
  function open(schema: string, options: { migrate?: boolean } = {}): PostgresStore {
    const store = new PostgresStore({ connectionString: POSTGRES_TEST_URL, schema, listen: false, logger: silentLogger(), ...options });
    stores.push(store);
    return store;
  }
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
    for (const schema of schemas.splice(0)) await sideQuery(POSTGRES_TEST_URL, `DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
  });

  async function appliedVersions(schema: string): Promise<number[]> {
    const rows = await sideQuery<{ version: number }>(
      POSTGRES_TEST_URL,
      `SELECT version FROM ${quoteIdent(schema)}.migrations ORDER BY version`,
    );
    return rows.map((row) => row.version);
  }

  it('applies each migration once under a race', async () => {
    const schema = freshSchema();
    const racers = Array.from({ length: 6 }, () => open(schema, { migrate: false }));
    await Promise.all(racers.map((store) => store.migrate()));
    expect(await appliedVersions(schema)).toEqual(MIGRATIONS.map((migration) => migration.version));
  });

  it('migrates lazily once with migrate: true', async () => {
    const schema = freshSchema();
    const racers = Array.from({ length: 4 }, () => open(schema));
    const outcomes = await Promise.all(racers.map((store) => store.enqueue([newJob()])));
    expect(outcomes.flat()).toHaveLength(4);
    expect(await appliedVersions(schema)).toEqual(MIGRATIONS.map((migration) => migration.version));
  });

  it('keeps stored jobs when migrating again', async () => {
    const schema = freshSchema();
    const store = open(schema);
    const [outcome] = await store.enqueue([newJob({ payloadJson: '{"keep":true}' })]);
    const [leased] = await store.lease({ queue: 'default', limit: 1, workerId: 'w' });
    await store.migrate();
    await open(schema, { migrate: false }).migrate();
    expect(await store.getJob(outcome!.job.id)).toMatchObject({ state: 'running', payload: { keep: true } });
    expect(await store.commit(leased!.lease, COMPLETION)).toBe(true);
  });

  it('sweeps an attempt that version 1 opened and its worker left', async () => {
    // Version 1 wrote an open attempt row at lease time; version 2 writes the row when the attempt ends.
    // The lease belongs to a worker of the old version, which closes the row itself unless it died: then the sweep does.
    const schema = freshSchema();
    const names = schemaNames(schema);
    await sideQuery(POSTGRES_TEST_URL, `CREATE SCHEMA ${quoteIdent(schema)}`);
    await sideQuery(POSTGRES_TEST_URL, MIGRATIONS[0]!.sql(names));
    await sideQuery(
      POSTGRES_TEST_URL,
      `CREATE TABLE ${names.migrations} (version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    await sideQuery(POSTGRES_TEST_URL, `INSERT INTO ${names.migrations} (version, description) VALUES (1, 'v1')`);
    const started = '2026-01-02T03:04:05Z';
    await sideQuery(
      POSTGRES_TEST_URL,
      `INSERT INTO ${names.jobs} (id, name, queue, payload, state, attempt, max_attempts, lease_ms, run_at, created_at, dedup_window_ms,
                                  lease_token, lease_expires_at, worker_id)
       VALUES (7, 'send', 'default', '{}', 'running', 1, 3, 30000, now(), now(), 0, 'old-token', now() - interval '1 second', 'old-worker')`,
    );
    await sideQuery(
      POSTGRES_TEST_URL,
      `INSERT INTO ${names.attempts} (job_id, attempt, worker_id, lease_token, started_at) VALUES (7, 1, 'old-worker', 'old-token', $1)`,
      [started],
    );

    const store = open(schema);
    await store.migrate();
    expect(await store.listAttempts('7')).toEqual([
      expect.objectContaining({ attempt: 1, leaseToken: 'old-token', outcome: null, startedAt: Date.parse(started) }),
    ]);
    expect(await store.sweep()).toEqual([expect.objectContaining({ jobId: '7', attempt: 1, leaseToken: 'old-token' })]);
    expect(await store.listAttempts('7')).toEqual([
      expect.objectContaining({ attempt: 1, workerId: 'old-worker', outcome: 'abandoned', startedAt: Date.parse(started) }),
    ]);
    expect(await store.getJob('7')).toMatchObject({ state: 'available', leaseToken: null });
  });

  it('rejects a newer schema version', async () => {
    const schema = freshSchema();
    await open(schema, { migrate: false }).migrate();
    await sideQuery(
      POSTGRES_TEST_URL,
      `INSERT INTO ${quoteIdent(schema)}.migrations (version, description) VALUES ($1, 'from the future')`,
      [LATEST_VERSION + 1],
    );
    await expect(open(schema, { migrate: false }).migrate()).rejects.toThrow(/newer than this vouch knows/);
  });

  it('explains a missing schema', async () => {
    const store = open(freshSchema(), { migrate: false });
    const attempt = store.enqueue([newJob()]);
    await expect(attempt).rejects.toThrow(VouchError);
    await expect(attempt).rejects.toThrow(/is missing or not migrated.*vouch migrate/);
  });

  it('works in a schema that needs quoting', async () => {
    const schema = freshSchema(`Vouch "Jobs" ${randomBytes(2).toString('hex')}`);
    const byOption = open(schema);
    const [outcome] = await byOption.enqueue([newJob({ key: 'odd' })]);
    const url = new URL(POSTGRES_TEST_URL);
    url.searchParams.set('schema', schema);
    const byUrl = new PostgresStore({ connectionString: url.toString(), listen: false, logger: silentLogger() });
    stores.push(byUrl);
    expect(byUrl.schema).toBe(schema);
    const [leased] = await byUrl.lease({ queue: 'default', limit: 1, workerId: 'w' });
    expect(leased?.job.id).toBe(outcome?.job.id);
    expect(await byUrl.commit(leased!.lease, COMPLETION)).toBe(true);
    expect((await byOption.enqueue([newJob({ key: 'odd' })]))[0]?.duplicate).toBe(true);
  });

  it('runs from the vouch migrate command', async () => {
    const schema = freshSchema();
    const url = new URL(POSTGRES_TEST_URL);
    url.searchParams.set('schema', schema);
    const { stdout } = await run(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'migrate', '--store', url.toString()], {
      timeout: 30_000,
    });
    expect(stdout).toMatch(/vouch schema is created or upgraded/);
    expect(await appliedVersions(schema)).toEqual(MIGRATIONS.map((migration) => migration.version));
  });
});
