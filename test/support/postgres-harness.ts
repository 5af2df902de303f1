import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import type { Clock } from '../../src/core/clock.js';
import type { Store } from '../../src/core/store.js';
import { PostgresStore, type PostgresTransaction } from '../../src/stores/postgres/postgres-store.js';
import type { NoteTable, StoreHarness } from './stores.js';

/**
 * The PostgreSQL store as the test suites see it: every open() gets a fresh
 * schema with a unique name in database `test`, and cleanup() drops them.
 * The server is the one on 127.0.0.1:5432 (user postgres, trust), or
 * VOUCH_TEST_POSTGRES_URL.
 */
export const POSTGRES_TEST_URL = process.env.VOUCH_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Whether the server answers, found once when this module loads: harnesses
 * are created synchronously, while the suite is being declared. The database
 * is created when the server answers without it.
 */
const reachability: string | null = await probe(POSTGRES_TEST_URL);

async function probe(url: string): Promise<string | null> {
  const attempt = async (target: string) => {
    const client = new pg.Client({ connectionString: target, connectionTimeoutMillis: 3000 });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('SELECT 1');
    } finally {
      await client.end().catch(() => {});
    }
  };
  try {
    await attempt(url);
    return null;
  } catch (error) {
    // 3D000: the database does not exist yet; create it through the maintenance database.
    if ((error as { code?: string }).code === '3D000') {
      try {
        const parsed = new URL(url);
        const database = decodeURIComponent(parsed.pathname.slice(1));
        parsed.pathname = '/postgres';
        const admin = new pg.Client({ connectionString: parsed.toString(), connectionTimeoutMillis: 3000 });
        await admin.connect();
        await admin.query(`CREATE DATABASE "${database.replaceAll('"', '""')}"`).catch((failure: { code?: string }) => {
          if (failure.code !== '42P04') throw failure;
        });
        await admin.end();
        await attempt(url);
        return null;
      } catch (failure) {
        return `could not create the test database at ${url}: ${(failure as Error).message}`;
      }
    }
    return `no PostgreSQL answers at ${url} (${(error as Error).message})`;
  }
}

/** The schema part of a location this harness handed out. */
function schemaOf(location: string): string {
  const schema = new URL(location).searchParams.get('schema');
  if (!schema) throw new Error(`location ${location} names no schema`);
  return schema;
}

/** A connection string whose sessions resolve unqualified table names in `schema`, for the notes table. */
function withSearchPath(url: string, schema: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('options', `-c search_path=${schema}`);
  return parsed.toString();
}

const notes: NoteTable<PostgresTransaction> = {
  async create(store) {
    const schema = (store as unknown as PostgresStore).schema;
    await (store as unknown as PostgresStore).pool.query(
      `CREATE TABLE IF NOT EXISTS "${schema}".test_notes (id bigserial PRIMARY KEY, text text NOT NULL)`,
    );
  },
  // The commit transaction's client runs with search_path set to the store's schema.
  insert(tx, text) {
    return tx.query('INSERT INTO test_notes (text) VALUES ($1)', [text]);
  },
  async list(store) {
    const schema = (store as unknown as PostgresStore).schema;
    const { rows } = await (store as unknown as PostgresStore).pool.query(`SELECT text FROM "${schema}".test_notes ORDER BY id`);
    return rows.map((row: { text: string }) => row.text);
  },
};

export interface PostgresHarnessOptions {
  /** Base URL of the database; each store gets its own schema in it. @defaultValue POSTGRES_TEST_URL */
  url?: string;
  /** Connections per store. @defaultValue 4 */
  poolSize?: number;
}

export function postgresHarness(options: PostgresHarnessOptions = {}): StoreHarness {
  const url = options.url ?? POSTGRES_TEST_URL;
  const unavailableReason = options.url === undefined ? reachability : null;
  if (unavailableReason && process.env.VOUCH_REQUIRE_POSTGRES === '1') {
    throw new Error(
      `VOUCH_REQUIRE_POSTGRES=1 but PostgreSQL is not usable: ${unavailableReason}. Start the server (pg_ctlcluster 15 main start) or unset VOUCH_REQUIRE_POSTGRES to skip the PostgreSQL tests.`,
    );
  }
  const prefix = `vouch_test_${process.pid}_${randomBytes(3).toString('hex')}`;
  let counter = 0;
  const created = new Set<string>();
  const opened: { store: PostgresStore; pool: pg.Pool }[] = [];

  return {
    kind: 'postgres',
    available: unavailableReason === null,
    ...(unavailableReason ? { unavailableReason } : {}),
    notes: notes as NoteTable<any>,
    async open(openOptions: { clock?: Clock; shareWith?: string } = {}) {
      let schema: string;
      if (openOptions.shareWith) {
        schema = schemaOf(openOptions.shareWith);
      } else {
        counter += 1;
        schema = `${prefix}_${counter}`;
        created.add(schema);
      }
      const pool = new pg.Pool({
        connectionString: withSearchPath(url, schema),
        max: options.poolSize ?? 4,
        idleTimeoutMillis: 1000,
        application_name: `vouch-test:${schema}`,
      });
      pool.on('error', () => {});
      const store = new PostgresStore({
        pool,
        schema,
        logger: pino({ level: 'silent' }),
        ...(openOptions.clock ? { clock: openOptions.clock } : {}),
      });
      opened.push({ store, pool });
      if (!openOptions.shareWith) await store.migrate();
      const location = new URL(url);
      location.searchParams.set('schema', schema);
      return { store: store as Store<any>, location: location.toString() };
    },
    async cleanup() {
      const stores = opened.splice(0);
      for (const { store, pool } of stores) {
        await store.close();
        await pool.end().catch(() => {});
      }
      if (created.size === 0) return;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        for (const schema of created) await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      } finally {
        created.clear();
        await admin.end();
      }
    },
  };
}

/**
 * Whether tests that need the PostgreSQL server can run. Throws, like
 * postgresHarness(), when VOUCH_REQUIRE_POSTGRES=1 and the server is not usable.
 */
export function postgresAvailable(): boolean {
  return postgresHarness().available;
}
